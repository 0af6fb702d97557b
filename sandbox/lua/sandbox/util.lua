--- Small helpers shared by the sandbox platform and the bank handlers.
-- JSON: the library's one codec (xs2a.codec.json: cjson to decode, its own
-- encoder so that arrays can be forced with `util.array(t)`, empty or not,
-- and key order is stable).
local json = require "xs2a.codec.json"

local byte, char, concat, floor, format = string.byte, string.char, table.concat, math.floor, string.format
local type, pairs = type, pairs

local _M = {}

--- The JSON null value (the same sentinel cjson decodes `null` to).
_M.null = json.null

_M.array_mt = json.array_mt
local array_mt = json.array_mt

--- Marks `t` (default a new table) so that it encodes as a JSON array.
-- @param t table or nil
-- @return t
_M.array = json.array

--- True when `t` encodes as a JSON array.
function _M.is_array(t)
  if type(t) ~= "table" then return false end
  if getmetatable(t) == array_mt then return true end
  local n = #t
  if n == 0 then return false end
  local count = 0
  for k in pairs(t) do
    if type(k) ~= "number" or k < 1 or k > n or floor(k) ~= k then return false end
    count = count + 1
  end
  return count == n
end

--- Encodes a Lua value as JSON.
-- @return string, or nil and a message for values JSON cannot hold
_M.json_encode = json.encode

--- Decodes JSON text.
-- @return value, or nil and a message
_M.json_decode = json.decode

--- `n` random bytes (libcrypto's RAND_bytes).
function _M.random_bytes(n)
  return require("sandbox.crypto").random(n)
end

--- A random UUID version 4, lower case.
function _M.uuid()
  local b = { byte(_M.random_bytes(16), 1, 16) }
  b[7] = b[7] % 16 + 0x40
  b[9] = b[9] % 64 + 0x80
  local h = {}
  for i = 1, 16 do h[i] = format("%02x", b[i]) end
  return concat(h, "", 1, 4) .. "-" .. concat(h, "", 5, 6) .. "-" .. concat(h, "", 7, 8)
    .. "-" .. concat(h, "", 9, 10) .. "-" .. concat(h, "", 11, 16)
end

local token_chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

--- A random URL-safe token of `n` characters (default 32) from [A-Za-z0-9_-].
function _M.random_token(n)
  n = n or 32
  local raw = _M.random_bytes(n)
  local out = {}
  for i = 1, n do
    local c = byte(raw, i) % 64 + 1
    out[i] = token_chars:sub(c, c)
  end
  return concat(out)
end

local function mod97(digits)
  local r = 0
  for i = 1, #digits, 7 do
    r = tonumber(r .. digits:sub(i, i + 6)) % 97
  end
  return r
end

local function iban_digits(s)
  return (s:gsub("%a", function(c) return tostring(byte(c:upper()) - 55) end))
end

--- True when `s` is a syntactically valid IBAN with a correct checksum
-- (spaces allowed, case-insensitive).
function _M.iban_valid(s)
  if type(s) ~= "string" then return false end
  s = s:gsub(" ", ""):upper()
  if #s < 15 or #s > 34 or not s:match("^%u%u%d%d[%u%d]+$") then return false end
  return mod97(iban_digits(s:sub(5) .. s:sub(1, 4))) == 1
end

--- Builds an IBAN with valid check digits from a country code and the BBAN
-- parts (bank code and account number, concatenated as given).
function _M.make_iban(country, bank, account)
  country = country:upper()
  local bban = (tostring(bank or "") .. tostring(account or "")):upper()
  local check = 98 - mod97(iban_digits(bban .. country .. "00"))
  return format("%s%02d%s", country, check, bban)
end

--- Current time in seconds (float; ngx.now() inside nginx).
function _M.now()
  if ngx then return ngx.now() end
  return os.time()
end

--- "YYYY-MM-DD" (UTC) of a unix time (default now).
function _M.iso_date(t)
  return os.date("!%Y-%m-%d", floor(t or _M.now()))
end

--- "YYYY-MM-DDTHH:MM:SSZ" (UTC) of a unix time (default now).
function _M.iso_datetime(t)
  return os.date("!%Y-%m-%dT%H:%M:%SZ", floor(t or _M.now()))
end

--- Parses "YYYY-MM-DD" into a unix time (UTC midnight); nil when invalid.
function _M.parse_date(s)
  if type(s) ~= "string" then return nil end
  local y, m, d = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)$")
  if not y then return nil end
  y, m, d = tonumber(y), tonumber(m), tonumber(d)
  if m < 1 or m > 12 or d < 1 or d > 31 then return nil end
  -- days from civil (Howard Hinnant's algorithm), exact for the proleptic Gregorian calendar
  local yy = m <= 2 and y - 1 or y
  local era = floor(yy / 400)
  local yoe = yy - era * 400
  local mp = (m + 9) % 12
  local doy = floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
  local days = era * 146097 + doe - 719468
  local t = days * 86400
  if os.date("!%Y-%m-%d", t) ~= s then return nil end   -- e.g. 2026-02-30
  return t
end

--- Deep copy of plain data.
function _M.copy(v)
  if type(v) ~= "table" then return v end
  local c = {}
  for k, x in pairs(v) do c[k] = _M.copy(x) end
  return setmetatable(c, getmetatable(v))
end

--- True when a table has no entries.
function _M.empty(t)
  return next(t) == nil
end

--- Percent-decodes a string ("+" stays "+").
function _M.unescape(s)
  return (s:gsub("%%(%x%x)", function(h) return char(tonumber(h, 16)) end))
end

--- Percent-encodes everything but unreserved characters (RFC 3986).
function _M.escape(s)
  return (s:gsub("[^%w%-%._~]", function(c) return format("%%%02X", byte(c)) end))
end

--- True when `s` is a UUID (any version, either case).
function _M.is_uuid(s)
  return type(s) == "string"
    and s:match("^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$") ~= nil
end

return _M
