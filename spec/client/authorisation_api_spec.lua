-- The public authorisation API (xs2a.api.authorisation) against the
-- sandbox: start, list, SCA status and the four forms of "update PSU data"
-- (identification, authentication, method selection, transaction
-- authorisation) on consents, payments, payment cancellations and signing
-- baskets; the Georgia page's PUT /v1/consents/{id}/authorisations/{authId}
-- on Georgia; typed errors.
local sandbox = require "support.sandbox"
local support = require "support.client"

local PSU = { psu_ip = "198.51.100.7" }

describe("authorisation API #network", function()
  local sb, accounts

  setup(function()
    sb = sandbox.shared()
    local _, body = sb:control("GET", "/accounts")
    accounts = {}
    for _, a in ipairs(body.accounts) do accounts[a.resourceId] = a end
  end)
  before_each(function() sb:config{ sca = { approach = "embedded" }, signing_baskets = true } end)
  after_each(function() sb:reset() end)

  local function single(variant, amount)
    local p, ccy = variant == "georgia" and "g" or "b", variant == "georgia" and "GEL" or "EUR"
    return {
      instructedAmount = { currency = ccy, amount = amount or "0.10" },
      debtorAccount = { iban = accounts[p .. "-alice-" .. ccy:lower()].iban, currency = ccy },
      creditorAccount = { iban = accounts[p .. "-bob-" .. ccy:lower()].iban }, creditorName = "Bob",
    }
  end

  -- start, then the four update forms; asserts each typed result
  local function walk(resource, final_check)
    local auth, first = resource:start_authorisation(PSU)
    assert.is_table(auth, tostring(first))
    assert.equal("received", first.sca_status)
    assert.equal("authenticate", first.next)
    assert.equal(auth.id, first.authorisation_id)
    local ids = assert(resource:authorisations())
    assert.equal(auth.id, ids[#ids])
    assert.equal("received", (assert(auth:status())))

    local r = assert(auth:identify{ psu_id = "alice", psu_ip = PSU.psu_ip })
    assert.equal("psuIdentified", r.sca_status)
    -- a wrong password is a typed error, the authorisation stays open
    local bad, err = auth:authenticate("wrong", { psu_id = "alice" })
    assert.is_nil(bad)
    assert.equal("http", err.kind)
    assert.equal(401, err.status)
    assert.equal("PSU_CREDENTIALS_INVALID", err.code)
    assert.not_matches("wrong", tostring(err))
    r = assert(auth:authenticate("alice-pass", { psu_id = "alice" }))
    assert.equal("psuAuthenticated", r.sca_status)
    assert.equal("select_method", r.next)
    assert.is_true(#r.sca_methods >= 2)
    r = assert(auth:select_method("sms"))
    assert.equal("scaMethodSelected", r.sca_status)
    assert.equal("authorise_transaction", r.next)
    assert.equal("sms", r.chosen_method.authenticationMethodId)
    assert.equal(6, r.challenge.otpMaxLength)
    r = assert(auth:authorise_transaction("123456"))
    assert.equal("finalised", r.sca_status)
    assert.equal("done", r.next)
    assert.equal("finalised", (assert(auth:status())))
    -- a finished authorisation takes no more data
    local again, aerr = auth:authorise_transaction("123456")
    assert.is_nil(again)
    assert.equal(409, aerr.status)
    assert.equal("STATUS_INVALID", aerr.code)
    if final_check then final_check() end
    return auth
  end

  for _, variant in ipairs({ "berlin", "georgia" }) do
    it(variant .. ": on a consent (Georgia: the page's PUT /v1/consents/{id}/authorisations/{authId})", function()
      local c = support.new_client(variant)
      local consent = assert(c:create_consent(support.consent_body(), PSU))
      walk(consent, function() assert.equal("valid", (assert(consent:status()))) end)
    end)

    it(variant .. ": on a payment and on its cancellation", function()
      local c = support.new_client(variant)
      local body = single(variant)
      body.startDate = os.date("!%Y-%m-%d", os.time() + 86400 * 3)
      body.frequency = "Monthly"
      local p = assert(c:initiate_payment(variant == "georgia" and "domestic" or "sepa-credit-transfers", body,
        { service = "periodic-payments", psu_ip = PSU.psu_ip }))
      walk(p, function() assert.equal("ACTC", (assert(p:status()))) end)
      local r = assert(p:cancel())
      assert.is_true(r.cancellation_required)
      walk(p:cancellation(), function() assert.equal("CANC", (assert(p:status()))) end)
    end)
  end

  it("berlin: on a signing basket", function()
    local c = support.new_client("berlin-group", {
      profile_overrides = { root = "/xs2a/berlin/1.3", signing = { scheme = "berlin", services = { "PIS" } } } })
    local p = assert(c:initiate_payment("sepa-credit-transfers", single("berlin", "0.15"), PSU))
    local created = assert(c:create_signing_basket({ paymentIds = { p.id } }, PSU))
    -- client:signing_basket(id, { links, status }) rebuilds it like client:consent
    local basket = assert(c:signing_basket(created.id, { links = created.links, status = created.last_status }))
    assert.same(created.links, basket.links)
    assert.equal(created.last_status, basket.last_status)
    walk(basket, function() assert.equal("ACSC", (assert(basket:status()))) end)
  end)

  it("typed errors: an unknown authorisation, a wrong OTP, a form the approach does not take", function()
    local c = support.new_client("berlin")
    local consent = assert(c:create_consent(support.consent_body(), PSU))
    local none, nerr = consent:authorisation("00000000-0000-4000-8000-000000000000"):status()
    assert.is_nil(none)
    assert.equal("http", nerr.kind)
    assert.equal(403, nerr.status)
    assert.equal("RESOURCE_UNKNOWN", nerr.code)
    local auth = assert(consent:start_authorisation{ psu_ip = PSU.psu_ip, psu_id = "alice" })
    assert(auth:authenticate("alice-pass", { psu_id = "alice" }))
    assert(auth:select_method("app"))
    local bad, err = auth:authorise_transaction("000000")
    assert.is_nil(bad)
    assert.equal(400, err.status)
    assert.equal("SCA_INVALID", err.code)
    assert.is_false(err.retryable)
    assert.not_matches("000000", tostring(err))
    local conf, cerr = auth:confirm("abc")
    assert.is_nil(conf)
    assert.equal(400, cerr.status)
    assert.equal("SERVICE_INVALID", cerr.code)
    -- arguments are checked before anything is sent
    local arg, aerr = auth:select_method(nil)
    assert.is_nil(arg)
    assert.equal("config", aerr.kind)
    -- an id that is not a path segment of its own is never sent
    for _, bad_id in ipairs({ "..", ".", "" }) do
      local a, ierr = consent:authorisation(bad_id)
      assert.is_nil(a)
      assert.equal("config", ierr.kind)
    end
  end)
end)
