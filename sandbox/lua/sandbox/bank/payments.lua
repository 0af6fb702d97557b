--- PIS: single, periodic and bulk payments, their status, cancellation and
-- authorisations; execution through the ledger.
--
-- A payment is stored under "payment:<id>":
--   { id, seq, variant, service, product, org_id, request_id, body, status, created,
--     approach, required, redirect_uri, nok_uri, auths, approvals, cancel_auths,
--     cancel_approvals, cancel_requested, psu, debtor_iban, currency, amount,
--     amount_text, creditor_iban, execution_date, executions, reason,
--     basket (id of the signing basket holding it) }
local common = require "sandbox.bank.common"
local sca = require "sandbox.bank.sca"
local ledger = require "sandbox.bank.ledger"
local checks = require "sandbox.bank.payment_checks"
local schedule = require "sandbox.bank.schedule"
local util = common.util

local type = type

local _M = {}

local PRODUCTS = checks.PRODUCTS
_M.PRODUCTS = PRODUCTS

local SERVICES = { "payments", "periodic-payments", "bulk-payments" }
local SCHEDULE_LENGTH = 12
local FINAL = { ACSC = true, ACCC = true, RJCT = true, CANC = true }

local function base_path(p) return "/v1/" .. p.service .. "/" .. p.product .. "/" .. p.id end

--- Execution dates of a standing order (at most `n`, from startDate on).
_M.schedule = schedule.dates

---------------------------------------------------------------------------
-- execution

local function execute_now(p, id_suffix, legs)
  local ok, reason = ledger.execute(p.variant, {
    id = p.id .. (id_suffix or ""), debtor_iban = p.debtor_iban, currency = p.currency,
    debtor_name = p.body.debtorName, legs = legs or p.legs,
  })
  return ok, reason
end

local function success_status(p)
  return PRODUCTS[p.variant][p.product] and PRODUCTS[p.variant][p.product].instant and "ACCC" or "ACSC"
end

local function set_fields(id, fields)
  return common.update("payment:" .. id, function(x)
    if not x then return nil end
    for k, v in pairs(fields) do x[k] = v end
    return x
  end)
end

-- the set of dates a standing order has run on (or is running on)
local function executed_dates(p)
  local set = {}
  for _, e in ipairs(p.executions or {}) do set[e.date] = true end
  return set
end

-- runs what is due: scheduled single/bulk payments and standing-order dates
local function run_due(p)
  local today = common.today()
  if p.status ~= "ACTC" then return p end
  if p.service ~= "periodic-payments" then
    if (p.execution_date or today) > today then return p end
    -- claim the execution under the lock so it runs once
    local claimed = false
    common.update("payment:" .. p.id, function(x)
      if not x or x.status ~= "ACTC" then return nil end
      x.status = "ACSP"
      claimed = true
      return x
    end)
    if not claimed then return common.get("payment:" .. p.id) end
    local ok, reason = execute_now(p)
    return set_fields(p.id, { status = ok and success_status(p) or "RJCT", reason = reason, executed = common.now() })
  end
  local due = {}
  local done = executed_dates(p)
  for _, date in ipairs(_M.schedule(p.body, 400)) do
    if date > today then break end
    if not done[date] then due[#due + 1] = date end
  end
  for _, date in ipairs(due) do
    local claimed = false
    common.update("payment:" .. p.id, function(x)
      if not x then return nil end
      x.executions = x.executions or {}
      for _, e in ipairs(x.executions) do if e.date == date then return nil end end
      x.executions[#x.executions + 1] = { date = date, status = "ACSP" }
      claimed = true
      return x
    end)
    if claimed then
      local ok, reason = execute_now(p, "-" .. date)
      common.update("payment:" .. p.id, function(x)
        if not x then return nil end
        for _, e in ipairs(x.executions or {}) do
          if e.date == date then e.status = ok and "ACSC" or "RJCT" e.reason = reason end
        end
        return x
      end)
    end
  end
  return common.get("payment:" .. p.id)
end

-- The payment's last authorisation is done: ACTC under the lock (only from
-- RCVD/PATC, so it runs once), then execution of what is due.
local function accept(id, fields)
  local claimed = common.update("payment:" .. id, function(x)
    if not x or (x.status ~= "RCVD" and x.status ~= "PATC") then return nil end
    for k, v in pairs(fields) do x[k] = v end
    x.status = "ACTC"
    x.psu = (x.approvals or {})[1]
    x.authorised = common.now()
    return x
  end)
  if not claimed then return nil end
  return run_due(claimed)
end

---------------------------------------------------------------------------
-- hooks called by sca

function _M.awaiting(p, kind)
  if kind == "cancellation" then return p.status == "ACTC" and p.cancel_requested == true end
  -- a payment in an open signing basket is authorised through the basket only
  return (p.status == "RCVD" or p.status == "PATC") and not p.basket
end

function _M.owner_check(p, _, psu)
  if not p.debtor_iban then return true end   -- the PSU picks the debtor account on the page
  for _, a in ipairs(require("sandbox.bank.seed").accounts(p.variant)) do
    if a.iban == p.debtor_iban and a.owner == psu then return true end
  end
  return false, "the debtor account " .. p.debtor_iban .. " is not yours"
end

function _M.on_authorised(auth, outcome)
  local p = common.get("payment:" .. auth.rid)
  if not p then return end
  if auth.kind == "cancellation" then
    if outcome == "complete" and p.status == "ACTC" then
      set_fields(p.id, { status = "CANC", cancel_requested = false })
    elseif outcome == "failed" then
      set_fields(p.id, { cancel_requested = false })
    end
    return
  end
  if p.status ~= "RCVD" and p.status ~= "PATC" then return end
  if outcome == "failed" then
    p = set_fields(p.id, { status = "RJCT", reason = "sca_failed" })
    sca.close_all(p, { "auths" })
    return
  end
  local psu = (p.approvals or {})[1]
  if outcome == "partial" then
    set_fields(p.id, { status = "PATC", psu = psu })
    return
  end
  accept(p.id, {})
end

--- A payment without debtorAccount: the PSU picks one of the accounts in
-- the payment's currency on the bank's page.
function _M.choices(p, kind)
  if p.debtor_iban or kind ~= "payment" then return nil end
  return { name = "account", multiple = false, prompt = "Pay from:",
    options = require("sandbox.bank.seed").account_options(p.variant, function(a) return a.currency == p.currency end) }
end

--- The PSU's pick of the debtor account (one of the PSU's, in the currency).
-- @return true, or false and a message for the PSU
function _M.choose(p, _, psu, values)
  if #values ~= 1 then return false, "choose the account to pay from" end
  local found = require("sandbox.bank.seed").payment_account(p.variant, values[1])
  if not found or found.owner ~= psu or found.currency ~= p.currency then
    return false, "choose one of your accounts in " .. p.currency
  end
  local done = common.update("payment:" .. p.id, function(x)
    if not x or x.debtor_iban then return nil end
    x.debtor_iban = found.iban
    x.body.debtorAccount = { iban = found.iban, currency = found.currency }
    return x
  end)
  if done then p.debtor_iban, p.body = done.debtor_iban, done.body end
  return true
end

--- Authorises a payment through its signing basket's SCA (`psus` approved
-- the basket) and executes it as its own last authorisation would.
-- @return the payment afterwards, or nil when it no longer waited
function _M.authorise_in_basket(id, psus)
  return accept(id, { approvals = psus })
end

---------------------------------------------------------------------------
-- loading

--- A payment of this TPP in this variant, with its lazy clock applied.
local function load(ctx, service, product, id)
  local p = type(id) == "string" and common.get("payment:" .. id)
  if not p or p.variant ~= ctx.variant or not ctx.tpp or p.org_id ~= ctx.tpp.org_id
      or p.service ~= service or p.product ~= product then
    return nil
  end
  if sca.tick_resource(p) then p = common.get("payment:" .. id) end
  return run_due(p)
end

--- A payment by id without the TPP check (OAuth pages check the client id).
function _M.raw(id)
  local p = type(id) == "string" and common.get("payment:" .. id)
  if not p then return nil end
  if sca.tick_resource(p) then p = common.get("payment:" .. id) end
  return run_due(p)
end

--- A payment of this TPP in this variant, whatever its service and product
-- (signing baskets name payments by id only).
function _M.owned(ctx, id)
  local p = _M.raw(id)
  if not p or p.variant ~= ctx.variant or not ctx.tpp or p.org_id ~= ctx.tpp.org_id then return nil end
  return p
end

--- One line for the PSU's pages: "12.50 EUR to Bob (LT..)".
function _M.describe(p)
  local parts = {}
  for _, leg in ipairs(p.legs) do
    parts[#parts + 1] = common.format_amount(leg.amount) .. " " .. p.currency .. " to "
      .. (leg.creditor_name or "?") .. " (" .. leg.creditor_iban .. ")"
  end
  local kind = p.service == "periodic-payments" and ("Standing order (" .. tostring(p.body.frequency)
    .. " from " .. tostring(p.body.startDate) .. "): ")
    or p.service == "bulk-payments" and ("Bulk payment of " .. #p.legs .. " transfers: ") or "Payment: "
  return kind .. table.concat(parts, "; ") .. ", from " .. (p.debtor_iban or "an account you choose")
end

---------------------------------------------------------------------------
-- handlers

local function product_check(ctx, product)
  if not PRODUCTS[ctx.variant][product] then
    return common.err(ctx, 404, "PRODUCT_UNKNOWN", "payment product " .. product .. " is not offered")
  end
end

local function create(service)
  return function(ctx)
    local product = ctx.params[1]
    local perr = { product_check(ctx, product) }
    if perr[1] then return common.unpack(perr) end
    local b, berr = common.body(ctx)
    if not b then return common.unpack(berr) end
    local parts, code, msg = checks.body(ctx, service, product, b)
    if not parts then return common.err(ctx, 400, code, msg) end
    local setup, serr = sca.setup(ctx)
    if not setup then return common.unpack(serr) end
    local approach, uri, nok, required = setup.approach, setup.uri, setup.nok, setup.required
    if not parts.debtor_iban and approach ~= "oauth" and approach ~= "redirect" then
      return common.err(ctx, 400, "FORMAT_ERROR", "debtorAccount is required unless the PSU picks it on the "
        .. "bank's page (oauth or redirect approach)")
    end
    local p = {
      id = util.uuid(), seq = common.incr("bank:payment_seq"), variant = ctx.variant,
      service = service, product = product, org_id = ctx.tpp.org_id, request_id = ctx.request_id,
      body = b, status = "RCVD", created = common.now(), approach = approach, required = required,
      redirect_uri = uri, nok_uri = nok, auths = {}, approvals = {}, cancel_auths = {}, cancel_approvals = {},
      debtor_iban = parts.debtor_iban, currency = parts.currency, amount = parts.amount,
      amount_text = common.format_amount(parts.amount), creditor_iban = parts.legs[1].creditor_iban,
      legs = parts.legs, execution_date = parts.execution_date,
    }
    common.set("payment:" .. p.id, p)
    local path = base_path(p)
    local links, extra = sca.on_create(ctx, p, "payment", path)
    links.self = common.link(ctx, path)
    links.status = common.link(ctx, path .. "/status")
    local body = { transactionStatus = "RCVD", paymentId = p.id, _links = links }
    for k, v in pairs(extra) do body[k] = v end
    return 201, body, {
      ["Location"] = common.abs(ctx, path),
      ["ASPSP-SCA-Approach"] = sca.APPROACH_HEADER[approach],
    }
  end
end

local function with_payment(service, fn)
  return function(ctx)
    local product = ctx.params[1]
    local perr = { product_check(ctx, product) }
    if perr[1] then return common.unpack(perr) end
    local p = load(ctx, service, product, ctx.params[2])
    if not p then return common.err(ctx, 403, "RESOURCE_UNKNOWN", "payment not found for this TPP") end
    return fn(ctx, p)
  end
end

local function copy_body(b)
  local out = util.copy(b)
  if type(out.payments) == "table" then out.payments = util.array(out.payments) end
  if type(out.monthsOfExecution) == "table" then out.monthsOfExecution = util.array(out.monthsOfExecution) end
  if type(out.remittanceInformationUnstructuredArray) == "table" then
    out.remittanceInformationUnstructuredArray = util.array(out.remittanceInformationUnstructuredArray)
  end
  return out
end

local function get(ctx, p)
  local body = copy_body(p.body)
  body.transactionStatus = p.status
  body.paymentId = p.id
  if p.service == "periodic-payments" then
    local today = common.today()
    local upcoming = util.array()
    local executed = executed_dates(p)
    if not FINAL[p.status] then
      for _, d in ipairs(_M.schedule(p.body, 400)) do
        -- the dates still to come: today's counts until it has run
        if d >= today and not executed[d] then upcoming[#upcoming + 1] = d end
        if #upcoming >= SCHEDULE_LENGTH then break end
      end
    end
    body.schedule = upcoming
    local ex = util.array()
    for i, e in ipairs(p.executions or {}) do ex[i] = { executionDate = e.date, transactionStatus = e.status } end
    body.executions = ex
  end
  body._links = { self = common.link(ctx, base_path(p)), status = common.link(ctx, base_path(p) .. "/status") }
  return 200, body
end

local function status(_, p)
  local body = { transactionStatus = p.status }
  if not FINAL[p.status] and p.debtor_iban then
    body.fundsAvailable = ledger.funds_available(p.variant, p.debtor_iban, p.currency, p.amount) == true
  end
  if p.status == "RJCT" and p.reason == "insufficient_funds" then
    body.psuMessage = "Insufficient funds on the debtor account."
  end
  return 200, body
end

-- DELETE: see sandbox/BANK.md for the rule
local function cancel(ctx, p)
  if p.status == "CANC" then
    return common.err(ctx, 409, "STATUS_INVALID", "payment is already cancelled")
  end
  -- executed or rejected: 409 STATUS_INVALID, as Paysera's Georgia page says
  if p.status == "ACSC" or p.status == "ACCC" or p.status == "RJCT" or p.status == "ACSP" then
    return common.err(ctx, 409, "STATUS_INVALID", "payment is " .. p.status .. " and cannot be cancelled")
  end
  if p.basket and (p.status == "RCVD" or p.status == "PATC") then
    return common.err(ctx, 409, "STATUS_INVALID", "the payment is in signing basket " .. p.basket
      .. "; delete the basket first")
  end
  if p.status == "RCVD" or p.status == "PATC" then
    local done = common.update("payment:" .. p.id, function(x)
      if not x or (x.status ~= "RCVD" and x.status ~= "PATC") then return nil end
      x.status = "CANC"
      return x
    end)
    if not done then return common.err(ctx, 409, "STATUS_INVALID", "payment changed meanwhile") end
    sca.close_all(done)
    return 204
  end
  -- ACTC: authorised and waiting for its execution date(s); cancelling needs the PSU
  local uri, nok, herr = sca.redirect_headers(ctx)
  if herr then return common.unpack(herr) end
  p = set_fields(p.id, { cancel_requested = true, redirect_uri = uri or p.redirect_uri, nok_uri = nok or p.nok_uri })
  local links = sca.start_links(ctx, base_path(p), p.approach, "cancellation")
  links.self = common.link(ctx, base_path(p))
  links.status = common.link(ctx, base_path(p) .. "/status")
  return 202, { transactionStatus = p.status, _links = links },
    { ["ASPSP-SCA-Approach"] = sca.APPROACH_HEADER[p.approach] }
end

local function auth_handler(kind, op)
  return function(ctx, p)
    local path = base_path(p)
    if op == "start" then return sca.start(ctx, p, kind, path) end
    if op == "list" then return sca.list(ctx, p, kind) end
    if op == "get" then return sca.get(ctx, p, kind, ctx.params[3], path) end
    return sca.update(ctx, p, kind, ctx.params[3], path)
  end
end

local ID = "([^/]+)"

_M.routes = {}
for _, service in ipairs(SERVICES) do
  local root = "^/v1/" .. service:gsub("%-", "%%-") .. "/" .. ID
  local function add(method, suffix, handler, extra)
    local r = { method = method, pattern = root .. suffix:gsub("%-", "%%-") .. "$", handler = handler,
      auth = "mtls", service = "PIS" }
    for k, v in pairs(extra or {}) do r[k] = v end
    _M.routes[#_M.routes + 1] = r
  end
  add("POST", "", create(service), { psu_ip = true })
  add("GET", "/" .. ID, with_payment(service, get))
  add("DELETE", "/" .. ID, with_payment(service, cancel))
  add("GET", "/" .. ID .. "/status", with_payment(service, status))
  add("POST", "/" .. ID .. "/authorisations", with_payment(service, auth_handler("payment", "start")))
  add("GET", "/" .. ID .. "/authorisations", with_payment(service, auth_handler("payment", "list")))
  add("GET", "/" .. ID .. "/authorisations/" .. ID, with_payment(service, auth_handler("payment", "get")))
  add("PUT", "/" .. ID .. "/authorisations/" .. ID, with_payment(service, auth_handler("payment", "put")))
  add("POST", "/" .. ID .. "/cancellation-authorisations",
    with_payment(service, auth_handler("cancellation", "start")))
  add("GET", "/" .. ID .. "/cancellation-authorisations",
    with_payment(service, auth_handler("cancellation", "list")))
  add("GET", "/" .. ID .. "/cancellation-authorisations/" .. ID,
    with_payment(service, auth_handler("cancellation", "get")))
  add("PUT", "/" .. ID .. "/cancellation-authorisations/" .. ID,
    with_payment(service, auth_handler("cancellation", "put")))
end

sca.register("payment", { awaiting = _M.awaiting, owner_check = _M.owner_check, on_authorised = _M.on_authorised,
  choices = _M.choices, choose = _M.choose })
sca.register("cancellation", { awaiting = _M.awaiting, owner_check = _M.owner_check, on_authorised = _M.on_authorised })

return _M
