--- The ledger: moves money between the sandbox's accounts. Balances live in
-- "accounts:<variant>" (one value, so a debit and its credit change under
-- one lock); booked transactions in "tx:<variant>:<accountId>", newest first.
local common = require "sandbox.bank.common"
local seed = require "sandbox.bank.seed"

local format = string.format

local _M = {}

--- The account holding `iban` in `currency` (or, for a multicurrency IBAN
-- without that currency, its first sub-account).
local function pick(list, iban, currency)
  local first
  for _, a in ipairs(list) do
    if a.kind == "account" and a.iban == iban then
      if a.currency == currency then return a end
      first = first or a
    end
  end
  return first
end

function _M.find(variant, iban, currency)
  return pick(seed.accounts(variant), common.norm_iban(iban), currency)
end

--- Available balance: booked plus pending reservations (negative).
function _M.available(a)
  return a.balance + (a.hold or 0)
end

local function prepend(variant, account_id, tx)
  common.update("tx:" .. variant .. ":" .. account_id, function(list)
    list = list or {}
    table.insert(list, 1, tx)
    return list
  end)
end

--- Executes transfers from one debtor account, all or nothing.
-- @param variant "berlin" | "georgia"
-- @param p { debtor_iban, currency, id, debtor_name, legs = { { amount (thousandths), creditor_iban,
--   creditor_name, remittance, end_to_end }, ... } }
-- @return true, or false and "insufficient_funds" | "debtor_unknown"
function _M.execute(variant, p)
  seed.ensure()
  local total = 0
  for _, leg in ipairs(p.legs) do total = total + leg.amount end
  local result, reason
  local postings = {}
  common.update("accounts:" .. variant, function(list)
    local debtor = pick(list, common.norm_iban(p.debtor_iban), p.currency)
    if not debtor then result, reason = false, "debtor_unknown" return nil end
    if _M.available(debtor) < total then result, reason = false, "insufficient_funds" return nil end
    debtor.balance = debtor.balance - total
    local today = common.today()
    for i, leg in ipairs(p.legs) do
      local suffix = #p.legs > 1 and format("-%d", i) or ""
      local creditor = pick(list, common.norm_iban(leg.creditor_iban), p.currency)
      postings[#postings + 1] = { account = debtor.id, tx = {
        transactionId = p.id .. suffix .. "-D", entryReference = p.id .. suffix,
        endToEndId = leg.end_to_end, bookingDate = today, valueDate = today,
        transactionAmount = common.money(-leg.amount, p.currency),
        creditorName = leg.creditor_name, creditorAccount = { iban = common.norm_iban(leg.creditor_iban) },
        remittanceInformationUnstructured = leg.remittance, bankTransactionCode = "PMNT-ICDT-ESCT",
      } }
      if creditor and creditor.id ~= debtor.id then
        creditor.balance = creditor.balance + leg.amount
        postings[#postings + 1] = { account = creditor.id, tx = {
          transactionId = p.id .. suffix .. "-C", entryReference = p.id .. suffix,
          endToEndId = leg.end_to_end, bookingDate = today, valueDate = today,
          transactionAmount = common.money(leg.amount, p.currency),
          debtorName = p.debtor_name or common.PSUS[debtor.owner].name,
          debtorAccount = { iban = debtor.iban },
          remittanceInformationUnstructured = leg.remittance, bankTransactionCode = "PMNT-RCDT-ESCT",
        } }
      end
    end
    result = true
    return list
  end)
  for _, post in ipairs(postings) do prepend(variant, post.account, post.tx) end
  return result, reason
end

--- Would the debtor account cover `amount` now?
-- @return true|false, or nil when the account is unknown
function _M.funds_available(variant, iban, currency, amount)
  local a = _M.find(variant, iban, currency)
  if not a then return nil end
  return _M.available(a) >= amount
end

return _M
