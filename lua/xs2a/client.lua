--- The XS2A client: configuration and the one request pipeline.
--
--     local client = assert(xs2a.client{
--       profile = "paysera-berlin", base_url = "https://127.0.0.1:8443",
--       qwac = xs2a.identity{ cert = "qwac.pem", key = "qwac.key" },
--       qseal = xs2a.identity{ cert = "qseal.pem", key = "qseal.key" },
--       redirect_uri = "https://tpp.example/callback", ca_file = "ca.pem",
--     })
--
-- Options (`xs2a.client(opts)`):
--
-- * `profile`: a profile name or table (`xs2a.profile`), default `"paysera-berlin"`;
--   `profile_overrides`: a table merged into it;
-- * `base_url`: origin of the bank (default: the profile's production URL);
-- * `qwac`: an identity, or `{ cert =, key =, passphrase = }` / `{ p12 = }` to load one;
-- * `qseal`: the same, required when the profile signs requests of a service
--   the client may use;
-- * `services`: list of `"AIS"`, `"PIS"`, `"PIIS"` the client will use
--   (default: those the QWAC's roles allow); a listed service whose role the
--   QWAC lacks is refused;
-- * `redirect_uri`, `nok_redirect_uri`: sent as `TPP-Redirect-URI` /
--   `TPP-Nok-Redirect-URI` on consent/payment creation and to the OAuth server;
-- * `client_id`: OAuth client id (default: the QWAC's organizationIdentifier);
-- * `ca_file`: CA bundle for the bank's TLS certificate (default: system store);
-- * `response_cert`: trusted certificate (PEM/DER data or a path) for the
--   bank's signed responses when the profile verifies them (default: `ca_file`);
-- * `store`: a store (default `xs2a.store.memory()`);
-- * `log`: `function(level, event, fields)`, fields already redacted;
-- * `transport`: an object with `request(req)` (default: `xs2a.transport.new`);
-- * `limits`: `{ per_second, per_hour, concurrent, headroom = 0.9 }` on top of the
--   profile's, or `false` (the client aims at `headroom` times the per-second
--   limit, so latency jitter cannot push a burst over the bank's limit);
-- * `retry`: `{ max_attempts = 3, base_delay = 0.2, max_delay = 5, max_retry_after = 30 }`;
-- * `timeouts`: `{ connect = 5000, total = 30000 }` (ms); `max_body` (bytes).
--
-- Every runtime failure is returned as `nil, err` with an `xs2a.errors` error.
--
-- Retries: only requests that are safe to repeat (GET, DELETE of a consent,
-- or `idempotent = true`) are retried, on transport errors and on
-- 429/502/503/504, honouring `Retry-After` (above `max_retry_after` the
-- error is returned) with jittered exponential backoff. A request that never
-- left (connect/TLS failure) may be retried whatever its method. Each attempt
-- carries a fresh `X-Request-ID` (the Berlin Group defines it as unique per
-- call, not as an idempotency key); log events carry `first_request_id` to
-- tie attempts together, and an `outcome = "unknown"` error carries the id
-- that was actually sent. A 401 `TOKEN_EXPIRED`/`TOKEN_INVALID` on a request
-- with a token triggers one `xs2a.oauth.refresh` and one more attempt (for a
-- POST that is not idempotent, only the refresh: the error comes back with
-- `retryable = true` and `token_refreshed = true`).
-- @module xs2a.client
local util = require "xs2a.util"
local json = require "xs2a.json"
local errors = require "xs2a.errors"
local profile_mod = require "xs2a.profile"

local type, tostring, tonumber, pairs, ipairs, setmetatable, pcall =
  type, tostring, tonumber, pairs, ipairs, setmetatable, pcall
local str_lower, str_find, str_sub, str_match = string.lower, string.find, string.sub, string.match
local random, min, max = math.random, math.min, math.max

local _M = {}
local Client = {}
Client.__index = Client
Client.__name = "xs2a.Client"
_M.Client = Client

Client.__tostring = function(self)
  return "xs2a.Client (" .. self.profile.name .. ", " .. self.base_url .. ")"
end

local ROLE_OF = { AIS = "PSP_AI", PIS = "PSP_PI", PIIS = "PSP_IC" }
_M.ROLE_OF = ROLE_OF

local RETRY_DEFAULTS = { max_attempts = 3, base_delay = 0.2, max_delay = 5, max_retry_after = 30 }

-- PSU option name -> header
local PSU_HEADERS = {
  ip = "PSU-IP-Address", port = "PSU-IP-Port", id = "PSU-ID", id_type = "PSU-ID-Type",
  corporate_id = "PSU-Corporate-ID", corporate_id_type = "PSU-Corporate-ID-Type",
  user_agent = "PSU-User-Agent", accept = "PSU-Accept", accept_charset = "PSU-Accept-Charset",
  accept_encoding = "PSU-Accept-Encoding", accept_language = "PSU-Accept-Language",
  http_method = "PSU-Http-Method", device_id = "PSU-Device-ID", geo_location = "PSU-Geo-Location",
}
_M.PSU_HEADERS = PSU_HEADERS

local function config_error(text, code)
  return nil, errors.config(text, code)
end

local function load_identity(v, what)
  if v == nil then return nil end
  local identity = require "xs2a.identity"
  if identity.is_identity(v) then return v end
  if type(v) == "table" then
    local id, err = identity.new(v)
    if not id then return nil, what .. ": " .. tostring(err) end
    return id
  end
  return nil, what .. " must be an identity or a table of identity options"
end

local function read_file_or_data(v)
  if type(v) ~= "string" then return nil end
  if str_find(v, "-----BEGIN", 1, true) or (v:byte(1) == 0x30 and #v > 100 and not str_find(v, "^[%w/._-]+$")) then
    return v
  end
  local f = io.open(v, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function identity_checks(id, what, now)
  local ok, info = pcall(id.info, id)
  if not ok or type(info) ~= "table" then
    return nil, what .. ": cannot read the certificate (" .. tostring(info) .. ")", "CERTIFICATE_INVALID"
  end
  if info.expired or (info.not_after and info.not_after < now) then
    return nil, what .. " has expired (not after " .. os.date("!%Y-%m-%d", info.not_after or 0) .. ")",
      "CERTIFICATE_EXPIRED"
  end
  if info.not_before and info.not_before > now + 300 then
    return nil, what .. " is not valid yet", "CERTIFICATE_INVALID"
  end
  return info
end

--- Creates a client. See the module description for `opts`.
-- @return client, or nil and an error of kind "config"
function _M.new(opts)
  if type(opts) ~= "table" then error("xs2a.client: options must be a table", 2) end
  local prof, perr = profile_mod.get(opts.profile or "paysera-berlin", opts.profile_overrides)
  if not prof then return nil, perr end

  local base_url = opts.base_url or prof.base_url
  if type(base_url) ~= "string" then return config_error("base_url is required for profile " .. prof.name) end
  local u, uerr = util.parse_url(base_url)
  if not u then return config_error("base_url: " .. uerr) end
  if u.scheme ~= "https" and not opts.allow_http then return config_error("base_url must use https") end
  if u.path ~= "/" then return config_error("base_url must be an origin (no path): the profile gives the root") end

  local now = util.now()
  if opts.qwac == nil then return config_error("qwac (the QWAC identity) is required", "CERTIFICATE_MISSING") end
  local qwac, qerr = load_identity(opts.qwac, "qwac")
  if not qwac then return config_error(qerr, "CERTIFICATE_INVALID") end
  local info, ierr, icode = identity_checks(qwac, "qwac", now)
  if not info then return config_error(ierr, icode) end

  local roles = util.set(info.roles)
  local services
  if opts.services ~= nil then
    if type(opts.services) ~= "table" then return config_error("services must be a list") end
    services = {}
    for _, s in ipairs(opts.services) do
      if not ROLE_OF[s] then return config_error("unknown service " .. tostring(s)) end
      if not roles[ROLE_OF[s]] then
        return config_error("the QWAC lacks role " .. ROLE_OF[s] .. " needed for " .. s
          .. " (it has: " .. (#(info.roles or {}) > 0 and table.concat(info.roles, ", ") or "none") .. ")",
          "ROLE_INVALID")
      end
      services[#services + 1] = s
    end
  else
    services = {}
    for _, s in ipairs({ "AIS", "PIS", "PIIS" }) do
      if roles[ROLE_OF[s]] then services[#services + 1] = s end
    end
  end
  if not (roles.PSP_AI or roles.PSP_PI) then
    return config_error("the QWAC has neither PSP_AI nor PSP_PI: it cannot use AIS or PIS", "ROLE_INVALID")
  end
  local service_set = util.set(services)

  -- signing: needed when the profile signs a service this client may use
  local signer
  local needs_seal = false
  for _, s in ipairs(prof.signing.services) do
    if service_set[s] then needs_seal = true end
  end
  local qseal
  if opts.qseal ~= nil then
    local serr
    qseal, serr = load_identity(opts.qseal, "qseal")
    if not qseal then return config_error(serr, "CERTIFICATE_INVALID") end
    local sinfo, sierr, sicode = identity_checks(qseal, "qseal", now)
    if not sinfo then return config_error(sierr, sicode) end
  end
  if prof.signing.scheme and needs_seal then
    local sign = require "xs2a.sign"
    local ok, s
    if prof.signing.scheme == "mac" then
      ok, s = pcall(sign.mac, opts.mac or prof.signing.dialect)
    else
      if not qseal then
        return config_error("profile " .. prof.name .. " signs " .. table.concat(prof.signing.services, "/")
          .. " requests: qseal (the QSealC identity) is required", "CERTIFICATE_MISSING")
      end
      ok, s = pcall(sign[prof.signing.scheme], qseal, prof.signing.dialect)
    end
    if not ok or not s then return config_error("cannot build the signer: " .. tostring(s), "SIGNER_INVALID") end
    signer = s
  end

  local response_cert
  if prof.verify_responses then
    response_cert = read_file_or_data(opts.response_cert or opts.ca_file)
    if not response_cert then
      return config_error("profile " .. prof.name .. " verifies signed responses: give response_cert "
        .. "(the bank's seal certificate or its CA) or ca_file, or set profile_overrides.verify_responses = false")
    end
  end

  local store = opts.store or require("xs2a.store").memory()
  local sok, serr2 = require("xs2a.store").check(store)
  if not sok then return config_error("store: " .. serr2) end

  local timeouts = opts.timeouts or {}
  local transport = opts.transport
  if transport == nil then
    local terr
    transport, terr = require("xs2a.transport").new{
      identity = qwac, ca_file = opts.ca_file,
      connect_timeout = timeouts.connect or 5000, timeout = timeouts.total or 30000,
      max_body = opts.max_body or 8 * 1024 * 1024,
    }
    if not transport then return config_error("transport: " .. tostring(terr), "TRANSPORT_INVALID") end
  elseif type(transport) ~= "table" or type(transport.request) ~= "function" then
    return config_error("transport must have a request method")
  end

  if opts.redirect_uri ~= nil then
    local ok, why = util.header_ok("TPP-Redirect-URI", opts.redirect_uri)
    if not ok or not util.parse_url(opts.redirect_uri) then
      return config_error("redirect_uri must be an absolute URL: " .. tostring(why or opts.redirect_uri))
    end
  end
  if opts.log ~= nil and type(opts.log) ~= "function" then return config_error("log must be a function") end

  local retry = {}
  for k, v in pairs(RETRY_DEFAULTS) do retry[k] = v end
  for k, v in pairs(opts.retry or {}) do retry[k] = v end

  local self = setmetatable({
    opts = opts,
    profile = prof,
    base_url = u.origin,
    origin = u.origin,
    root = prof.root,
    qwac = qwac,
    qseal = qseal,
    info = info,
    roles = roles,
    services = service_set,
    client_id = opts.client_id or info.organization_identifier,
    redirect_uri = opts.redirect_uri,
    store = store,
    transport = transport,
    signer = signer,
    response_cert = response_cert,
    retry = retry,
    _logger = opts.log,
  }, Client)

  if opts.limits ~= false and prof.limits ~= false then
    local l = util.merge(prof.limits, opts.limits or {})
    self.limits = l
    self.limiter = require("xs2a.limiter").new{
      store = store,
      id = tostring(self.client_id or "tpp") .. "@" .. u.host .. ":" .. u.port,
      per_second = l.per_second, per_hour = l.per_hour, concurrent = l.concurrent,
      headroom = l.headroom,
      sleep = function(s) return self:sleep(s) end,
      lease_ttl = math.ceil((timeouts.total or 30000) / 1000) + 10,
      max_wait = l.max_wait,
    }
  end
  return self
end

------------------------------------------------------------------------------
-- helpers

--- Sleeps `s` seconds (yields inside `xs2a.parallel` and nginx).
function Client:sleep(s) -- luacheck: ignore 212
  return require("xs2a.parallel").sleep(s)
end

--- Logs an event through `opts.log` after redaction. Never raises.
-- @param level "debug"|"info"|"warn"|"error"
-- @param event e.g. "request", "response", "retry", "error"
-- @param fields table (headers, body, url... are redacted here)
function Client:log(level, event, fields)
  local logger = self._logger
  if not logger then return end
  local ok, safe = pcall(function()
    local out = {}
    for k, v in pairs(fields or {}) do
      if k == "headers" then
        out.headers = util.redact_headers(v)
      elseif k == "body" then
        out.body = util.redact_body(v)
      elseif k == "error" and errors.is_error(v) then
        out.error = tostring(v)
      else
        out[k] = v
      end
    end
    return util.redact_body(out)
  end)
  if not ok then safe = { note = "log fields could not be redacted" } end
  -- headers were redacted above; redact_body must not have touched them
  pcall(logger, level, event, safe)
end

--- Absolute URL of a path relative to the variant root.
function Client:url(path, query)
  if type(path) ~= "string" or str_sub(path, 1, 1) ~= "/" then
    error("path must start with /", 2)
  end
  local q = util.encode_query(query)
  return self.base_url .. self.root .. path .. (q ~= "" and ("?" .. q) or "")
end

--- Resolves a link href (absolute, or relative with/without the root). Refuses
-- links to another origin: the client would send its certificate and tokens there.
-- @return url or nil, err
function Client:resolve(href, allow_foreign)
  local url, err = util.resolve(self.base_url, self.root, href)
  if not url then return nil, errors.protocol("bad link: " .. tostring(err), nil, "BAD_LINK") end
  if not allow_foreign then
    local u = util.parse_url(url)
    if not u or u.origin ~= self.origin then
      return nil, errors.protocol("refusing a link to another origin (" .. (u and u.origin or "?") .. ")",
        nil, "FOREIGN_LINK")
    end
  end
  return url
end

-- PSU options, from `psu = {...}` and flat `psu_ip`, `psu_id`... keys.
function _M.psu_from(opts)
  if type(opts) ~= "table" then return nil end
  local psu
  if type(opts.psu) == "table" then
    psu = {}
    for k, v in pairs(opts.psu) do psu[k] = v end
  end
  for k in pairs(PSU_HEADERS) do
    local v = opts["psu_" .. k]
    if v ~= nil then
      psu = psu or {}
      psu[k] = v
    end
  end
  return psu
end

local function form_encode(form)
  return util.encode_query(form)
end

local function has_json_type(ctype)
  ctype = str_lower(ctype or "")
  return str_find(ctype, "json", 1, true) ~= nil
end

local function backoff(retry, attempt)
  local d = min(retry.max_delay, retry.base_delay * 2 ^ (attempt - 1))
  return d * (0.5 + random() * 0.5)
end

local function psu_present(psu)
  return type(psu) == "table" and psu.ip ~= nil
end

local AIS_READ = { "^/v1/accounts", "^/v1/card%-accounts" }
local function is_ais_read(path)
  if not path then return false end
  for _, p in ipairs(AIS_READ) do
    if str_find(path, p) then return true end
  end
  return false
end

--- The maximum accesses per day without the PSU for a consent (from the
-- creation body when this client created it, else the profile's cap).
function Client:consent_frequency(consent_id)
  local v = self.store:get("xs2a:consent:" .. consent_id .. ":fpd")
  return tonumber(v) or self.profile.max_frequency_per_day
end

------------------------------------------------------------------------------
-- the request pipeline

--- Sends one logical API request (with the retries that are safe).
-- @param req `{ method, path | url, query, headers, body (table|string), form,
--   service = "AIS"|"PIS"|"PIIS"|"OAUTH", psu = {...}, consent_id, token (store key),
--   idempotent, redirect (bool), expect = { statuses }, follow (bool: a pagination link),
--   frequency_per_day }`
-- @return `{ status, headers, body, json, request_id, attempts }`, or nil, err
function Client:request(req)
  if type(req) ~= "table" then error("request must be a table", 2) end
  local method = req.method or "GET"
  if type(method) ~= "string" or not str_find(method, "^%u+$") then error("bad method " .. tostring(method), 2) end

  -- URL
  local url, path
  if req.url then
    local err
    url, err = self:resolve(req.url, req.allow_foreign)
    if not url then return nil, err end
    if req.query and next(req.query) then
      url = url .. (str_find(url, "?", 1, true) and "&" or "?") .. util.encode_query(req.query)
    end
    local pu = util.parse_url(url)
    path = pu and pu.path or url
    if pu and str_sub(path, 1, #self.root) == self.root then path = str_sub(path, #self.root + 1) end
  elseif req.path then
    if type(req.path) ~= "string" or str_sub(req.path, 1, 1) ~= "/" then error("path must start with /", 2) end
    url = self:url(req.path, req.query)
    path = req.path
  else
    error("request needs path or url", 2)
  end

  local service = req.service
  if service and ROLE_OF[service] and not self.roles[ROLE_OF[service]] then
    return nil, errors.new("config", { code = "ROLE_INVALID", method = method, path = path,
      text = "the QWAC lacks role " .. ROLE_OF[service] .. " needed for " .. service })
  end

  -- body
  local body, ctype
  if req.form ~= nil then
    body = form_encode(req.form)
    ctype = "application/x-www-form-urlencoded"
  elseif type(req.body) == "table" then
    local err
    body, err = json.encode(req.body)
    if not body then
      return nil, errors.new("config", { code = "BODY_INVALID", text = err, method = method, path = path })
    end
    ctype = "application/json"
  elseif type(req.body) == "string" then
    body = req.body
    ctype = "application/json"
  elseif req.body ~= nil then
    error("body must be a table or a string", 2)
  end

  local idempotent = req.idempotent
  if idempotent == nil then idempotent = method == "GET" or method == "HEAD" end

  -- frequencyPerDay for AIS reads without the PSU: one unit per attempt
  -- that reaches the bank (given back when the bank refused before counting)
  local freq_max, freq_resource
  if service == "AIS" and method == "GET" and req.consent_id and not psu_present(req.psu) and not req.follow
      and is_ais_read(path) and self.limiter then
    freq_max = req.frequency_per_day or self:consent_frequency(req.consent_id)
    freq_resource = str_match(path, "^([^?]*)")
  end
  local freq_undo
  local function reserve()
    if not freq_max or freq_undo then return true end
    local ok, ferr_or_undo = self.limiter:frequency(req.consent_id, freq_resource, freq_max)
    if not ok then
      ferr_or_undo.method, ferr_or_undo.path = method, util.mask_text(path)
      self:log("warn", "limit", { method = method, path = path, code = ferr_or_undo.code })
      return nil, ferr_or_undo
    end
    freq_undo = ferr_or_undo
    return true
  end

  local attempt, refreshed = 0, false
  local max_attempts = idempotent and max(1, self.retry.max_attempts) or 1
  local first_id
  while true do
    attempt = attempt + 1
    local fok, ferr = reserve()
    if not fok then return nil, ferr end
    local res, err, retry_safe, request_id = self:_attempt(req, method, url, path, body, ctype, service,
      idempotent, attempt)
    first_id = first_id or request_id
    if res then
      res.attempts = attempt
      return res
    end
    local stale = err._token
    err._token = nil
    if freq_undo and ((err.kind == "transport" and not err.sent) or err.status == 429 or err.kind == "limit") then
      freq_undo()
      freq_undo = nil
    end
    local again = false
    if err.kind == "http" and err.status == 401 and req.token and not refreshed
        and (errors.is(err, "TOKEN_EXPIRED") or errors.is(err, "TOKEN_INVALID")) then
      -- one refresh and one retry for an expired token
      refreshed = true
      local ok_oauth, oauth = pcall(require, "xs2a.oauth")
      if ok_oauth and type(oauth) == "table" and type(oauth.refresh) == "function" then
        local tok, rerr = oauth.refresh(self, req.token, stale)
        if not tok then
          err.cause = rerr
          return nil, err
        end
        if method == "POST" and not idempotent then
          -- the bank refused it, but a POST that is not safe to repeat is
          -- never sent twice by the library: the caller may send it again
          err.retryable = true
          err.token_refreshed = true
          return nil, err
        end
        self:log("info", "retry", { request_id = request_id, attempt = attempt, reason = "token refreshed",
          method = method, path = path })
        max_attempts = max_attempts + 1
        again = true
      else
        return nil, err
      end
    end
    if not again then
      if not retry_safe or attempt >= max_attempts or not err.retryable then
        return nil, err
      end
      local wait = backoff(self.retry, attempt)
      if err.retry_after then
        if err.retry_after > self.retry.max_retry_after then
          return nil, err
        end
        wait = max(err.retry_after, 0) + random() * 0.05
      end
      self:log("warn", "retry", { request_id = request_id, first_request_id = first_id, attempt = attempt,
        wait = wait, status = err.status, code = err.code, method = method, path = path })
      self:sleep(wait)
    end
  end
end

-- One attempt. Returns res, or nil, err, retry_safe, request_id.
function Client:_attempt(req, method, url, path, body, ctype, service, idempotent, attempt)
  local crypto = require "xs2a.crypto"
  local request_id = crypto.uuid()
  local ctx = { method = method, path = path, request_id = request_id, idempotent = idempotent }
  local headers = {
    ["X-Request-ID"] = request_id,
    ["Date"] = util.http_date(),
    ["Accept"] = "application/json",
  }
  if ctype then headers["Content-Type"] = ctype end
  if req.psu then
    for k, v in pairs(req.psu) do
      local h = PSU_HEADERS[k]
      if h and v ~= nil and v ~= false then headers[h] = tostring(v) end
    end
  end
  if req.consent_id then headers["Consent-ID"] = tostring(req.consent_id) end
  if req.redirect and self.redirect_uri then
    headers["TPP-Redirect-URI"] = req.redirect_uri or self.redirect_uri
    if self.opts.nok_redirect_uri then headers["TPP-Nok-Redirect-URI"] = self.opts.nok_redirect_uri end
  end
  local token
  if req.token then
    local ok_oauth, oauth = pcall(require, "xs2a.oauth")
    if ok_oauth and type(oauth.access_token) == "function" then
      local terr
      token, terr = oauth.access_token(self, req.token)
      if terr then return nil, terr, false, request_id end
      if token then headers["Authorization"] = "Bearer " .. token end
    end
  end
  for k, v in pairs(req.headers or {}) do
    if v == false then
      headers[k] = nil
    else
      headers[k] = type(v) == "number" and tostring(v) or v
    end
  end
  for k, v in pairs(headers) do
    local ok, why = util.header_ok(k, v)
    if not ok then
      return nil, errors.new("config", { code = "HEADER_INVALID", text = why, method = method, path = path,
        request_id = request_id }), false, request_id
    end
  end

  -- `idempotent` tells a transport whether it may resend on a dead pooled
  -- connection (never for a payment POST)
  local treq = { method = method, url = url, headers = headers, body = body, timeout = req.timeout,
    idempotent = idempotent }
  if self.signer and service and self.profile.signing_set[service] then
    local ok, serr = pcall(self.signer.sign, self.signer, treq)
    if not ok then
      return nil, errors.new("config", { code = "SIGN_FAILED", text = "signing failed: " .. tostring(serr),
        method = method, path = path, request_id = request_id }), false, request_id
    end
  end

  local release
  if self.limiter and not req.no_limit then
    local lerr
    release, lerr = self.limiter:acquire()
    if not release then
      lerr.method, lerr.path, lerr.request_id = method, util.mask_text(path), request_id
      return nil, lerr, true, request_id
    end
  end
  self:log("debug", "request", { request_id = request_id, attempt = attempt, method = method, url = url,
    headers = headers, body = body, service = service })
  local started = util.now()
  local ok, res, terr = pcall(self.transport.request, self.transport, treq)
  if release then release() end
  if not ok then
    terr = { code = "other", message = "transport raised: " .. tostring(res), sent = true }
    res = nil
  end
  if not res then
    local err = errors.from_transport(terr, ctx)
    self:log("error", "error", { request_id = request_id, attempt = attempt, method = method, path = path,
      error = err, code = err.code, outcome = err.outcome })
    return nil, err, idempotent or not err.sent, request_id
  end

  local status = tonumber(res.status) or 0
  local rheaders = res.headers or {}
  local rbody = res.body or ""
  local out = { status = status, headers = rheaders, body = rbody, request_id = request_id,
    response_request_id = rheaders["x-request-id"], reused = res.reused }
  self:log("debug", "response", { request_id = request_id, attempt = attempt, method = method, path = path,
    status = status, headers = rheaders, body = rbody, duration = util.now() - started })

  local success = status >= 200 and status < 300
  -- a lost answer to a request that is not safe to repeat: the bank may have acted
  local outcome = (success and not idempotent) and "unknown" or nil

  if self.response_cert and service and service ~= "OAUTH" then
    local sign = require "xs2a.sign"
    local vopts = { cert = self.response_cert, x_request_id = request_id }
    local vok, good, why = pcall(sign.verify_jws, { status = status, headers = rheaders, body = rbody }, vopts)
    if not vok or not good then
      local err = errors.protocol("response signature invalid: " .. tostring(vok and why or good),
        { status = status, method = method, path = path, request_id = request_id, outcome = outcome },
        "RESPONSE_SIGNATURE_INVALID")
      self:log("error", "error", { request_id = request_id, error = err, code = err.code })
      return nil, err, false, request_id
    end
  end

  if rbody ~= "" and (has_json_type(rheaders["content-type"]) or str_find(rbody, "^%s*[{%[]")) then
    local v, jerr = json.decode(rbody)
    if v == nil then
      if success then
        local err = errors.protocol("malformed JSON in a " .. status .. " response: " .. tostring(jerr),
          { status = status, method = method, path = path, request_id = request_id, outcome = outcome },
          "BAD_JSON")
        self:log("error", "error", { request_id = request_id, error = err, code = err.code })
        return nil, err, idempotent, request_id
      end
    else
      out.json = v
    end
  elseif success and rbody ~= "" and not req.raw then
    local err = errors.protocol("expected JSON, got " .. tostring(rheaders["content-type"] or "no content type"),
      { status = status, method = method, path = path, request_id = request_id, outcome = outcome }, "BAD_JSON")
    self:log("error", "error", { request_id = request_id, error = err, code = err.code })
    return nil, err, idempotent, request_id
  end

  if not success then
    local err = errors.from_response(out, ctx)
    err._token = token
    self:log(status >= 500 and "error" or "warn", "error", { request_id = request_id, status = status,
      code = err.code, method = method, path = path, error = err })
    return nil, err, idempotent, request_id
  end
  if req.expect then
    local okst = false
    for _, s in ipairs(req.expect) do if s == status then okst = true end end
    if not okst then
      local err = errors.protocol("unexpected status " .. status, { status = status, method = method,
        path = path, request_id = request_id }, "UNEXPECTED_STATUS")
      return nil, err, false, request_id
    end
  end
  return out
end

------------------------------------------------------------------------------
-- resources (lua/xs2a/resources.lua adds the methods)

require("xs2a.resources").install(Client)

return _M
