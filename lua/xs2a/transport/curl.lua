--- HTTPS transport over the C core's libcurl session (plain Lua, not nginx).
--
--     local t = assert(require("xs2a.transport.curl").new{
--       identity = qwac, ca_file = "ca.pem",
--       connect_timeout = 5000, timeout = 30000, max_body = 8 * 1024 * 1024,
--     })
--     local res, err = t:request{ method = "GET", url = "https://...", headers = {...} }
--     t:close()
--
-- Requests block, except inside a coroutine run by `xs2a.parallel`: there
-- the transfer goes through the session's multi handle and the coroutine
-- yields to the scheduler until it finishes, so requests of parallel tasks
-- overlap. Connections (and TLS sessions) are kept alive and reused across
-- requests of one transport.
-- @module xs2a.transport.curl
local core = require "xs2a.core"

local setmetatable, type, tostring = setmetatable, type, tostring
local package_loaded = package.loaded

local _M = { _VERSION = "0.1.0" }

-- Inside nginx a libcurl transfer blocks the whole worker (every request it
-- serves), so this transport refuses to run there: use xs2a.transport.ngx.
local function in_nginx()
  local ngx = rawget(_G, "ngx")
  return type(ngx) == "table" and type(ngx.get_phase) == "function" and type(ngx.socket) == "table"
end
_M.in_nginx = in_nginx
local IN_NGINX = "the curl transport would block the nginx worker: use the ngx transport (xs2a.transport.ngx)"
local mt = { __index = _M, __name = "xs2a.transport.curl" }

-- codes meaning the request never left this process
local NOT_SENT = { resolve = true, connect = true, tls = true, client_cert = true, bad_request = true }

local err_mt = {
  __tostring = function(e) return "transport error (" .. tostring(e.code) .. "): " .. tostring(e.message) end,
}

local function make_error(message, code)
  code = code or "other"
  return setmetatable({ code = code, message = message or "unknown error", sent = not NOT_SENT[code] }, err_mt)
end

-- the xs2a.parallel scheduler running this coroutine, if any (and if that
-- module is loaded at all); the checks run once per module table
local parallel_seen, parallel_current
local function current_scheduler()
  local parallel = package_loaded["xs2a.parallel"]
  if parallel ~= parallel_seen or parallel == nil then
    if type(parallel) ~= "table" or type(parallel.current) ~= "function" then return nil end
    parallel_seen, parallel_current = parallel, parallel.current
  end
  return parallel_current()
end

--- Creates a transport.
-- @param opts `identity` (an `xs2a.Identity`, or nil for no client
--   certificate), `ca_file` (path; default: the system store),
--   `connect_timeout`, `timeout` (ms), `max_body` (bytes), `http2` (bool,
--   default true), `proxy` (URL; default: none, environment ignored),
--   `cert_file`/`key_file` (PEM paths instead of an identity)
-- @return the transport, or nil and a message
function _M.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("transport.curl.new: opts must be a table", 2) end
  if in_nginx() then return nil, IN_NGINX end
  local session, message = core.http_session{
    identity = opts.identity,
    ca_file = opts.ca_file,
    cert_file = opts.cert_file,
    key_file = opts.key_file,
    connect_timeout = opts.connect_timeout,
    timeout = opts.timeout,
    max_body = opts.max_body,
    http2 = opts.http2,
    proxy = opts.proxy,
  }
  if not session then return nil, message end
  return setmetatable({ session = session, kind = "curl" }, mt)
end

--- Sends one request and reads the whole response.
-- @param req `{ method = "GET", url = "https://...", headers = { Name = "value" },
--   body = string|nil, timeout = ms|nil, max_body = bytes|nil, idempotent = bool|nil }`;
--   a request that is not `idempotent` (default: all but GET, HEAD, OPTIONS)
--   goes out on a fresh connection, because libcurl would silently resend it
--   if a reused connection died under it
-- @return `res = { status, headers = { lowercase = "v1, v2" }, header_list,
--   body, reused, http_version, time }`, or nil and
--   `err = { code, message, sent }` (`sent = false` when the request surely
--   never reached the server)
function _M:request(req)
  local session = self.session
  if not session then error("transport is closed", 2) end
  if type(req) ~= "table" then error("request must be a table", 2) end
  if rawget(_G, "ngx") ~= nil and in_nginx() then
    return nil, setmetatable({ code = "unavailable", message = IN_NGINX, sent = false }, err_mt)
  end
  local res, message, code
  local sched = current_scheduler()
  if sched then
    local id
    id, message, code = session:submit(req)
    if id then res, message, code = sched:wait_http(session, id) end
  else
    res, message, code = session:request(req)
  end
  if res then return res end
  return nil, make_error(message, code)
end

--- Closes the session and its connections. Idempotent.
function _M:close()
  local session = self.session
  if session then
    self.session = nil
    session:close()
  end
end

mt.__close = _M.close

function mt.__tostring(self)
  return self.session and "xs2a.transport.curl" or "xs2a.transport.curl (closed)"
end

return _M
