-- Worker side of spec/openresty/client_spec.lua and refresh_spec.lua: the
-- lua-xs2a client inside nginx (ngx transport, shdict store) against the
-- sandbox bank.
local cjson = require "cjson.safe"

local M = {}

local identities = {}
local function identity(pki, name)
  local k = pki .. "/" .. name
  if not identities[k] then
    identities[k] = assert(require("xs2a.identity").new{ cert = k .. ".pem", key = k .. ".key" })
  end
  return identities[k]
end

local PSU = { psu_ip = "198.51.100.7" }

-- One client per worker and configuration; `fresh` builds a new one (to
-- show that a saved flow resumes in another client through the store).
local clients = {}
local function client(args, fresh)
  local key = cjson.encode({ args.base_url, args.limits or false })
  if clients[key] and not fresh then return clients[key] end
  local xs2a = require "xs2a"
  local c = assert(xs2a.client{
    profile = args.profile or "paysera-berlin",
    base_url = args.base_url,
    ca_file = args.pki .. "/ca.pem",
    response_cert = args.pki .. "/aspsp-seal.pem",
    qwac = identity(args.pki, "qwac"),
    qseal = identity(args.pki, "qseal"),
    redirect_uri = "https://tpp.example/callback",
    store = assert(xs2a.store.shdict("xs2a")),
    limits = args.limits,
  })
  clients[key] = c
  return c
end

local function err_fields(err)
  if not err then return nil end
  if type(err) ~= "table" then return { text = tostring(err) } end
  local out = { text = tostring(err) }
  for k, v in pairs(err) do
    if type(k) == "string" and (type(v) == "string" or type(v) == "number" or type(v) == "boolean") then
      out[k] = v
    end
  end
  return out
end

--- Creates a consent, starts its OAuth flow and saves the flow in the store.
function M.consent_start(args)
  local c = client(args)
  local consent, err = c:create_consent({
    access = { allPsd2 = "allAccounts" }, recurringIndicator = true,
    validUntil = os.date("!%Y-%m-%d", ngx.time() + 30 * 86400), frequencyPerDay = 4,
    combinedServiceIndicator = false,
  }, PSU)
  if not consent then error("create_consent: " .. tostring(err)) end
  local flow = consent:authorise{}
  local step, ferr = flow:next()
  if not step then error("flow:next: " .. tostring(ferr)) end
  assert(c.store:set("test:flow:" .. args.key, assert(cjson.encode(flow:save())), 600))
  return { kind = step.kind, url = step.url, consent_id = consent.id,
    transport = require("xs2a.transport").default_kind(), pid = ngx.worker.pid() }
end

--- Resumes the saved flow in a fresh client with the PSU's callback, then
-- reads accounts and balances.
function M.consent_finish(args)
  local xs2a = require "xs2a"
  local c = client(args, true)
  local saved = cjson.decode(c.store:get("test:flow:" .. args.key) or "null")
  assert(type(saved) == "table", "no saved flow in the shared dict")
  local flow = assert(xs2a.resume(c, saved))
  local step, err = flow:next{ callback = args.callback }
  if not step then error("flow:next(callback): " .. tostring(err)) end
  local consent = c:consent(args.consent_id)
  local accounts, aerr = consent:accounts(PSU)
  if not accounts then error("accounts: " .. tostring(aerr)) end
  local out = { kind = step.kind, status = step.status, accounts = {}, pid = ngx.worker.pid() }
  for _, a in ipairs(accounts) do
    local balances, berr = consent:balances(a.resourceId, PSU)
    if not balances then error("balances: " .. tostring(berr)) end
    out.accounts[#out.accounts + 1] = { id = a.resourceId, iban = a.iban, currency = a.currency,
      balances = #balances }
  end
  return out
end

--- Every booked transaction of one account, page after page.
function M.transactions(args)
  local consent = client(args):consent(args.consent_id)
  local n, ids, dups = 0, {}, 0
  for tx, err in consent:transactions(args.account_id, { bookingStatus = "booked", dateFrom = "2000-01-01" }, PSU) do
    if not tx then error("transactions: " .. tostring(err)) end
    n = n + 1
    local id = tx.transactionId or tx.entryReference
    if id then
      if ids[id] then dups = dups + 1 end
      ids[id] = true
    end
  end
  return { count = n, duplicates = dups }
end

--- `n` sequential account listings. Returns successes and errors.
function M.accounts(args)
  local consent = client(args):consent(args.consent_id)
  local out = { ok = 0, errors = {}, pid = ngx.worker.pid() }
  for _ = 1, args.n or 1 do
    local accounts, err = consent:accounts(PSU)
    if accounts then out.ok = out.ok + 1 else out.errors[#out.errors + 1] = err_fields(err) end
  end
  ngx.update_time()
  out.finished = ngx.now()
  return out
end

--- A payment initiation (the caller has queued a fault for it).
function M.initiate_payment(args)
  local c = client(args)
  local payment, err = c:initiate_payment("sepa-credit-transfers", {
    instructedAmount = { currency = "EUR", amount = "1.00" },
    debtorAccount = { iban = args.debtor_iban },
    creditorName = "Example Shop",
    creditorAccount = { iban = "LT601010012345678901" },
    remittanceInformationUnstructured = "openresty spec",
  }, PSU)
  return { id = payment and payment.id, err = err_fields(err) }
end

return M
