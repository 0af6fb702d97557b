-- The client under the readings of Paysera's pages that the matrix
-- (spec/readings) does not cover (issue 13, docs/paysera.md): Georgian
-- response signatures, the token-refusal rule, the PSU's picks on the bank's
-- page, SCA approaches, bookingStatus=all, RON transfers and the
-- scatransactionStatus spelling. A private sandbox. #network
local sandbox = require "support.sandbox"
local support = require "support.client"
local errors = require "xs2a.errors"
local retry = require "xs2a.pipeline.retry"

local PSU = { psu_ip = "198.51.100.7" }
local CCY = { berlin = "EUR", georgia = "GEL" }
local PRODUCT = { berlin = "sepa-credit-transfers", georgia = "domestic" }

local function consent_body(access)
  return { access = access or { allPsd2 = "allAccounts" }, recurringIndicator = true,
    validUntil = os.date("!%Y-%m-%d", os.time() + 30 * 86400), frequencyPerDay = 4, combinedServiceIndicator = false }
end

describe("readings of Paysera's pages #network", function()
  local sb, accounts

  local function client(variant, over)
    local o = { limits = false, store = require("xs2a.store").memory() }
    for k, v in pairs(over or {}) do o[k] = v end
    return support.new_client(variant, o, sb)
  end

  setup(function()
    sb = sandbox.start{ config = { rate = { per_second = 1000, per_hour = 100000, concurrent = 50 } } }
    local _, dump = sb:control("GET", "/accounts")
    accounts = {}
    for _, a in ipairs(dump.accounts) do accounts[a.resourceId] = a end
  end)
  teardown(function() sb:stop() end)
  after_each(function() sb:control("POST", "/reset", { keep_config = false }) end)

  describe("Georgian response signatures (reading 1)", function()
    it("verifies a present signature, takes an unsigned answer and logs it once per client", function()
      local c, events = client("georgia", { capture_log = true })
      assert.equal("if_present", c.profile.verify_responses)
      assert(c:create_consent(consent_body(), PSU))
      local function unsigned() local n = 0
        for _, e in ipairs(events) do if e.event == "response_unsigned" then n = n + 1 end end
        return n
      end
      assert.equal(0, unsigned())
      sb:config{ variants = { georgia = { signing = { sign_responses = false } } } }
      assert(c:create_consent(consent_body(), PSU))
      assert(c:create_consent(consent_body(), PSU))
      assert.equal(1, unsigned())
      -- "required" refuses the unsigned answer; "off" takes it silently
      local strict = client("georgia", { profile_overrides = { verify_responses = "required" } })
      local none, err = strict:create_consent(consent_body(), PSU)
      assert.is_nil(none)
      assert.equal("RESPONSE_SIGNATURE_INVALID", err.code)
      local off = client("georgia", { profile_overrides = { verify_responses = "off" } })
      assert(off:create_consent(consent_body(), PSU))
    end)

    it("always refuses a present signature that does not verify", function()
      -- the bank signs with its seal; the client trusts another certificate
      local c = client("georgia", { response_cert = sb.pki .. "/qseal.pem" })
      local none, err = c:create_consent(consent_body(), PSU)
      assert.is_nil(none)
      assert.equal("RESPONSE_SIGNATURE_INVALID", err.code)
    end)
  end)

  it("refreshes on 401 or 403 only when the code names the token, never for CONSENT_EXPIRED (reading 3)", function()
    local ex = { token_key = "consent:x", refreshed = false, attempt = 1, max_attempts = 3, idempotent = true }
    local policy = retry.DEFAULTS
    local function http(status, code)
      return errors.new("http", { status = status, code = code, messages = { { code = code } } })
    end
    for _, status in ipairs({ 401, 403 }) do
      for _, code in ipairs({ "TOKEN_EXPIRED", "TOKEN_INVALID", "TOKEN_UNKNOWN" }) do
        assert.equal("refresh", (retry.decide(policy, ex, "map_error", http(status, code))), status .. " " .. code)
      end
      assert.is_not.equal("refresh", (retry.decide(policy, ex, "map_error", http(status, "CONSENT_EXPIRED"))))
    end
    assert.is_not.equal("refresh", (retry.decide(policy, ex, "map_error", http(403, "CONSENT_UNKNOWN"))))
    assert.is_not.equal("refresh", (retry.decide(policy, ex, "map_error", http(403, "ROLE_INVALID"))))
    ex.refreshed = true
    assert.is_not.equal("refresh", (retry.decide(policy, ex, "map_error", http(403, "TOKEN_EXPIRED"))))
  end)

  describe("the PSU picks on the bank's page (reading 7)", function()
    it("the accounts of a bank-offered consent", function()
      for _, variant in ipairs({ "berlin", "georgia" }) do
        local c = client(variant)
        local k = assert(c:create_consent(consent_body({ accounts = {}, balances = {}, transactions = {} }), PSU))
        local p = variant == "berlin" and "b" or "g"
        assert(support.authorise(k, { choose = { p .. "-alice-usd" } }))
        local list = assert(k:accounts(PSU))
        assert.equal(1, #list)
        assert.equal(p .. "-alice-usd", list[1].resourceId)
        local data = assert(k:get())
        assert.equal(accounts[p .. "-alice-usd"].iban, data.access.accounts[1].iban)
        assert.equal("USD", data.access.accounts[1].currency)
      end
    end)

    it("the debtor account of a payment without debtorAccount", function()
      for _, variant in ipairs({ "berlin", "georgia" }) do
        local c = client(variant)
        local p = variant == "berlin" and "b" or "g"
        local low = accounts[p .. "-alice-low"]
        local pay = assert(c:initiate_payment(PRODUCT[variant], {
          instructedAmount = { currency = CCY[variant], amount = "0.75" }, creditorName = "Bob Example",
          creditorAccount = { iban = accounts[p .. "-bob-" .. CCY[variant]:lower()].iban },
        }, PSU))
        assert(support.authorise(pay, { choose = { low.resourceId } }))
        assert.equal("ACSC", (assert(pay:status())))
        assert.equal(low.iban, assert(pay:get()).debtorAccount.iban)
      end
    end)
  end)

  describe("SCA approaches (reading 8)", function()
    it("the sandbox keeps to OAuth whatever the TPP prefers", function()
      local c = client("berlin", { profile_overrides = support.ANY_APPROACH })
      local k = assert(c:create_consent(consent_body(), { psu_ip = PSU.psu_ip, redirect_preferred = false }))
      assert.equal("redirect", k.approach)
      assert.is_table(k.links.scaOAuth)
    end)

    it("the client refuses an approach its profile does not list, naming the setting", function()
      sb:config{ sca = { approach = "embedded" } }
      local k = assert(client("berlin"):create_consent(consent_body(), PSU))
      local flow = assert(k:authorise())
      local step, err = flow:next()
      assert.is_nil(step)
      assert.equal("config", err.kind)
      assert.equal("APPROACH_UNSUPPORTED", err.code)
      assert.matches("sca.approaches", tostring(err), 1, true)
      -- listed: the flow goes on
      local ok = assert(client("berlin", { profile_overrides = support.ANY_APPROACH }):create_consent(consent_body(),
        PSU))
      assert.equal("credentials", assert(assert(ok:authorise()):next()).kind)
    end)
  end)

  it("reads scatransactionStatus as scaStatus and polls links relative to the variant root (readings 10g, 4)",
      function()
    sb:config{ sca = { approach = "decoupled", status_field = "scatransactionStatus" },
      variants = { georgia = { link_form = "variant" } } }
    local c = client("georgia", { profile_overrides = support.ANY_APPROACH })
    local k = assert(c:create_consent(consent_body(), PSU))
    local flow = assert(k:authorise{ poll = false, poll_interval = 0.1, timeout = 5 })
    assert.equal("credentials", assert(flow:next()).kind)
    local step = assert(flow:next{ psu_id = "alice" })
    assert.equal("wait", step.kind)
    assert.equal(200, (sb:control("POST", "/decoupled/" .. step.authorisation_id, { decision = "approve" })))
    local done
    for _ = 1, 20 do
      done = assert(flow:next())
      if done.kind == "done" then break end
    end
    assert.equal("done", done.kind)
    assert.equal("valid", done.status)
  end)

  it("keeps a refresh token no longer than its consent (reading 6)", function()
    local tokens = require "xs2a.sca.tokens"
    local store = require("xs2a.store").memory()
    local ttls = {}
    local spy = setmetatable({ set = function(_, k, v, ttl) ttls[k] = ttl return store.set(store, k, v, ttl) end },
      { __index = function(_, k)
        local f = store[k]
        if type(f) == "function" then return function(_, ...) return f(store, ...) end end
        return f
      end })
    local c = client("berlin", { store = spy })
    local until_ = os.date("!%Y-%m-%d", os.time() + 3 * 86400)
    local body = consent_body()
    body.validUntil = until_
    local k = assert(c:create_consent(body, PSU))
    assert(support.authorise(k))
    local ttl = ttls[tokens.store_key(k.token_key)]
    assert.is_number(ttl)
    -- the end of the validUntil day, a minute of skew
    assert.is_true(ttl > 2 * 86400 and ttl <= 4 * 86400 + 60, tostring(ttl))
  end)

  it("lists bookingStatus=all and pays a domestic RON transfer on Berlin (reading 10)", function()
    local c = client("berlin")
    local k = assert(c:create_consent(consent_body(), PSU))
    assert(support.authorise(k))
    local seen = {}
    for tx, err in k:transactions("b-alice-eur", { bookingStatus = "all", dateFrom = "2026-01-01" }, PSU) do
      assert.is_not_false(tx, tostring(err))
      seen[tx._status] = true
    end
    assert.is_true(seen.booked and seen.pending)
    local ron = accounts["b-alice-ron"]
    assert.equal("RON", ron.currency)
    local pay = assert(c:initiate_payment("ron-credit-transfers", {
      debtorAccount = { iban = ron.iban, currency = "RON" }, creditorName = "Ion Popescu",
      creditorAccount = { iban = "RO49AAAA1B31007593840000" },
      instructedAmount = { currency = "RON", amount = "12.00" },
    }, PSU))
    assert(support.authorise(pay))
    assert.equal("ACSC", (assert(pay:status())))
  end)
end)
