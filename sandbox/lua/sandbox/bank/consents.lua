--- AIS consents: create, read, status, delete, and their authorisations.
--
-- A consent is stored under "consent:<id>":
--   { id, variant, org_id, access, recurringIndicator, validUntil, frequencyPerDay,
--     combinedServiceIndicator, status, created, lastActionDate, approach, required,
--     redirect_uri, nok_uri, auths, approvals, psu, valid_at, request_id,
--     basket (id of the signing basket holding it), offered (a bank-offered
--     consent: the PSU picks the accounts on the bank's page), chosen }
local common = require "sandbox.bank.common"
local sca = require "sandbox.bank.sca"
local util = common.util

local type = type

local _M = {}

local ONE_OFF_LIFETIME = 3600    -- Paysera: SCA validity of a one-off consent
local MAX_FREQUENCY = 4          -- Paysera's cap on frequencyPerDay
local REF_ARRAYS = { "accounts", "balances", "transactions" }
local ALL_VALUES = { allAccounts = true, allAccountsWithOwnerName = true }
local ALL_KEYS = { "availableAccounts", "availableAccountsWithBalance", "allPsd2" }

local function base_path(id) return "/v1/consents/" .. id end

---------------------------------------------------------------------------
-- validation

local function check_ref(ref, where)
  if type(ref) ~= "table" or util.is_array(ref) then return where .. " must be an object" end
  local ids = 0
  if ref.iban ~= nil then
    if not common.iban_valid(ref.iban) then return where .. ".iban is not a valid IBAN" end
    ids = ids + 1
  end
  for _, k in ipairs({ "bban", "pan", "maskedPan", "msisdn" }) do
    if ref[k] ~= nil then
      if type(ref[k]) ~= "string" or ref[k] == "" or #ref[k] > 35 then return where .. "." .. k .. " is not valid" end
      ids = ids + 1
    end
  end
  if ids ~= 1 then return where .. " needs exactly one account identifier (iban, bban, pan, maskedPan, msisdn)" end
  if ref.currency ~= nil and (type(ref.currency) ~= "string" or not ref.currency:match("^%u%u%u$")) then
    return where .. ".currency must match [A-Z]{3}"
  end
end

--- Checks the `access` object; returns a normalised copy or nil, message.
local function check_access(access)
  if type(access) ~= "table" or util.is_array(access) then return nil, "access must be an object" end
  local out, any = {}, false
  for _, k in ipairs(REF_ARRAYS) do
    local list = access[k]
    if list ~= nil then
      if type(list) ~= "table" or (next(list) ~= nil and not util.is_array(list)) then
        return nil, "access." .. k .. " must be an array"
      end
      local refs = {}
      for i, ref in ipairs(list) do
        local e = check_ref(ref, "access." .. k .. "[" .. i .. "]")
        if e then return nil, e end
        refs[i] = { iban = ref.iban and common.norm_iban(ref.iban), bban = ref.bban, pan = ref.pan,
          maskedPan = ref.maskedPan, msisdn = ref.msisdn, currency = ref.currency }
      end
      out[k] = refs
      if #refs > 0 then any = true end
    end
  end
  for _, k in ipairs(ALL_KEYS) do
    if access[k] ~= nil then
      if not ALL_VALUES[access[k]] then
        return nil, "access." .. k .. " must be allAccounts or allAccountsWithOwnerName"
      end
      out[k] = access[k]
      any = true
    end
  end
  if access.restrictedTo ~= nil then
    if type(access.restrictedTo) ~= "table" then return nil, "access.restrictedTo must be an array" end
    out.restrictedTo = access.restrictedTo
  end
  if not any then
    -- a bank-offered consent: accounts, balances and transactions all given
    -- and empty, nothing else; the PSU picks the accounts on the bank's page
    if out.accounts and out.balances and out.transactions and not out.restrictedTo then
      out.offered = true
      return out
    end
    return nil, "access names no accounts (accounts, balances, transactions, availableAccounts, allPsd2)"
  end
  return out
end

local function check_body(ctx, b)
  local access, e = check_access(b.access)
  if not access then return nil, e end
  if type(b.recurringIndicator) ~= "boolean" then return nil, "recurringIndicator must be a boolean" end
  if type(b.validUntil) ~= "string" or not common.is_date(b.validUntil) then
    return nil, "validUntil must be an ISO date (YYYY-MM-DD)"
  end
  if b.validUntil < common.today() then return nil, "validUntil lies in the past" end
  -- the variant's longest consent (Paysera: 180 days on Berlin, 90 on Georgia):
  -- a later validUntil (9999-12-31 asks for the longest) is capped, or refused
  -- under `consent_over_max = "refuse"`
  local max_days = tonumber(ctx.cfg and ctx.cfg.max_consent_days)
  if max_days then
    local last = common.iso_date(common.now() + max_days * 86400)
    if b.validUntil > last then
      if ctx.cfg.consent_over_max == "refuse" then
        return nil, "validUntil lies beyond the longest consent of " .. max_days .. " days (" .. last .. ")"
      end
      access.valid_until = last
    end
  end
  local f = b.frequencyPerDay
  if type(f) ~= "number" or f ~= math.floor(f) or f < 1 then
    return nil, "frequencyPerDay must be an integer >= 1"
  end
  if f > MAX_FREQUENCY then return nil, "frequencyPerDay must not exceed " .. MAX_FREQUENCY end
  if type(b.combinedServiceIndicator) ~= "boolean" then return nil, "combinedServiceIndicator must be a boolean" end
  return access
end

---------------------------------------------------------------------------
-- loading, with the lazy clock applied

local function expire_if_due(c)
  if c.status ~= "valid" then return c end
  local now = common.now()
  local due = c.validUntil < common.today()
    or (not c.recurringIndicator and c.valid_at and now >= c.valid_at + ONE_OFF_LIFETIME)
  if not due then return c end
  return common.update("consent:" .. c.id, function(x)
    if not x or x.status ~= "valid" then return nil end
    x.status = "expired"
    return x
  end) or common.get("consent:" .. c.id)
end

--- The consent `id` if it exists in this variant and belongs to the TPP.
function _M.load(ctx, id)
  local c = type(id) == "string" and common.get("consent:" .. id)
  if not c or c.variant ~= ctx.variant or not ctx.tpp or c.org_id ~= ctx.tpp.org_id then return nil end
  if sca.tick_resource(c) then c = common.get("consent:" .. id) end
  return expire_if_due(c)
end

--- A consent by id without the TPP check (OAuth pages check the client id themselves).
function _M.raw(id)
  local c = type(id) == "string" and common.get("consent:" .. id)
  if not c then return nil end
  if sca.tick_resource(c) then c = common.get("consent:" .. id) end
  return expire_if_due(c)
end

local function load_or_err(ctx)
  local c = _M.load(ctx, ctx.params[1])
  if not c then return nil, { common.err(ctx, 403, "CONSENT_UNKNOWN", "consent not found for this TPP") } end
  return c
end

---------------------------------------------------------------------------
-- hooks called by sca

function _M.awaiting(c)
  -- a consent in an open signing basket is authorised through the basket only
  return (c.status == "received" or c.status == "partiallyAuthorised") and c.validUntil >= common.today()
    and not c.basket
end

local function ref_matches(ref, a)
  if ref.iban then
    return a.iban == ref.iban and (ref.currency == nil or ref.currency == a.currency)
  elseif ref.maskedPan or ref.pan then
    return a.maskedPan ~= nil and (a.maskedPan == ref.maskedPan or (ref.pan and ref.pan:sub(-4) == a.maskedPan:sub(-4)))
  elseif ref.bban then
    return a.iban ~= nil and a.iban:sub(5) == ref.bban:upper()
  end
  return false
end
_M.ref_matches = ref_matches

--- The first PSU must hold every account a dedicated consent names.
function _M.owner_check(c, _, psu)
  local accounts = require("sandbox.bank.seed").accounts(c.variant)
  for _, k in ipairs(REF_ARRAYS) do
    for _, ref in ipairs(c.access[k] or {}) do
      local held = false
      for _, a in ipairs(accounts) do
        if a.owner == psu and ref_matches(ref, a) then held = true break end
      end
      if not held then
        return false, "the consent names an account you do not hold ("
          .. (ref.iban or ref.maskedPan or ref.bban or ref.pan or ref.msisdn) .. ")"
      end
    end
  end
  return true
end

-- `multiple_consents = "replace"` (Paysera keeps one consent per TPP and
-- PSU): a consent that becomes valid ends the PSU's other valid consents
-- of this TPP with terminatedByTpp, as Berlin Group says for a new consent.
local function replace_older(c)
  local cfg = require("sandbox.config").for_variant(c.variant)
  if cfg.multiple_consents == "keep" or not c.psu then return end
  for _, key in ipairs(require("sandbox.state").keys("consent:")) do
    if key ~= "consent:" .. c.id then
      common.update(key, function(x)
        if not x or x.status ~= "valid" or x.variant ~= c.variant or x.org_id ~= c.org_id or x.psu ~= c.psu then
          return nil
        end
        x.status = "terminatedByTpp"
        x.replaced_by = c.id
        return x
      end)
    end
  end
end

function _M.on_authorised(auth, outcome)
  local closed, valid
  common.update("consent:" .. auth.rid, function(c)
    if not c then return nil end
    if outcome == "failed" then
      if c.status == "received" or c.status == "partiallyAuthorised" then
        c.status = "rejected"
        closed = c
      end
      return c
    end
    if c.status ~= "received" and c.status ~= "partiallyAuthorised" then return nil end
    c.psu = c.psu or (c.approvals or {})[1]
    if outcome == "complete" then
      c.status = "valid"
      c.valid_at = common.now()
      valid = c
    else
      c.status = "partiallyAuthorised"
    end
    return c
  end)
  if closed then sca.close_all(closed) end
  if valid then replace_older(valid) end
end

--- What the PSU picks on the bank's page for a bank-offered consent: the
-- payment accounts (any of the variant's; only the PSU's own are accepted).
function _M.choices(c)
  if not c.offered or c.chosen then return nil end
  return { name = "account", multiple = true, prompt = "Choose the accounts to share:",
    options = require("sandbox.bank.seed").account_options(c.variant) }
end

--- The PSU's pick: every chosen account must be the PSU's; the consent then
-- covers their details, balances and transactions.
-- @return true, or false and a message for the PSU
function _M.choose(c, _, psu, values)
  local refs = {}
  for _, v in ipairs(values) do
    local found = require("sandbox.bank.seed").payment_account(c.variant, v)
    if not found or found.owner ~= psu then return false, "choose accounts you hold" end
    refs[#refs + 1] = { iban = found.iban, currency = found.currency }
  end
  if #refs == 0 then return false, "choose at least one account" end
  local done = common.update("consent:" .. c.id, function(x)
    if not x or x.chosen then return nil end
    x.access.accounts, x.access.balances, x.access.transactions = refs, util.copy(refs), util.copy(refs)
    x.chosen = true
    return x
  end)
  if done then c.access, c.chosen = done.access, true end
  return true
end

--- Authorises a consent through its signing basket's SCA (`psus` approved
-- the basket): valid, owned by the first PSU. Read without a bearer token
-- (the basket's OAuth token is a PIS token).
-- @return the consent afterwards, or nil when it no longer waited
function _M.authorise_in_basket(id, psus)
  local c = common.update("consent:" .. id, function(c)
    if not c or (c.status ~= "received" and c.status ~= "partiallyAuthorised") then return nil end
    c.approvals = psus
    c.psu = psus[1]
    c.status = "valid"
    c.valid_at = common.now()
    return c
  end)
  if c then replace_older(c) end
  return c
end

---------------------------------------------------------------------------
-- views

local function access_view(access)
  local out = util.copy(access)
  for _, k in ipairs(REF_ARRAYS) do
    if out[k] then out[k] = util.array(out[k]) end
  end
  if out.restrictedTo then out.restrictedTo = util.array(out.restrictedTo) end
  return out
end

local function view(ctx, c)
  local links = {
    self = common.link(ctx, base_path(c.id)),
    status = common.link(ctx, base_path(c.id) .. "/status"),
  }
  if c.status == "valid" then
    links.account = common.link(ctx, "/v1/accounts")
    if ctx.variant == "berlin" then links["card-account"] = common.link(ctx, "/v1/card-accounts") end
  end
  return {
    access = access_view(c.access),
    recurringIndicator = c.recurringIndicator,
    validUntil = c.validUntil,
    frequencyPerDay = c.frequencyPerDay,
    combinedServiceIndicator = c.combinedServiceIndicator,
    lastActionDate = c.lastActionDate,
    consentStatus = c.status,
    _links = links,
  }
end

---------------------------------------------------------------------------
-- handlers

-- POST /v1/consents
local function create(ctx)
  local b, errr = common.body(ctx)
  if not b then return common.unpack(errr) end
  local access, msg = check_body(ctx, b)
  if not access then return common.err(ctx, 400, "FORMAT_ERROR", msg) end
  local valid_until, offered = access.valid_until or b.validUntil, access.offered
  access.valid_until, access.offered = nil, nil
  if b.combinedServiceIndicator then
    return common.err(ctx, 400, "SESSIONS_NOT_SUPPORTED", "combined AIS/PIS sessions are not supported")
  end
  local setup, serr = sca.setup(ctx)
  if not setup then return common.unpack(serr) end
  local approach, uri, nok, required = setup.approach, setup.uri, setup.nok, setup.required
  if offered and approach ~= "oauth" and approach ~= "redirect" then
    return common.err(ctx, 400, "FORMAT_ERROR", "a bank-offered consent needs the bank's page (oauth or redirect "
      .. "approach) where the PSU picks the accounts")
  end
  local c = {
    id = util.uuid(), variant = ctx.variant, org_id = ctx.tpp.org_id, access = access, offered = offered,
    recurringIndicator = b.recurringIndicator, validUntil = valid_until,
    frequencyPerDay = b.frequencyPerDay, combinedServiceIndicator = b.combinedServiceIndicator,
    status = "received", created = common.now(), lastActionDate = common.today(),
    approach = approach, required = required, redirect_uri = uri, nok_uri = nok,
    auths = {}, approvals = {}, request_id = ctx.request_id,
  }
  common.set("consent:" .. c.id, c)
  local links, extra = sca.on_create(ctx, c, "consent", base_path(c.id))
  links.self = common.link(ctx, base_path(c.id))
  links.status = common.link(ctx, base_path(c.id) .. "/status")
  local body = { consentStatus = "received", consentId = c.id, _links = links }
  for k, v in pairs(extra) do body[k] = v end
  return 201, body, {
    ["Location"] = common.abs(ctx, base_path(c.id)),
    ["ASPSP-SCA-Approach"] = sca.APPROACH_HEADER[approach],
  }
end

local function get(ctx)
  local c, e = load_or_err(ctx)
  if not c then return common.unpack(e) end
  return 200, view(ctx, c)
end

local function status(ctx)
  local c, e = load_or_err(ctx)
  if not c then return common.unpack(e) end
  return 200, { consentStatus = c.status }
end

local function delete(ctx)
  local c, e = load_or_err(ctx)
  if not c then return common.unpack(e) end
  if c.status == "terminatedByTpp" then
    return common.err(ctx, 409, "STATUS_INVALID", "consent is already terminated")
  end
  if c.basket and (c.status == "received" or c.status == "partiallyAuthorised") then
    return common.err(ctx, 409, "STATUS_INVALID", "the consent is in signing basket " .. c.basket
      .. "; delete the basket first")
  end
  common.update("consent:" .. c.id, function(x)
    if not x then return nil end
    x.status = "terminatedByTpp"
    return x
  end)
  sca.close_all(c)
  return 204
end

local function with_consent(fn)
  return function(ctx)
    local c, e = load_or_err(ctx)
    if not c then return common.unpack(e) end
    return fn(ctx, c)
  end
end

local start_auth = with_consent(function(ctx, c)
  return sca.start(ctx, c, "consent", base_path(c.id))
end)
local list_auth = with_consent(function(ctx, c)
  return sca.list(ctx, c, "consent")
end)
local get_auth = with_consent(function(ctx, c)
  return sca.get(ctx, c, "consent", ctx.params[2], base_path(c.id))
end)
local update_auth = with_consent(function(ctx, c)
  return sca.update(ctx, c, "consent", ctx.params[2], base_path(c.id))
end)

local ID = "([^/]+)"

_M.routes = {
  { method = "POST", pattern = "^/v1/consents$", handler = create, auth = "mtls", service = "AIS", psu_ip = true },
  { method = "GET", pattern = "^/v1/consents/" .. ID .. "$", handler = get, auth = "mtls", service = "AIS" },
  { method = "DELETE", pattern = "^/v1/consents/" .. ID .. "$", handler = delete, auth = "mtls", service = "AIS" },
  { method = "GET", pattern = "^/v1/consents/" .. ID .. "/status$", handler = status, auth = "mtls", service = "AIS" },
  { method = "POST", pattern = "^/v1/consents/" .. ID .. "/authorisations$", handler = start_auth,
    auth = "mtls", service = "AIS" },
  { method = "GET", pattern = "^/v1/consents/" .. ID .. "/authorisations$", handler = list_auth,
    auth = "mtls", service = "AIS" },
  { method = "GET", pattern = "^/v1/consents/" .. ID .. "/authorisations/" .. ID .. "$", handler = get_auth,
    auth = "mtls", service = "AIS" },
  { method = "PUT", pattern = "^/v1/consents/" .. ID .. "/authorisations/" .. ID .. "$", handler = update_auth,
    auth = "mtls", service = "AIS" },
}

sca.register("consent", { awaiting = _M.awaiting, owner_check = _M.owner_check, on_authorised = _M.on_authorised,
  choices = _M.choices, choose = _M.choose })

return _M
