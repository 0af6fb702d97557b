-- The bank's SCA approaches besides OAuth: redirect with confirmation code,
-- decoupled (control endpoint, automatic approval, timeout), embedded
-- (password, method selection, OTP), multilevel with two PSUs, and the
-- TPP-Redirect-Preferred choice.
local H = dofile("spec/sandbox/bank_helper.lua")
local psu = H.psu

describe("sandbox bank #network SCA approaches", function()
  local sb, berlin, georgia
  setup(H.setup_bank(function(s, b, g) sb, berlin, georgia = s, b, g end))
  after_each(function() H.restore(sb) end)

  local function sca(extra)
    local s = { approach = "oauth", multilevel = 1, decoupled_delay = 0, auth_timeout = 900,
      consent_auth_timeout = 86400, honour_preferred = false }
    for k, v in pairs(extra) do s[k] = v end
    H.configure(sb, { sca = s })
  end

  local function href(_, link)
    if link.href:sub(1, 1) == "/" then return sb.base_url .. link.href end
    return link.href
  end

  local function put(tpp, link, body, headers)
    return tpp:call("PUT", nil, { url = href(tpp, link), body = body, headers = headers })
  end

  local function consent_status(tpp, id)
    return tpp:call("GET", "/v1/consents/" .. id .. "/status").json.consentStatus
  end

  describe("redirect", function()
    it("runs the page, echoes state, and finalises with the confirmation code", function()
      sca({ approach = "redirect" })
      local missing = berlin:create_consent()
      assert.equal(400, missing.status)
      local res = berlin:create_consent(nil, { ["TPP-Redirect-URI"] = "https://tpp.example/back?x=1" })
      assert.equal(201, res.status)
      assert.equal("REDIRECT", res.headers["aspsp-sca-approach"])
      local links = res.json._links
      assert.matches("^https://127%.0%.0%.1:%d+/xs2a/berlin/1%.3/sca/", links.scaRedirect.href)
      assert.truthy(links.confirmation)
      local location = psu.authorize(links.scaRedirect.href .. "?state=st-42",
        { username = "alice", password = "alice-pass" })
      assert.equal("https://tpp.example/back", location:match("^[^?]+"))
      local q = psu.query(location)
      assert.equal("1", q.x)
      assert.equal("st-42", q.state)
      assert.truthy(q.confirmationCode)
      assert.equal("unconfirmed", berlin:call("GET", nil, { url = href(berlin, links.scaStatus) }).json.scaStatus)
      -- the page is single-use
      assert.equal(409, psu.fetch("GET", links.scaRedirect.href).status)

      local wrong = put(berlin, links.confirmation, { confirmationCode = "nope" })
      assert.equal(400, wrong.status)
      assert.equal("SCA_INVALID", wrong.json.code)
      local ok = put(berlin, links.confirmation, { confirmationCode = q.confirmationCode })
      assert.equal(200, ok.status)
      assert.equal("finalised", ok.json.scaStatus)
      local id = res.json.consentId
      assert.equal("valid", consent_status(berlin, id))
      -- a consent authorised without OAuth needs no bearer token
      assert.equal(200, berlin:ais("/v1/accounts", id, nil).status)
    end)

    it("sends a denial to TPP-Nok-Redirect-URI and rejects the payment", function()
      sca({ approach = "redirect" })
      local res = berlin:call("POST", "/v1/payments/sepa-credit-transfers", { body = berlin:payment_body("1.00"),
        headers = { ["TPP-Redirect-URI"] = "https://tpp.example/ok",
          ["TPP-Nok-Redirect-URI"] = "https://tpp.example/nok" } })
      assert.equal(201, res.status)
      local location = psu.authorize(res.json._links.scaRedirect.href .. "?state=s1",
        { username = "alice", password = "alice-pass", decision = "deny" })
      assert.equal("https://tpp.example/nok", location:match("^[^?]+"))
      assert.equal("access_denied", psu.query(location).error)
      assert.equal("s1", psu.query(location).state)
      local path = "/v1/payments/sepa-credit-transfers/" .. res.json.paymentId
      assert.equal("RJCT", berlin:call("GET", path .. "/status").json.transactionStatus)
      assert.equal("failed", berlin:call("GET", nil, { url = href(berlin, res.json._links.scaStatus) }).json.scaStatus)
    end)
  end)

  describe("decoupled", function()
    it("waits for the PSU's app: approval and denial through the control endpoint", function()
      sca({ approach = "decoupled" })
      local res = georgia:create_consent(nil, { ["PSU-ID"] = "alice" })
      assert.equal(201, res.status)
      assert.equal("DECOUPLED", res.headers["aspsp-sca-approach"])
      assert.truthy(res.json.psuMessage)
      local st = georgia:call("GET", nil, { url = href(georgia, res.json._links.scaStatus) })
      assert.equal("started", st.json.scaStatus)
      local auth_id = res.json._links.scaStatus.href:match("([^/]+)$")
      local status, body = sb:control("POST", "/decoupled/" .. auth_id, { decision = "approve" })
      assert.equal(200, status)
      assert.equal("finalised", body.scaStatus)
      assert.equal("valid", consent_status(georgia, res.json.consentId))
      assert.equal(409, (sb:control("POST", "/decoupled/" .. auth_id, { decision = "deny" })))
      assert.equal(404, (sb:control("POST", "/decoupled/no-such-auth", { decision = "deny" })))

      local pay = georgia:call("POST", "/v1/payments/domestic", { body = georgia:payment_body("1.00"),
        headers = { ["PSU-ID"] = "alice" } })
      local pid = pay.json._links.scaStatus.href:match("([^/]+)$")
      assert.equal(200, (sb:control("POST", "/decoupled/" .. pid, { decision = "deny" })))
      assert.equal("RJCT", georgia:call("GET", "/v1/payments/domestic/" .. pay.json.paymentId .. "/status")
        .json.transactionStatus)
    end)

    it("needs a PSU-ID, approves after decoupled_delay and fails after auth_timeout", function()
      sca({ approach = "decoupled", decoupled_delay = 1 })
      local res = berlin:create_consent()
      assert.truthy(res.json._links.startAuthorisationWithPsuIdentification)
      assert.is_nil(res.json._links.scaStatus)
      local start = href(berlin, res.json._links.startAuthorisationWithPsuIdentification)
      assert.equal(400, berlin:call("POST", nil, { url = start, body = {} }).status)
      local unknown = berlin:call("POST", nil, { url = start, body = {}, headers = { ["PSU-ID"] = "mallory" } })
      assert.equal(401, unknown.status)
      assert.equal("PSU_CREDENTIALS_INVALID", unknown.json.code)
      local a = berlin:call("POST", nil, { url = start, body = {}, headers = { ["PSU-ID"] = "alice" } })
      assert.equal(201, a.status)
      assert.equal("started", a.json.scaStatus)

      sca({ approach = "decoupled", auth_timeout = 1, consent_auth_timeout = 1 })
      local late = berlin:create_consent(nil, { ["PSU-ID"] = "alice" })
      os.execute("sleep 1.2")
      assert.equal("valid", consent_status(berlin, res.json.consentId))
      assert.equal("rejected", consent_status(berlin, late.json.consentId))
    end)
  end)

  describe("embedded", function()
    it("authenticates with password, method selection and OTP", function()
      sca({ approach = "embedded" })
      local res = berlin:create_consent()
      assert.equal(201, res.status)
      assert.equal("EMBEDDED", res.headers["aspsp-sca-approach"])
      local start = res.json._links.startAuthorisationWithPsuAuthentication
      assert.truthy(start)
      local a = berlin:call("POST", nil, { url = href(berlin, start), body = {} })
      assert.equal(201, a.status)
      assert.equal("received", a.json.scaStatus)
      local link = a.json._links.updatePsuAuthentication
      local bad = put(berlin, link, { psuData = { password = "nope" } }, { ["PSU-ID"] = "alice" })
      assert.equal(401, bad.status)
      assert.equal("PSU_CREDENTIALS_INVALID", bad.json.code)
      assert.not_matches("nope", bad.body)
      local auth = put(berlin, link, { psuData = { password = "alice-pass" } }, { ["PSU-ID"] = "alice" })
      assert.equal(200, auth.status)
      assert.equal("psuAuthenticated", auth.json.scaStatus)
      assert.equal(2, #auth.json.scaMethods)
      assert.equal("SMS_OTP", auth.json.scaMethods[1].authenticationType)
      local sel = auth.json._links.selectAuthenticationMethod
      assert.equal("SCA_METHOD_UNKNOWN", put(berlin, sel, { authenticationMethodId = "fax" }).json.code)
      local chosen = put(berlin, sel, { authenticationMethodId = "sms" })
      assert.equal("scaMethodSelected", chosen.json.scaStatus)
      assert.equal("sms", chosen.json.chosenScaMethod.authenticationMethodId)
      assert.equal(6, chosen.json.challengeData.otpMaxLength)
      assert.equal("integer", chosen.json.challengeData.otpFormat)
      local otp = chosen.json._links.authoriseTransaction
      local wrong = put(berlin, otp, { scaAuthenticationData = "000000" })
      assert.equal(400, wrong.status)
      assert.equal("SCA_INVALID", wrong.json.code)
      local done = put(berlin, otp, { scaAuthenticationData = "123456" })
      assert.equal(200, done.status)
      assert.equal("finalised", done.json.scaStatus)
      assert.equal("valid", consent_status(berlin, res.json.consentId))
      assert.equal(409, put(berlin, otp, { scaAuthenticationData = "123456" }).status)
    end)

    it("fails the authorisation after three wrong one-time passwords", function()
      sca({ approach = "embedded" })
      local pay = georgia:call("POST", "/v1/payments/domestic", { body = georgia:payment_body("1.00") })
      local start = pay.json._links.startAuthorisationWithPsuAuthentication
      local a = georgia:call("POST", nil, { url = href(georgia, start),
        body = { psuData = { password = "alice-pass" } }, headers = { ["PSU-ID"] = "alice" } })
      assert.equal(201, a.status)
      assert.equal("psuAuthenticated", a.json.scaStatus)
      local chosen = put(georgia, a.json._links.selectAuthenticationMethod, { authenticationMethodId = "app" })
      local otp = chosen.json._links.authoriseTransaction
      for _ = 1, 3 do assert.equal(400, put(georgia, otp, { scaAuthenticationData = "111111" }).status) end
      assert.equal("failed", georgia:call("GET", nil, { url = href(georgia, otp) }).json.scaStatus)
      assert.equal("RJCT", georgia:call("GET", "/v1/payments/domestic/" .. pay.json.paymentId .. "/status")
        .json.transactionStatus)
    end)

    it("authorises a future-dated payment and its cancellation (cancellation-authorisations)", function()
      sca({ approach = "embedded" })
      local date = os.date("!%Y-%m-%d", os.time() + 10 * 86400)
      local pay = berlin:call("POST", "/v1/payments/target-2-payments",
        { body = berlin:payment_body("3.00", nil, { requestedExecutionDate = date }) })
      assert.equal(201, pay.status)
      local path = "/v1/payments/target-2-payments/" .. pay.json.paymentId
      local function embedded(start_link)
        local a = berlin:call("POST", nil, { url = href(berlin, start_link),
          body = { psuData = { password = "alice-pass" } }, headers = { ["PSU-ID"] = "alice" } })
        assert.equal(201, a.status)
        local chosen = put(berlin, a.json._links.selectAuthenticationMethod, { authenticationMethodId = "sms" })
        return put(berlin, chosen.json._links.authoriseTransaction, { scaAuthenticationData = "123456" }), a
      end
      local alice0 = berlin:main()
      local done = embedded(pay.json._links.startAuthorisationWithPsuAuthentication)
      assert.equal("finalised", done.json.scaStatus)
      assert.equal("ACTC", berlin:call("GET", path .. "/status").json.transactionStatus)
      assert.equal(alice0.balance, berlin:main().balance)        -- waits for its date
      local unknown = put(berlin, { href = berlin.path_root .. path .. "/authorisations/nope" },
        { scaAuthenticationData = "123456" })
      assert.equal(403, unknown.status)
      assert.equal("RESOURCE_UNKNOWN", unknown.json.code)

      local del = berlin:call("DELETE", path)
      assert.equal(202, del.status)
      local cancel, started = embedded(del.json._links.startAuthorisationWithPsuAuthentication)
      assert.equal("finalised", cancel.json.scaStatus)
      assert.truthy(started.json._links.scaStatus.href:find("/cancellation-authorisations/", 1, true))
      assert.equal("CANC", berlin:call("GET", path .. "/status").json.transactionStatus)
      assert.equal("CANC", berlin:call("GET", path).json.transactionStatus)
    end)
  end)

  describe("multilevel", function()
    it("executes a payment only after two different PSUs authorised it (OAuth)", function()
      sca({ multilevel = 2 })
      local bob0 = berlin:owner("bob")
      local res = berlin:call("POST", "/v1/payments/sepa-credit-transfers", { body = berlin:payment_body("2.00") })
      assert.equal(201, res.status)
      assert.is_nil(res.json._links.scaOAuth)
      local start = href(berlin, res.json._links.startAuthorisation)
      local path = "/v1/payments/sepa-credit-transfers/" .. res.json.paymentId
      local a1 = berlin:call("POST", nil, { url = start, body = {} })
      assert.equal(201, a1.status)
      assert.truthy(a1.json._links.scaOAuth)
      berlin:oauth("PIS:" .. res.json.paymentId, "alice")
      assert.equal("PATC", berlin:call("GET", path .. "/status").json.transactionStatus)
      -- the same PSU cannot give the second signature
      berlin:call("POST", nil, { url = start, body = {} })
      local url = berlin:authorization_url("PIS:" .. res.json.paymentId)
      local location, page = psu.authorize(url, { username = "alice", password = "alice-pass" })
      assert.is_nil(location)
      assert.matches("already authorised", page.error)
      berlin:oauth("PIS:" .. res.json.paymentId, "bob")
      assert.equal("ACSC", berlin:call("GET", path .. "/status").json.transactionStatus)
      assert.equal(2, #berlin:call("GET", path .. "/authorisations").json.authorisationIds)
      assert.are_not.equal(bob0.balance, berlin:owner("bob").balance)
    end)

    it("makes a consent valid after the second PSU (decoupled)", function()
      sca({ approach = "decoupled", multilevel = 2 })
      local res = georgia:create_consent()
      local start = href(georgia, res.json._links.startAuthorisationWithPsuIdentification)
      local a1 = georgia:call("POST", nil, { url = start, body = {}, headers = { ["PSU-ID"] = "alice" } })
      sb:control("POST", "/decoupled/" .. a1.json.authorisationId, { decision = "approve" })
      assert.equal("partiallyAuthorised", consent_status(georgia, res.json.consentId))
      local again = georgia:call("POST", nil, { url = start, body = {}, headers = { ["PSU-ID"] = "alice" } })
      assert.equal(409, again.status)
      local a2 = georgia:call("POST", nil, { url = start, body = {}, headers = { ["PSU-ID"] = "bob" } })
      sb:control("POST", "/decoupled/" .. a2.json.authorisationId, { decision = "approve" })
      assert.equal("valid", consent_status(georgia, res.json.consentId))
    end)
  end)

  describe("TPP-Redirect-Preferred", function()
    it("is not honoured by default (Paysera: OAuth only)", function()
      local e = berlin:create_consent(nil, { ["TPP-Redirect-Preferred"] = "false" })
      assert.equal("REDIRECT", e.headers["aspsp-sca-approach"])
      assert.truthy(e.json._links.scaOAuth)
    end)

    it("selects embedded or decoupled when the TPP prefers no redirect (honour_preferred)", function()
      sca({ honour_preferred = true })
      local e = berlin:create_consent(nil, { ["TPP-Redirect-Preferred"] = "false" })
      assert.equal("EMBEDDED", e.headers["aspsp-sca-approach"])
      local d = berlin:create_consent(nil, { ["TPP-Redirect-Preferred"] = "false", ["PSU-ID"] = "alice" })
      assert.equal("DECOUPLED", d.headers["aspsp-sca-approach"])
      local o = berlin:create_consent(nil, { ["TPP-Redirect-Preferred"] = "true" })
      assert.equal("REDIRECT", o.headers["aspsp-sca-approach"])
      assert.truthy(o.json._links.scaOAuth)
      assert.equal(400, berlin:create_consent(nil, { ["TPP-Redirect-Preferred"] = "maybe" }).status)
      -- explicit start requested: no implicit authorisation
      local x = berlin:create_consent(nil, { ["TPP-Explicit-Authorisation-Preferred"] = "true" })
      assert.truthy(x.json._links.startAuthorisation)
      assert.is_nil(x.json._links.scaOAuth)
      local ids = berlin:call("GET", "/v1/consents/" .. x.json.consentId .. "/authorisations")
      assert.equal('{"authorisationIds":[]}', ids.body)
    end)
  end)
end)
