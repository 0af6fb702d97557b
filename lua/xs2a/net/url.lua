--- URLs: parsing, percent-encoding, query strings and link resolution (the
-- one copy of each of these helpers in the Lua layer).
--
-- Query strings follow ONE rule for repeated keys: `encode_query` writes a
-- list value as the key repeated, and `decode_query` keeps the FIRST value of
-- a repeated key (a value appended later, for instance to an OAuth callback,
-- never overrides the one the bank sent first).
-- @module xs2a.net.url
local type, pairs, ipairs, tostring, tonumber, select = type, pairs, ipairs, tostring, tonumber, select
local str_format, str_byte, str_char, str_gsub, str_find, str_sub, str_lower, str_match =
  string.format, string.byte, string.char, string.gsub, string.find, string.sub, string.lower, string.match
local tbl_concat, tbl_sort = table.concat, table.sort

local _M = {}

local function pct(c) return str_format("%%%02X", str_byte(c)) end

--- Percent-encodes everything but RFC 3986 unreserved characters.
function _M.escape(s)
  return (str_gsub(tostring(s), "[^%w%-%._~]", pct))
end
local escape = _M.escape

local function unhex(h) return str_char(tonumber(h, 16)) end

--- Decodes %XX sequences and `+` (form encoding) in `s`.
function _M.unescape(s)
  s = str_gsub(s, "+", " ")
  return (str_gsub(s, "%%(%x%x)", unhex))
end
local unescape = _M.unescape

--- Percent-encodes one path segment (a `/` inside it is encoded too).
-- Raises for a non-string/number or empty segment (a programming error).
function _M.segment(s)
  local ts = type(s)
  if ts ~= "string" and ts ~= "number" then
    error("path segment must be a string, got " .. ts, 2)
  end
  s = tostring(s)
  if s == "" then error("path segment must not be empty", 2) end
  return escape(s)
end

--- Joins segments into a path: `url.path("v1", "consents", id)` ->
-- `/v1/consents/<escaped id>`.
function _M.path(...)
  local parts = { ... }
  for i = 1, select("#", ...) do parts[i] = _M.segment(parts[i]) end
  return "/" .. tbl_concat(parts, "/")
end

--- Encodes a query table (`{ k = v }`, values string/number/boolean or a
-- list of them: the key is then repeated) with sorted keys. Returns "" for
-- nil or an empty table.
function _M.encode_query(q)
  if q == nil then return "" end
  local keys = {}
  for k in pairs(q) do keys[#keys + 1] = tostring(k) end
  if keys[1] == nil then return "" end
  tbl_sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do
    local v = q[k]
    if v == nil then v = q[tonumber(k)] end
    if type(v) == "table" then
      for _, x in ipairs(v) do
        local tx = type(x)
        if tx ~= "string" and tx ~= "number" and tx ~= "boolean" then
          error("query value for " .. k .. " must be a string, number or boolean", 3)
        end
        parts[#parts + 1] = escape(k) .. "=" .. escape(tostring(x))
      end
    else
      local tv = type(v)
      if tv ~= "string" and tv ~= "number" and tv ~= "boolean" then
        error("query value for " .. k .. " must be a string, number or boolean", 3)
      end
      parts[#parts + 1] = escape(k) .. "=" .. escape(tostring(v))
    end
  end
  return tbl_concat(parts, "&")
end

-- adds the pairs of `s` to `out`, first value of a key wins
local function absorb(out, s)
  for pair in s:gmatch("[^&;]+") do
    local k, v = str_match(pair, "^([^=]*)=?(.*)$")
    if k and k ~= "" then
      k = unescape(k)
      if out[k] == nil then out[k] = unescape(v) end
    end
  end
end

--- Parses a query string into a table (the first value of a repeated key wins).
function _M.decode_query(q)
  local out = {}
  if type(q) == "string" and q ~= "" then absorb(out, q) end
  return out
end

--- Parses the query and the fragment of a URL (an OAuth callback) into a
-- table, by the same rule as `decode_query`.
-- @return table (empty when there is no query)
function _M.query_of(url)
  local out = {}
  if type(url) ~= "string" then return out end
  absorb(out, str_match(url, "%?([^#]*)") or "")
  local frag = str_match(url, "#(.*)$")
  if frag then absorb(out, frag) end
  return out
end

--- The pairs of a query string in order (for redaction).
function _M.query_pairs(q)
  local out = {}
  for pair in q:gmatch("[^&]+") do
    local k, v = str_match(pair, "^([^=]*)=?(.*)$")
    out[#out + 1] = { unescape(k), unescape(v) }
  end
  return out
end

--- Parses an absolute http(s) URL.
-- @return `{ scheme, host, port, path, query, origin, ip, ipv6, host_header }`
--   or nil, err (`path` includes no query; `target` is path and query)
function _M.parse(url)
  if type(url) ~= "string" then return nil, "url must be a string" end
  if str_find(url, "[%z\1-\32\127]") then return nil, "url contains spaces or control characters" end
  local scheme, authority, rest = str_match(url, "^(%a[%w+.-]*)://([^/?#]*)(.*)$")
  if not scheme then return nil, "not an absolute URL" end
  scheme = str_lower(scheme)
  if scheme ~= "https" and scheme ~= "http" then return nil, "unsupported URL scheme " .. scheme end
  if str_find(authority, "@", 1, true) then return nil, "URL must not carry credentials" end
  local host, port, ipv6
  if str_sub(authority, 1, 1) == "[" then
    host, port = str_match(authority, "^%[([%x:.]+)%](.*)$")
    ipv6 = true
  else
    host, port = str_match(authority, "^([%w.-]*)(.*)$")
  end
  if not host or host == "" then return nil, "URL has no host" end
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
  host = str_lower(host)
  local default = (scheme == "https" and port == 443) or (scheme == "http" and port == 80)
  local hostport = (ipv6 and ("[" .. host .. "]") or host) .. (default and "" or (":" .. port))
  return { scheme = scheme, host = host, port = port, path = path, query = query,
    target = query ~= "" and (path .. "?" .. query) or path,
    origin = scheme .. "://" .. hostport, host_header = hostport,
    ipv6 = ipv6 or false, ip = ipv6 or str_find(host, "^%d+%.%d+%.%d+%.%d+$") ~= nil }
end

--- True when a path has a `.` or `..` segment (raw or percent-encoded).
function _M.has_dot_segment(path)
  for seg in (path .. "/"):gmatch("([^/]*)/") do
    local s = str_lower(seg)
    s = str_gsub(s, "%%2e", ".")
    if s == "." or s == ".." then return true end
  end
  return false
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
    local u, err = _M.parse(href)
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

return _M
