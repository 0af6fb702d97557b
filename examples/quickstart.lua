--- lua-xs2a quickstart: the whole TPP journey against the local sandbox bank,
-- for both Paysera variants (Berlin Group 1.3 and Georgia 0.8).
--
--   1. create an AIS consent and have the PSU authorise it on the bank's
--      OAuth page (this script plays the PSU's browser);
--   2. list accounts and balances, and read a transaction history that spans
--      several pages;
--   3. initiate a payment, have the PSU authorise it, poll it to a final
--      status, and show the ledger change.
--
-- Run it with `make demo`, or by hand against a running sandbox:
--
--   XS2A_SANDBOX_URL=https://127.0.0.1:8443 XS2A_PKI=build/pki \
--   LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/lua5.4/?.so;;" \
--   lua5.4 examples/quickstart.lua
do
  -- find psu_browser.lua next to this script
  local dir = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
  package.path = dir .. "/?.lua;" .. package.path
end

local xs2a = require "xs2a"
local psu_browser = require "psu_browser"

local BASE_URL = os.getenv("XS2A_SANDBOX_URL") or "https://127.0.0.1:8443"
local PKI = os.getenv("XS2A_PKI") or "build/pki"
local REDIRECT_URI = "https://tpp.example/callback"
local PSU_IP = "198.51.100.7"

io.stdout:setvbuf("line")

-- the PSU is at the screen for everything below: reads carry the PSU's IP
-- address, so they do not count against the consent's frequencyPerDay
local PSU = { psu_ip = PSU_IP }

local function say(fmt, ...) io.write(string.format(fmt, ...), "\n") end
local function section(title) say("\n== %s ==", title) end

-- stops the script with a readable message (errors print as one line)
local function check(v, err, what)
  if v == nil or v == false then
    io.stderr:write("quickstart: ", what, " failed: ", tostring(err), "\n")
    os.exit(1)
  end
  return v
end

local function masked(iban)
  if type(iban) ~= "string" then return "-" end
  return iban:sub(1, 4) .. " **** " .. iban:sub(-4)
end

local function balance_line(balances)
  local parts = {}
  for _, b in ipairs(balances or {}) do
    local amt = b.balanceAmount or {}
    parts[#parts + 1] = string.format("%s %s %s", b.balanceType, amt.amount, amt.currency)
  end
  return table.concat(parts, ", ")
end

local function find_balance(balances, kind)
  for _, b in ipairs(balances or {}) do
    if b.balanceType == kind then return tonumber(b.balanceAmount.amount), b.balanceAmount.currency end
  end
  local b = balances and balances[1]
  return b and tonumber(b.balanceAmount.amount), b and b.balanceAmount.currency
end

-- the PSU's browser: no client certificate, only the CA to trust the bank
local browser = check(psu_browser.new{ ca_file = PKI .. "/ca.pem" })

-- the sandbox's control API (test data only; a real bank has none)
local function sandbox_accounts()
  local t = browser.t
  local res, err = t:request{ method = "GET", url = BASE_URL .. "/_sandbox/accounts",
    headers = { Accept = "application/json" } }
  check(res, err and err.message, "GET /_sandbox/accounts")
  return check(require("xs2a").json.decode(res.body), "bad JSON", "decode /_sandbox/accounts")
end

-- plays the PSU through one SCA redirect step and returns the flow's next step
local function authorise_in_browser(flow, username, password, what)
  local step = check(flow:next())
  check(step.kind == "redirect", "unexpected step " .. tostring(step.kind), what)
  say("  the TPP sends the PSU's browser to the bank's authorisation page:")
  say("    %s", (step.url:gsub("([?&]state=)[^&]+", "%1...")):sub(1, 110) .. "...")
  local callback = check(browser:authorize(step.url, { username = username, password = password,
    decision = "approve", redirect_uri = REDIRECT_URI }))
  say("  %s logged in and approved; the browser came back to %s", username, callback:match("^[^?]*"))
  step = check(flow:next{ callback = callback })
  check(step.kind == "done", "unexpected step " .. tostring(step.kind), what)
  say("  code exchanged for a token over mTLS; %s status: %s", what, step.status)
  return step
end

local VARIANTS = {
  { name = "Berlin Group 1.3 (EU)", profile = "paysera-berlin", variant = "berlin",
    product = "sepa-credit-transfers" },
  { name = "Georgia 0.8 (GE)", profile = "paysera-georgia", variant = "georgia", product = "domestic" },
}

-- counts the transaction pages the client fetched (from its log events)
local pages_read = 0
local function log(_, event, fields)
  if event == "response" and type(fields.path) == "string" and fields.path:find("/transactions", 1, true) then
    pages_read = pages_read + 1
  end
end

-- The TPP's certificates with their keys: from key files, or, when
-- XS2A_HSM_TOKEN is set (`make demo HSM=1`), with the keys in a PKCS#11
-- token (the PIN from XS2A_HSM_PIN, the module from XS2A_HSM_MODULE).
local identities = {}
local function tpp_identity(name)
  if identities[name] then return identities[name] end
  local token = os.getenv("XS2A_HSM_TOKEN")
  local id, err
  if token then
    id, err = xs2a.identity{ cert = PKI .. "/" .. name .. ".pem", pin_env = "XS2A_HSM_PIN",
      key = "pkcs11:token=" .. token .. ";object=" .. name .. ";type=private", module = os.getenv("XS2A_HSM_MODULE") }
  else
    id, err = xs2a.identity{ cert = PKI .. "/" .. name .. ".pem", key = PKI .. "/" .. name .. ".key" }
  end
  identities[name] = check(id, err, "loading the " .. name .. " identity")
  if token then say("%s: %s, key in token %s", name, tostring(id), id:info().token) end
  return identities[name]
end

local function run(v)
  say("\n################ %s ################", v.name)
  local client = check(xs2a.client{
    profile = v.profile,
    base_url = BASE_URL,
    qwac = tpp_identity("qwac"),
    qseal = tpp_identity("qseal"),
    redirect_uri = REDIRECT_URI,
    ca_file = PKI .. "/ca.pem",
    response_cert = PKI .. "/aspsp-seal.pem",
    log = log,
  })
  say("client ready: %s, OAuth client_id %s", tostring(client), client.client_id)

  section("1. consent")
  local consent = check(client:create_consent({
    access = { allPsd2 = "allAccounts" },
    recurringIndicator = true,
    validUntil = os.date("!%Y-%m-%d", os.time() + 90 * 86400),
    frequencyPerDay = 4,
    combinedServiceIndicator = false,
  }, { psu_ip = PSU_IP }))
  say("  consent created, status %s", tostring(consent.data and consent.data.consentStatus))
  authorise_in_browser(consent:authorise(), "alice", "alice-pass", "consent")

  section("2. accounts and balances")
  local accounts = check(consent:accounts(PSU))
  local main
  for _, a in ipairs(accounts) do
    local balances = check(consent:balances(a.resourceId, PSU))
    say("  %-28s %-16s %s  %s", a.name or a.product or "?", masked(a.iban or a.maskedPan), a.currency or "",
      balance_line(balances))
    if not main and a.currency == (v.variant == "berlin" and "EUR" or "GEL") and a.iban then
      main = a -- the first account in the local currency
    end
  end
  check(main, "no account in the local currency", "choosing an account")

  section("3. transactions across pages")
  local count, booked, pending = 0, 0, 0
  local first, last
  pages_read = 0
  for tx, err in consent:transactions(main.resourceId,
      { bookingStatus = "both", dateFrom = "2026-01-01" }, PSU) do
    check(tx, err, "transactions")
    count = count + 1
    if tx._status == "booked" then booked = booked + 1 else pending = pending + 1 end
    first = first or tx
    last = tx
  end
  local pages = pages_read
  say("  %d transactions (%d booked, %d pending) read through %d pages", count, booked, pending, pages)
  if first then
    local amt = first.transactionAmount or {}
    say("  first: %s %s %s  %s", tostring(first.bookingDate or first.valueDate), tostring(amt.amount),
      tostring(amt.currency), tostring(first.remittanceInformationUnstructured or first.creditorName or ""))
  end
  if last and last ~= first then
    local amt = last.transactionAmount or {}
    say("  last:  %s %s %s  %s", tostring(last.bookingDate or last.valueDate), tostring(amt.amount),
      tostring(amt.currency), tostring(last.remittanceInformationUnstructured or last.creditorName or ""))
  end

  section("4. payment")
  local bank = sandbox_accounts()
  local bob
  for _, a in ipairs(bank.accounts) do
    if a.variant == v.variant and a.owner == "bob" then bob = a end
  end
  check(bob, "bob's account not found", "sandbox accounts")
  local before = find_balance(check(consent:balances(main.resourceId, PSU)), "interimAvailable")
  local bob_before = tonumber(bob.balance)
  local amount = "12.34"
  local payment = check(client:initiate_payment(v.product, {
    instructedAmount = { currency = main.currency, amount = amount },
    debtorAccount = { iban = main.iban, currency = main.currency },
    creditorName = "Bob",
    creditorAccount = { iban = bob.iban },
    remittanceInformationUnstructured = "lua-xs2a quickstart",
  }, PSU))
  say("  %s %s %s to Bob (%s): payment created, status %s", v.product, amount, main.currency,
    masked(bob.iban), tostring(payment.data and payment.data.transactionStatus))
  authorise_in_browser(payment:authorise(), "alice", "alice-pass", "payment")
  local final = check(payment:status())
  say("  final transaction status: %s: %s", final, xs2a.status.payment(final))

  section("5. ledger change")
  local after, ccy = find_balance(check(consent:balances(main.resourceId, PSU)), "interimAvailable")
  local bob_after
  for _, a in ipairs(sandbox_accounts().accounts) do
    if a.variant == v.variant and a.resourceId == bob.resourceId then bob_after = tonumber(a.balance) end
  end
  say("  Alice (AIS balance):   %12.2f -> %12.2f %s  (%+.2f)", before, after, ccy, after - before)
  say("  Bob (sandbox ledger):  %12.2f -> %12.2f %s  (%+.2f)", bob_before, bob_after, ccy, bob_after - bob_before)
  check(math.abs((before - after) - tonumber(amount)) < 0.005, "Alice's balance did not drop by " .. amount,
    "ledger check")
  check(math.abs((bob_after - bob_before) - tonumber(amount)) < 0.005, "Bob's balance did not rise by " .. amount,
    "ledger check")
  say("  the ledger moved exactly %s %s from Alice to Bob", amount, ccy)
end

for _, v in ipairs(VARIANTS) do run(v) end
browser:close()
say("\nquickstart: both variants done")
