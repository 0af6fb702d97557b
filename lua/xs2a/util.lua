--- Small helpers shared by the Lua layer: redaction, URL building and
-- parsing, header checks, HTTP dates.
-- @module xs2a.util
local type, pairs, ipairs, tostring, tonumber = type, pairs, ipairs, tostring, tonumber
local str_format, str_byte, str_char, str_gsub, str_find, str_sub, str_lower, str_match, str_upper =
  string.format, string.byte, string.char, string.gsub, string.find, string.sub, string.lower, string.match,
  string.upper
local tbl_concat, tbl_sort = table.concat, table.sort
local os_time = os.time
local floor = math.floor

local _M = {}

local REDACTED = "[redacted]"
_M.REDACTED = REDACTED

------------------------------------------------------------------------------
-- Redaction

-- Header names (lowercase) whose value is never logged.
local SECRET_HEADERS = {
  ["authorization"] = true, ["proxy-authorization"] = true, ["cookie"] = true, ["set-cookie"] = true,
  ["signature"] = true, ["tpp-signature-certificate"] = true, ["x-jws-signature"] = true,
  ["psu-id"] = true, ["psu-corporate-id"] = true, ["consent-id"] = true,
  ["psu-device-id"] = true, ["psu-geo-location"] = true,
}
_M.SECRET_HEADERS = SECRET_HEADERS

--- Masks an IBAN-like string: keeps the country code and the last 4 characters.
-- `LT601010012345678901` -> `LT**************8901`.
function _M.mask_iban(s)
  s = tostring(s)
  if #s <= 8 then return str_sub(s, 1, 2) .. "****" end
  return str_sub(s, 1, 2) .. string.rep("*", #s - 6) .. str_sub(s, -4)
end
local mask_iban = _M.mask_iban

-- An IBAN inside free text: two letters, two digits, 11..30 alphanumerics.
local function mask_ibans_in(s)
  return (str_gsub(s, "(%f[%w]%u%u%d%d%w+)", function(m)
    if #m >= 15 and #m <= 34 then return mask_iban(m) end
    return m
  end))
end

--- Masks IBANs (and card numbers) inside free text.
function _M.mask_text(s)
  if type(s) ~= "string" then return s end
  s = mask_ibans_in(s)
  -- card numbers: 13..19 digits
  s = str_gsub(s, "%f[%d]%d%d%d%d%d%d%d%d%d%d%d%d%d+%f[%D]", function(m)
    if #m <= 19 then return str_sub(m, 1, 2) .. string.rep("*", #m - 6) .. str_sub(m, -4) end
    return m
  end)
  return s
end
local mask_text = _M.mask_text

--- Returns a copy of `headers` with secret values masked. `Authorization`
-- keeps its scheme (`Bearer [redacted]`). `extra` is an optional list of
-- more header names to mask.
function _M.redact_headers(headers, extra)
  if type(headers) ~= "table" then return headers end
  local more
  if extra then
    more = {}
    for _, n in ipairs(extra) do more[str_lower(n)] = true end
  end
  local out = {}
  for k, v in pairs(headers) do
    local name = type(k) == "string" and str_lower(k) or k
    if SECRET_HEADERS[name] or (more and more[name]) then
      local scheme = (name == "authorization" or name == "proxy-authorization")
        and type(v) == "string" and str_match(v, "^(%a+)%s") or nil
      out[k] = scheme and (scheme .. " " .. REDACTED) or REDACTED
    elseif type(v) == "string" then
      out[k] = mask_text(v)
    else
      out[k] = v
    end
  end
  return out
end

-- Body keys whose values are secrets (masked whole, whatever their type).
local SECRET_KEYS = {
  access_token = true, refresh_token = true, id_token = true, code = false, code_verifier = true,
  client_secret = true, password = true, encryptedPassword = true, additionalPassword = true,
  additionalEncryptedPassword = true, psuData = true, scaAuthenticationData = true,
  confirmationCode = true, mac_key = true, key = false, passphrase = true,
}
-- Keys whose string values are account numbers.
local ACCOUNT_KEYS = { iban = true, bban = true, pan = true, maskedPan = false, msisdn = true }

local function redact_value(v, key, depth, in_oauth)
  local tv = type(v)
  if key and (SECRET_KEYS[key] or (key == "code" and in_oauth)) then
    return REDACTED
  end
  if tv == "table" then
    if depth > 50 then return "[too deep]" end
    local out = {}
    local oauth = in_oauth or v.grant_type ~= nil or v.access_token ~= nil or v.code_verifier ~= nil
    for k, x in pairs(v) do
      out[k] = redact_value(x, k, depth + 1, oauth)
    end
    return setmetatable(out, getmetatable(v))
  elseif tv == "string" then
    if key and ACCOUNT_KEYS[key] then return mask_iban(v) end
    return mask_text(v)
  end
  return v
end

local function parse_query(q)
  local out = {}
  for pair in q:gmatch("[^&]+") do
    local k, v = str_match(pair, "^([^=]*)=?(.*)$")
    out[#out + 1] = { _M.unescape(k), _M.unescape(v) }
  end
  return out
end

--- Returns a redacted copy of a body: a table (deep copy) or a string
-- (JSON or form-encoded; other text has IBANs masked). Tokens, OAuth codes
-- and verifiers, PSU passwords (`psuData`), OTPs (`scaAuthenticationData`),
-- confirmation codes are replaced by `[redacted]`; IBANs keep their country
-- and last 4 characters.
function _M.redact_body(body)
  if type(body) == "table" then
    return redact_value(body, nil, 0, false)
  elseif type(body) ~= "string" or body == "" then
    return body
  end
  local first = str_match(body, "^%s*(.)")
  if first == "{" or first == "[" then
    local json = require "xs2a.json"
    local t = json.decode(body)
    if t ~= nil then
      local s = json.encode(redact_value(t, nil, 0, false))
      if s then return s end
    end
    -- not JSON after all: fall through to text masking of a JSON-ish string
    return mask_text((str_gsub(body, '("[%w_]*[Tt]oken"%s*:%s*")[^"]*', "%1" .. REDACTED)))
  end
  if str_find(body, "^[%w%%._~+-]+=[^%s]*$") then
    -- application/x-www-form-urlencoded
    local parts = {}
    local oauth = str_find(body, "grant_type=", 1, true) or str_find(body, "code_verifier=", 1, true)
    for _, kv in ipairs(parse_query(body)) do
      local k, v = kv[1], kv[2]
      if SECRET_KEYS[k] or (k == "code" and oauth) then v = REDACTED else v = mask_text(v) end
      parts[#parts + 1] = _M.escape(k) .. "=" .. _M.escape(v)
    end
    return tbl_concat(parts, "&")
  end
  return mask_text(body)
end

------------------------------------------------------------------------------
-- Percent-encoding and URLs

local function pct(c) return str_format("%%%02X", str_byte(c)) end

--- Percent-encodes everything but RFC 3986 unreserved characters.
function _M.escape(s)
  return (str_gsub(tostring(s), "[^%w%-%._~]", pct))
end

--- Decodes %XX sequences and `+` (form encoding) in `s`.
function _M.unescape(s)
  s = str_gsub(s, "+", " ")
  return (str_gsub(s, "%%(%x%x)", function(h) return str_char(tonumber(h, 16)) end))
end

--- Percent-encodes one path segment (a `/` inside it is encoded too).
-- Raises for a non-string/number or empty segment (a programming error).
function _M.segment(s)
  local ts = type(s)
  if ts ~= "string" and ts ~= "number" then
    error("path segment must be a string, got " .. ts, 2)
  end
  s = tostring(s)
  if s == "" then error("path segment must not be empty", 2) end
  return _M.escape(s)
end

--- Joins segments into a path: `util.path("v1", "consents", id)` ->
-- `/v1/consents/<escaped id>`.
function _M.path(...)
  local parts = { ... }
  for i = 1, select("#", ...) do parts[i] = _M.segment(parts[i]) end
  return "/" .. tbl_concat(parts, "/")
end

--- Encodes a query table (`{ k = v }`, values string/number/boolean or a
-- list of them) with sorted keys. Returns "" for an empty table.
function _M.encode_query(q)
  if q == nil then return "" end
  local keys = {}
  for k in pairs(q) do keys[#keys + 1] = tostring(k) end
  tbl_sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do
    local v = q[k]
    if v == nil then v = q[tonumber(k)] end
    local list = type(v) == "table" and v or { v }
    for _, x in ipairs(list) do
      local tx = type(x)
      if tx ~= "string" and tx ~= "number" and tx ~= "boolean" then
        error("query value for " .. k .. " must be a string, number or boolean", 3)
      end
      parts[#parts + 1] = _M.escape(k) .. "=" .. _M.escape(tostring(x))
    end
  end
  return tbl_concat(parts, "&")
end

--- Parses a query string into a table (last value wins).
function _M.decode_query(q)
  local out = {}
  if not q or q == "" then return out end
  for _, kv in ipairs(parse_query(q)) do out[kv[1]] = kv[2] end
  return out
end

--- Parses an absolute http(s) URL.
-- @return `{ scheme, host, port, path, query, origin }` or nil, err
function _M.parse_url(url)
  if type(url) ~= "string" then return nil, "url must be a string" end
  local scheme, authority, rest = str_match(url, "^(%a[%w+.-]*)://([^/?#]*)(.*)$")
  if not scheme then return nil, "not an absolute URL" end
  scheme = str_lower(scheme)
  if scheme ~= "https" and scheme ~= "http" then return nil, "unsupported URL scheme " .. scheme end
  if str_find(authority, "@", 1, true) then return nil, "URL must not carry credentials" end
  local host, port = str_match(authority, "^(%[[%x:.]+%])(.*)$")
  if not host then host, port = str_match(authority, "^([^:]*)(.*)$") end
  if host == "" then return nil, "URL has no host" end
  if port ~= "" then
    port = str_match(port, "^:(%d+)$")
    if not port then return nil, "bad port in URL" end
    port = tonumber(port)
    if port < 1 or port > 65535 then return nil, "bad port in URL" end
  else
    port = scheme == "https" and 443 or 80
  end
  rest = str_gsub(rest, "#.*$", "")
  local path, query = str_match(rest, "^([^?]*)%??(.*)$")
  if path == "" then path = "/" end
  local default = (scheme == "https" and port == 443) or (scheme == "http" and port == 80)
  local origin = scheme .. "://" .. str_lower(host) .. (default and "" or (":" .. port))
  return { scheme = scheme, host = str_lower(host), port = port, path = path, query = query, origin = origin }
end

--- Resolves an href returned by the bank against the client's base URL and
-- the variant root. Accepts absolute URLs, absolute paths with or without
-- the root (`/xs2a/berlin/1.3/v1/...` or `/v1/...`) and relative paths.
-- @param base_url e.g. "https://127.0.0.1:8443"
-- @param root e.g. "/xs2a/berlin/1.3"
-- @param href the link
-- @return absolute URL, or nil and err
function _M.resolve(base_url, root, href)
  if type(href) ~= "string" or href == "" then return nil, "empty link" end
  if str_find(href, "[%c ]") then return nil, "link contains control characters or spaces" end
  if str_find(href, "^%a[%w+.-]*://") then
    local u, err = _M.parse_url(href)
    if not u then return nil, err end
    return href
  end
  if str_sub(href, 1, 2) == "//" then return nil, "scheme-relative links are not supported" end
  base_url = str_gsub(base_url, "/+$", "")
  root = root or ""
  if str_sub(href, 1, 1) == "/" then
    if root ~= "" and (href == root or str_sub(href, 1, #root + 1) == root .. "/"
        or str_sub(href, 1, #root + 1) == root .. "?") then
      return base_url .. href
    end
    return base_url .. root .. href
  end
  return base_url .. root .. "/" .. href
end

------------------------------------------------------------------------------
-- Headers

--- Returns true when `v` is a valid header value (no CR, LF or NUL), else
-- false and a reason.
function _M.header_ok(name, v)
  if type(name) ~= "string" or not str_find(name, "^[%w!#$%%&'*+.^_`|~-]+$") then
    return false, "bad header name " .. tostring(name)
  end
  if type(v) ~= "string" then return false, "header " .. name .. " must be a string" end
  if str_find(v, "[\r\n%z]") then return false, "header " .. name .. " contains CR, LF or NUL" end
  return true
end

--- Case-insensitive lookup in a header table.
function _M.header(headers, name)
  if not headers then return nil end
  local v = headers[name]
  if v ~= nil then return v end
  local lname = str_lower(name)
  v = headers[lname]
  if v ~= nil then return v end
  for k, x in pairs(headers) do
    if type(k) == "string" and str_lower(k) == lname then return x end
  end
  return nil
end

------------------------------------------------------------------------------
-- Dates

local MONTHS = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6, Jul = 7, Aug = 8, Sep = 9, Oct = 10,
  Nov = 11, Dec = 12 }

-- days since 1970-01-01 of a civil date (proleptic Gregorian)
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = floor((y >= 0 and y or y - 399) / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

--- Epoch seconds of a UTC date-time.
function _M.timegm(y, mo, d, h, mi, s)
  return days_from_civil(y, mo, d) * 86400 + (h or 0) * 3600 + (mi or 0) * 60 + (s or 0)
end

--- Parses an HTTP-date (IMF-fixdate, RFC 850 or asctime) to epoch seconds.
function _M.parse_http_date(s)
  if type(s) ~= "string" then return nil end
  local d, mon, y, h, mi, sec = str_match(s, "^%a+, (%d%d?) (%a%a%a) (%d%d%d%d) (%d%d):(%d%d):(%d%d) GMT$")
  if not d then
    d, mon, y, h, mi, sec = str_match(s, "^%a+, (%d%d)%-(%a%a%a)%-(%d%d) (%d%d):(%d%d):(%d%d) GMT$")
    if y then y = tonumber(y) + (tonumber(y) < 70 and 2000 or 1900) end
  end
  if not d then
    mon, d, h, mi, sec, y = str_match(s, "^%a+ (%a%a%a) +(%d%d?) (%d%d):(%d%d):(%d%d) (%d%d%d%d)$")
  end
  if not d or not MONTHS[mon] then return nil end
  return _M.timegm(tonumber(y), MONTHS[mon], tonumber(d), tonumber(h), tonumber(mi), tonumber(sec))
end

--- Formats epoch seconds as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
function _M.http_date(t)
  local u = os.date("!*t", t or os_time())
  local wd = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" }
  local mn = { "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" }
  return str_format("%s, %02d %s %04d %02d:%02d:%02d GMT", wd[u.wday], u.day, mn[u.month], u.year, u.hour,
    u.min, u.sec)
end

--- Current time in seconds (sub-second when ngx or the core offers it).
function _M.now()
  local ngx = rawget(_G, "ngx")
  if ngx and ngx.now then return ngx.now() end
  local ok, core = pcall(require, "xs2a.core")
  if ok and type(core) == "table" and core.now then return core.now() end
  return os_time()
end

------------------------------------------------------------------------------
-- Tables

--- Deep copy of plain tables (metatables kept, cycles not supported).
function _M.copy(v, depth)
  if type(v) ~= "table" then return v end
  depth = depth or 0
  if depth > 100 then error("table too deep to copy", 2) end
  local out = {}
  for k, x in pairs(v) do out[k] = _M.copy(x, depth + 1) end
  return setmetatable(out, getmetatable(v))
end

--- Shallow merge: a copy of `a` with the keys of `b` on top (nested tables
-- merged recursively, lists replaced).
function _M.merge(a, b)
  local out = {}
  for k, v in pairs(a or {}) do out[k] = _M.copy(v) end
  for k, v in pairs(b or {}) do
    if type(v) == "table" and type(out[k]) == "table" and v[1] == nil and next(v) ~= nil
        and out[k][1] == nil then
      out[k] = _M.merge(out[k], v)
    else
      out[k] = _M.copy(v)
    end
  end
  return out
end

--- A set from a list.
function _M.set(list)
  local s = {}
  for _, v in ipairs(list or {}) do s[v] = true end
  return s
end

_M.upper = str_upper

return _M
