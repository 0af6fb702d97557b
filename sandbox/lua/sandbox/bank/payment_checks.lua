--- Payment validation: the products each variant offers and the checks of
-- single, bulk and periodic payment bodies. Pure checks; the only state
-- they read is the ledger (does an account exist at this ASPSP).
local common = require "sandbox.bank.common"
local ledger = require "sandbox.bank.ledger"
local schedule = require "sandbox.bank.schedule"
local util = common.util

local type = type

local _M = {}

local PRODUCTS = {
  berlin = {
    ["sepa-credit-transfers"] = { currency = "EUR" },
    ["instant-sepa-credit-transfers"] = { currency = "EUR", instant = true },
    ["target-2-payments"] = { currency = "EUR" },
    -- Paysera lists "domestic RON transfers" without a product name: ours is a guess
    ["ron-credit-transfers"] = { currency = "RON", country = "RO" },
  },
  georgia = {
    aspsp = { internal = true },
    domestic = { currency = "GEL", country = "GE" },
    foreign = {},
  },
}
_M.PRODUCTS = PRODUCTS

local FREQUENCIES = schedule.FREQUENCIES
local CHARGE_BEARERS = { DEBT = true, CRED = true, SHAR = true, SLEV = true }
local MAX_BULK = 100
---------------------------------------------------------------------------
-- body checks

local function check_amount(v, where)
  if type(v) ~= "table" then return nil, where .. " must be an object {currency, amount}" end
  if type(v.currency) ~= "string" or not v.currency:match("^%u%u%u$") then
    return nil, where .. ".currency must match [A-Z]{3}"
  end
  local m = common.parse_amount(v.amount)
  if not m then return nil, where .. ".amount must match -?[0-9]{1,14}(.[0-9]{1,3})?" end
  if m <= 0 then return nil, where .. ".amount must be positive" end
  return m
end

local function check_account(v, where)
  if type(v) ~= "table" then return nil, where .. " must be an object with an iban" end
  if not common.iban_valid(v.iban) then return nil, where .. ".iban is not a valid IBAN" end
  if v.currency ~= nil and (type(v.currency) ~= "string" or not v.currency:match("^%u%u%u$")) then
    return nil, where .. ".currency must match [A-Z]{3}"
  end
  return common.norm_iban(v.iban)
end

local function check_text(v, where, max, required)
  if v == nil then
    if required then return where .. " is required" end
    return nil
  end
  if type(v) ~= "string" or (required and v == "") or #v > max then
    return where .. " must be a string of at most " .. max .. " characters"
  end
end

local function check_date(v, where, not_before)
  if type(v) ~= "string" or not common.is_date(v) then return where .. " must be an ISO date (YYYY-MM-DD)" end
  if not_before and v < not_before then return where .. " must not lie before " .. not_before end
end

-- creditor side of a single payment or a bulk entry
local function check_credit(e, where, ctx, product)
  local amount, err = check_amount(e.instructedAmount, where .. "instructedAmount")
  if not amount then return nil, err end
  local creditor
  creditor, err = check_account(e.creditorAccount, where .. "creditorAccount")
  if not creditor then return nil, err end
  err = check_text(e.creditorName, where .. "creditorName", 70, true)
    or check_text(e.remittanceInformationUnstructured, where .. "remittanceInformationUnstructured", 140)
    or check_text(e.endToEndIdentification, where .. "endToEndIdentification", 35)
  if err then return nil, err end
  if e.creditorAgent ~= nil and (type(e.creditorAgent) ~= "string"
      or not e.creditorAgent:match("^%u%u%u%u%u%u[%u2-9][%u%d]$")
      and not e.creditorAgent:match("^%u%u%u%u%u%u[%u2-9][%u%d][%u%d][%u%d][%u%d]$")) then
    return nil, where .. "creditorAgent is not a BIC"
  end
  if e.chargeBearer ~= nil and not CHARGE_BEARERS[e.chargeBearer] then
    return nil, where .. "chargeBearer must be DEBT, CRED, SHAR or SLEV"
  end
  if e.creditorAddress ~= nil and (type(e.creditorAddress) ~= "table"
      or type(e.creditorAddress.country) ~= "string" or not e.creditorAddress.country:match("^%u%u$")) then
    return nil, where .. "creditorAddress.country must match [A-Z]{2}"
  end
  local ccy = e.instructedAmount.currency
  local rule = PRODUCTS[ctx.variant][product]
  if rule.currency and ccy ~= rule.currency then
    return nil, "payment product " .. product .. " takes " .. rule.currency .. " amounts only"
  end
  if rule.country and creditor:sub(1, 2) ~= rule.country then
    return nil, "payment product " .. product .. " needs a " .. rule.country .. " creditor IBAN"
  end
  if rule.internal and not ledger.find(ctx.variant, creditor, ccy) then
    return nil, "payment product " .. product .. " needs a creditor account at this ASPSP"
  end
  return { amount = amount, creditor_iban = creditor, creditor_name = e.creditorName,
    remittance = e.remittanceInformationUnstructured, end_to_end = e.endToEndIdentification, currency = ccy }
end

--- Validates a payment body.
-- @return the parsed parts `{ debtor_iban, currency, amount, legs, execution_date }`,
--   or nil, code, message
function _M.body(ctx, service, product, b)
  local p = { legs = {} }
  local err
  -- no debtorAccount: the PSU picks the account on the bank's page (Paysera's
  -- getting-started page: "no information about the exact payer account")
  if b.debtorAccount ~= nil then
    local debtor
    debtor, err = check_account(b.debtorAccount, "debtorAccount")
    if not debtor then return nil, "FORMAT_ERROR", err end
    p.debtor_iban = debtor
  end
  err = check_text(b.debtorName, "debtorName", 70)
  if err then return nil, "FORMAT_ERROR", err end
  local today = common.today()
  if service == "bulk-payments" then
    if type(b.payments) ~= "table" or not util.is_array(b.payments) then
      return nil, "FORMAT_ERROR", "payments must be a non-empty array"
    end
    if #b.payments > MAX_BULK then return nil, "FORMAT_ERROR", "at most " .. MAX_BULK .. " payments in a bulk" end
    if b.batchBookingPreferred ~= nil and type(b.batchBookingPreferred) ~= "boolean" then
      return nil, "FORMAT_ERROR", "batchBookingPreferred must be a boolean"
    end
    for i, e in ipairs(b.payments) do
      if type(e) ~= "table" then return nil, "FORMAT_ERROR", "payments[" .. i .. "] must be an object" end
      local leg, lerr = check_credit(e, "payments[" .. i .. "].", ctx, product)
      if not leg then return nil, "FORMAT_ERROR", lerr end
      if p.currency and leg.currency ~= p.currency then
        return nil, "FORMAT_ERROR", "all payments of a bulk must use one currency"
      end
      p.currency = leg.currency
      p.legs[i] = leg
    end
  else
    local leg, lerr = check_credit(b, "", ctx, product)
    if not leg then return nil, "FORMAT_ERROR", lerr end
    p.currency = leg.currency
    p.legs[1] = leg
  end
  if b.requestedExecutionDate ~= nil then
    if service == "periodic-payments" then
      return nil, "FORMAT_ERROR", "periodic payments take startDate, not requestedExecutionDate"
    end
    err = check_date(b.requestedExecutionDate, "requestedExecutionDate")
    if err then return nil, "FORMAT_ERROR", err end
    if b.requestedExecutionDate < today then
      return nil, "EXECUTION_DATE_INVALID", "requestedExecutionDate lies in the past"
    end
    p.execution_date = b.requestedExecutionDate
  end
  if service == "periodic-payments" then
    err = check_date(b.startDate, "startDate")
    if err then return nil, "FORMAT_ERROR", err end
    if b.startDate < today then return nil, "EXECUTION_DATE_INVALID", "startDate lies in the past" end
    local f = FREQUENCIES[b.frequency]
    if type(b.frequency) ~= "string" or not f then
      return nil, "FORMAT_ERROR", "frequency must be one of Daily, Weekly, EveryTwoWeeks, Monthly, "
        .. "EveryTwoMonths, Quarterly, SemiAnnual, Annual, MonthlyVariable"
    end
    if b.endDate ~= nil then
      err = check_date(b.endDate, "endDate", b.startDate)
      if err then return nil, "FORMAT_ERROR", err end
    end
    if b.executionRule ~= nil and b.executionRule ~= "following" and b.executionRule ~= "preceding" then
      return nil, "FORMAT_ERROR", "executionRule must be following or preceding"
    end
    if b.dayOfExecution ~= nil then
      local d = type(b.dayOfExecution) == "string" and b.dayOfExecution:match("^%d%d?$") and tonumber(b.dayOfExecution)
      if not d or d < 1 or d > 31 then return nil, "FORMAT_ERROR", "dayOfExecution must be \"1\"..\"31\"" end
    end
    if b.monthsOfExecution ~= nil then
      if not f.variable then return nil, "FORMAT_ERROR", "monthsOfExecution only goes with MonthlyVariable" end
      if type(b.monthsOfExecution) ~= "table" or #b.monthsOfExecution < 1 or #b.monthsOfExecution > 11 then
        return nil, "FORMAT_ERROR", "monthsOfExecution must hold 1 to 11 months"
      end
      for _, m in ipairs(b.monthsOfExecution) do
        local n = type(m) == "string" and m:match("^%d%d?$") and tonumber(m)
        if not n or n < 1 or n > 12 then
          return nil, "FORMAT_ERROR", "monthsOfExecution entries must be \"1\"..\"12\""
        end
      end
    elseif f.variable then
      return nil, "FORMAT_ERROR", "MonthlyVariable needs monthsOfExecution"
    end
  end
  local acct = not p.debtor_iban or ledger.find(ctx.variant, p.debtor_iban, p.currency)
  if not acct then
    return nil, "RESOURCE_UNKNOWN", "debtorAccount is not an account at this ASPSP"
  end
  local total = 0
  for _, leg in ipairs(p.legs) do total = total + leg.amount end
  p.amount = total
  return p
end


return _M
