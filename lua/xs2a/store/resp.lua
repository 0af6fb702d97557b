--- RESP2, the Redis wire protocol: encoding commands and reading replies
-- from anything with `receive("*l")` and `receive(n)` (LuaSocket, cosockets,
-- or a string reader in specs). No connection handling here.
-- @module xs2a.store.resp
local type, tonumber, setmetatable, select, error = type, tonumber, setmetatable, select, error
local str_format, str_sub = string.format, string.sub
local tconcat = table.concat
local floor, huge = math.floor, math.huge

local _M = {}

-- biggest bulk string / array we accept from a server (the store never asks
-- for big values; anything larger means a broken or hostile peer)
local MAX_BULK = 64 * 1024 * 1024
local MAX_ITEMS = 1024 * 1024
local MAX_DEPTH = 8

-- A Redis null (nil bulk string or nil array), distinct from a Lua nil that
-- means "failed".
local NULL = setmetatable({}, { __tostring = function() return "redis.null" end })
_M.null = NULL

-- An error reply nested inside an array.
local ErrorReply = {}
ErrorReply.__index = ErrorReply
ErrorReply.__tostring = function(e) return e.message end

-- ----------------------------------------------------------------------------
-- RESP2 encoding and decoding

local function is_integer(n)
  return n == floor(n) and n > -2 ^ 53 and n < 2 ^ 53
end

-- A number as Redis expects it in an argument.
local function num(n)
  if n ~= n or n == huge or n == -huge then error("store numbers must be finite", 4) end
  if is_integer(n) then return str_format("%d", n) end
  return str_format("%.17g", n)
end

--- Encodes a command (strings and numbers) as a RESP array of bulk strings.
function _M.encode(...)
  local n = select("#", ...)
  local out = { "*" .. n .. "\r\n" }
  for i = 1, n do
    local a = select(i, ...)
    if type(a) == "number" then a = num(a) end
    out[#out + 1] = "$" .. #a .. "\r\n"
    out[#out + 1] = a
    out[#out + 1] = "\r\n"
  end
  return tconcat(out)
end

local function length(s, max)
  if not s:match("^%-?%d+$") or #s > 12 then return nil end
  local n = tonumber(s)
  if n < -1 or n > max then return nil end
  return n
end

--- Reads one reply from `r` (anything with `receive("*l")` and
-- `receive(n)`, as LuaSocket and cosockets have).
-- @return value (string, number, table, `null`) | nil, message, kind where
--   kind is "reply" (an error reply: the connection stays usable), "io" or
--   "protocol" (the connection must be dropped)
local function read_reply(r, depth)
  local line, err = r:receive("*l")
  if not line then return nil, err, "io" end
  local t, rest = str_sub(line, 1, 1), str_sub(line, 2)
  if t == "+" then
    return rest
  elseif t == "-" then
    return nil, rest, "reply"
  elseif t == ":" then
    if not rest:match("^%-?%d+$") or #rest > 20 then
      return nil, "bad integer reply", "protocol"
    end
    return tonumber(rest)
  elseif t == "$" then
    local n = length(rest, MAX_BULK)
    if not n then return nil, "bad bulk length", "protocol" end
    if n == -1 then return NULL end
    local data, rerr = r:receive(n + 2)
    if not data then return nil, rerr, "io" end
    if str_sub(data, -2) ~= "\r\n" then return nil, "bulk string not terminated by CRLF", "protocol" end
    return str_sub(data, 1, n)
  elseif t == "*" then
    local n = length(rest, MAX_ITEMS)
    if not n then return nil, "bad array length", "protocol" end
    if n == -1 then return NULL end
    if depth >= MAX_DEPTH then return nil, "arrays nested too deep", "protocol" end
    local items = {}
    for i = 1, n do
      local v, e, kind = read_reply(r, depth + 1)
      if v == nil then
        -- an error element: keep reading so the stream stays in step
        if kind ~= "reply" then return nil, e, kind end
        v = setmetatable({ message = e }, ErrorReply)
      end
      items[i] = v
    end
    return items
  end
  return nil, "unexpected reply type " .. str_format("%q", str_sub(line, 1, 16)), "protocol"
end

--- Reads one reply (see above).
function _M.read_reply(r)
  return read_reply(r, 0)
end
_M.read_reply_at = read_reply
_M.num = num
_M.is_integer = is_integer

_M.ErrorReply = ErrorReply

return _M
