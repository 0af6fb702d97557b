--- JSON for lua-xs2a.
--
-- Encoding is our own (pure Lua) because Debian's lua-cjson 2.1.0 cannot
-- write an empty array: a bank rejects `"accounts": {}` where the schema says
-- array. Decoding uses cjson and then marks arrays so that a decoded body
-- re-encodes the same way.
--
-- Rules of `encode`:
--
-- * a table marked with `json.array(t)` is an array (empty or not);
-- * an unmarked table whose keys are exactly 1..n (n >= 1) is an array;
-- * an unmarked empty table is an object `{}`, except under the Berlin Group
--   field names known to be arrays in request bodies (see `ARRAY_FIELDS`):
--   `access.accounts`, `access.balances`, `access.transactions`, top-level
--   `payments` (bulk), `remittanceInformationUnstructuredArray`,
--   `monthsOfExecution`, `paymentIds`, `consentIds`... which encode as `[]`;
-- * object keys are written in sorted order (stable output for signatures
--   and tests);
-- * `json.null` writes `null`;
-- * NaN, infinities, functions, threads, userdata, cycles, sparse or mixed
--   tables give `nil, err` (never a raised error).
--
-- `decode(text)` returns the value or `nil, err`. JSON `null` becomes
-- `json.null`, arrays carry the array metatable (`json.is_array(t)`), also
-- empty ones, and integral numbers are Lua integers on Lua 5.3+.
-- @module xs2a.codec.json
local cjson = require "cjson"

local type, pairs, next, rawget, rawlen = type, pairs, next, rawget, rawlen or function(t) return #t end
local setmetatable, getmetatable = setmetatable, getmetatable
local str_format, str_byte, str_find = string.format, string.byte, string.find
local str_sub, str_gsub = string.sub, string.gsub
local tbl_concat, tbl_sort = table.concat, table.sort
local math_floor, math_huge = math.floor, math.huge
local tointeger = math.tointeger

local _M = { _VERSION = "0.1" }

--- The JSON null value (the same value cjson uses).
_M.null = cjson.null

--- Metatable of tables that are JSON arrays.
_M.array_mt = { __name = "xs2a.json.array" }
local array_mt = _M.array_mt

--- Marks `t` (default: a new table) as a JSON array and returns it.
function _M.array(t)
  return setmetatable(t or {}, array_mt)
end

--- True when `t` is marked as an array.
function _M.is_array(t)
  return type(t) == "table" and getmetatable(t) == array_mt
end

-- Field names that are arrays in request bodies, whatever their parent.
local ARRAY_ANYWHERE = {
  remittanceInformationUnstructuredArray = true,
  remittanceInformationStructuredArray = true,
  monthsOfExecution = true,
  paymentIds = true,
  consentIds = true,
  restrictedTo = true,
  additionalErrors = true,
  tppMessages = true,
}
-- Arrays only inside `access` (in a transaction list response `transactions`
-- is an object, and `balances` elsewhere may be either).
local ARRAY_IN_ACCESS = { accounts = true, balances = true, transactions = true, restrictedTo = true }
-- Arrays at the top level of a body (`payments` of a bulk payment).
local ARRAY_AT_TOP = { payments = true }

_M.ARRAY_FIELDS = { anywhere = ARRAY_ANYWHERE, access = ARRAY_IN_ACCESS, top = ARRAY_AT_TOP }

local escapes = {
  ['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f',
  ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t',
}
local function escape_char(c)
  return escapes[c] or str_format("\\u%04x", str_byte(c))
end

local function encode_string(s)
  if not str_find(s, '[%c"\\]') then return '"' .. s .. '"' end
  return '"' .. str_gsub(s, '[%c"\\]', escape_char) .. '"'
end

local function encode_number(n)
  if n ~= n then error("cannot encode NaN", 0) end
  if n == math_huge or n == -math_huge then error("cannot encode an infinite number", 0) end
  if math_floor(n) == n and n >= -2^53 and n <= 2^53 then
    return str_format("%d", n)
  end
  return str_format("%.17g", n)
end

local encode_value

-- kind of a table: "array", n | "object"
local function classify(t, want_array)
  if getmetatable(t) == array_mt then
    local n = rawlen(t)
    for k in pairs(t) do
      if type(k) ~= "number" or k < 1 or k > n or math_floor(k) ~= k then
        error("array has a non-index key " .. tostring(k), 0)
      end
    end
    return "array", n
  end
  local k1 = next(t)
  if k1 == nil then
    return want_array and "array" or "object", 0
  end
  if type(k1) == "string" then
    for k in pairs(t) do
      if type(k) ~= "string" then error("table mixes string and other keys", 0) end
    end
    return "object"
  end
  local n, count = 0, 0
  for k in pairs(t) do
    if type(k) ~= "number" or k < 1 or math_floor(k) ~= k then
      error("table mixes index and other keys", 0)
    end
    count = count + 1
    if k > n then n = k end
  end
  if n ~= count then error("cannot encode a sparse array", 0) end
  return "array", n
end

encode_value = function(v, buf, seen, key, parent_key, depth)
  local tv = type(v)
  if tv == "string" then
    buf[#buf + 1] = encode_string(v)
  elseif tv == "number" then
    buf[#buf + 1] = encode_number(v)
  elseif tv == "boolean" then
    buf[#buf + 1] = v and "true" or "false"
  elseif v == cjson.null then
    buf[#buf + 1] = "null"
  elseif tv == "table" then
    if seen[v] then error("cannot encode a cycle", 0) end
    if depth > 200 then error("nesting too deep", 0) end
    seen[v] = true
    local want_array = key ~= nil and (ARRAY_ANYWHERE[key]
      or (parent_key == "access" and ARRAY_IN_ACCESS[key])
      or (depth == 1 and ARRAY_AT_TOP[key]))
    local kind, n = classify(v, want_array)
    if kind == "array" then
      buf[#buf + 1] = "["
      for i = 1, n do
        if i > 1 then buf[#buf + 1] = "," end
        encode_value(rawget(v, i), buf, seen, nil, key, depth + 1)
      end
      buf[#buf + 1] = "]"
    else
      local keys = {}
      for k in pairs(v) do keys[#keys + 1] = k end
      tbl_sort(keys)
      buf[#buf + 1] = "{"
      for i, k in ipairs(keys) do
        if i > 1 then buf[#buf + 1] = "," end
        buf[#buf + 1] = encode_string(k)
        buf[#buf + 1] = ":"
        encode_value(v[k], buf, seen, k, key, depth + 1)
      end
      buf[#buf + 1] = "}"
    end
    seen[v] = nil
  elseif v == nil then
    buf[#buf + 1] = "null"
  else
    error("cannot encode a " .. tv, 0)
  end
end

--- Encodes a Lua value as JSON.
-- @param v value
-- @return string, or nil and an error message
function _M.encode(v)
  local buf = {}
  local ok, err = pcall(encode_value, v, buf, {}, nil, nil, 0)
  if not ok then
    return nil, "json.encode: " .. tostring(err)
  end
  return tbl_concat(buf)
end

-- A string cjson cannot produce from a real body (starts with NUL).
local EMPTY = "\0xs2a:empty-array"
local EMPTY_JSON = '"\\u0000xs2a:empty-array"'

-- Replaces every `[ ]` outside strings by `["<EMPTY>"]` so that the decoded
-- tables can be told apart from empty objects.
local function mark_empty_arrays(text)
  if not str_find(text, "%[%s*%]") then return text end
  local out, pos, last = {}, 1, 1
  while true do
    local s = str_find(text, '["%[]', pos)
    if not s then break end
    if str_sub(text, s, s) == '"' then
      -- skip the string, honouring backslash escapes
      local i = s + 1
      while true do
        local q = str_find(text, '["\\]', i)
        if not q then return text end -- unterminated: let cjson report it
        if str_sub(text, q, q) == "\\" then
          i = q + 2
        else
          pos = q + 1
          break
        end
      end
    else
      local _, e = str_find(text, "^%[%s*%]", s)
      if e then
        out[#out + 1] = str_sub(text, last, s)
        out[#out + 1] = EMPTY_JSON
        last = e
        pos = e + 1
      else
        pos = s + 1
      end
    end
  end
  out[#out + 1] = str_sub(text, last)
  return tbl_concat(out)
end

local function walk(v)
  if type(v) == "table" then
    local first = rawget(v, 1)
    if first ~= nil then
      if first == EMPTY and rawget(v, 2) == nil then
        v[1] = nil
      else
        for i = 1, rawlen(v) do v[i] = walk(v[i]) end
      end
      return setmetatable(v, array_mt)
    end
    for k, x in pairs(v) do
      if type(x) == "table" or (tointeger and type(x) == "number") then
        v[k] = walk(x)
      end
    end
    return v
  elseif tointeger and type(v) == "number" then
    return tointeger(v) or v
  end
  return v
end

--- Decodes JSON text.
-- @param text string
-- @return value, or nil and an error message
function _M.decode(text)
  if type(text) ~= "string" then
    return nil, "json.decode: expected a string, got " .. type(text)
  end
  local ok, v = pcall(cjson.decode, mark_empty_arrays(text))
  if not ok then
    return nil, "json.decode: " .. tostring(v)
  end
  return walk(v)
end

return _M
