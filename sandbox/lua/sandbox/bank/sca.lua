--- Strong customer authentication: authorisation sub-resources of consents,
-- payments and payment cancellations, for every approach (oauth, redirect,
-- decoupled, embedded) and multilevel SCA.
--
-- An authorisation is stored under "auth:<id>":
--   { id, kind = "consent"|"payment"|"cancellation"|"basket", rid, variant, approach,
--     status (scaStatus), psu, org_id, created, tries, method, confirmation,
--     redirect_uri, nok_uri, delay, timeout }
-- Its resource keeps the ids (`auths`, or `cancel_auths` for cancellations)
-- and the PSUs who approved (`approvals` / `cancel_approvals`).
local common = require "sandbox.bank.common"
local util = common.util

local type = type

local _M = {}

local FINAL = { finalised = true, failed = true, exempted = true }
_M.FINAL = FINAL

local APPROACH_HEADER = {
  oauth = "REDIRECT", redirect = "REDIRECT", decoupled = "DECOUPLED", embedded = "EMBEDDED",
}
_M.APPROACH_HEADER = APPROACH_HEADER

local MAX_TRIES = 3

local SCA_METHODS = {
  { authenticationType = "SMS_OTP", authenticationMethodId = "sms", name = "SMS to +370 6** **123",
    explanation = "One-time password sent by SMS" },
  { authenticationType = "PUSH_OTP", authenticationMethodId = "app", name = "Paysera app",
    explanation = "One-time password shown in the Paysera app" },
}

local function sca_methods()
  local out = util.array()
  for i, m in ipairs(SCA_METHODS) do out[i] = util.copy(m) end
  return out
end

local function method_by_id(id)
  for _, m in ipairs(SCA_METHODS) do
    if m.authenticationMethodId == id then return util.copy(m) end
  end
end

---------------------------------------------------------------------------
-- resources behind authorisations

local RES_PREFIX = { consent = "consent:", basket = "basket:" }

local function res_key(kind, rid)
  return (RES_PREFIX[kind] or "payment:") .. rid
end
_M.res_key = res_key

-- The hooks of each kind of resource, registered by the resource modules
-- (consents, payments, baskets) when they load: sca never requires them.
--   awaiting(res, kind) -> bool: does the resource still wait for this kind?
--   owner_check(res, kind, psu) -> true | false, message for the PSU
--   on_authorised(auth, outcome): outcome "complete" | "partial" | "failed"
--   choices(res, kind) -> nil | { name, multiple, prompt, options = { {value, label} } }
--     (optional: what the PSU picks on the bank's page, e.g. the accounts of a
--     bank-offered consent or the debtor account of a payment without one)
--   choose(res, kind, psu, values) -> true | false, message for the PSU
local registry = {}

--- Registers the SCA hooks of a kind of authorisation ("consent",
-- "payment", "cancellation", "basket").
function _M.register(kind, h)
  assert(type(h.awaiting) == "function" and type(h.owner_check) == "function"
    and type(h.on_authorised) == "function", "sca.register: awaiting, owner_check and on_authorised needed")
  registry[kind] = h
end

local function hooks(kind)
  local h = registry[kind]
  if not h then error("sandbox.bank.sca: no resource module registered for " .. tostring(kind), 2) end
  return h
end

local NOUN = { consent = "consent", basket = "signing basket" }

local function list_field(kind)
  return kind == "cancellation" and "cancel_auths" or "auths"
end

local function approvals_field(kind)
  return kind == "cancellation" and "cancel_approvals" or "approvals"
end

local function required_levels(res, kind)
  if kind == "cancellation" then return 1 end
  return res.required or 1
end

--- True when the resource still waits for authorisations of this kind.
function _M.awaiting(res, kind)
  return hooks(kind).awaiting(res, kind)
end

--- Can `psu` authorise this resource? (not twice; the first PSU must hold
-- the accounts concerned; see sandbox/BANK.md)
-- @return true, or false and a message for the PSU
function _M.psu_allowed(res, kind, psu)
  if not common.PSUS[psu] then return false, "unknown PSU" end
  local approvals = res[approvals_field(kind)] or {}
  for _, p in ipairs(approvals) do
    if p == psu then
      return false, "you have already authorised this " .. (NOUN[kind] or "payment")
    end
  end
  if #approvals == 0 or kind == "cancellation" then
    return hooks(kind).owner_check(res, kind, psu)
  end
  return true
end

--- What the PSU must pick on the page for this resource, or nil.
function _M.choices(res, kind)
  local h = registry[kind]
  return h and h.choices and h.choices(res, kind) or nil
end

--- Applies the PSU's pick from a page form (`values`: a string or a list).
-- @return true, or false and a message for the PSU
function _M.pick(res, kind, psu, values)
  if not _M.choices(res, kind) then return true end
  if type(values) ~= "table" then values = values and { values } or {} end
  return hooks(kind).choose(res, kind, psu, values)
end

---------------------------------------------------------------------------
-- choosing the approach

--- The approach for a new consent or payment: configuration, overridden by
-- TPP-Redirect-Preferred / TPP-Decoupled-Preferred where the configuration
-- allows it (`sca.honour_preferred`, default true).
-- @return approach, or nil and an error response
function _M.choose(ctx)
  local cfg = ctx.cfg and ctx.cfg.sca or {}
  local approach = cfg.approach or "oauth"
  if not APPROACH_HEADER[approach] then approach = "oauth" end
  local pref = common.bool_header(ctx, "tpp-redirect-preferred")
  local dpref = common.bool_header(ctx, "tpp-decoupled-preferred")
  if pref == "bad" or dpref == "bad" then
    return nil, { common.err(ctx, 400, "FORMAT_ERROR",
      "TPP-Redirect-Preferred/TPP-Decoupled-Preferred must be true or false") }
  end
  if cfg.honour_preferred == false then return approach end
  if dpref == true then
    return "decoupled"
  elseif pref == false and (approach == "oauth" or approach == "redirect") then
    return common.header(ctx, "psu-id") and "decoupled" or "embedded"
  elseif pref == true and (approach == "decoupled" or approach == "embedded") then
    return "redirect"
  end
  return approach
end

--- TPP-Redirect-URI / TPP-Nok-Redirect-URI headers, checked.
-- @return uri|nil, nok|nil, or nil, nil, error response
function _M.redirect_headers(ctx)
  local uri = common.header(ctx, "tpp-redirect-uri")
  local nok = common.header(ctx, "tpp-nok-redirect-uri")
  for _, u in ipairs({ uri or "", nok or "" }) do
    if u ~= "" and not u:match("^https?://[^%s]+$") then
      return nil, nil, { common.err(ctx, 400, "FORMAT_ERROR", "TPP-Redirect-URI must be an absolute http(s) URL") }
    end
  end
  return uri, nok
end

--- What creating a consent, payment or basket needs from the SCA side: the
-- approach, the redirect URIs and how many PSUs must authorise (multilevel).
-- @return `{ approach, uri, nok, required }`, or nil and an error response
function _M.setup(ctx)
  local approach, aerr = _M.choose(ctx)
  if not approach then return nil, aerr end
  local uri, nok, herr = _M.redirect_headers(ctx)
  if herr then return nil, herr end
  local required = tonumber(ctx.cfg and ctx.cfg.sca and ctx.cfg.sca.multilevel) or 1
  if required < 1 then required = 1 end
  if approach == "redirect" and required == 1 and not uri then
    return nil, { common.err(ctx, 400, "FORMAT_ERROR", "TPP-Redirect-URI required for the redirect approach") }
  end
  return { approach = approach, uri = uri, nok = nok, required = required }
end

---------------------------------------------------------------------------
-- authorisation records

function _M.load(id)
  if type(id) ~= "string" then return nil end
  return common.get("auth:" .. id)
end

local function store(auth)
  auth.updated = common.now()
  common.set("auth:" .. auth.id, auth)
end

--- Creates an authorisation sub-resource and registers it on its resource.
-- @param opts { psu =, status =, redirect_uri =, nok_uri = }
function _M.create(ctx, res, kind, opts)
  local cfg = ctx.cfg and ctx.cfg.sca or {}
  local auth = {
    id = util.uuid(), kind = kind, rid = res.id, variant = res.variant, approach = res.approach,
    status = opts.status or "received", psu = opts.psu, org_id = res.org_id, created = common.now(),
    tries = 0, redirect_uri = opts.redirect_uri or res.redirect_uri,
    nok_uri = opts.nok_uri or res.nok_uri,
    delay = tonumber(cfg.decoupled_delay) or 0,
    -- a consent's SCA waits `consent_auth_timeout` (Paysera: one day), a payment's `auth_timeout`
    timeout = tonumber(kind == "consent" and cfg.consent_auth_timeout or cfg.auth_timeout) or 900,
  }
  store(auth)
  common.update(res_key(kind, res.id), function(r)
    if not r then return nil end
    local f = list_field(kind)
    r[f] = r[f] or {}
    r[f][#r[f] + 1] = auth.id
    return r
  end)
  local f = list_field(kind)
  res[f] = res[f] or {}
  res[f][#res[f] + 1] = auth.id
  return auth
end

--- Applies the result of an authorisation to the authorisation and its
-- resource. Idempotent: an authorisation that is already final is left alone.
-- @return the authorisation after the change, or nil and a reason
function _M.finish(auth_id, ok, psu)
  local changed = false
  local auth = common.update("auth:" .. auth_id, function(a)
    if not a or FINAL[a.status] then return nil end
    a.status = ok and "finalised" or "failed"
    a.psu = psu or a.psu
    a.updated = common.now()
    changed = true
    return a
  end)
  if not changed then return nil, "authorisation is already final" end
  local key = res_key(auth.kind, auth.rid)
  local outcome
  common.update(key, function(r)
    if not r then return nil end
    if not ok then
      outcome = "failed"
      return r
    end
    local f = approvals_field(auth.kind)
    r[f] = r[f] or {}
    r[f][#r[f] + 1] = auth.psu
    outcome = #r[f] >= required_levels(r, auth.kind) and "complete" or "partial"
    return r
  end)
  if outcome then hooks(auth.kind).on_authorised(auth, outcome) end
  return auth
end

--- Lazy clock: decoupled auto-approval after `decoupled_delay`, and failure
-- of unanswered authorisations after `auth_timeout`.
-- @return the authorisation as it is now
function _M.tick(auth)
  if not auth or FINAL[auth.status] then return auth end
  local now = common.now()
  if auth.approach == "decoupled" and auth.status == "started" and (auth.delay or 0) > 0
      and now >= auth.created + auth.delay then
    _M.finish(auth.id, true, auth.psu)
  elseif auth.timeout and auth.timeout > 0 and now >= auth.created + auth.timeout then
    _M.finish(auth.id, false)
  else
    return auth
  end
  return _M.load(auth.id)
end

--- Ticks every open authorisation of a resource.
-- @return true when something changed
function _M.tick_resource(res)
  local changed = false
  for _, f in ipairs({ "auths", "cancel_auths" }) do
    for _, id in ipairs(res[f] or {}) do
      local a = _M.load(id)
      if a and not FINAL[a.status] then
        local b = _M.tick(a)
        if b and b.status ~= a.status then changed = true end
      end
    end
  end
  return changed
end

--- Fails every open authorisation of a resource (it was cancelled or deleted).
function _M.close_all(res, fields)
  for _, f in ipairs(fields or { "auths", "cancel_auths" }) do
    for _, id in ipairs(res[f] or {}) do
      common.update("auth:" .. id, function(a)
        if not a or FINAL[a.status] then return nil end
        a.status = "failed"
        return a
      end)
    end
  end
end

--- The most recent open authorisation of a resource for a browser page
-- (cancellations first; untouched ones before those a PSU already approved
-- on a page), optionally restricted to one approach.
function _M.open_auth(res, approach)
  for _, allow_unconfirmed in ipairs({ false, true }) do
    for _, f in ipairs({ "cancel_auths", "auths" }) do
      local ids = res[f] or {}
      for i = #ids, 1, -1 do
        local a = _M.tick(_M.load(ids[i]))
        if a and not FINAL[a.status] and (not approach or a.approach == approach)
            and (allow_unconfirmed or a.status ~= "unconfirmed") then
          return a
        end
      end
    end
  end
end

---------------------------------------------------------------------------
-- links and response bodies

function _M.auth_path(base_path, auth)
  local seg = auth.kind == "cancellation" and "/cancellation-authorisations/" or "/authorisations/"
  return base_path .. seg .. auth.id
end

function _M.metadata_link(ctx)
  return require("sandbox.bank.oauth").metadata_link(ctx)
end

--- The _links of an authorisation in its current state.
function _M.auth_links(ctx, base_path, auth)
  local path = _M.auth_path(base_path, auth)
  local links = { scaStatus = common.link(ctx, path) }
  if FINAL[auth.status] then return links end
  if auth.approach == "oauth" then
    -- `sca.oauth_link = false`: no scaOAuth, the TPP finds the metadata itself
    if not (ctx.cfg and ctx.cfg.sca and ctx.cfg.sca.oauth_link == false) then
      links.scaOAuth = _M.metadata_link(ctx)
    end
  elseif auth.approach == "redirect" then
    links.scaRedirect = { href = common.abs(ctx, "/sca/" .. auth.id) }
    links.confirmation = common.link(ctx, path)
  elseif auth.approach == "embedded" then
    if auth.status == "received" or auth.status == "psuIdentified" then
      links.updatePsuAuthentication = common.link(ctx, path)
    elseif auth.status == "psuAuthenticated" then
      links.selectAuthenticationMethod = common.link(ctx, path)
    elseif auth.status == "scaMethodSelected" then
      links.authoriseTransaction = common.link(ctx, path)
    end
  elseif auth.approach == "decoupled" and auth.status == "received" then
    links.updatePsuIdentification = common.link(ctx, path)
  end
  return links
end

local DECOUPLED_MESSAGE = "Please confirm the request in your Paysera app."

--- The links that start an authorisation explicitly, per approach.
function _M.start_links(ctx, base_path, approach, kind)
  local seg = kind == "cancellation" and "/cancellation-authorisations" or "/authorisations"
  local l = common.link(ctx, base_path .. seg)
  if approach == "embedded" then
    return { startAuthorisationWithPsuAuthentication = l }
  elseif approach == "decoupled" then
    return { startAuthorisationWithPsuIdentification = l }
  end
  return { startAuthorisation = l }
end

--- What a creation response (consent or payment) says about SCA. Creates the
-- implicit authorisation when the approach allows one.
-- @return links table (to be merged), extra body fields, auth or nil
function _M.on_create(ctx, res, kind, base_path)
  local links, extra = {}, {}
  local auth
  local approach = res.approach
  -- multilevel resources and TPP-Explicit-Authorisation-Preferred: true get a start link
  local implicit = (res.required or 1) == 1 and common.bool_header(ctx, "tpp-explicit-authorisation-preferred") ~= true
  if approach == "decoupled" then
    local psu = common.header(ctx, "psu-id")
    implicit = implicit and psu ~= nil and common.PSUS[psu] ~= nil
    if implicit then
      local okp = _M.psu_allowed(res, kind, psu)
      implicit = okp
    end
    if implicit then
      auth = _M.create(ctx, res, kind, { psu = psu, status = "started" })
      extra.psuMessage = DECOUPLED_MESSAGE
    end
  elseif approach == "embedded" then
    implicit = false
  elseif approach == "redirect" then
    implicit = implicit and res.redirect_uri ~= nil
  end
  if auth == nil and implicit then
    auth = _M.create(ctx, res, kind, {})
  end
  if auth then
    for k, v in pairs(_M.auth_links(ctx, base_path, auth)) do links[k] = v end
    extra.scaStatus = auth.status
  else
    for k, v in pairs(_M.start_links(ctx, base_path, approach, kind)) do links[k] = v end
  end
  return links, extra, auth
end

---------------------------------------------------------------------------
-- the embedded / redirect / decoupled steps of PUT .../authorisations/{id}

local function fail_try(ctx, auth, status, code, detail)
  local tries
  common.update("auth:" .. auth.id, function(a)
    if not a then return nil end
    a.tries = (a.tries or 0) + 1
    tries = a.tries
    return a
  end)
  if tries and tries >= MAX_TRIES then
    _M.finish(auth.id, false)
    detail = detail .. "; too many attempts, the authorisation failed"
  end
  return common.err(ctx, status, code, detail)
end

-- the name of the SCA status field (`sca.status_field`: "scaStatus", or
-- "scatransactionStatus" as Paysera's Georgia page spells it)
local function status_field(ctx)
  local f = ctx.cfg and ctx.cfg.sca and ctx.cfg.sca.status_field
  return f == "scatransactionStatus" and f or "scaStatus"
end

local function respond(ctx, base_path, auth, fields, status)
  local body = { authorisationId = auth.id, _links = _M.auth_links(ctx, base_path, auth) }
  body[status_field(ctx)] = auth.status
  for k, v in pairs(fields or {}) do body[k] = v end
  local headers = { ["ASPSP-SCA-Approach"] = APPROACH_HEADER[auth.approach] }
  if status == 201 then headers["Location"] = common.abs(ctx, _M.auth_path(base_path, auth)) end
  return status or 200, body, headers
end

local function set_status(auth, status, extra)
  auth.status = status
  for k, v in pairs(extra or {}) do auth[k] = v end
  store(auth)
  return auth
end

-- PSU identification through the PSU-ID header (decoupled, embedded)
local function identify(ctx, res, auth, base_path, status)
  local psu = common.header(ctx, "psu-id")
  if not psu then
    return common.err(ctx, 400, "FORMAT_ERROR", "PSU-ID header required")
  end
  if not common.PSUS[psu] then
    return common.err(ctx, 401, "PSU_CREDENTIALS_INVALID", "PSU-ID is not known")
  end
  local ok, why = _M.psu_allowed(res, auth.kind, psu)
  if not ok then return common.err(ctx, 409, "STATUS_INVALID", why) end
  if auth.approach == "decoupled" then
    set_status(auth, "started", { psu = psu, created = common.now() })
    return respond(ctx, base_path, auth, { psuMessage = DECOUPLED_MESSAGE }, status)
  end
  set_status(auth, "psuIdentified", { psu = psu })
  return respond(ctx, base_path, auth, nil, status)
end

local function password_step(ctx, res, auth, base_path, body, status)
  if auth.approach ~= "embedded" then
    return common.err(ctx, 400, "SERVICE_INVALID", "psuData is only taken by the embedded approach")
  end
  if auth.status ~= "received" and auth.status ~= "psuIdentified" then
    return common.err(ctx, 409, "STATUS_INVALID", "the authorisation does not wait for a password")
  end
  local pd = body.psuData
  local psu = common.header(ctx, "psu-id") or auth.psu
  if type(pd) ~= "table" or type(pd.password) ~= "string" then
    return common.err(ctx, 400, "FORMAT_ERROR", "psuData.password required")
  end
  if not psu then return common.err(ctx, 400, "FORMAT_ERROR", "PSU-ID header required") end
  if not common.psu_login(psu, pd.password) then
    return fail_try(ctx, auth, 401, "PSU_CREDENTIALS_INVALID", "PSU-ID or password not valid")
  end
  local ok, why = _M.psu_allowed(res, auth.kind, psu)
  if not ok then return common.err(ctx, 409, "STATUS_INVALID", why) end
  set_status(auth, "psuAuthenticated", { psu = psu })
  return respond(ctx, base_path, auth,
    { scaMethods = sca_methods(), psuMessage = "Choose how to receive your one-time password." }, status)
end

local function select_step(ctx, auth, base_path, body)
  if auth.approach ~= "embedded" then
    return common.err(ctx, 400, "SERVICE_INVALID", "authenticationMethodId is only taken by the embedded approach")
  end
  if auth.status ~= "psuAuthenticated" then
    return common.err(ctx, 409, "STATUS_INVALID", "the authorisation does not wait for a method selection")
  end
  local m = method_by_id(body.authenticationMethodId)
  if not m then return common.err(ctx, 400, "SCA_METHOD_UNKNOWN", "unknown authenticationMethodId") end
  set_status(auth, "scaMethodSelected", { method = m.authenticationMethodId })
  local info = m.authenticationMethodId == "sms" and "Enter the 6-digit code sent by SMS."
    or "Enter the 6-digit code shown in the Paysera app."
  return respond(ctx, base_path, auth, {
    chosenScaMethod = m,
    challengeData = { otpMaxLength = 6, otpFormat = "integer", additionalInformation = info },
  })
end

local function otp_step(ctx, auth, base_path, body)
  if auth.approach ~= "embedded" then
    return common.err(ctx, 400, "SERVICE_INVALID", "scaAuthenticationData is only taken by the embedded approach")
  end
  if auth.status ~= "scaMethodSelected" then
    return common.err(ctx, 409, "STATUS_INVALID", "the authorisation does not wait for a one-time password")
  end
  if type(body.scaAuthenticationData) ~= "string"
      or not require("sandbox.crypto").equal(body.scaAuthenticationData, common.OTP) then
    return fail_try(ctx, auth, 400, "SCA_INVALID", "the one-time password is not valid")
  end
  local done = _M.finish(auth.id, true, auth.psu) or _M.load(auth.id)
  return respond(ctx, base_path, done)
end

local function confirm_step(ctx, auth, base_path, body)
  if auth.approach ~= "redirect" then
    return common.err(ctx, 400, "SERVICE_INVALID", "confirmationCode is only taken by the redirect approach")
  end
  if auth.status ~= "unconfirmed" then
    return common.err(ctx, 409, "STATUS_INVALID", "the authorisation does not wait for a confirmation code")
  end
  if type(body.confirmationCode) ~= "string" or not auth.confirmation
      or not require("sandbox.crypto").equal(body.confirmationCode, auth.confirmation) then
    return fail_try(ctx, auth, 400, "SCA_INVALID", "confirmationCode does not match")
  end
  local done = _M.finish(auth.id, true, auth.psu) or _M.load(auth.id)
  return respond(ctx, base_path, done)
end

---------------------------------------------------------------------------
-- handlers shared by consents and payments (the resource is already loaded
-- and checked against the TPP by the caller)

--- POST .../authorisations or .../cancellation-authorisations
function _M.start(ctx, res, kind, base_path)
  local body, errr = common.body(ctx, true)
  if not body then return common.unpack(errr) end
  if not _M.awaiting(res, kind) then
    return common.err(ctx, 409, "STATUS_INVALID", "the resource does not wait for an authorisation")
  end
  local uri, nok, herr = _M.redirect_headers(ctx)
  if herr then return common.unpack(herr) end
  local approach = res.approach
  if approach == "redirect" and not (uri or res.redirect_uri) then
    return common.err(ctx, 400, "FORMAT_ERROR", "TPP-Redirect-URI required for the redirect approach")
  end
  if approach == "decoupled" and not common.header(ctx, "psu-id") then
    return common.err(ctx, 400, "FORMAT_ERROR", "PSU-ID header required for the decoupled approach")
  end
  local auth = _M.create(ctx, res, kind, { redirect_uri = uri, nok_uri = nok })
  if approach == "decoupled" then
    return identify(ctx, res, auth, base_path, 201)
  elseif approach == "embedded" then
    if body.psuData ~= nil then return password_step(ctx, res, auth, base_path, body, 201) end
    if common.header(ctx, "psu-id") then return identify(ctx, res, auth, base_path, 201) end
  end
  return respond(ctx, base_path, auth, nil, 201)
end

--- GET .../authorisations
function _M.list(_, res, kind)
  local ids = util.array()
  for i, id in ipairs(res[list_field(kind)] or {}) do ids[i] = id end
  return 200, { authorisationIds = ids }
end

local function find(ctx, res, kind, auth_id)
  for _, id in ipairs(res[list_field(kind)] or {}) do
    if id == auth_id then return _M.tick(_M.load(id)) end
  end
  return nil, { common.err(ctx, 403, "RESOURCE_UNKNOWN", "authorisation not found") }
end

--- GET .../authorisations/{id}
function _M.get(ctx, res, kind, auth_id, base_path)
  local auth, e = find(ctx, res, kind, auth_id)
  if not auth then return common.unpack(e) end
  local body = { _links = _M.auth_links(ctx, base_path, auth) }
  body[status_field(ctx)] = auth.status
  if auth.approach == "decoupled" and auth.status == "started" then body.psuMessage = DECOUPLED_MESSAGE end
  return 200, body
end

--- PUT .../authorisations/{id}
function _M.update(ctx, res, kind, auth_id, base_path)
  local body, errr = common.body(ctx, true)
  if not body then return common.unpack(errr) end
  local auth, e = find(ctx, res, kind, auth_id)
  if not auth then return common.unpack(e) end
  if FINAL[auth.status] then
    if auth.status == "failed" and (auth.timeout or 0) > 0 and (auth.updated or 0) >= auth.created + auth.timeout then
      -- it timed out (tick): the addressed sub-resource is no longer addressable
      return common.err(ctx, 403, "RESOURCE_EXPIRED", "the authorisation expired")
    end
    return common.err(ctx, 409, "STATUS_INVALID", "the authorisation is already " .. auth.status)
  end
  if body.psuData ~= nil then
    return password_step(ctx, res, auth, base_path, body)
  elseif body.authenticationMethodId ~= nil then
    return select_step(ctx, auth, base_path, body)
  elseif body.scaAuthenticationData ~= nil then
    return otp_step(ctx, auth, base_path, body)
  elseif body.confirmationCode ~= nil then
    return confirm_step(ctx, auth, base_path, body)
  elseif next(body) == nil and common.header(ctx, "psu-id")
      and (auth.approach == "embedded" or auth.approach == "decoupled") and auth.status == "received" then
    return identify(ctx, res, auth, base_path)
  end
  return common.err(ctx, 400, "FORMAT_ERROR",
    "expected one of psuData, authenticationMethodId, scaAuthenticationData, confirmationCode")
end

---------------------------------------------------------------------------
-- the PSU's simulated app (control API) and the browser pages' callbacks

--- POST /_sandbox/decoupled/<authorisationId> {"decision":"approve"|"deny"}
-- @return status, body
function _M.decoupled_decision(auth_id, decision)
  local auth = _M.load(auth_id)
  if not auth then return 404, { error = "unknown authorisation" } end
  if auth.approach ~= "decoupled" then return 409, { error = "not a decoupled authorisation" } end
  if decision ~= "approve" and decision ~= "deny" then
    return 400, { error = "decision must be approve or deny" }
  end
  auth = _M.tick(auth)
  if FINAL[auth.status] then return 409, { error = "authorisation is already " .. auth.status } end
  if auth.status ~= "started" then return 409, { error = "the PSU is not identified yet" } end
  local done = _M.finish(auth.id, decision == "approve", auth.psu) or _M.load(auth.id)
  return 200, { authorisationId = done.id, scaStatus = done.status }
end

--- Marks an authorisation approved by the PSU on a page but waiting for the
-- TPP (OAuth code exchange, redirect confirmation code).
function _M.unconfirmed(auth_id, psu, extra)
  return common.update("auth:" .. auth_id, function(a)
    if not a or FINAL[a.status] then return nil end
    a.status = "unconfirmed"
    a.psu = psu
    for k, v in pairs(extra or {}) do a[k] = v end
    return a
  end)
end

return _M
