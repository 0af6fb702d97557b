--- HTTP header helpers: validity of names and values, case-insensitive
-- lookup and replacement.
-- @module xs2a.net.headers
local type, pairs, tostring = type, pairs, tostring
local str_find, str_lower = string.find, string.lower

local _M = {}

--- The RFC 9110 token pattern (header names, methods).
_M.TOKEN = "^[!#$%%&'*+%-.^_`|~%w]+$"
local TOKEN = _M.TOKEN

-- Names already seen to be tokens (the pattern walks a long character set
-- for every byte; a request checks the same few names each time). Bounded:
-- past NAMES_MAX distinct names the set starts again.
local good_names, n_names, NAMES_MAX = {}, 0, 256

--- Returns true when `name` is a header name and `v` a valid header value
-- (a string without CR, LF or NUL), else false and a reason.
function _M.ok(name, v)
  if not good_names[name] then
    if type(name) ~= "string" or not str_find(name, TOKEN) then
      return false, "bad header name " .. tostring(name)
    end
    if n_names >= NAMES_MAX then good_names, n_names = {}, 0 end
    good_names[name], n_names = true, n_names + 1
  end
  if type(v) ~= "string" then return false, "header " .. name .. " must be a string" end
  -- three plain searches (memchr-like) instead of a class scanned per byte
  if str_find(v, "\r", 1, true) or str_find(v, "\n", 1, true) or str_find(v, "\0", 1, true) then
    return false, "header " .. name .. " contains CR, LF or NUL"
  end
  return true
end

--- Case-insensitive lookup in a header table.
-- @return the value and the key it is stored under, or nil
function _M.get(headers, name)
  if not headers then return nil end
  local v = headers[name]
  if v ~= nil then return v, name end
  local lname = str_lower(name)
  v = headers[lname]
  if v ~= nil then return v, lname end
  for k, x in pairs(headers) do
    if type(k) == "string" and str_lower(k) == lname then return x, k end
  end
  return nil
end

--- The value of a header as one string (a list is joined with ", "), or nil.
function _M.value(headers, name)
  local v = _M.get(headers, name)
  if type(v) == "table" then v = table.concat(v, ", ") end
  if v ~= nil then v = tostring(v) end
  return v
end

--- Sets `name` in `headers`, replacing any spelling of it.
function _M.set(headers, name, value)
  local lname = str_lower(name)
  for k in pairs(headers) do
    if type(k) == "string" and k ~= name and str_lower(k) == lname then headers[k] = nil end
  end
  headers[name] = value
end

--- True when the comma-separated header value holds `token` (case-insensitive).
function _M.has_token(value, token)
  if not value then return false end
  for part in value:gmatch("[^,]+") do
    if str_lower(part:match("^%s*(.-)%s*$")) == token then return true end
  end
  return false
end

return _M
