--- HTTP/1.1 on the wire: serialising a request and parsing a response
-- from a stream (the ngx transport's cosocket; a string reader in specs).
--
-- `read_response(conn, deadline, method, max_body)` reads through `conn`:
-- `conn.sock:receive(n)`, `conn.line_reader(n)` (a `receiveuntil("\r\n")`
-- iterator) and `conn.arm(deadline)` (sets the socket timeouts from what is
-- left of the deadline; false when nothing is left). Every failure is
-- `nil, { code, message, sent = true }`, never a raised error: by the time a
-- response is read the request has left.
-- @module xs2a.net.http1
local headers_mod = require "xs2a.net.headers"

local type, tostring, tonumber, pairs, ipairs, setmetatable = type, tostring, tonumber, pairs, ipairs,
  setmetatable
local tconcat, tsort = table.concat, table.sort

local _M = {}

local MAX_LINE = 16 * 1024        -- one status or header line
local MAX_HEADER_BYTES = 64 * 1024
local MAX_HEADERS = 200
local MAX_INTERIM = 10            -- 1xx responses skipped before the final one
_M.MAX_LINE, _M.MAX_HEADER_BYTES, _M.MAX_HEADERS = MAX_LINE, MAX_HEADER_BYTES, MAX_HEADERS

local TOKEN = headers_mod.TOKEN
local has_token = headers_mod.has_token

-- codes after which the request certainly never reached the server
local NOT_SENT = {
  bad_request = true, unavailable = true, resolve = true, connect = true,
  tls = true, client_cert = true,
}

local err_mt = {
  __tostring = function(e)
    return "transport error (" .. tostring(e.code) .. "): " .. tostring(e.message)
  end,
}
_M.err_mt = err_mt

--- A transport failure: `nil, { code, message, sent }` (`sent` defaults
-- from the code: only failures before the request left are "not sent").
local function fail(code, message, sent)
  if sent == nil then sent = not NOT_SENT[code] end
  return nil, setmetatable({ code = code, message = message, sent = sent }, err_mt)
end
_M.fail = fail

local function header_lines(headers, out)
  if headers == nil then return {} end
  if type(headers) ~= "table" then return nil, "headers must be a table" end
  local seen = {}
  local names = {}
  for name in pairs(headers) do
    if type(name) ~= "string" or not name:match(TOKEN) then
      return nil, "invalid header name"
    end
    names[#names + 1] = name
  end
  tsort(names)
  for _, name in ipairs(names) do
    local lname = name:lower()
    local value = headers[name]
    local values = type(value) == "table" and value or { value }
    for _, v in ipairs(values) do
      local tv = type(v)
      if tv ~= "string" and tv ~= "number" then
        return nil, "value of header " .. name .. " must be a string"
      end
      v = tostring(v)
      if v:find("[%z\r\n]") then
        return nil, "value of header " .. name .. " contains CR, LF or NUL"
      end
      -- framing headers are ours
      if lname ~= "content-length" and lname ~= "transfer-encoding"
          and lname ~= "connection" then
        out[#out + 1] = name .. ": " .. v .. "\r\n"
      end
    end
    seen[lname] = true
  end
  return seen
end

--- Serialises a request: request line, headers (sorted; the framing
-- headers Content-Length, Transfer-Encoding and Connection are ours), body.
-- @param method e.g. "GET"
-- @param u a parsed URL (`xs2a.net.url.parse`: `target`, `host_header`)
-- @param headers `{ Name = "value" | { "v1", "v2" } }` or nil
-- @param body string or nil
-- @return the bytes, or nil and a reason
function _M.serialise(method, u, headers, body)
  local lines = { method, " ", u.target, " HTTP/1.1\r\n" }
  local seen, herr = header_lines(headers, lines)
  if not seen then return nil, herr end
  if not seen["host"] then table.insert(lines, 5, "Host: " .. u.host_header .. "\r\n") end
  if not seen["user-agent"] then lines[#lines + 1] = "User-Agent: lua-xs2a\r\n" end
  if body then
    lines[#lines + 1] = "Content-Length: " .. #body .. "\r\n"
  elseif method == "POST" or method == "PUT" or method == "PATCH" then
    lines[#lines + 1] = "Content-Length: 0\r\n"
  end
  lines[#lines + 1] = "\r\n"
  if body then lines[#lines + 1] = body end
  return tconcat(lines)
end

local function io_error(err, what)
  if err == "timeout" then return fail("timeout", what .. " timed out", true) end
  if err == "closed" then
    return fail("closed", "connection closed by the server while " .. what, true)
  end
  return fail("recv", what .. " failed: " .. tostring(err), true)
end

-- Reads one CRLF-terminated line of at most MAX_LINE bytes.
local function read_line(conn, deadline, what)
  if not conn.arm(deadline) then return fail("timeout", what .. " timed out", true) end
  local reader = conn.line_reader
  local parts, n = {}, 0
  while true do
    local data, err, partial = reader(4096)
    if not data then
      if err then
        if partial and partial ~= "" then conn.got_bytes = true end
        if partial and partial:find("\n", 1, true) then
          return fail("protocol", what .. ": bare LF in line", true)
        end
        return io_error(err, what)
      end
      break
    end
    n = n + #data
    conn.got_bytes = true
    if n > MAX_LINE then return fail("protocol", what .. ": line too long", true) end
    -- lines end in CRLF; a bare LF would otherwise only show at the limit
    if data:find("\n", 1, true) then return fail("protocol", what .. ": bare LF in line", true) end
    parts[#parts + 1] = data
  end
  return tconcat(parts)
end

local function read_exact(conn, deadline, size, what)
  if size == 0 then return "" end
  if not conn.arm(deadline) then return fail("timeout", what .. " timed out", true) end
  local data, err = conn.sock:receive(size)
  if not data then return io_error(err, what) end
  return data
end

local function read_headers(conn, deadline, res)
  local headers, list = {}, {}
  local total = 0
  while true do
    local line, err = read_line(conn, deadline, "reading the response headers")
    if not line then return nil, err end
    if line == "" then break end
    total = total + #line + 2
    if total > MAX_HEADER_BYTES or #list >= MAX_HEADERS then
      return fail("protocol", "response headers too large", true)
    end
    local name, value = line:match("^([^:%s]+):[ \t]*(.-)[ \t]*$")
    if not name or not name:match(TOKEN) then
      return fail("protocol", "malformed response header line", true)
    end
    list[#list + 1] = { name, value }
    local lname = name:lower()
    local prev = headers[lname]
    headers[lname] = prev and (prev .. ", " .. value) or value
  end
  res.headers, res.header_list = headers, list
  return true
end

local function read_chunked(conn, deadline, max_body)
  local parts, total = {}, 0
  while true do
    local line, err = read_line(conn, deadline, "reading a chunk size")
    if not line then return nil, err end
    local hex = line:match("^(%x+)[ \t]*;.*$") or line:match("^(%x+)[ \t]*$")
    if not hex or #hex > 8 then
      return fail("protocol", "malformed chunk size line", true)
    end
    local size = tonumber(hex, 16)
    if size == 0 then break end
    total = total + size
    if total > max_body then
      return fail("too_large", "response body larger than " .. max_body .. " bytes", true)
    end
    local data
    data, err = read_exact(conn, deadline, size, "reading the response body")
    if not data then return nil, err end
    parts[#parts + 1] = data
    local crlf
    crlf, err = read_exact(conn, deadline, 2, "reading the response body")
    if not crlf then return nil, err end
    if crlf ~= "\r\n" then return fail("protocol", "chunk not terminated by CRLF", true) end
  end
  -- trailers, ignored, until the empty line
  local n = 0
  while true do
    local line, err = read_line(conn, deadline, "reading the trailers")
    if not line then return nil, err end
    if line == "" then break end
    n = n + 1
    if n > MAX_HEADERS then return fail("protocol", "too many trailers", true) end
  end
  return tconcat(parts)
end

local function read_to_close(conn, deadline, max_body)
  local parts, total = {}, 0
  while true do
    if not conn.arm(deadline) then
      return fail("timeout", "reading the response body timed out", true)
    end
    local data, err, partial = conn.sock:receive(16384)
    data = data or partial
    if data and #data > 0 then
      total = total + #data
      if total > max_body then
        return fail("too_large", "response body larger than " .. max_body .. " bytes", true)
      end
      parts[#parts + 1] = data
    end
    if err == "closed" then break end
    if err then return io_error(err, "reading the response body") end
  end
  return tconcat(parts)
end

--- Reads one whole response.
-- @return res (`status`, `http_version`, `headers` (lowercase names, repeated
--   ones joined by ", "), `header_list`, `body`), keepalive_ok | nil, err
function _M.read_response(conn, deadline, method, max_body)
  local res
  for _ = 0, MAX_INTERIM do
    local line, err = read_line(conn, deadline, "reading the status line")
    if not line then return nil, err end
    local version, status = line:match("^HTTP/(1%.[01]) (%d%d%d)[ \t]?.*$")
    if not version then
      return fail("protocol", "malformed status line", true)
    end
    res = { status = tonumber(status), http_version = version }
    local ok, herr = read_headers(conn, deadline, res)
    if not ok then return nil, herr end
    if res.status >= 200 then break end
    if res.status == 101 then return fail("protocol", "unexpected protocol switch", true) end
    res = nil
  end
  if not res then return fail("protocol", "too many interim responses", true) end

  local h = res.headers
  local keep = res.http_version == "1.1" and not has_token(h["connection"], "close")
    or res.http_version == "1.0" and has_token(h["connection"], "keep-alive")

  if method == "HEAD" or res.status == 204 or res.status == 304 then
    res.body = ""
    return res, keep
  end

  local te = h["transfer-encoding"]
  local cl = h["content-length"]
  if te then
    if cl then
      return fail("protocol", "both Transfer-Encoding and Content-Length in response", true)
    end
    if te:lower():match("^%s*(.-)%s*$") ~= "chunked" then
      return fail("protocol", "unsupported transfer encoding", true)
    end
    local body, err = read_chunked(conn, deadline, max_body)
    if not body then return nil, err end
    res.body = body
    return res, keep
  end
  if cl then
    local first, size
    for v in cl:gmatch("[^,]+") do
      v = v:match("^%s*(.-)%s*$")
      if not v:match("^%d+$") or #v > 15 then
        return fail("protocol", "malformed Content-Length", true)
      end
      if first and v ~= first then
        return fail("protocol", "conflicting Content-Length values", true)
      end
      first = v
    end
    size = tonumber(first)
    if not size then return fail("protocol", "malformed Content-Length", true) end
    if size > max_body then
      return fail("too_large", "response body larger than " .. max_body .. " bytes", true)
    end
    local body, err = read_exact(conn, deadline, size, "reading the response body")
    if not body then return nil, err end
    res.body = body
    return res, keep
  end
  local body, err = read_to_close(conn, deadline, max_body)
  if not body then return nil, err end
  res.body = body
  return res, false
end


return _M
