-- Shared helpers of the SCA flow and OAuth specs (spec/client/flow_*_spec.lua,
-- spec/client/oauth_*_spec.lua): a client for a variant, the PSU's browser,
-- sandbox configuration with restore, and test data.
local sandbox = require "support.sandbox"
local sc = require "support.client"
local psu_browser = require "support.psu"

local M = {}

M.REDIRECT_URI = "https://tpp.example/callback"
M.PSU_IP = "198.51.100.7"

function M.sandbox()
  return sandbox.shared()
end

-- The same process-wide store as every other spec client (support.client):
-- the limiter keeps its counters there, so all clients of this process stay
-- under the sandbox's per-TPP rate limit together, as one TPP's workers would.
-- Two stores would be two limiters each spending the whole budget.
M.store = sc.shared_store()

--- A client for "berlin" or "georgia" talking to the shared sandbox.
function M.client(variant, overrides)
  local o = { redirect_uri = M.REDIRECT_URI, store = M.store }
  for k, v in pairs(overrides or {}) do o[k] = v end
  return sc.new_client(variant or "berlin", o)
end

--- A client whose profile lists every SCA approach (for the specs that
-- switch the sandbox to embedded, decoupled or redirect).
function M.client_any(variant, overrides)
  local o = { profile_overrides = sc.ANY_APPROACH }
  for k, v in pairs(overrides or {}) do o[k] = v end
  return M.client(variant, o)
end

--- Plays the PSU in a browser from `url`; returns the callback URL.
-- @param psu `{ username, password, decision = "approve"|"deny" }`
function M.authorize(url, psu)
  return psu_browser.authorize(url, { username = psu.username, password = psu.password,
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

M.consent_body = sc.consent_body

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
