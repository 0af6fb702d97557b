--- AIS reads (accounts, balances, transactions, card accounts) behind a
-- consent, and PIIS funds confirmation.
local common = require "sandbox.bank.common"
local consents = require "sandbox.bank.consents"
local seed = require "sandbox.bank.seed"
local ledger = require "sandbox.bank.ledger"
local util = common.util

local type, tonumber, floor = type, tonumber, math.floor

local _M = {}

-- "all" (Berlin Group 1.3.9+): booked, pending and information in one answer
local BOOKING = { booked = true, pending = true, both = true, information = true, all = true }

---------------------------------------------------------------------------
-- the AIS guard: Consent-ID, consent state, bearer token, frequencyPerDay

local function seconds_to_midnight()
  local now = common.now()
  return 86400 - floor(now) % 86400
end

-- The bearer token is checked before the consent: a token presented with
-- another client certificate is TOKEN_INVALID whatever it names.
local function bearer(ctx)
  local auth = common.header(ctx, "authorization")
  if not auth then return nil end
  local token = type(auth) == "string" and auth:match("^[Bb]earer%s+(%S+)%s*$")
  if not token then return nil, { common.err(ctx, 401, "TOKEN_INVALID", "Authorization must be a Bearer token") } end
  local t = require("sandbox.bank.oauth").access_token(token)
  if not t or t.variant ~= ctx.variant then
    return nil, { common.err(ctx, 401, "TOKEN_UNKNOWN", "access token not known") }
  end
  if t.client_id ~= ctx.tpp.org_id or t.fingerprint ~= ctx.tpp.fingerprint then
    return nil, { common.err(ctx, 401, "TOKEN_INVALID", "access token is bound to another client certificate") }
  end
  if common.now() >= t.expires then
    return nil, { common.err(ctx, 401, "TOKEN_EXPIRED", "access token expired") }
  end
  return t
end

--- Checks an AIS request; returns the consent or nil and an error response.
local function guard(ctx)
  local t, terr = bearer(ctx)
  if terr then return nil, terr end
  local cid = common.header(ctx, "consent-id")
  if not cid then return nil, { common.err(ctx, 400, "FORMAT_ERROR", "Consent-ID header required") } end
  local c = consents.load(ctx, cid)
  if not c then return nil, { common.err(ctx, 400, "CONSENT_UNKNOWN", "Consent-ID not known for this TPP") } end
  if c.status == "expired" then
    return nil, { common.err(ctx, 401, "CONSENT_EXPIRED", "consent expired") }
  end
  if c.status ~= "valid" then
    return nil, { common.err(ctx, 401, "CONSENT_INVALID", "consent is " .. c.status) }
  end
  if t and t.scope ~= "AIS:" .. c.id then
    return nil, { common.err(ctx, 401, "TOKEN_INVALID", "access token was not issued for this consent") }
  end
  if not t and c.approach == "oauth" and not c.basket then
    return nil, { common.err(ctx, 401, "TOKEN_UNKNOWN", "Authorization: Bearer <token> required for this consent") }
  end
  -- frequencyPerDay, for reads without the PSU (no PSU-IP-Address). The
  -- setting `frequency_rule`: "resource" counts per endpoint and account,
  -- and the follow-up pages of a list (page > 1) are part of the first
  -- read; "consent" counts every call against the consent.
  local rule = ctx.cfg and ctx.cfg.frequency_rule
  local page = tonumber((common.first((ctx.args or {}).page)))
  local counted = not common.header(ctx, "psu-ip-address")
    and (rule == "consent" or not (page and page > 1))
  if counted then
    local key = "freq:" .. c.id .. ":" .. common.today() .. (rule == "consent" and "" or ":" .. ctx.path)
    local used = common.incr(key, 1)
    if used > (c.frequencyPerDay or 1) then
      local s, b, h = common.err(ctx, 429, "ACCESS_EXCEEDED",
        "frequencyPerDay (" .. tostring(c.frequencyPerDay) .. ") of this consent is used up for today")
      h = h or {}
      h["Retry-After"] = tostring(seconds_to_midnight())
      return nil, { s, b, h }
    end
  end
  if c.lastActionDate ~= common.today() then
    common.update("consent:" .. c.id, function(x)
      if not x then return nil end
      x.lastActionDate = common.today()
      return x
    end)
  end
  return c
end
_M.guard = guard

---------------------------------------------------------------------------
-- consent scope

-- what the consent allows on account `a`: "list", "balances", "transactions"
local function allowed(c, a, what)
  if a.owner ~= c.psu then return false end
  local acc = c.access
  if acc.allPsd2 then return true end
  if acc.availableAccountsWithBalance and (what == "list" or what == "balances") then return true end
  if acc.availableAccounts and what == "list" then return true end
  local lists = what == "list" and { "accounts", "balances", "transactions" } or { what }
  for _, k in ipairs(lists) do
    for _, ref in ipairs(acc[k] or {}) do
      if consents.ref_matches(ref, a) then return true end
    end
  end
  return false
end

local function visible(c, kind)
  local out = {}
  for _, a in ipairs(seed.accounts(c.variant)) do
    if a.kind == kind and allowed(c, a, "list") then out[#out + 1] = a end
  end
  return out
end

---------------------------------------------------------------------------
-- views

local function balances(a)
  local out = util.array({
    { balanceType = "interimAvailable", balanceAmount = common.money(ledger.available(a), a.currency),
      creditLimitIncluded = false, referenceDate = common.today() },
    { balanceType = "interimBooked", balanceAmount = common.money(a.balance, a.currency),
      referenceDate = common.today() },
  })
  return out
end

local function prefix(a) return a.kind == "card" and "/v1/card-accounts/" or "/v1/accounts/" end

local function account_view(ctx, c, a, with_balance)
  local links = {}
  local p = prefix(a) .. a.id
  if allowed(c, a, "balances") then links.balances = common.link(ctx, p .. "/balances") end
  if allowed(c, a, "transactions") then links.transactions = common.link(ctx, p .. "/transactions") end
  local v = {
    resourceId = a.id, currency = a.currency, name = a.name, product = a.product,
    status = "enabled", usage = "PRIV", _links = links,
  }
  if a.kind == "card" then
    v.maskedPan = a.maskedPan
    v.creditLimit = common.money(a.credit_limit or 0, a.currency)
    v.debitAccounting = true
  else
    v.iban = a.iban
    v.bic = a.bic
    v.cashAccountType = a.cashAccountType
  end
  if with_balance and allowed(c, a, "balances") then v.balances = balances(a) end
  return v
end

local function ref_of(a)
  if a.kind == "card" then return { maskedPan = a.maskedPan, currency = a.currency } end
  return { iban = a.iban, currency = a.currency }
end

local function with_balance_arg(ctx)
  local v = ctx.args and ctx.args.withBalance
  if type(v) == "table" then v = v[1] end
  if v == nil or v == "false" then return false end
  if v == "true" or v == true then return true end
  return nil
end

---------------------------------------------------------------------------
-- handlers

local function find_account(ctx, c, kind)
  for _, a in ipairs(seed.accounts(ctx.variant)) do
    if a.id == ctx.params[1] and a.kind == kind then
      if not allowed(c, a, "list") then
        return nil, { common.err(ctx, 401, "CONSENT_INVALID", "the consent does not cover this account") }
      end
      return a
    end
  end
  return nil, { common.err(ctx, 404, "RESOURCE_UNKNOWN", "account not found") }
end

local function card_check(ctx)
  if ctx.variant ~= "berlin" then
    return { common.err(ctx, 405, "SERVICE_INVALID", "card accounts are not offered on this API") }
  end
end

-- What the account list and details share: the card check, withBalance and
-- the consent guard. Returns consent, withBalance or nil, { error answer }.
local function open_view(ctx, kind)
  if kind == "card" then
    local e = card_check(ctx)
    if e then return nil, nil, e end
  end
  local wb = with_balance_arg(ctx)
  if wb == nil then return nil, nil, { common.err(ctx, 400, "FORMAT_ERROR", "withBalance must be true or false") } end
  local c, e = guard(ctx)
  if not c then return nil, nil, e end
  return c, wb
end

local function list(kind)
  return function(ctx)
    local c, wb, e = open_view(ctx, kind)
    if not c then return common.unpack(e) end
    local out = util.array()
    for _, a in ipairs(visible(c, kind)) do out[#out + 1] = account_view(ctx, c, a, wb) end
    if kind == "card" then return 200, { cardAccounts = out } end
    return 200, { accounts = out }
  end
end

local function details(kind)
  return function(ctx)
    local c, wb, e = open_view(ctx, kind)
    if not c then return common.unpack(e) end
    local a, ae = find_account(ctx, c, kind)
    if not a then return common.unpack(ae) end
    local v = account_view(ctx, c, a, wb)
    if kind == "card" then return 200, { cardAccount = v } end
    return 200, { account = v }
  end
end

local function get_balances(kind)
  return function(ctx)
    if kind == "card" then
      local e = card_check(ctx)
      if e then return common.unpack(e) end
    end
    local c, e = guard(ctx)
    if not c then return common.unpack(e) end
    local a, ae = find_account(ctx, c, kind)
    if not a then return common.unpack(ae) end
    if not allowed(c, a, "balances") then
      return common.err(ctx, 401, "CONSENT_INVALID", "the consent does not cover balances of this account")
    end
    local body = { balances = balances(a) }
    body[kind == "card" and "cardAccount" or "account"] = ref_of(a)
    return 200, body
  end
end

local function arg(ctx, name)
  local v = ctx.args and ctx.args[name]
  if type(v) == "table" then v = v[1] end
  if v == true then v = "" end
  return v
end

local function page_links(ctx, path, page, last)
  local params = {}
  for k in pairs(ctx.args or {}) do
    if k ~= "page" then
      local v = arg(ctx, k)
      if v ~= nil then params[k] = v end
    end
  end
  local function at(n)
    local q = util.copy(params)
    q.page = n
    return common.link(ctx, path .. "?" .. common.query(q))
  end
  local links = { first = at(1), last = at(last) }
  if page < last then links.next = at(page + 1) end
  if page > 1 then links.previous = at(math.min(page - 1, last)) end
  return links
end

-- standing orders of this account: authorised periodic payments not yet over
local function standing_orders(ctx, a)
  local out = util.array()
  for _, key in ipairs(require("sandbox.state").keys("payment:")) do
    local p = common.get(key)
    if p and p.variant == ctx.variant and p.service == "periodic-payments" and p.status == "ACTC"
        and p.debtor_iban == a.iban and p.currency == a.currency then
      local b = p.body
      out[#out + 1] = {
        transactionId = p.id, transactionAmount = b.instructedAmount,
        creditorName = b.creditorName, creditorAccount = b.creditorAccount,
        remittanceInformationUnstructured = b.remittanceInformationUnstructured,
        additionalInformationStructured = { standingOrderDetails = {
          startDate = b.startDate, endDate = b.endDate, frequency = b.frequency,
          executionRule = b.executionRule, dayOfExecution = b.dayOfExecution,
        } },
      }
    end
  end
  return out
end

local function transactions(kind)
  return function(ctx)
    if kind == "card" then
      local e = card_check(ctx)
      if e then return common.unpack(e) end
    end
    local accept = common.header(ctx, "accept")
    if accept and not (accept:find("json", 1, true) or accept:find("*/*", 1, true)
        or accept:find("application/*", 1, true)) then
      return common.err(ctx, 406, "REQUESTED_FORMATS_INVALID", "transactions are available as application/json only")
    end
    local status = arg(ctx, "bookingStatus")
    if not status or not BOOKING[status] or (kind == "card" and (status == "information" or status == "all")) then
      return common.err(ctx, 400, "FORMAT_ERROR", "bookingStatus must be booked, pending, both, information or all")
    end
    local from, to = arg(ctx, "dateFrom"), arg(ctx, "dateTo")
    if status ~= "information" then
      if not from then return common.err(ctx, 400, "FORMAT_ERROR", "dateFrom is required") end
    end
    if from and not common.is_date(from) then
      return common.err(ctx, 400, "FORMAT_ERROR", "dateFrom must be YYYY-MM-DD")
    end
    if to and not common.is_date(to) then return common.err(ctx, 400, "FORMAT_ERROR", "dateTo must be YYYY-MM-DD") end
    to = to or common.today()
    if from and from > to then return common.err(ctx, 400, "PERIOD_INVALID", "dateFrom lies after dateTo") end
    local page = arg(ctx, "page") or "1"
    page = tostring(page):match("^%d+$") and tonumber(page)
    if not page or page < 1 then return common.err(ctx, 400, "FORMAT_ERROR", "page must be an integer >= 1") end
    local wb = with_balance_arg(ctx)
    if wb == nil then return common.err(ctx, 400, "FORMAT_ERROR", "withBalance must be true or false") end
    local c, e = guard(ctx)
    if not c then return common.unpack(e) end
    local a, ae = find_account(ctx, c, kind)
    if not a then return common.unpack(ae) end
    if not allowed(c, a, "transactions") then
      return common.err(ctx, 401, "CONSENT_INVALID", "the consent does not cover transactions of this account")
    end
    local path = prefix(a) .. a.id .. "/transactions"
    local body = {}
    body[kind == "card" and "cardAccount" or "account"] = ref_of(a)
    if wb and allowed(c, a, "balances") then body.balances = balances(a) end
    local key = kind == "card" and "cardTransactions" or "transactions"
    if status == "information" then
      body[key] = { information = standing_orders(ctx, a),
        _links = { account = common.link(ctx, prefix(a) .. a.id) } }
      return 200, body
    end
    -- one list, pending first then booked (newest first), cut into pages
    local items = {}
    if status == "pending" or status == "both" or status == "all" then
      for _, tx in ipairs(common.get("txp:" .. ctx.variant .. ":" .. a.id) or {}) do
        items[#items + 1] = { "pending", tx }
      end
    end
    if status == "booked" or status == "both" or status == "all" then
      for _, tx in ipairs(common.get("tx:" .. ctx.variant .. ":" .. a.id) or {}) do
        local d = tx.bookingDate
        if d >= from and d <= to then items[#items + 1] = { "booked", tx } end
      end
    end
    local size = tonumber(ctx.cfg and ctx.cfg.page_size) or 50
    if size < 1 then size = 50 end
    local last = math.max(1, math.ceil(#items / size))
    local out = { _links = page_links(ctx, path, page, last) }
    out._links.account = common.link(ctx, prefix(a) .. a.id)
    if status ~= "pending" then out.booked = util.array() end
    if status ~= "booked" then out.pending = util.array() end
    if status == "all" then out.information = standing_orders(ctx, a) end
    for i = (page - 1) * size + 1, math.min(page * size, #items) do
      local which, tx = items[i][1], items[i][2]
      local id = tx.transactionId or tx.cardTransactionId
      tx._links = { transactionDetails = common.link(ctx, path .. "/" .. id) }
      out[which][#out[which] + 1] = tx
    end
    body[key] = out
    return 200, body
  end
end

local function transaction_details(ctx)
  local c, e = guard(ctx)
  if not c then return common.unpack(e) end
  local a, ae = find_account(ctx, c, "account")
  if not a then return common.unpack(ae) end
  if not allowed(c, a, "transactions") then
    return common.err(ctx, 401, "CONSENT_INVALID", "the consent does not cover transactions of this account")
  end
  local want = ctx.params[2]
  for _, key in ipairs({ "tx:", "txp:" }) do
    for _, tx in ipairs(common.get(key .. ctx.variant .. ":" .. a.id) or {}) do
      if tx.transactionId == want then
        tx.bookingStatus = key == "tx:" and "booked" or "pending"
        return 200, { transactionsDetails = tx }
      end
    end
  end
  return common.err(ctx, 404, "RESOURCE_UNKNOWN", "transaction not found")
end

---------------------------------------------------------------------------
-- PIIS

local function funds_confirmation(ctx)
  -- Paysera: "coming soon"; served only with `funds_confirmation = true`
  if not (ctx.cfg and ctx.cfg.funds_confirmation == true) then
    return common.err(ctx, 405, "SERVICE_INVALID", "funds confirmation is not offered (yet)")
  end
  local b, berr = common.body(ctx)
  if not b then return common.unpack(berr) end
  if type(b.account) ~= "table" then return common.err(ctx, 400, "FORMAT_ERROR", "account is required") end
  if type(b.instructedAmount) ~= "table" or type(b.instructedAmount.currency) ~= "string"
      or not b.instructedAmount.currency:match("^%u%u%u$") then
    return common.err(ctx, 400, "FORMAT_ERROR", "instructedAmount.currency must match [A-Z]{3}")
  end
  local amount = common.parse_amount(b.instructedAmount.amount)
  if not amount or amount <= 0 then
    return common.err(ctx, 400, "FORMAT_ERROR", "instructedAmount.amount must be a positive amount")
  end
  local target
  if b.account.iban ~= nil then
    if not common.iban_valid(b.account.iban) then
      return common.err(ctx, 400, "FORMAT_ERROR", "account.iban is not a valid IBAN")
    end
    target = ledger.find(ctx.variant, b.account.iban, b.account.currency or b.instructedAmount.currency)
  elseif type(b.account.maskedPan) == "string" or type(b.account.pan) == "string" then
    for _, a in ipairs(seed.accounts(ctx.variant)) do
      if a.kind == "card" and consents.ref_matches(b.account, a) then target = a end
    end
  else
    return common.err(ctx, 400, "FORMAT_ERROR", "account needs an iban or maskedPan")
  end
  if not target then
    return common.err(ctx, 400, "RESOURCE_UNKNOWN", "account is not held at this ASPSP")
  end
  local avail = ledger.available(target)
  if target.kind == "card" then avail = avail + (target.credit_limit or 0) end
  return 200, { fundsAvailable = avail >= amount }
end

local ID = "([^/]+)"

_M.routes = {
  { method = "GET", pattern = "^/v1/accounts$", handler = list("account"), auth = "mtls", service = "AIS" },
  { method = "GET", pattern = "^/v1/accounts/" .. ID .. "$", handler = details("account"),
    auth = "mtls", service = "AIS" },
  { method = "GET", pattern = "^/v1/accounts/" .. ID .. "/balances$", handler = get_balances("account"),
    auth = "mtls", service = "AIS" },
  { method = "GET", pattern = "^/v1/accounts/" .. ID .. "/transactions$", handler = transactions("account"),
    auth = "mtls", service = "AIS" },
  { method = "GET", pattern = "^/v1/accounts/" .. ID .. "/transactions/" .. ID .. "$", handler = transaction_details,
    auth = "mtls", service = "AIS" },
  { method = "GET", pattern = "^/v1/card%-accounts$", handler = list("card"), auth = "mtls", service = "AIS" },
  { method = "GET", pattern = "^/v1/card%-accounts/" .. ID .. "$", handler = details("card"),
    auth = "mtls", service = "AIS" },
  { method = "GET", pattern = "^/v1/card%-accounts/" .. ID .. "/balances$", handler = get_balances("card"),
    auth = "mtls", service = "AIS" },
  { method = "GET", pattern = "^/v1/card%-accounts/" .. ID .. "/transactions$", handler = transactions("card"),
    auth = "mtls", service = "AIS" },
  { method = "POST", pattern = "^/v1/funds%-confirmations$", handler = funds_confirmation,
    auth = "mtls", service = "PIIS" },
}

return _M
