-- The bank's clock, seen through the client: consent expiry and scheduled
-- payments. The sandbox's
-- business clock is moved ahead (configuration `clock_offset`) instead of
-- the spec waiting an hour or a day; the client keeps real time, so it
-- learns of every expiry from the bank's answers, as it would in production.
local fs = require "client.flow_support"
local support = require "support.client"

local DAY = 86400

local function authorised_consent(client, body)
  local consent = assert(client:create_consent(body, { psu_ip = fs.PSU_IP }))
  local done = assert(support.authorise(consent))
  assert.equal("valid", done.status)
  return consent
end

local function count(events, event, result)
  local n = 0
  for _, e in ipairs(events) do
    if e.event == event and (result == nil or e.fields.result == result) then n = n + 1 end
  end
  return n
end

-- The answer to a read after the consent expired: the bank's 401 for the
-- expired token, caused by the refused refresh; the token record is gone,
-- so the next call does not try the dead refresh token again.
local function assert_reauthorise(err, client, consent)
  assert.equal(401, err.status)
  assert.equal("TOKEN_EXPIRED", err.code)
  assert.is_false(err.retryable)
  assert.is_table(err.cause)
  assert.equal("invalid_grant", err.cause.code)
  assert.matches("no longer valid", tostring(err))
  assert.is_nil(require("xs2a.sca.oauth").read_record(client, consent.token_key))
end

-- PSU present on every read, so frequencyPerDay stays out of the picture
local PRESENT = { psu_ip = fs.PSU_IP }

describe("consent expiry at the bank #network", function()
  setup(function() fs.sandbox() end)
  after_each(function() fs.restore() end)

  for _, variant in ipairs({ "berlin", "georgia" }) do
    describe(variant, function()
      it("a one-off consent reads within the hour after SCA and is expired after it", function()
        local client, events = fs.client(variant, { capture_log = true })
        local body = fs.consent_body()
        body.recurringIndicator, body.frequencyPerDay = false, 1
        local consent = authorised_consent(client, body)
        assert.is_true(#assert(consent:accounts(PRESENT)) > 0)

        fs.configure{ clock_offset = 3540 }  -- 59 minutes later: still valid
        assert.is_true(#assert(consent:accounts(PRESENT)) > 0)
        assert.equal("valid", (consent:current_status()))

        fs.configure{ clock_offset = 3660 }  -- 61 minutes later
        -- the access token (an hour) ran out with the consent: the client
        -- tries one refresh, the bank refuses it for the expired consent, and
        -- the caller gets the bank's 401 with the refusal as its cause
        local list, err = consent:accounts(PRESENT)
        assert.is_nil(list)
        assert_reauthorise(err, client, consent)
        assert.equal(1, count(events, "oauth.refresh", "failed"))
        assert.equal(0, count(events, "oauth.refresh", "ok"))
        assert.equal("expired", (consent:current_status()))
      end)

      it("a recurring consent reads through its validUntil day and is expired the day after", function()
        local client = fs.client(variant)
        local body = fs.consent_body()
        body.validUntil = os.date("!%Y-%m-%d", os.time() + DAY)
        local consent = authorised_consent(client, body)

        fs.configure{ clock_offset = DAY }   -- the validUntil day itself
        local accounts = assert(consent:accounts(PRESENT))
        assert.is_true(#accounts > 0)
        assert(consent:balances(accounts[1].resourceId, PRESENT))

        fs.configure{ clock_offset = 2 * DAY }
        local b, err = consent:balances(accounts[1].resourceId, PRESENT)
        assert.is_nil(b)
        assert_reauthorise(err, client, consent)
        assert.equal("expired", (consent:current_status()))
        -- an expired consent cannot be authorised again: the bank's page
        -- refuses it and the flow does not end in "valid"
        local done, aerr = support.authorise(consent)
        assert.is_nil(done)
        assert.equal("sca", aerr.kind)
        assert.equal("SCA_FAILED", aerr.code)
      end)
    end)
  end
end)

-- days from today (UTC) to the next Tuesday at least `min_days` ahead: a
-- weekly order starting then never meets a weekend shift
local function days_to_tuesday(min_days)
  for d = min_days, min_days + 7 do
    if os.date("!%w", os.time() + d * DAY) == "2" then return d end
  end
end

-- balances as "%.2f" strings, so float arithmetic cannot blur a cent
local function money(x) return ("%.2f"):format(tonumber(x)) end
local function balance(id) return money(fs.bank_accounts()[id].balance) end

local function authorised_payment(client, product, body, opts)
  local payment = assert(client:initiate_payment(product, body, opts or { psu_ip = fs.PSU_IP }))
  local done = assert(support.authorise(payment))
  assert.equal("ACTC", done.status)
  return payment
end

describe("scheduled payments at the bank #network", function()
  setup(function() fs.sandbox() end)
  after_each(function() fs.restore() end)

  for _, variant in ipairs({ "berlin", "georgia" }) do
    it(variant .. ": a future-dated payment waits for its day, then executes once", function()
      local client = fs.client(variant)
      local product, body, debtor, creditor = fs.payment(variant, "4.25")
      body.requestedExecutionDate = os.date("!%Y-%m-%d", os.time() + 2 * DAY)
      local payment = authorised_payment(client, product, body)
      assert.equal(money(debtor.balance), balance(debtor.resourceId))

      fs.configure{ clock_offset = DAY }
      assert.equal("ACTC", (payment:status()))
      assert.equal(money(debtor.balance), balance(debtor.resourceId))

      fs.configure{ clock_offset = 2 * DAY }
      assert.equal("ACSC", (payment:status()))
      assert.equal(money(tonumber(debtor.balance) - 4.25), balance(debtor.resourceId))
      assert.equal(money(tonumber(creditor.balance) + 4.25), balance(creditor.resourceId))
      -- reading again does not run it again
      assert.equal("ACSC", (payment:status()))
      assert.equal("ACSC", assert(payment:get()).transactionStatus)
      assert.equal(money(tonumber(debtor.balance) - 4.25), balance(debtor.resourceId))
    end)

    it(variant .. ": a weekly standing order executes on each date the bank's clock passes", function()
      local client = fs.client(variant)
      local product, body, debtor, creditor = fs.payment(variant, "1.10")
      local start = days_to_tuesday(1)
      body.startDate = os.date("!%Y-%m-%d", os.time() + start * DAY)
      body.frequency = "Weekly"
      body.endDate = os.date("!%Y-%m-%d", os.time() + (start + 60) * DAY)
      local payment = authorised_payment(client, product, body, { psu_ip = fs.PSU_IP, service = "periodic-payments" })
      local b = assert(payment:get())
      assert.equal(0, #b.executions)
      assert.equal(body.startDate, b.schedule[1])

      fs.configure{ clock_offset = (start + 7) * DAY }   -- the second date
      b = assert(payment:get())
      assert.equal(2, #b.executions)
      assert.equal(body.startDate, b.executions[1].executionDate)
      for _, e in ipairs(b.executions) do assert.equal("ACSC", e.transactionStatus) end
      assert.equal(os.date("!%Y-%m-%d", os.time() + (start + 14) * DAY), b.schedule[1])
      assert(payment:get())
      assert.equal(money(tonumber(debtor.balance) - 2.2), balance(debtor.resourceId))
      assert.equal(money(tonumber(creditor.balance) + 2.2), balance(creditor.resourceId))
    end)
  end
end)

