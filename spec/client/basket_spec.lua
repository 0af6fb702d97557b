-- Signing baskets end to end: the generic berlin-group profile against the
-- sandbox with `signing_baskets = true`; two payments and a consent in one
-- basket, one SCA (OAuth, then embedded), every payment settled in the
-- ledger and the consent valid; a payment already in another basket, the
-- delete rule; Paysera profiles refuse baskets.
local sandbox = require "support.sandbox"
local support = require "support.client"
local xs2a = require "xs2a"

local PSU = { psu_ip = "198.51.100.7" }
local ROOT = "/xs2a/berlin/1.3"

-- the generic Berlin Group profile pointed at the sandbox's Berlin root; the
-- sandbox's Berlin variant wants PIS requests signed (Berlin Group HTTP signature)
local function bg_client()
  return support.new_client("berlin-group", {
    profile_overrides = { root = ROOT, signing = { scheme = "berlin", services = { "PIS" } } },
  })
end

local function accounts()
  local status, body = sandbox.shared():control("GET", "/accounts")
  assert(status == 200)
  local out = {}
  for _, a in ipairs(body.accounts) do out[a.resourceId] = a end
  return out
end

local function cents(s)
  local i, f = s:match("^(%d+)%.(%d%d)")
  return tonumber(i) * 100 + tonumber(f)
end

local function payment_body(amount)
  local a = accounts()
  return {
    debtorAccount = { iban = a["b-alice-eur"].iban, currency = "EUR" },
    instructedAmount = { currency = "EUR", amount = amount },
    creditorAccount = { iban = a["b-bob-eur"].iban }, creditorName = "Bob",
    remittanceInformationUnstructured = "basket spec",
  }
end

local consent_body = support.consent_body

describe("signing baskets #network (berlin-group profile)", function()
  local sb, saved

  setup(function()
    sb = sandbox.shared()
    saved = sb:config({})
  end)

  before_each(function()
    sb:config{ signing_baskets = true,
      sca = { approach = "oauth", multilevel = 1, decoupled_delay = 0, auth_timeout = 900 } }
  end)

  after_each(function()
    sb:config{ signing_baskets = saved.signing_baskets == true, sca = saved.sca }
  end)

  -- two payments and a consent of one client, and their basket
  local function fill(c, a1, a2)
    local p1 = assert(c:initiate_payment("sepa-credit-transfers", payment_body(a1), PSU))
    local p2 = assert(c:initiate_payment("sepa-credit-transfers", payment_body(a2), PSU))
    local con = assert(c:create_consent(consent_body(), PSU))
    local basket, err = c:create_signing_basket({ paymentIds = { p1.id, p2.id }, consentIds = { con.id } }, PSU)
    assert(basket, tostring(err))
    return basket, p1, p2, con
  end

  it("authorises two payments and a consent with one OAuth SCA, the flow saved and resumed", function()
    local c = bg_client()
    local before = accounts()
    local basket, p1, p2, con = fill(c, "2.00", "1.25")
    assert.equal("RCVD", basket.last_status)
    assert.equal("redirect", basket.approach)
    assert.matches("xs2a.Basket (RCVD)", tostring(basket), 1, true)
    local body = assert(basket:get())
    assert.same({ p1.id, p2.id }, body.payments)
    assert.same({ con.id }, body.consents)

    local flow = assert(basket:authorise())
    local step = assert(flow:next())
    assert.equal("redirect", step.kind)
    assert.equal("oauth", step.approach)
    assert.matches("scope=PIS%%3A" .. basket.id:gsub("%-", "%%-"), step.url)
    local saved_flow = xs2a.json.decode(xs2a.json.encode(flow:save()))
    assert.equal("basket", saved_flow.resource.kind)
    local callback = assert(require("support.psu").authorize(step.url, { username = "alice",
      password = "alice-pass", decision = "approve" }))
    local flow2 = assert(xs2a.resume(bg_client(), saved_flow))
    step = assert(flow2:next{ callback = callback })
    assert.equal("done", step.kind)
    assert.equal("ACSC", step.status)

    assert.equal("ACSC", (assert(basket:status())))
    assert.equal("ACSC", (assert(p1:status())))
    assert.equal("ACSC", (assert(p2:status())))
    assert.equal("valid", (assert(con:status())))
    local after = accounts()
    assert.equal(cents(before["b-alice-eur"].balance) - 325, cents(after["b-alice-eur"].balance))
    assert.equal(cents(before["b-bob-eur"].balance) + 325, cents(after["b-bob-eur"].balance))
    local list = assert(con:accounts(PSU))
    assert.truthy(#list > 0)

    -- an authorised basket is not deleted
    local ok, derr = basket:delete()
    assert.is_nil(ok)
    assert.equal("http", derr.kind)
    assert.equal(409, derr.status)
    assert.equal("STATUS_INVALID", derr.code)
  end)

  it("authorises a basket with the embedded approach (credentials, method, OTP)", function()
    sb:config{ sca = { approach = "embedded" } }
    local c = bg_client()
    local before = accounts()
    local basket, p1, p2, con = fill(c, "0.50", "0.75")
    assert.equal("embedded", basket.approach)
    local flow = assert(basket:authorise())
    local step = assert(flow:next())
    assert.equal("credentials", step.kind)
    local bad, berr = flow:next{ psu_id = "alice", password = "wrong" }
    assert.is_nil(bad)
    assert.equal("PSU_CREDENTIALS_INVALID", berr.code)
    step = assert(flow:next{ psu_id = "alice", password = "alice-pass" })
    assert.equal("choose_method", step.kind)
    step = assert(flow:next{ method = "sms" })
    assert.equal("otp", step.kind)
    step = assert(flow:next{ otp = "123456" })
    assert.equal("done", step.kind)
    assert.equal("ACSC", step.status)
    assert.equal("ACSC", (assert(p1:status())))
    assert.equal("ACSC", (assert(p2:status())))
    assert.equal("valid", (assert(con:status())))
    local after = accounts()
    assert.equal(cents(before["b-alice-eur"].balance) - 125, cents(after["b-alice-eur"].balance))
  end)

  it("refuses a payment already in another basket, and deletes a basket that waits", function()
    local c = bg_client()
    local basket, p1 = fill(c, "1.00", "1.00")
    local other, err = c:create_signing_basket({ paymentIds = { p1.id } }, PSU)
    assert.is_nil(other)
    assert.equal("http", err.kind)
    assert.equal(409, err.status)
    assert.equal("REFERENCE_STATUS_INVALID", err.code)
    local unknown
    unknown, err = c:create_signing_basket({ paymentIds = { "no-such-payment" } }, PSU)
    assert.is_nil(unknown)
    assert.equal(400, err.status)
    assert.equal("REFERENCE_MIX_INVALID", err.code)
    local _, perr = c:create_signing_basket({ paymentIds = { p1.id } }, {})
    assert.equal("PSU_IP_REQUIRED", perr.code)
    -- a basket known by id only; deleting it frees the payment
    local again = assert(c:signing_basket(basket.id))
    assert.is_true(assert(again:delete()))
    assert.equal("CANC", (assert(again:status())))
    local third = assert(c:create_signing_basket({ paymentIds = { p1.id } }, PSU))
    assert.equal("RCVD", third.last_status)
  end)

  it("is refused clearly by the Paysera profiles", function()
    for _, variant in ipairs({ "berlin", "georgia" }) do
      local c = support.new_client(variant)
      local b, err = c:create_signing_basket({ paymentIds = { "x" } }, PSU)
      assert.is_nil(b)
      assert.equal("config", err.kind)
      assert.equal("SERVICE_UNSUPPORTED", err.code)
      assert.matches("no signing baskets", err.text, 1, true)
      local k, kerr = c:signing_basket("x")
      assert.is_nil(k)
      assert.equal("SERVICE_UNSUPPORTED", kerr.code)
    end
  end)
end)
