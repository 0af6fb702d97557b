-- The generic berlin-group profile against the sandbox's Berlin root with the
-- bank answering errors in the Berlin Group `tppMessages` format: a consent
-- authorised with OAuth, accounts and balances read, and bank errors that
-- surface with their tppMessages code and text.
local sandbox = require "support.sandbox"
local support = require "support.client"
local xs2a = require "xs2a"

local PSU = { psu_ip = "198.51.100.7" }
local ROOT = "/xs2a/berlin/1.3"

describe("berlin-group profile #network (tppMessages errors)", function()
  local sb, saved, c

  setup(function()
    sb = sandbox.shared()
    saved = sb:config({})
    -- the raw request below bypasses the client's limiter: room in the bank's rate budget
    sb:config{ error_format = "tppMessages", rate = { per_second = 1000, per_hour = 100000, concurrent = 50 } }
    c = support.new_client("berlin-group", { profile_overrides = { root = ROOT } })
  end)

  teardown(function()
    sb:config{ error_format = saved.error_format, rate = saved.rate }
  end)

  it("runs a consent and account reads through the generic profile", function()
    assert.equal("berlin-group", c.profile.name)
    local consent = assert(c:create_consent({ access = { allPsd2 = "allAccounts" }, recurringIndicator = true,
      validUntil = os.date("!%Y-%m-%d", os.time() + 30 * 86400), frequencyPerDay = 4,
      combinedServiceIndicator = false }, PSU))
    assert.equal("received", consent.last_status)
    local done = assert(support.authorise(consent))
    assert.equal("valid", done.status)
    local list = assert(consent:accounts(PSU))
    assert.truthy(#list > 0)
    local main
    for _, a in ipairs(list) do if a.resourceId == "b-alice-eur" then main = a end end
    assert.truthy(main, "alice's main account is listed")
    local balances = assert(consent:balances(main.resourceId, PSU))
    assert.truthy(#balances > 0)

    -- the bank really answers in the tppMessages format now
    local raw = sb:request{ method = "GET", path = ROOT .. "/v1/consents/no-such-consent/status",
      headers = { ["X-Request-ID"] = xs2a.crypto.uuid() } }
    assert.equal(403, raw.status)
    local tm = raw.json.tppMessages[1]
    assert.equal("CONSENT_UNKNOWN", tm.code)
    local st, serr = assert(c:consent("no-such-consent")):status()
    assert.is_nil(st)
    assert.equal("http", serr.kind)
    assert.equal(403, serr.status)
    assert.equal("CONSENT_UNKNOWN", serr.code)
    assert.equal("ERROR", serr.messages[1].category)
    assert.equal(tm.code, serr.messages[1].code)
    assert.equal(tm.text, serr.messages[1].text)
    assert.matches(tm.text, serr.text, 1, true)
    assert.matches("CONSENT_UNKNOWN", tostring(serr), 1, true)

    local acc, err = consent:account("no-such-account", PSU)
    assert.is_nil(acc)
    assert.equal(404, err.status)
    assert.equal("RESOURCE_UNKNOWN", err.code)
    assert.equal("ERROR", err.messages[1].category)
    assert.equal("RESOURCE_UNKNOWN", err.messages[1].code)
    assert.truthy(#err.messages[1].text > 0)
  end)

  it("surfaces a refused request body with the bank's tppMessages text", function()
    local consent, err = c:create_consent({ access = { allPsd2 = "allAccounts" }, recurringIndicator = true,
      validUntil = "2020-01-01", frequencyPerDay = 4, combinedServiceIndicator = false }, PSU)
    assert.is_nil(consent)
    assert.equal(400, err.status)
    assert.equal("FORMAT_ERROR", err.code)
    assert.equal("FORMAT_ERROR", err.messages[1].code)
    assert.matches("validUntil", err.messages[1].text, 1, true)
    assert.truthy(xs2a.errors.is(err, "FORMAT_ERROR"))
  end)
end)
