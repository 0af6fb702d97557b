-- Shared helpers of the SCA flow and OAuth specs (spec/client/flow_*_spec.lua,
-- spec/client/oauth_*_spec.lua): a client for a variant, the PSU's browser,
-- sandbox configuration with restore, and test data.
local helper = require "helper"
local sandbox = require "support.sandbox"
local xs2a = require "xs2a"

local M = {}

M.REDIRECT_URI = "https://tpp.example/callback"
M.PSU_IP = "198.51.100.7"

function M.sandbox()
  return sandbox.shared()
end

-- one store for every client of these specs unless a spec brings its own:
-- the limiter keeps its counters there, so clients made one after another
-- stay under the bank's rate limit together, as one TPP's workers would
M.store = xs2a.store.memory()

--- A client for "berlin" or "georgia" talking to the shared sandbox.
function M.client(variant, overrides)
  variant = variant or "berlin"
  if not (overrides and overrides.store) then
    local o = { store = M.store }
    for k, v in pairs(overrides or {}) do o[k] = v end
    overrides = o
  end
  local ok, sc = pcall(require, "support.client")
  if ok and type(sc) == "table" and type(sc.new_client) == "function" then
    local o = { redirect_uri = M.REDIRECT_URI }
    for k, v in pairs(overrides or {}) do o[k] = v end
    return sc.new_client(variant, o)
  end
  local sb = sandbox.shared()
  local pki = sb.pki or helper.pki_dir
  local opts = {
    profile = "paysera-" .. variant,
    base_url = sb.base_url,
    qwac = { cert = pki .. "/qwac.pem", key = pki .. "/qwac.key" },
    qseal = { cert = pki .. "/qseal.pem", key = pki .. "/qseal.key" },
    redirect_uri = M.REDIRECT_URI,
    ca_file = pki .. "/ca.pem",
    response_cert = pki .. "/aspsp-seal.pem",
  }
  for k, v in pairs(overrides or {}) do opts[k] = v end
  return assert(xs2a.client(opts))
end

local browser
--- Plays the PSU in a browser from `url`; returns the callback URL.
-- @param psu `{ username, password, decision = "approve"|"deny" }`
function M.authorize(url, psu)
  local ok, p = pcall(require, "support.psu")
  if ok and type(p) == "table" and type(p.authorize) == "function" then
    return p.authorize(url, { username = psu.username, password = psu.password, decision = psu.decision or "approve",
      redirect_uri = M.REDIRECT_URI })
  end
  if not browser then
    package.path = helper.root .. "/examples/?.lua;" .. package.path
    browser = assert(require("psu_browser").new{ ca_file = (sandbox.shared().pki or helper.pki_dir) .. "/ca.pem" })
  end
  return browser:authorize(url, { username = psu.username, password = psu.password,
    decision = psu.decision or "approve", redirect_uri = M.REDIRECT_URI })
end

M.ALICE = { username = "alice", password = "alice-pass" }
M.BOB = { username = "bob", password = "bob-pass" }

--- Merges `tbl` into the sandbox configuration (undo with `M.restore()`).
function M.configure(tbl)
  local sb = sandbox.shared()
  return sb:config(tbl)
end

--- Back to the default configuration and fresh seeded data.
function M.restore()
  sandbox.shared():reset()
end

function M.consent_body()
  return {
    access = { allPsd2 = "allAccounts" },
    recurringIndicator = true,
    validUntil = os.date("!%Y-%m-%d", os.time() + 30 * 86400),
    frequencyPerDay = 4,
    combinedServiceIndicator = false,
  }
end

--- The sandbox's accounts (control API), keyed by resourceId.
function M.bank_accounts()
  local status, body = sandbox.shared():control("GET", "/accounts")
  assert(status == 200, "GET /_sandbox/accounts: " .. tostring(status))
  local out = {}
  for _, a in ipairs(body.accounts) do out[a.resourceId] = a end
  return out, body
end

--- A payment body from alice's main account to bob, for a variant.
function M.payment(variant, amount)
  local accounts = M.bank_accounts()
  local p = variant == "georgia" and "g" or "b"
  local ccy = variant == "georgia" and "GEL" or "EUR"
  local debtor = accounts[p .. "-alice-" .. ccy:lower()]
  local creditor = accounts[p .. "-bob-" .. ccy:lower()]
  return variant == "georgia" and "domestic" or "sepa-credit-transfers", {
    instructedAmount = { currency = ccy, amount = amount or "1.00" },
    debtorAccount = { iban = debtor.iban, currency = ccy },
    creditorName = "Bob",
    creditorAccount = { iban = creditor.iban },
    remittanceInformationUnstructured = "flow spec",
  }, debtor, creditor
end

--- Counts lines of the sandbox access log matching a Lua pattern since `mark`.
function M.log_mark()
  local lines = sandbox.shared():access_log()
  return #lines
end

local function count(mark, pattern)
  local lines = sandbox.shared():access_log()
  local n = 0
  for i = mark + 1, #lines do
    if lines[i]:find(pattern) then n = n + 1 end
  end
  return n
end

--- Lines matching `pattern` logged since `mark`. nginx writes a line just
-- after it sent the response, so this waits (up to 2 s) until at least
-- `want` lines are there, then returns how many there are.
function M.log_count(mark, pattern, want)
  want = want or 1
  local deadline = os.time() + 2
  local n = count(mark, pattern)
  while n < want and os.time() <= deadline do
    require("xs2a.parallel").sleep(0.05)
    n = count(mark, pattern)
  end
  return n
end

return M
