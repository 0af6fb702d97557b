--- The XS2A client: the builder. It checks the options, loads the
-- identities, and builds the context the request pipeline (`xs2a.pipeline`)
-- runs with; the resource methods come from `xs2a.api`.
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
-- * `limits`: `{ per_second, per_hour, concurrent, margin = 0.025, headroom = 1 }` on
--   top of the profile's, or `false` (at most `headroom` times `per_second`
--   requests start in any window of 1 s + `margin`: the margin absorbs latency jitter);
-- * `retry`: `{ max_attempts = 3, base_delay = 0.2, max_delay = 5, max_retry_after = 30 }`;
-- * `timeouts`: `{ connect = 5000, total = 30000 }` (ms); `max_body` (bytes);
-- * `http2`: `false` keeps the client's own curl transport on HTTP/1.1
--   (default: HTTP/2 offered through ALPN). Over HTTP/2, nghttp2 copies
--   header fields (a bearer token) into memory it frees without a wipe;
--   over HTTP/1.1 nothing the C side copies stays readable once freed;
-- * `oauth`: `{ trusted_origins = { "https://as.bank.example", ... },
--   refresh_margin = 60, metadata_ttl = 3600 }`: origins trusted for the
--   authorization server besides those its metadata names (`xs2a.sca.oauth`);
--   seconds before expiry at which an access token is refreshed (at most a
--   quarter of the token's lifetime); how long AS metadata is cached;
-- * `mac`: `{ id = "...", key = "..." [, services = { "PIS" }] }` signs
--   requests with Paysera's MAC (`Authorization: MAC id, ts, nonce, mac,
--   ext="body_hash=..."`) instead of the profile's scheme, for the
--   profile's signed services or `mac.services`.
--
-- Every runtime failure is returned as `nil, err` with an `xs2a.errors` error.
--
-- Retries (`xs2a.pipeline.retry`): only requests that are safe to repeat (GET, DELETE of a consent,
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
local errors = require "xs2a.errors"
local profile_mod = require "xs2a.profile"
local identity = require "xs2a.identity"
local url = require "xs2a.net.url"
local headers_mod = require "xs2a.net.headers"
local date = require "xs2a.net.date"
local tables = require "xs2a.tables"
local redact = require "xs2a.redact"
local sign = require "xs2a.sign"
local store_mod = require "xs2a.store"
local transport_mod = require "xs2a.transport"
local limiter_mod = require "xs2a.limiter"
local parallel = require "xs2a.parallel"
local pipeline = require "xs2a.pipeline"
local retry_mod = require "xs2a.pipeline.retry"
local exchange = require "xs2a.pipeline.exchange"
local tokens = require "xs2a.sca.tokens"
local api = require "xs2a.api"

local type, tostring, tonumber, pairs, ipairs, setmetatable, pcall =
  type, tostring, tonumber, pairs, ipairs, setmetatable, pcall
local str_find = string.find

local _M = {}
local Client = {}
Client.__index = Client
Client.__name = "xs2a.Client"
_M.Client = Client

Client.__tostring = function(self)
  return "xs2a.Client (" .. self.profile.name .. ", " .. self.base_url .. ")"
end

local ROLE_OF = pipeline.ROLE_OF
_M.ROLE_OF = ROLE_OF
_M.PSU_HEADERS = pipeline.PSU_HEADERS


local function config_error(text, code)
  return nil, errors.config(text, code)
end

local function load_identity(v, what)
  if v == nil then return nil end
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

-- `opts.oauth`: checked and copied (see the module description).
local OAUTH_KEYS = { trusted_origins = true, refresh_margin = true, metadata_ttl = true }
local function oauth_settings(o)
  if o == nil then return {} end
  if type(o) ~= "table" then return nil, "oauth must be a table" end
  for k in pairs(o) do
    if not OAUTH_KEYS[k] then return nil, "oauth." .. tostring(k) .. " is not an option" end
  end
  local out = {}
  for _, k in ipairs({ "refresh_margin", "metadata_ttl" }) do
    if o[k] ~= nil then
      if type(o[k]) ~= "number" or o[k] < 0 or o[k] ~= o[k] then
        return nil, "oauth." .. k .. " must be a number of seconds >= 0"
      end
      out[k] = o[k]
    end
  end
  if o.trusted_origins ~= nil then
    if type(o.trusted_origins) ~= "table" then return nil, "oauth.trusted_origins must be a list of origins" end
    out.trusted_origins = {}
    for i, v in ipairs(o.trusted_origins) do
      local u = type(v) == "string" and url.parse(v)
      if not u or u.scheme ~= "https" or u.path ~= "/" or (u.query or "") ~= "" then
        return nil, "oauth.trusted_origins[" .. i .. "] must be an https origin (no path)"
      end
      out.trusted_origins[i] = u.origin
    end
  end
  return out
end

-- `opts.mac`: Paysera MAC signing (`Authorization: MAC ... ext="body_hash=..."`)
-- chosen instead of the profile's scheme; returns the profile overrides.
local function mac_overrides(m, overrides)
  if type(m) ~= "table" or type(m.id) ~= "string" or m.id == "" or type(m.key) ~= "string" or m.key == "" then
    return nil, "mac must be { id = <MAC id>, key = <MAC key>[, services = {...}] }"
  end
  if m.services ~= nil and type(m.services) ~= "table" then return nil, "mac.services must be a list" end
  local o = {}
  for k, v in pairs(overrides or {}) do o[k] = v end
  local sg = {}
  for k, v in pairs(type(o.signing) == "table" and o.signing or {}) do sg[k] = v end
  sg.scheme = "mac"
  if m.services then sg.services = m.services end
  o.signing = sg
  return o
end

------------------------------------------------------------------------------
-- option checks: every option, at construction, `nil, err` naming it

local function is_num(v, min_, integer)
  return type(v) == "number" and v == v and v >= min_ and v < math.huge
    and (not integer or v == math.floor(v))
end

local function check_url(v)
  if type(v) ~= "string" then return "must be an absolute URL string" end
  local ok, why = headers_mod.ok("TPP-Redirect-URI", v)
  if not ok then return why end
  if not url.parse(v) then return "must be an absolute http(s) URL" end
end

-- a table whose keys are all in `fields` (name -> checker returning a reason or nil)
local function check_fields(t, fields)
  if type(t) ~= "table" then return "", "must be a table" end
  for k, v in pairs(t) do
    local check = fields[k]
    if not check then return "." .. tostring(k), "is not a known field" end
    local why = check(v)
    if why then return "." .. tostring(k), why end
  end
end

local function positive(v) if not is_num(v, 0) or v == 0 then return "must be a positive number" end end
local function non_negative(v) if not is_num(v, 0) then return "must be a number >= 0" end end
local function count(v) if not is_num(v, 1, true) then return "must be an integer >= 1" end end

local RETRY_FIELDS = { max_attempts = count, base_delay = non_negative, max_delay = non_negative,
  max_retry_after = non_negative }
local TIMEOUT_FIELDS = { connect = positive, total = positive }
local LIMIT_FIELDS = {
  -- `false` switches one limit off (as in profiles)
  per_second = function(v) if v ~= false then return positive(v) end end,
  per_hour = function(v) if v ~= false then return positive(v) end end,
  concurrent = function(v) if v ~= false then return count(v) end end,
  max_wait = non_negative, margin = non_negative,
  headroom = function(v) if not is_num(v, 0) or v == 0 or v > 1 then return "must be in (0, 1]" end end,
}

local function kind_of(t) return function(v) if type(v) ~= t then return "must be a " .. t end end end
local function identity_like(v)
  if not (identity.is_identity(v) or type(v) == "table") then
    return "must be an identity or a table of identity options"
  end
end

local OPTIONS = {
  profile = function(v) if type(v) ~= "string" and type(v) ~= "table" then return "must be a name or a table" end end,
  profile_overrides = kind_of("table"),
  base_url = kind_of("string"),
  allow_http = kind_of("boolean"),
  qwac = identity_like,
  qseal = identity_like,
  services = function(v)
    if type(v) ~= "table" then return "must be a list" end
    for k, x in pairs(v) do
      if type(k) ~= "number" or not ROLE_OF[x] then return "must list AIS, PIS or PIIS (got " .. tostring(x) .. ")" end
    end
  end,
  redirect_uri = check_url,
  nok_redirect_uri = check_url,
  client_id = function(v) if type(v) ~= "string" or v == "" then return "must be a non-empty string" end end,
  ca_file = kind_of("string"),
  response_cert = kind_of("string"),
  response_org_id = function(v) if type(v) ~= "string" or v == "" then return "must be a non-empty string" end end,
  store = function(v) local ok, why = store_mod.check(v) if not ok then return why end end,
  log = kind_of("function"),
  transport = function(v)
    if (type(v) ~= "table" and type(v) ~= "userdata") or type(v.request) ~= "function" then
      return "must have a request method"
    end
  end,
  limits = function(v)
    if v == false then return end
    local field, why = check_fields(v, LIMIT_FIELDS)
    if why then return why, field end
  end,
  retry = function(v)
    local field, why = check_fields(v, RETRY_FIELDS)
    if why then return why, field end
  end,
  timeouts = function(v)
    local field, why = check_fields(v, TIMEOUT_FIELDS)
    if why then return why, field end
  end,
  max_body = count,
  http2 = kind_of("boolean"),
  mac = kind_of("table"),
  oauth = function(v)
    local _, why = oauth_settings(v)
    if why then
      local field, rest = why:match("^oauth(%S*) (.*)$")
      return rest or why, field
    end
  end,
}

-- nil, or a config error naming the first bad option
local function check_options(opts)
  local names = {}
  for k in pairs(opts) do names[#names + 1] = tostring(k) end
  table.sort(names)
  for _, k in ipairs(names) do
    local check = OPTIONS[k]
    if not check then return errors.config("unknown option " .. k, "OPTION_INVALID") end
    local why, field = check(opts[k])
    if why then
      return errors.config("option " .. k .. (field or "") .. " " .. why, "OPTION_INVALID")
    end
  end
end

--- Creates a client. See the module description for `opts`.
-- @return client, or nil and an error of kind "config"
function _M.new(opts)
  if type(opts) ~= "table" then error("xs2a.client: options must be a table", 2) end
  local cerr = check_options(opts)
  if cerr then return nil, cerr end
  local overrides = opts.profile_overrides
  if opts.mac ~= nil then
    local merr
    overrides, merr = mac_overrides(opts.mac, overrides)
    if not overrides then return config_error(merr, "SIGNER_INVALID") end
  end
  local prof, perr = profile_mod.get(opts.profile or "paysera-berlin", overrides)
  if not prof then return nil, perr end
  local oauth, oerr = oauth_settings(opts.oauth)
  if not oauth then return config_error(oerr) end

  local base_url = opts.base_url or prof.base_url
  if type(base_url) ~= "string" then return config_error("base_url is required for profile " .. prof.name) end
  local u, uerr = url.parse(base_url)
  if not u then return config_error("base_url: " .. uerr) end
  if u.scheme ~= "https" and not opts.allow_http then return config_error("base_url must use https") end
  if u.path ~= "/" then return config_error("base_url must be an origin (no path): the profile gives the root") end

  local now = date.now()
  if opts.qwac == nil then return config_error("qwac (the QWAC identity) is required", "CERTIFICATE_MISSING") end
  local qwac, qerr = load_identity(opts.qwac, "qwac")
  if not qwac then return config_error(qerr, "CERTIFICATE_INVALID") end
  local info, ierr, icode = identity_checks(qwac, "qwac", now)
  if not info then return config_error(ierr, icode) end

  local roles = tables.set(info.roles)
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
  local service_set = tables.set(services)

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

  -- signed responses (Georgia): trusted only when signed by the bank. The
  -- anchor is never guessed from ca_file (the TPP's own QSealC chains to the
  -- same CA), and the signer is pinned to the bank's organizationIdentifier:
  -- `response_org_id`, or the one in `response_cert` when that is the bank's
  -- own certificate (not a self-signed CA). Fail closed: no pin, no client.
  local response_cert, response_org_id
  if prof.verify_responses ~= "off" then
    response_cert = read_file_or_data(opts.response_cert)
    if not response_cert then
      return config_error("profile " .. prof.name .. " verifies signed responses: give response_cert "
        .. "(the bank's seal certificate, or its CA with response_org_id), or set "
        .. "profile_overrides.verify_responses = \"off\"", "RESPONSE_CERT_MISSING")
    end
    local rinfo = identity.cert_info(response_cert)
    if not rinfo then return config_error("response_cert is not a certificate", "CERTIFICATE_INVALID") end
    response_org_id = opts.response_org_id
    if response_org_id == nil and rinfo.subject ~= rinfo.issuer then response_org_id = rinfo.organization_identifier end
    if type(response_org_id) ~= "string" or response_org_id == "" then
      return config_error("response_cert is a CA: give response_org_id (the bank's organizationIdentifier) to pin "
        .. "the signer of responses", "RESPONSE_CERT_MISSING")
    end
  end

  local store = opts.store or store_mod.memory()
  local sok, serr2 = store_mod.check(store)
  if not sok then return config_error("store: " .. serr2) end

  local timeouts = opts.timeouts or {}
  local transport = opts.transport
  local own_curl = false
  if transport == nil then
    local terr
    transport, terr = transport_mod.new{
      identity = qwac, ca_file = opts.ca_file,
      connect_timeout = timeouts.connect or 5000, timeout = timeouts.total or 30000,
      max_body = opts.max_body or 8 * 1024 * 1024, http2 = opts.http2,
    }
    if not transport then return config_error("transport: " .. tostring(terr), "TRANSPORT_INVALID") end
    own_curl = transport.kind == "curl"
  elseif transport.kind == "curl" and transport_mod.in_nginx() then
    -- it would block the worker: 20 calls took 60 s of everybody's time
    return config_error("transport: the curl transport cannot be used inside nginx (it blocks the worker); "
      .. "use the ngx transport (the default there)", "TRANSPORT_INVALID")
  end

  if opts.redirect_uri ~= nil then
    local ok, why = headers_mod.ok("TPP-Redirect-URI", opts.redirect_uri)
    if not ok or not url.parse(opts.redirect_uri) then
      return config_error("redirect_uri must be an absolute URL: " .. tostring(why or opts.redirect_uri))
    end
  end
  if opts.log ~= nil and type(opts.log) ~= "function" then return config_error("log must be a function") end

  local retry = {}
  for k, v in pairs(retry_mod.DEFAULTS) do retry[k] = v end
  for k, v in pairs(opts.retry or {}) do retry[k] = v end

  local self = setmetatable({
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
    nok_redirect_uri = opts.nok_redirect_uri,
    oauth = oauth,
    tokens = tokens,
    store = store,
    transport = transport,
    -- the pipeline's fast path: a curl transport this client made itself
    -- (xs2a.pipeline, stages sign and send)
    own_curl = own_curl,
    signer = signer,
    response_cert = response_cert,
    response_org_id = response_org_id,
    verify_mode = prof.verify_responses,   -- "if_present" | "required" | "off"
    retry = retry,
    _logger = opts.log,
  }, Client)

  if opts.limits ~= false and prof.limits ~= false then
    local l = tables.merge(prof.limits, opts.limits or {})
    self.limits = l
    self.limiter = limiter_mod.new{
      store = store,
      id = tostring(self.client_id or "tpp") .. "@" .. u.host .. ":" .. u.port,
      per_second = l.per_second, per_hour = l.per_hour, concurrent = l.concurrent,
      headroom = l.headroom, margin = l.margin,
      sleep = function(s) return self:sleep(s) end,
      lease_ttl = math.ceil((timeouts.total or 30000) / 1000) + 10,
      max_wait = l.max_wait,
    }
  end
  return self
end

-- ----------------------------------------------------------------------------
-- what the pipeline and the resources use of the context

--- Sleeps `s` seconds (yields inside `xs2a.parallel` and nginx).
function Client:sleep(s) -- luacheck: ignore 212
  return parallel.sleep(s)
end

--- Logs an event through `opts.log` after redaction. Never raises.
-- @param level "debug"|"info"|"warn"|"error"
-- @param event e.g. "request", "response", "retry", "error"
-- @param fields table (headers, body, url... are redacted here)
-- @param secrets optional list of secret values to scrub wherever they appear
function Client:log(level, event, fields, secrets)
  local logger = self._logger
  if not logger then return end
  local ok, safe = pcall(function()
    local out = {}
    for k, v in pairs(fields or {}) do
      if k == "headers" then
        out.headers = redact.headers(v)
      elseif k == "body" then
        out.body = redact.body(v)
      elseif k == "error" and errors.is_error(v) then
        out.error = tostring(v)
      else
        out[k] = v
      end
    end
    local signer = self.signer
    return redact.scrub_table(redact.body(out), secrets,
      signer and signer.scrub and function(s) return signer:scrub(s) end or nil)
  end)
  if not ok then safe = { note = "log fields could not be redacted" } end
  -- headers were redacted above; redact.body must not have touched them
  pcall(logger, level, event, safe)
end

--- Absolute URL of a path relative to the variant root.
function Client:url(path, query)
  if type(path) ~= "string" or path:sub(1, 1) ~= "/" then
    error("path must start with /", 2)
  end
  local q = url.encode_query(query)
  return self.base_url .. self.root .. path .. (q ~= "" and ("?" .. q) or "")
end

--- Resolves a link href (absolute, or relative with/without the root). Refuses
-- links to another origin: the client would send its certificate and tokens there.
-- @return url or nil, err
function Client:resolve(href, allow_foreign)
  return exchange.resolve(self, href, allow_foreign)
end

--- The maximum accesses per day without the PSU for a consent (from the
-- creation body when this client created it, else the profile's cap).
function Client:consent_frequency(consent_id)
  local v = self.store:get("xs2a:consent:" .. consent_id .. ":fpd")
  return tonumber(v) or self.profile.max_frequency_per_day
end

--- Sends one API request through the pipeline (see `xs2a.pipeline.request`).
-- @return `{ status, headers, body, json, request_id, attempts }`, or nil, err
Client.request = pipeline.request

-- the resources: `client:create_consent(...)`, `client:payment(...)`...
for name, fn in pairs(api.methods) do Client[name] = fn end

return _M
