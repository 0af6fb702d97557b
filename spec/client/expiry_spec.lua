-- Consent expiry at the bank, seen through the client. The sandbox's
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
  assert.is_nil(require("xs2a.oauth").read_record(client, consent.token_key))
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
