--- HTTP/1.1 transport over nginx cosockets, for use inside OpenResty.
--
-- Same contract as `xs2a.transport.curl` (see docs/INTERNALS.md):
--
--     local t = require("xs2a.transport.ngx").new{ identity = qwac,
--       connect_timeout = 5000, timeout = 30000, max_body = 8 * 1024 * 1024 }
--     local res, err = t:request{ method = "GET", url = "https://host/x", headers = {} }
--
-- `res` = `{ status, headers = { lowercase = "v1, v2" }, header_list, body,
-- reused, http_version, time = { total = s } }`; `err` = `{ code, message, sent }`.
--
-- Nothing here blocks the worker: every wait is a cosocket yield.
--
-- TLS: nginx verifies the server certificate against the file of the
-- `lua_ssl_trusted_certificate` directive (depth `lua_ssl_verify_depth`) and
-- the host name against the SNI name. Without that directive every handshake
-- fails. `ca_file`, when given, is checked in addition: the server
-- certificate must also chain to a certificate in that file (the issuing CA,
-- since the leaf is all the TLS session keeps); give it the same file as the
-- directive. For IP-literal hosts no SNI is sent (RFC 6066) and the
-- certificate's IP addresses are compared with the host here.
--
-- The client certificate (`identity`) is parsed once per identity with
-- `ngx.ssl.parse_pem_cert`; the key is the identity's own EVP_PKEY*
-- (`identity:_pkey_handle()`, wrapped as cdata), never exported as bytes.
-- Both go to each new connection with `setclientcert` (lua-nginx-module >=
-- 0.10.23, lua-resty-core >= 0.1.25).
--
-- Connections are kept alive per worker in pools keyed by host, port, SNI
-- name, the SHA-256 fingerprint of the client certificate, the verification
-- settings and the optional `pool` name, so two identities never share a
-- connection and transports with the same settings share the pool.
--
-- In phases without cosockets (init, init_worker, set, log, header_filter,
-- body_filter, ...) `request` returns `nil, { code = "unavailable",
-- message = "cosockets unavailable in <phase>" }` at once; move such work
-- into `ngx.timer.at(0, fn)`.
-- @module xs2a.transport.ngx

local url = require "xs2a.net.url"
local http1 = require "xs2a.net.http1"
local core = require "xs2a.core"

local M = {}

local DEFAULTS = {
  connect_timeout = 5000,         -- ms
  timeout = 30000,                -- ms, whole request
  max_body = 8 * 1024 * 1024,     -- bytes of decoded body
  keepalive_timeout = 60000,      -- ms a pooled connection may stay idle
  pool_size = 32,                 -- connections per pool and worker
}

-- phases in which ngx.socket.tcp may connect and yield
local COSOCKET_PHASES = {
  rewrite = true, access = true, content = true, timer = true,
  ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true,
}

local fail, err_mt = http1.fail, http1.err_mt

-- Extra peer checks through OpenSSL ----------------------------------------
-- nginx verifies the chain against `lua_ssl_trusted_certificate` and the
-- name against the SNI host. Two checks it cannot do are done here, on the
-- peer certificate taken from the TLS session (nginx links libssl, so ffi.C
-- has it):
--  * IP-literal hosts: an IP must not be sent as SNI (RFC 6066) and nginx
--    compares DNS names only, so the certificate's iPAddress names are
--    compared with the host;
--  * `ca_file`: the server certificate must also chain to a certificate of
--    that file (nginx's trust store is one per location, not per request).

local ffi_ok, ffi = pcall(require, "ffi")
local ssl_ffi_ready = false
local X509_PURPOSE_SSL_SERVER = 2
local X509_V_FLAG_PARTIAL_CHAIN = 0x80000

local function ssl_ffi()
  if not ffi_ok then return nil end
  if not ssl_ffi_ready then
    -- void * everywhere: other modules may have declared the real types
    for _, decl in ipairs({
      "void *SSL_SESSION_get0_peer(void *s);",
      "int X509_check_ip_asc(void *x, const char *address, unsigned int flags);",
      "void *X509_STORE_new(void);",
      "void X509_STORE_free(void *st);",
      "int X509_STORE_load_locations(void *st, const char *file, const char *dir);",
      "int X509_STORE_set_flags(void *st, unsigned long flags);",
      "void *X509_STORE_CTX_new(void);",
      "void X509_STORE_CTX_free(void *ctx);",
      "int X509_STORE_CTX_init(void *ctx, void *st, void *x509, void *chain);",
      "int X509_STORE_CTX_set_purpose(void *ctx, int purpose);",
      "int X509_verify_cert(void *ctx);",
      "int X509_STORE_CTX_get_error(void *ctx);",
      "const char *X509_verify_cert_error_string(long n);",
      "void EVP_PKEY_free(void *pkey);",
    }) do
      pcall(ffi.cdef, decl)
    end
    ssl_ffi_ready = true
  end
  return ffi.C
end

local function peer_cert(session)
  local C = ssl_ffi()
  if not C or type(session) ~= "cdata" then return nil end
  local ok, x = pcall(C.SSL_SESSION_get0_peer, session)
  if not ok or x == nil then return nil end
  return x
end

local function check_peer_ip(x, ip)
  local ok, r = pcall(ffi.C.X509_check_ip_asc, x, ip, 0)
  return ok and r == 1
end

local stores = {} -- ca_file path -> X509_STORE (one per worker)

local function ca_store(path)
  local st = stores[path]
  if st then return st end
  local C = ssl_ffi()
  if not C then return nil, "LuaJIT FFI unavailable" end
  local f = io.open(path, "rb")
  if not f then return nil, "cannot read ca_file " .. path end
  f:close()
  st = C.X509_STORE_new()
  if st == nil then return nil, "X509_STORE_new failed" end
  st = ffi.gc(st, C.X509_STORE_free)
  if C.X509_STORE_load_locations(st, path, nil) ~= 1 then
    return nil, "no certificates in ca_file " .. path
  end
  -- an intermediate in ca_file may be the trust anchor (the session holds
  -- the leaf only, not the chain the server sent)
  C.X509_STORE_set_flags(st, X509_V_FLAG_PARTIAL_CHAIN)
  stores[path] = st
  return st
end

local function verify_against(x, path)
  local st, err = ca_store(path)
  if not st then return false, err end
  local C = ffi.C
  local ctx = C.X509_STORE_CTX_new()
  if ctx == nil then return false, "X509_STORE_CTX_new failed" end
  local ok, msg = false, "verification failed"
  if C.X509_STORE_CTX_init(ctx, st, x, nil) == 1 then
    C.X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER)
    if C.X509_verify_cert(ctx) == 1 then
      ok = true
    else
      msg = ffi.string(C.X509_verify_cert_error_string(C.X509_STORE_CTX_get_error(ctx)))
    end
  end
  C.X509_STORE_CTX_free(ctx)
  return ok, msg
end

-- Client certificates ------------------------------------------------------
-- Parsed once per identity. The cache holds the parsed OpenSSL objects
-- (cdata), never the PEM text of the key.

local cert_cache = setmetatable({}, { __mode = "k" })

local function der_to_pem(der)
  local b64 = core.b64encode(der)
  local lines = {}
  for i = 1, #b64, 64 do lines[#lines + 1] = b64:sub(i, i + 63) end
  return "-----BEGIN CERTIFICATE-----\n" .. table.concat(lines, "\n")
    .. "\n-----END CERTIFICATE-----\n"
end

-- The identity's EVP_PKEY* as the cdata setclientcert wants: the core hands
-- out a pointer with its own reference (never key bytes), freed by ffi.gc.
-- For an HSM identity it is the token's key, usable only in the process that
-- opened it.
local pkey_free
local function pkey_cdata(identity)
  local ok, h, err = pcall(identity._pkey_handle, identity)
  if not ok then return nil, h end
  if not h then return nil, err end
  if not ffi_ok then return nil, "LuaJIT's ffi is not available" end
  if not pkey_free then
    pcall(ffi.cdef, "void EVP_PKEY_free(void *pkey);")   -- may be declared already
    pkey_free = ffi.C.EVP_PKEY_free
  end
  return ffi.gc(ffi.cast("void *", h), pkey_free)
end

local function load_client_cert(identity)
  local entry = cert_cache[identity]
  if entry then return entry end
  local ok_ssl, ssl = pcall(require, "ngx.ssl")
  if not ok_ssl then
    return nil, "ngx.ssl (lua-resty-core) is not available"
  end
  local ok, info = pcall(identity.info, identity)
  if not ok or type(info) ~= "table" or not info.fingerprint then
    return nil, "cannot read the client certificate of the identity"
  end
  local ok_pem, pem = pcall(identity.cert_pem, identity)
  if not ok_pem or type(pem) ~= "string" then
    return nil, "cannot read the client certificate of the identity"
  end
  local ok_chain, chain = pcall(identity.chain_der, identity)
  if ok_chain and type(chain) == "table" then
    for _, der in ipairs(chain) do pem = pem .. der_to_pem(der) end
  end
  local cert, cerr = ssl.parse_pem_cert(pem)
  if not cert then
    return nil, "cannot parse the client certificate: " .. tostring(cerr)
  end
  local key, kerr = pkey_cdata(identity)
  if not key then
    return nil, "cannot load the private key of the identity: " .. tostring(kerr)
  end
  entry = { cert = cert, key = key, fingerprint = info.fingerprint }
  cert_cache[identity] = entry
  return entry
end

-- Response reading --------------------------------------------------------

local function now()
  ngx.update_time()
  return ngx.now()
end

-- Arms the socket timeouts with what is left of the deadline.
local function arm(sock, deadline, connect_cap)
  local left = math.floor((deadline - now()) * 1000)
  if left <= 0 then return false end
  local c = connect_cap and math.min(connect_cap, left) or left
  sock:settimeouts(c, left, left)
  return true
end

-- Transport ----------------------------------------------------------------

local Transport = {}
Transport.__index = Transport

local warned_no_verify = false

--- Creates a transport.
-- @tparam table opts `identity` (xs2a.Identity or nil), `ca_file` (must be
-- the file of `lua_ssl_trusted_certificate`), `connect_timeout` (ms),
-- `timeout` (ms), `max_body` (bytes), `keepalive_timeout` (ms), `pool_size`,
-- `ssl_verify` (default true; false must be spelled out).
-- @return transport | nil, message
function M.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then return nil, "options must be a table" end
  local self = setmetatable({ kind = "ngx" }, Transport)
  for k, v in pairs(DEFAULTS) do
    local given = opts[k]
    if given ~= nil and (type(given) ~= "number" or given < 0) then
      return nil, k .. " must be a non-negative number"
    end
    self[k] = given or v
  end
  self.identity = opts.identity
  if opts.ca_file ~= nil and type(opts.ca_file) ~= "string" then return nil, "ca_file must be a path" end
  self.ca_file = opts.ca_file
  if opts.pool ~= nil and type(opts.pool) ~= "string" then return nil, "pool must be a string" end
  self.pool = opts.pool
  self.ssl_verify = opts.ssl_verify ~= false
  if not self.ssl_verify and not warned_no_verify and rawget(_G, "ngx") then
    warned_no_verify = true
    ngx.log(ngx.WARN, "xs2a: TLS peer verification is disabled (ssl_verify = false)")
  end
  return self
end

-- The last TLS session per pool name (same host, port, SNI, client
-- certificate, verification and CA), so that a new connection resumes it
-- instead of a full handshake. Per worker.
local tls_sessions = {}

local function pool_name(self, u, sni, fingerprint)
  return table.concat({ "xs2a", self.pool or "", u.scheme, u.host, u.port, sni or "-",
    fingerprint or "-", self.ssl_verify and "v" or "nv", self.ca_file or "" }, "|")
end

local IDEMPOTENT_METHODS = { GET = true, HEAD = true, OPTIONS = true }

-- One attempt on one connection. Returns res | nil, err, retryable.
function Transport:_attempt(u, req_bytes, method, deadline, conn_cert, started, idempotent)
  local sock = ngx.socket.tcp()
  if not arm(sock, deadline, self.connect_timeout) then
    return fail("timeout", "request timed out before connecting", false)
  end
  local sni = (u.scheme == "https" and not u.ip) and u.host or nil
  -- "localhost" is loopback by definition (RFC 6761); other names go
  -- through the nginx `resolver`.
  local addr = u.host == "localhost" and "127.0.0.1" or (u.ipv6 and ("[" .. u.host .. "]") or u.host)
  local pname = pool_name(self, u, sni, conn_cert and conn_cert.fingerprint)
  local ok, err = sock:connect(addr, u.port, { pool = pname, pool_size = self.pool_size })
  if not ok then
    if err == "timeout" then
      return fail("timeout", "connect to " .. u.host .. ":" .. u.port .. " timed out", false)
    end
    if tostring(err):find("resolv", 1, true) or tostring(err):find("no resolver", 1, true) then
      return fail("resolve", "cannot resolve " .. u.host .. ": " .. tostring(err))
    end
    return fail("connect", "connect to " .. u.host .. ":" .. u.port .. " failed: " .. tostring(err))
  end
  local reused = (sock:getreusedtimes() or 0) > 0

  if u.scheme == "https" and not reused then
    if conn_cert then
      local cok, cerr = sock:setclientcert(conn_cert.cert, conn_cert.key)
      if not cok then
        sock:close()
        return fail("client_cert", "cannot use the client certificate: " .. tostring(cerr))
      end
    end
    if not arm(sock, deadline) then
      sock:close()
      return fail("timeout", "TLS handshake timed out", false)
    end
    -- resume the pool's last TLS session (the peer certificate checks below
    -- read it from the resumed session just the same)
    local want_session = self.ssl_verify and (u.ip or self.ca_file ~= nil)
    local session, herr = sock:sslhandshake(tls_sessions[pname], sni, self.ssl_verify)
    if not session then
      tls_sessions[pname] = nil
      sock:close()
      if herr == "timeout" then return fail("timeout", "TLS handshake timed out", false) end
      return fail("tls", "TLS handshake with " .. u.host .. " failed: " .. tostring(herr))
    end
    if want_session then
      local x = peer_cert(session)
      if not x then
        sock:close()
        return fail("tls", "cannot check the TLS peer certificate of " .. u.host)
      end
      if u.ip and not check_peer_ip(x, u.host) then
        sock:close()
        return fail("tls", "TLS peer certificate does not match " .. u.host)
      end
      if self.ca_file then
        local vok, verr = verify_against(x, self.ca_file)
        if not vok then
          sock:close()
          return fail("tls", "TLS peer certificate of " .. u.host .. " not trusted by ca_file: " .. tostring(verr))
        end
      end
    end
    tls_sessions[pname] = session            -- only a session whose peer passed the checks
  end

  if not arm(sock, deadline) then
    sock:close()
    return fail("timeout", "request timed out before sending", false)
  end
  local sent, serr = sock:send(req_bytes)
  if not sent then
    sock:close()
    if reused and serr ~= "timeout" then
      return nil, setmetatable({ code = "send", message = "send failed", sent = false }, err_mt), true
    end
    if serr == "timeout" then return fail("timeout", "sending the request timed out", true) end
    return fail("send", "sending the request failed: " .. tostring(serr), true)
  end

  local conn = { sock = sock, line_reader = sock:receiveuntil("\r\n"), got_bytes = false,
    arm = function(dl) return arm(sock, dl) end }
  local res, rerr = http1.read_response(conn, deadline, method, self.max_body)
  if not res then
    sock:close()
    -- a pooled connection that died without a byte of answer: either the
    -- server had closed it before our request, or it received the request,
    -- acted and then dropped the connection. Only a request that is safe to
    -- repeat may go out once more afresh (never a payment POST).
    if reused and not conn.got_bytes and rerr.code ~= "timeout" and idempotent then
      return nil, rerr, true
    end
    return nil, rerr
  end
  if rerr then -- keep-alive allowed
    sock:setkeepalive(self.keepalive_timeout, self.pool_size)
  else
    sock:close()
  end
  res.reused = reused
  res.time = { total = now() - started }
  return res
end

--- Sends one request and reads the whole response.
-- @tparam table req `{ method, url, headers = { Name = "value" }, body, timeout, idempotent }`
--   (`idempotent`: may the request go out again after a pooled connection died
--   without an answer; default true for GET, HEAD, OPTIONS only)
-- @return res | nil, `{ code, message, sent }`
function Transport:request(req)
  local ngx_ = rawget(_G, "ngx")
  if not ngx_ or not ngx_.get_phase then
    return fail("unavailable", "the ngx transport runs only inside nginx (lua-nginx-module)")
  end
  local phase = ngx.get_phase()
  if not COSOCKET_PHASES[phase] then
    return fail("unavailable", "cosockets unavailable in " .. tostring(phase))
  end
  if self.closed then return fail("bad_request", "transport is closed") end
  if type(req) ~= "table" then return fail("bad_request", "request must be a table") end
  local method = req.method or "GET"
  if type(method) ~= "string" or not method:match("^%u+$") then
    return fail("bad_request", "invalid method")
  end
  local u, uerr = url.parse(req.url)
  if not u then return fail("bad_request", uerr) end
  local body = req.body
  if body ~= nil and type(body) ~= "string" then
    return fail("bad_request", "body must be a string")
  end
  local timeout = req.timeout or self.timeout
  if type(timeout) ~= "number" or timeout <= 0 then
    return fail("bad_request", "timeout must be a positive number")
  end

  local req_bytes, herr = http1.serialise(method, u, req.headers, body)
  if not req_bytes then return fail("bad_request", herr) end

  local conn_cert
  if u.scheme == "https" and self.identity then
    local cerr
    conn_cert, cerr = load_client_cert(self.identity)
    if not conn_cert then return fail("client_cert", cerr) end
  end

  local started = now()
  local deadline = started + timeout / 1000
  -- `req.idempotent` (set by the client) overrides the method's default
  local idempotent = req.idempotent
  if idempotent == nil then idempotent = IDEMPOTENT_METHODS[method] or false end
  local res, err, retry = self:_attempt(u, req_bytes, method, deadline, conn_cert, started, idempotent)
  if not res and retry then
    res, err = self:_attempt(u, req_bytes, method, deadline, conn_cert, started, idempotent)
  end
  if not res then return nil, err end
  return res
end

--- Releases the transport. Pooled connections belong to the worker and
-- expire on their own (keepalive_timeout).
function Transport:close()
  self.closed = true
end

return M
