--- The request pipeline: named stages run in order over one exchange.
--
--     prepare -> attach_token -> spend_unit -> acquire_limit -> sign -> send
--       -> verify -> decode -> map_error
--
-- Each stage is `stage(ctx, ex) -> ex | nil, err`. The runner checks every
-- return: a stage that returns nil ends the attempt, nothing after it runs
-- (so nothing unsigned, unauthorised or unlimited is sent), and the limiter
-- slot it may hold is given back. `pipeline/retry.lua` then decides, from
-- the stage that failed and the error, whether another attempt follows.
--
-- `ctx` is the context the client builder made: `profile`, `roles`,
-- `base_url`, `root`, `origin`, `redirect_uri`, `nok_redirect_uri`, `store`,
-- `limiter`, `signer`, `transport`, `own_curl` (the transport is the curl
-- transport the client made: stages sign and send take a fast path that
-- gives the same results), `response_cert`, `retry`, `tokens`
-- (`access_token(ctx, key)`, `refresh(ctx, key, stale)`), and the methods
-- `log`, `sleep` and `consent_frequency`.
-- @module xs2a.pipeline
local crypto = require "xs2a.crypto"
local errors = require "xs2a.errors"
local headers_mod = require "xs2a.net.headers"
local date = require "xs2a.net.date"
local redact = require "xs2a.redact"
local json = require "xs2a.codec.json"
local exchange = require "xs2a.pipeline.exchange"
local retry = require "xs2a.pipeline.retry"
local verify = require "xs2a.sign.verify"

local type, tostring, tonumber, pairs, ipairs, pcall = type, tostring, tonumber, pairs, ipairs, pcall
local str_lower, str_find = string.lower, string.find
-- (crypto.uuid without its wrapper call: the core's pooled UUID v4)
local uuid = require("xs2a.core").uuid4 or crypto.uuid
local header_ok = headers_mod.ok

local _M = {}

--- Service -> the PSD2 role its requests need.
local ROLE_OF = { AIS = "PSP_AI", PIS = "PSP_PI", PIIS = "PSP_IC" }
_M.ROLE_OF = ROLE_OF

--- PSU option name -> header.
local PSU_HEADERS = {
  ip = "PSU-IP-Address", port = "PSU-IP-Port", id = "PSU-ID", id_type = "PSU-ID-Type",
  corporate_id = "PSU-Corporate-ID", corporate_id_type = "PSU-Corporate-ID-Type",
  user_agent = "PSU-User-Agent", accept = "PSU-Accept", accept_charset = "PSU-Accept-Charset",
  accept_encoding = "PSU-Accept-Encoding", accept_language = "PSU-Accept-Language",
  http_method = "PSU-Http-Method", device_id = "PSU-Device-ID", geo_location = "PSU-Geo-Location",
}
_M.PSU_HEADERS = PSU_HEADERS

-- logs through the context with the exchange's secret values scrubbed
-- the secret values of the exchange: what its body carried and the token
-- (the list is made only when an error or a log line needs it)
local function secrets_of(ex)
  local tok = ex.token
  if not tok then return ex.secrets end
  local list = { tok }
  local body = ex.secrets
  if body then
    for i = 1, #body do list[i + 1] = body[i] end
  end
  return list
end

local function log(ctx, ex, level, event, fields)
  return ctx:log(level, event, fields, secrets_of(ex))
end

-- scrubs what the bank may have echoed from an error, in place
local function scrub_error(ctx, ex, err)
  if type(err) ~= "table" then return err end
  local signer = ctx.signer
  local fn = signer and signer.scrub and function(s) return signer:scrub(s) end or nil
  return redact.scrub_table(err, secrets_of(ex), fn)
end

local function fail(ex, kind, code, text)
  return nil, errors.new(kind, { code = code, text = text, method = ex.method, path = ex.path,
    request_id = ex.request_id })
end

-- ----------------------------------------------------------------------------
-- stages

local stages = {}
_M.stages = stages

--- The headers of the attempt: X-Request-ID, Date, Accept, Content-Type,
-- PSU-*, Consent-ID, TPP-Redirect-URI, then the caller's own. What the
-- library made itself (the core's UUID, the date, constant values) is valid
-- by construction; every value that came from the caller, the bank or the
-- store is checked (no CR, LF or NUL; names are tokens) before it is kept.
function stages.prepare(ctx, ex)
  local service = ex.service
  if service and ROLE_OF[service] and not ctx.roles[ROLE_OF[service]] then
    return fail(ex, "config", "ROLE_INVALID", "the QWAC lacks role " .. ROLE_OF[service] .. " needed for " .. service)
  end
  local req = ex.req
  local headers = {
    ["X-Request-ID"] = ex.request_id,
    ["Date"] = date.http(),
    ["Accept"] = "application/json",
    ["Content-Type"] = ex.ctype,
  }
  local psu = req.psu
  if psu then
    for k, v in pairs(psu) do
      local h = PSU_HEADERS[k]
      if h and v ~= nil and v ~= false then
        v = tostring(v)
        local ok, why = header_ok(h, v)
        if not ok then return fail(ex, "config", "HEADER_INVALID", why) end
        headers[h] = v
      end
    end
  end
  if req.consent_id then
    local v = tostring(req.consent_id)
    local ok, why = header_ok("Consent-ID", v)
    if not ok then return fail(ex, "config", "HEADER_INVALID", why) end
    headers["Consent-ID"] = v
  end
  if req.redirect and ctx.redirect_uri then
    local v = req.redirect_uri or ctx.redirect_uri
    local ok, why = header_ok("TPP-Redirect-URI", v)
    if not ok then return fail(ex, "config", "HEADER_INVALID", why) end
    headers["TPP-Redirect-URI"] = v
    if ctx.nok_redirect_uri then
      ok, why = header_ok("TPP-Nok-Redirect-URI", ctx.nok_redirect_uri)
      if not ok then return fail(ex, "config", "HEADER_INVALID", why) end
      headers["TPP-Nok-Redirect-URI"] = ctx.nok_redirect_uri
    end
  end
  ex.own_auth = false
  local own = req.headers
  if own then
    for k, v in pairs(own) do
      if type(k) == "string" and str_lower(k) == "authorization" then ex.own_auth = true end
      if v == false then
        headers[k] = nil
      else
        if type(v) == "number" then v = tostring(v) end
        local ok, why = header_ok(k, v)
        if not ok then return fail(ex, "config", "HEADER_INVALID", why) end
        headers[k] = v
      end
    end
  end
  ex.headers = headers
  return ex
end

--- The bearer token of the resource (refreshed first when about to expire).
function stages.attach_token(ctx, ex)
  if not ex.token_key or ex.own_auth then return ex end
  local tokens = ctx.tokens
  if type(tokens) ~= "table" or type(tokens.access_token) ~= "function" then
    return fail(ex, "config", "TOKENS_UNAVAILABLE", "no token source: an authorised request cannot be sent")
  end
  local tok, err = tokens.access_token(ctx, ex.token_key)
  if err then return nil, err end
  if tok then
    ex.token = tok
    local value = "Bearer " .. tok
    if not header_ok("Authorization", value) then
      return fail(ex, "protocol", "TOKEN_INVALID", "the stored access token is not a valid header value")
    end
    ex.headers["Authorization"] = value
  end
  return ex
end

--- Spends a frequencyPerDay unit for an AIS read without the PSU: one per
-- attempt that may reach the bank (given back when it surely did not).
function stages.spend_unit(ctx, ex)
  local f = ex.freq
  if not f or ex.freq_undo then return ex end
  local ok, err_or_undo = ctx.limiter:frequency(f.consent_id, f.resource, f.max)
  if not ok then
    err_or_undo.method, err_or_undo.path = ex.method, redact.mask_text(ex.path)
    log(ctx, ex, "warn", "limit", { method = ex.method, path = ex.path, code = err_or_undo.code })
    return nil, err_or_undo
  end
  ex.freq_undo = err_or_undo
  return ex
end

--- A slot of the client's rate limiter (may wait).
function stages.acquire_limit(ctx, ex)
  if not ctx.limiter or ex.req.no_limit then return ex end
  local release, err = ctx.limiter:acquire()
  if not release then
    err.method, err.path, err.request_id = ex.method, redact.mask_text(ex.path), ex.request_id
    return nil, err
  end
  ex.release = release
  return ex
end

--- Signs the request as the profile says, after the limiter's wait (so that
-- Date and the signature are fresh when the bytes leave).
function stages.sign(ctx, ex)
  local headers = ex.headers
  if headers["Date"] and not (ex.req.headers and ex.req.headers["Date"] ~= nil) then
    headers["Date"] = date.http()
  end
  -- `idempotent` tells a transport whether it may resend on a dead pooled
  -- connection (never for a payment POST)
  local treq
  if ctx.own_curl then
    -- the curl transport the client made reads only method, url, headers,
    -- body, timeout and idempotent: the exchange, which has them, is the
    -- request (one table less per attempt)
    ex.timeout = ex.req.timeout
    treq = ex
  else
    treq = { method = ex.method, url = ex.url, headers = headers, body = ex.body, timeout = ex.req.timeout,
      idempotent = ex.idempotent }
  end
  ex.treq = treq
  local service = ex.service
  if ctx.signer and service and ctx.profile.signing_set[service] then
    -- a signer reports failures as nil, err (or raises): either way the
    -- request must not leave unsigned
    local ok, signed, serr = pcall(ctx.signer.sign, ctx.signer, treq)
    if not ok or signed == nil or signed == false then
      return fail(ex, "config", "SIGN_FAILED", "signing failed: " .. tostring(ok and serr or signed))
    end
  end
  return ex
end

--- Hands the request to the transport. The transport knows whether the
-- request left (`err.sent`).
function stages.send(ctx, ex)
  local treq = ex.treq
  -- (the debug events' field tables are built only when someone logs)
  local logging = ctx._logger ~= nil
  if logging then
    log(ctx, ex, "debug", "request", { request_id = ex.request_id, attempt = ex.attempt, method = ex.method,
      url = ex.url, headers = treq.headers, body = ex.body, service = ex.service })
  end
  if logging then ex.started = date.now() end
  local ok, res, terr = pcall(ctx.transport.request, ctx.transport, treq)
  if ex.release then
    ex.release()
    ex.release = nil
  end
  if not ok then
    terr = { code = "other", message = "transport raised: " .. tostring(res), sent = true }
    res = nil
  end
  if not res then
    local err = errors.from_transport(terr, exchange.error_ctx(ex))
    log(ctx, ex, "error", "error", { request_id = ex.request_id, attempt = ex.attempt, method = ex.method,
      path = ex.path, error = err, code = err.code, outcome = err.outcome })
    return nil, err
  end
  local status, rheaders, rbody
  ex.res = res
  if ctx.own_curl then
    -- the core made this table for this answer alone (status an integer,
    -- headers a table, body a string): it becomes the result, with the
    -- fields of the generic path below and nothing else
    status, rheaders, rbody = res.status, res.headers, res.body
    res.http_version = nil
    res.request_id, res.response_request_id = ex.request_id, rheaders["x-request-id"]
    ex.out = res
  else
    status = tonumber(res.status) or 0
    rheaders = res.headers or {}
    rbody = res.body or ""
    ex.out = { status = status, headers = rheaders, body = rbody, request_id = ex.request_id,
      response_request_id = rheaders["x-request-id"], reused = res.reused }
  end
  if logging then
    log(ctx, ex, "debug", "response", { request_id = ex.request_id, attempt = ex.attempt, method = ex.method,
      path = ex.path, status = status, headers = rheaders, body = rbody, duration = date.now() - ex.started })
  end
  return ex
end

-- a lost answer to a request that is not safe to repeat: the bank may have acted
local function outcome_of(ex)
  local status = ex.out.status
  return (status >= 200 and status < 300 and not ex.idempotent) and "unknown" or nil
end

local function protocol_error(ctx, ex, text, code)
  local err = errors.protocol(text, { status = ex.out.status, method = ex.method, path = ex.path,
    request_id = ex.request_id, outcome = outcome_of(ex) }, code)
  log(ctx, ex, "error", "error", { request_id = ex.request_id, error = err, code = err.code })
  return nil, err
end

--- Checks the bank's response signature when the profile says so.
function stages.verify(ctx, ex)
  local service = ex.service
  if not ctx.response_cert or not service or service == "OAUTH" then return ex end
  local out = ex.out
  -- "if_present" (docs/paysera.md, reading 1): an unsigned answer is taken,
  -- and logged once per client; a present signature is always verified
  if ctx.verify_mode == "if_present" and headers_mod.get(out.headers, "x-jws-signature") == nil then
    if not ctx.unsigned_logged then
      ctx.unsigned_logged = true
      log(ctx, ex, "warn", "response_unsigned", { request_id = ex.request_id, method = ex.method, path = ex.path,
        text = "the bank's answer carries no x-jws-signature; accepted (verify_responses = \"if_present\")" })
    end
    return ex
  end
  local vopts = { cert = ctx.response_cert, x_request_id = ex.request_id,
    organization_identifier = ctx.response_org_id }
  local vok, good, why = pcall(verify.verify_jws, { status = out.status, headers = out.headers, body = out.body },
    vopts)
  if not vok or not good then
    return protocol_error(ctx, ex, "response signature invalid: " .. tostring(vok and why or good),
      "RESPONSE_SIGNATURE_INVALID")
  end
  return ex
end

local function has_json_type(ctype)
  if ctype == "application/json" then return true end
  return ctype ~= nil and str_find(str_lower(ctype), "json", 1, true) ~= nil
end

--- Decodes a JSON body.
function stages.decode(ctx, ex)
  local out = ex.out
  local rbody, status = out.body, out.status
  if rbody == "" then return ex end
  local success = status >= 200 and status < 300
  local ctype = out.headers["content-type"]
  if ctype == "application/json" or has_json_type(ctype) or str_find(rbody, "^%s*[{%[]") then
    local v, jerr = json.decode(rbody)
    if v == nil then
      if success then
        return protocol_error(ctx, ex, "malformed JSON in a " .. status .. " response: " .. tostring(jerr),
          "BAD_JSON")
      end
    else
      out.json = v
    end
  elseif success and not ex.req.raw then
    return protocol_error(ctx, ex, "expected JSON, got " .. tostring(out.headers["content-type"]
      or "no content type"), "BAD_JSON")
  end
  return ex
end

--- Turns an error status into a typed error; checks `req.expect`.
function stages.map_error(ctx, ex)
  local out = ex.out
  local status = out.status
  if status < 200 or status >= 300 then
    local err = errors.from_response(out, exchange.error_ctx(ex))
    log(ctx, ex, status >= 500 and "error" or "warn", "error", { request_id = ex.request_id, status = status,
      code = err.code, method = ex.method, path = ex.path, error = err })
    return nil, err
  end
  local expect = ex.req.expect
  if expect then
    for _, s in ipairs(expect) do
      if s == status then return ex end
    end
    return nil, errors.protocol("unexpected status " .. status, { status = status, method = ex.method,
      path = ex.path, request_id = ex.request_id }, "UNEXPECTED_STATUS")
  end
  return ex
end

--- The stages in order: `{ name, fn }`.
_M.ORDER = { "prepare", "attach_token", "spend_unit", "acquire_limit", "sign", "send", "verify", "decode",
  "map_error" }

-- ----------------------------------------------------------------------------
-- the runner

--- Runs one attempt through every stage.
-- @return the result table, or nil, err, the name of the stage that failed
function _M.run(ctx, ex)
  local order = _M.ORDER
  for i = 1, #order do
    local name = order[i]
    local r, err = stages[name](ctx, ex)
    if r == nil then
      if ex.release then
        ex.release()
        ex.release = nil
      end
      if err == nil then
        err = errors.new("protocol", { code = "STAGE_FAILED", text = "stage " .. name .. " failed without an error",
          method = ex.method, path = ex.path, request_id = ex.request_id })
      else
        -- the bank may echo what the request carried (a token, a code)
        scrub_error(ctx, ex, err)
      end
      return nil, err, name
    end
  end
  return ex.out
end

--- Sends one logical API request (with the retries that are safe).
-- @param ctx the client context
-- @param req `{ method, path | url, query, headers, body (table|string), form,
--   service = "AIS"|"PIS"|"PIIS"|"OAUTH", psu = {...}, consent_id, token (store key),
--   idempotent, redirect (bool), expect = { statuses }, follow (bool: a pagination link),
--   frequency_per_day, raw, timeout, no_limit }`
-- @return `{ status, headers, body, json, request_id, attempts }`, or nil, err
function _M.request(ctx, req)
  local ex, xerr = exchange.new(ctx, req, 2)
  if not ex then return nil, xerr end
  local policy = ctx.retry
  local most = policy.max_attempts
  ex.max_attempts = ex.idempotent and (most > 1 and most or 1) or 1
  while true do
    exchange.begin_attempt(ex, uuid())
    local out, err, stage = _M.run(ctx, ex)
    if out then
      out.attempts = ex.attempt
      return out
    end
    if ex.freq_undo then
      -- the unit is given back only when the bank surely did not count the
      -- attempt; otherwise it stays spent and another attempt spends another
      if retry.gives_back_unit(err) then ex.freq_undo() end
      ex.freq_undo = nil
    end
    local action, wait = retry.decide(policy, ex, stage, err)
    if action == "refresh" then
      ex.refreshed = true
      local tok, rerr = ctx.tokens.refresh(ctx, ex.token_key, ex.token)
      if not tok then
        scrub_error(ctx, ex, rerr)
        err.cause = rerr
        return nil, err
      end
      if retry.after_refresh(ex) == "return" then
        err.retryable = true
        err.token_refreshed = true
        return nil, err
      end
      log(ctx, ex, "info", "retry", { request_id = ex.request_id, attempt = ex.attempt, reason = "token refreshed",
        method = ex.method, path = ex.path })
      ex.max_attempts = ex.max_attempts + 1
    elseif action == "retry" then
      log(ctx, ex, "warn", "retry", { request_id = ex.request_id, first_request_id = ex.first_request_id,
        attempt = ex.attempt, wait = wait, status = err.status, code = err.code, method = ex.method,
        path = ex.path })
      ctx:sleep(wait)
    else
      return nil, err
    end
  end
end

return _M
