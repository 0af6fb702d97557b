-- The bank's signing baskets (config `signing_baskets`): off, 405 as at
-- Paysera; on, create / read / status / delete and one SCA (OAuth, embedded)
-- that authorises every payment (executed through the ledger) and consent
-- of the basket; reference checks and the delete rule.
local H = dofile("spec/sandbox/bank_helper.lua")
local psu = H.psu

describe("sandbox bank #network signing baskets", function()
  local sb, berlin
  setup(H.setup_bank(function(s, b) sb, berlin = s, b end))
  after_each(function() H.restore(sb) end)

  local function on(extra)
    local cfg = { signing_baskets = true }
    for k, v in pairs(extra or {}) do cfg[k] = v end
    H.configure(sb, cfg)
  end

  local function url(link)
    return link.href:sub(1, 1) == "/" and sb.base_url .. link.href or link.href
  end

  local function pay(amount, over)
    local res = berlin:call("POST", "/v1/payments/sepa-credit-transfers",
      { body = berlin:payment_body(amount, nil, over) })
    assert.equal(201, res.status, res.body)
    return res.json.paymentId
  end

  local function payment_status(id)
    return berlin:call("GET", "/v1/payments/sepa-credit-transfers/" .. id .. "/status").json.transactionStatus
  end

  local function consent()
    local res = berlin:create_consent()
    assert.equal(201, res.status, res.body)
    return res.json.consentId
  end

  local function basket(body, headers, opts)
    opts = opts or {}
    return berlin:call("POST", "/v1/signing-baskets", { body = body, headers = headers, psu_ip = opts.psu_ip })
  end

  local function basket_status(id)
    return berlin:call("GET", "/v1/signing-baskets/" .. id .. "/status").json.transactionStatus
  end

  it("answers 405 SERVICE_INVALID on every method while switched off (the default)", function()
    H.restore(sb)
    local res = basket({ paymentIds = { pay("1.00") } })
    assert.equal(405, res.status)
    assert.equal("SERVICE_INVALID", res.json.code)
    assert.equal(405, berlin:call("GET", "/v1/signing-baskets/abc/status").status)
    assert.equal(405, berlin:call("DELETE", "/v1/signing-baskets/abc").status)
    assert.equal(405, H.tpp(sb, "georgia"):call("PUT", "/v1/signing-baskets/a/authorisations/b").status)
  end)

  it("checks the references: shape, owner, status, other baskets, PSU-IP-Address", function()
    on()
    local function bad(body, status, code, opts)
      local res = basket(body, nil, opts)
      assert.equal(status, res.status, res.body)
      assert.equal(code, res.json.code)
      return res
    end
    local p1 = pay("1.00")
    bad({}, 400, "FORMAT_ERROR")
    bad({ paymentIds = "x" }, 400, "FORMAT_ERROR")
    bad({ paymentIds = { p1 } }, 400, "FORMAT_ERROR", { psu_ip = false })
    bad({ paymentIds = { "no-such-payment" } }, 400, "REFERENCE_MIX_INVALID")
    bad({ consentIds = { p1 } }, 400, "REFERENCE_MIX_INVALID")        -- a payment id is no consent
    bad({ paymentIds = { p1, p1 } }, 400, "REFERENCE_MIX_INVALID")
    -- a payment that is no longer RCVD
    local done = pay("1.00")
    H.tpp(sb, "berlin"):oauth("PIS:" .. done)
    assert.equal("ACSC", payment_status(done))
    bad({ paymentIds = { p1, done } }, 409, "REFERENCE_STATUS_INVALID")
    -- nothing was claimed by the refused request: p1 still goes into a basket
    local first = basket({ paymentIds = { p1 } })
    assert.equal(201, first.status, first.body)
    local again = bad({ paymentIds = { p1 } }, 409, "REFERENCE_STATUS_INVALID")
    assert.matches(first.json.basketId, again.json.detail, 1, true)
    -- a QWAC without PSP_PI may not read baskets (service PIS)
    local other = berlin:call("GET", "/v1/signing-baskets/" .. first.json.basketId, { cert = "qwac-ai" })
    assert.equal(401, other.status)   -- PSP_AI only: no PIS role
  end)

  it("authorises two payments and a consent with one OAuth SCA (scope PIS:<basketId>)", function()
    on()
    local alice0, bob0 = berlin:main(), berlin:owner("bob")
    local p1, p2, c1 = pay("2.00"), pay("3.50"), consent()
    local res = basket({ paymentIds = { p1, p2 }, consentIds = { c1 } })
    assert.equal(201, res.status, res.body)
    assert.equal("RCVD", res.json.transactionStatus)
    assert.equal("REDIRECT", res.headers["aspsp-sca-approach"])
    local id = res.json.basketId
    assert.truthy(res.json._links.scaOAuth)
    assert.truthy(res.json._links.self and res.json._links.status)
    assert.matches("/xs2a/berlin/1.3/v1/signing-baskets/" .. id, res.headers["location"], 1, true)
    local got = berlin:call("GET", "/v1/signing-baskets/" .. id).json
    assert.same({ p1, p2 }, got.payments)
    assert.same({ c1 }, got.consents)
    assert.equal("RCVD", got.transactionStatus)
    -- the items wait for the basket: neither their own SCA nor their deletion
    assert.equal(409, berlin:call("POST", "/v1/payments/sepa-credit-transfers/" .. p1 .. "/authorisations",
      { body = {} }).status)
    local del = berlin:call("DELETE", "/v1/payments/sepa-credit-transfers/" .. p1)
    assert.equal(409, del.status)
    assert.equal("STATUS_INVALID", del.json.code)
    assert.equal(409, berlin:call("DELETE", "/v1/consents/" .. c1).status)
    -- the authorize page describes the basket's contents
    local auth_url = berlin:authorization_url("PIS:" .. id)
    local page = psu.fetch("GET", auth_url)
    assert.equal(200, page.status)
    local html = psu.unescape_html(page.html)
    assert.matches("Confirm signing basket", html, 1, true)
    assert.matches("Signing basket of 2 payments and 1 consent", html, 1, true)
    assert.matches("2.00 EUR to Bob Example", html, 1, true)
    assert.matches("3.50 EUR to Bob Example", html, 1, true)
    assert.matches("Account access until", html, 1, true)
    local tok = berlin:oauth("PIS:" .. id)
    assert.equal("PIS:" .. id, tok.scope)
    assert.is_nil(tok.refresh_token)
    assert.equal("ACSC", basket_status(id))
    assert.equal("ACSC", payment_status(p1))
    assert.equal("ACSC", payment_status(p2))
    assert.equal("valid", berlin:call("GET", "/v1/consents/" .. c1 .. "/status").json.consentStatus)
    -- the ledger moved both payments
    local cents = function(s) local i, f = s:match("^(%d+)%.(%d%d)") return tonumber(i) * 100 + tonumber(f) end
    assert.equal(cents(alice0.balance) - 550, cents(berlin:main().balance))
    assert.equal(cents(bob0.balance) + 550, cents(berlin:owner("bob").balance))
    -- the consent reads accounts (no AIS token: it was authorised through the basket)
    local acc = berlin:ais("/v1/accounts", c1)
    assert.equal(200, acc.status, acc.body)
    assert.truthy(#acc.json.accounts > 0)
    -- authorised baskets are not deleted
    local d = berlin:call("DELETE", "/v1/signing-baskets/" .. id)
    assert.equal(409, d.status)
    assert.equal("STATUS_INVALID", d.json.code)
  end)

  it("authorises a basket with the embedded approach through its authorisation sub-resources", function()
    on({ sca = { approach = "embedded", multilevel = 1, decoupled_delay = 0, auth_timeout = 900 } })
    local low = berlin:account("low-balance")
    local p1 = pay("1.00")
    local p2 = pay("9.00", { debtorAccount = { iban = low.iban } })   -- more than the low account holds
    local res = basket({ paymentIds = { p1, p2 } })
    assert.equal(201, res.status, res.body)
    assert.equal("EMBEDDED", res.headers["aspsp-sca-approach"])
    local id = res.json.basketId
    local start = res.json._links.startAuthorisationWithPsuAuthentication
    assert.truthy(start)
    local a = berlin:call("POST", nil, { url = url(start), body = {} })
    assert.equal(201, a.status, a.body)
    assert.equal("received", a.json.scaStatus)
    local list = berlin:call("GET", "/v1/signing-baskets/" .. id .. "/authorisations").json
    assert.same({ a.json.authorisationId }, list.authorisationIds)
    local bob = berlin:call("PUT", nil, { url = url(a.json._links.updatePsuAuthentication),
      body = { psuData = { password = "bob-pass" } }, headers = { ["PSU-ID"] = "bob" } })
    assert.equal(409, bob.status)                      -- bob holds neither debtor account
    local auth = berlin:call("PUT", nil, { url = url(a.json._links.updatePsuAuthentication),
      body = { psuData = { password = "alice-pass" } }, headers = { ["PSU-ID"] = "alice" } })
    assert.equal("psuAuthenticated", auth.json.scaStatus, auth.body)
    local chosen = berlin:call("PUT", nil, { url = url(auth.json._links.selectAuthenticationMethod),
      body = { authenticationMethodId = "sms" } })
    assert.equal("scaMethodSelected", chosen.json.scaStatus)
    local done = berlin:call("PUT", nil, { url = url(chosen.json._links.authoriseTransaction),
      body = { scaAuthenticationData = "123456" } })
    assert.equal("finalised", done.json.scaStatus, done.body)
    local sca = berlin:call("GET", "/v1/signing-baskets/" .. id .. "/authorisations/" .. a.json.authorisationId)
    assert.equal("finalised", sca.json.scaStatus)
    assert.equal("ACSC", payment_status(p1))
    assert.equal("RJCT", payment_status(p2))             -- insufficient funds
    assert.equal("ACTC", basket_status(id))              -- not every payment settled
  end)

  it("deletes a basket that waits for its SCA and lets go of its items", function()
    on()
    local p1, c1 = pay("1.00"), consent()
    local res = basket({ paymentIds = { p1 }, consentIds = { c1 } })
    local id = res.json.basketId
    assert.equal(204, berlin:call("DELETE", "/v1/signing-baskets/" .. id).status)
    assert.equal("CANC", basket_status(id))
    assert.equal(409, berlin:call("DELETE", "/v1/signing-baskets/" .. id).status)
    -- the authorize page no longer has anything to do for the basket
    local page = psu.fetch("GET", (berlin:authorization_url("PIS:" .. id)))
    assert.equal(302, page.status)
    assert.matches("error=invalid_request", page.location, 1, true)
    -- the items are free again
    local again = basket({ paymentIds = { p1 }, consentIds = { c1 } })
    assert.equal(201, again.status, again.body)
  end)

  it("rejects the basket when the PSU denies, and frees its payments", function()
    on()
    local p1 = pay("1.00")
    local id = basket({ paymentIds = { p1 } }).json.basketId
    local auth_url, _, state = berlin:authorization_url("PIS:" .. id)
    local location = psu.authorize(auth_url, { username = "alice", password = "alice-pass", decision = "deny" })
    assert.matches("error=access_denied", location, 1, true)
    assert.matches(state, location, 1, true)
    assert.equal("RJCT", basket_status(id))
    assert.equal("RCVD", payment_status(p1))
    assert.equal(201, basket({ paymentIds = { p1 } }).status)
  end)
end)
