--- The bank's deterministic test data: accounts, balances and transaction
-- histories for both variants, written into the state on reset.
local common = require "sandbox.bank.common"
local util = common.util

local format, floor = string.format, math.floor

local _M = {}

local VARIANTS = { "berlin", "georgia" }

-- Berlin: Lithuanian IBANs at bank code 35000 (LT + 2 + 5 + 11 digits).
-- Georgia: GE + 2 check digits + 2-letter bank code + 16 digits.
local BANK = {
  berlin = { country = "LT", code = "35000", bic = "EVIULT2VXXX", local_ccy = "EUR", other_ccy = "USD" },
  georgia = { country = "GE", code = "PS", bic = "PAYSGE22XXX", local_ccy = "GEL", other_ccy = "USD" },
}

local function iban(variant, number)
  local b = BANK[variant]
  return util.make_iban(b.country, b.code, number)
end

local function number(variant, n)
  -- account numbers: 11 digits for LT, 16 for GE
  return variant == "berlin" and format("%011d", n) or format("%016d", n)
end

-- Counterparties outside the sandbox (valid checksums, other banks).
local function externals(variant)
  if variant == "berlin" then
    return {
      { name = "Vilnius Energy UAB", iban = util.make_iban("LT", "73000", "10012345678") },
      { name = "Baltic Groceries", iban = util.make_iban("LT", "70440", "60001234567") },
      { name = "Berlin Books GmbH", iban = util.make_iban("DE", "37040044", "0532013000") },
      { name = "Employer SE", iban = util.make_iban("LT", "21400", "99000001234") },
      { name = "City Transport", iban = util.make_iban("LT", "40100", "51000004321") },
    }
  end
  return {
    { name = "Tbilisi Energy LLC", iban = util.make_iban("GE", "TB", "0000000123456789") },
    { name = "Georgian Groceries", iban = util.make_iban("GE", "BG", "0000000987654321") },
    { name = "Batumi Books", iban = util.make_iban("GE", "LB", "0000000555000111") },
    { name = "Employer LLC", iban = util.make_iban("GE", "TB", "0000000777000222") },
    { name = "Tbilisi Metro", iban = util.make_iban("GE", "BG", "0000000444000333") },
  }
end

--- An IBAN outside the sandbox, valid, for "creditor elsewhere" tests.
function _M.external_iban(variant)
  return externals(variant)[1].iban
end

-- Park-Miller generator: deterministic and exact in doubles.
local function rng(seed)
  local x = seed
  return function(lo, hi)
    x = (x * 16807) % 2147483647
    return lo + x % (hi - lo + 1)
  end
end

local function accounts_for(variant)
  local b = BANK[variant]
  local p = variant == "berlin" and "b" or "g"
  local main = iban(variant, number(variant, 10001101))
  local list = {
    { id = p .. "-alice-" .. b.local_ccy:lower(), iban = main, currency = b.local_ccy, owner = "alice",
      name = "Alice main account", product = "Current account", balance = 12345670, hold = 0,
      tag = "main", history = 270, pending = 3 },
    { id = p .. "-alice-usd", iban = main, currency = b.other_ccy, owner = "alice",
      name = "Alice main account (USD)", product = "Current account", balance = 2500000, hold = 0,
      tag = "multicurrency", history = 6, pending = 0 },
    { id = p .. "-alice-low", iban = iban(variant, number(variant, 10001102)), currency = b.local_ccy,
      owner = "alice", name = "Alice pocket money", product = "Current account", balance = 1500, hold = 0,
      tag = "low-balance", history = 2, pending = 0 },
    { id = p .. "-bob-" .. b.local_ccy:lower(), iban = iban(variant, number(variant, 10002201)),
      currency = b.local_ccy, owner = "bob", name = "Bob account", product = "Current account",
      balance = 5000000, hold = 0, tag = "creditor", history = 8, pending = 0 },
    { id = p .. "-carol-" .. b.local_ccy:lower(), iban = iban(variant, number(variant, 10003301)),
      currency = b.local_ccy, owner = "carol", name = "Carol account", product = "Current account",
      balance = 800000, hold = 0, tag = "creditor", history = 4, pending = 0 },
  }
  if variant == "berlin" then
    list[#list + 1] = { id = "b-alice-card", kind = "card", maskedPan = "525412******3241", currency = "EUR",
      owner = "alice", name = "Alice Visa", product = "Paysera Visa Debit", balance = 745500, hold = 0,
      credit_limit = 1000000, tag = "card", history = 12, pending = 0 }
    -- Paysera's Berlin variant also lists domestic RON transfers
    list[#list + 1] = { id = "b-alice-ron", iban = main, currency = "RON", owner = "alice",
      name = "Alice main account (RON)", product = "Current account", balance = 3000000, hold = 0,
      tag = "ron", history = 4, pending = 0 }
  end
  for i, a in ipairs(list) do
    a.kind = a.kind or "account"
    a.variant = variant
    a.bic = b.bic
    a.cashAccountType = "CACC"
    a.order = i
  end
  return list
end

local FIRST_DAY = util.parse_date("2026-01-02")
local LAST_DAY = util.parse_date("2026-11-15")

local function history(variant, acct, seedn)
  local rand = rng(seedn)
  local others = externals(variant)
  local ccy = acct.currency
  local booked = {}
  local span = floor((LAST_DAY - FIRST_DAY) / 86400)
  for i = 1, acct.history do
    local day = FIRST_DAY + floor((i - 1) * span / acct.history) * 86400
    local date = util.iso_date(day)
    local other = others[rand(1, #others)]
    local credit = other.name:find("Employer") ~= nil or rand(1, 6) == 1
    local amount = credit and rand(20000, 300000) * 10 or -rand(150, 30000) * 10
    local id = format("%s-T%04d", acct.id, i)
    local tx = {
      transactionId = id,
      entryReference = id,
      bookingDate = date,
      valueDate = date,
      transactionAmount = common.money(amount, ccy),
    }
    if acct.kind == "card" then
      tx = {
        cardTransactionId = id,
        transactionDate = date,
        bookingDate = date,
        transactionAmount = common.money(-math.abs(amount), ccy),
        cardAcceptorId = format("MERCH%05d", rand(1, 99999)),
        transactionDetails = "Card purchase at " .. other.name,
        maskedPan = acct.maskedPan,
      }
    elseif credit then
      tx.debtorName = other.name
      tx.debtorAccount = { iban = other.iban }
      tx.remittanceInformationUnstructured = "Incoming transfer " .. i
      tx.bankTransactionCode = "PMNT-RCDT-ESCT"
    else
      tx.creditorName = other.name
      tx.creditorAccount = { iban = other.iban }
      tx.remittanceInformationUnstructured = "Invoice " .. format("%05d", rand(1, 99999))
      tx.bankTransactionCode = "PMNT-ICDT-ESCT"
    end
    booked[#booked + 1] = tx
  end
  -- newest first, as statements are read
  local out = {}
  for i = #booked, 1, -1 do out[#out + 1] = booked[i] end
  local pending = {}
  for i = 1, acct.pending do
    local amount = -rand(500, 9000) * 10
    local id = format("%s-P%02d", acct.id, i)
    pending[#pending + 1] = {
      transactionId = id,
      entryReference = id,
      valueDate = util.iso_date(LAST_DAY + (i + 4) * 86400),
      transactionAmount = common.money(amount, ccy),
      creditorName = "Card payment " .. others[rand(1, #others)].name,
      remittanceInformationUnstructured = "Card reservation " .. i,
      bankTransactionCode = "PMNT-CCRD-POSD",
    }
    acct.hold = acct.hold + amount
  end
  return out, pending
end

--- Writes the seeded data for both variants (the platform flushed the state).
function _M.reset()
  for vi, variant in ipairs(VARIANTS) do
    local list = accounts_for(variant)
    for ai, acct in ipairs(list) do
      local booked, pending = history(variant, acct, vi * 1000 + ai * 7 + 11)
      common.set("tx:" .. variant .. ":" .. acct.id, booked)
      common.set("txp:" .. variant .. ":" .. acct.id, pending)
      acct.history, acct.pending = nil, nil
    end
    common.set("accounts:" .. variant, list)
  end
  common.set("bank:seeded", true)
end

--- Makes sure the seed exists (a first request after start).
function _M.ensure()
  if not common.get("bank:seeded") then _M.reset() end
end

--- Every account of a variant (list, in seed order).
function _M.accounts(variant)
  _M.ensure()
  return common.get("accounts:" .. variant) or {}
end

--- The payment accounts of a variant as options of a page's choice
-- (`{ value = id, label }`), those `keep(a)` accepts when given.
function _M.account_options(variant, keep)
  local options = {}
  for _, a in ipairs(_M.accounts(variant)) do
    if a.kind == "account" and (not keep or keep(a)) then
      options[#options + 1] = { value = a.id, label = a.iban .. " " .. a.currency .. " (" .. a.name .. ")" }
    end
  end
  return options
end

--- The payment account `id` of a variant, or nil.
function _M.payment_account(variant, id)
  for _, a in ipairs(_M.accounts(variant)) do
    if a.id == id and a.kind == "account" then return a end
  end
end

local function public_account(a)
  return {
    variant = a.variant, resourceId = a.id, kind = a.kind, iban = a.iban, maskedPan = a.maskedPan,
    currency = a.currency, owner = a.owner, name = a.name, tag = a.tag,
    balance = common.format_amount(a.balance),
    available = common.format_amount(a.balance + (a.hold or 0)),
    transactions = #(common.get("tx:" .. a.variant .. ":" .. a.id) or {}),
  }
end

--- Balances of every account (GET /_sandbox/accounts).
function _M.dump_accounts()
  local out = util.array()
  for _, variant in ipairs(VARIANTS) do
    for _, a in ipairs(_M.accounts(variant)) do out[#out + 1] = public_account(a) end
  end
  return {
    accounts = out,
    external = { berlin = _M.external_iban("berlin"), georgia = _M.external_iban("georgia") },
    psus = util.array({ "alice", "bob", "carol" }),
  }
end

--- Every payment the bank holds, oldest first (GET /_sandbox/payments).
function _M.dump_payments()
  local list = {}
  for _, key in ipairs(require("sandbox.state").keys("payment:")) do
    local p = common.get(key)
    if type(p) == "table" then list[#list + 1] = p end
  end
  table.sort(list, function(a, b)
    if a.seq ~= b.seq then return (a.seq or 0) < (b.seq or 0) end
    return a.id < b.id
  end)
  local out = util.array()
  for _, p in ipairs(list) do
    out[#out + 1] = {
      paymentId = p.id, variant = p.variant, service = p.service, product = p.product,
      transactionStatus = p.status, org_id = p.org_id, request_id = p.request_id,
      created = util.iso_datetime(p.created), amount = p.amount_text, currency = p.currency,
      debtor = p.debtor_iban, creditor = p.creditor_iban,
    }
  end
  return { payments = out, count = #out }
end

return _M
