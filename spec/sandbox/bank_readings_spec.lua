-- The bank's reading switches (docs/paysera.md): where Paysera's pages are
-- ambiguous, the sandbox plays either reading. Each switch in both positions.
local H = dofile("spec/sandbox/bank_helper.lua")

describe("sandbox bank #network readings", function()
  local sb, berlin, georgia
  setup(H.setup_bank(function(s, b, g) sb, berlin, georgia = s, b, g end))
  after_each(function()
    H.restore(sb)
    sb:config{ variants = { berlin = { link_form = "host", max_consent_days = 180 },
      georgia = { link_form = "absolute", max_consent_days = 90, signing = { sign_responses = true } } } }
  end)

  local function status_of(tpp, id)
    return tpp:call("GET", "/v1/consents/" .. id .. "/status").json.consentStatus
  end

  it("signs Georgian responses, or not (variants.georgia.signing.sign_responses)", function()
    assert.truthy(georgia:call("GET", "/v1/consents/nope").headers["x-jws-signature"])
    sb:config{ variants = { georgia = { signing = { sign_responses = false } } } }
    assert.is_nil(georgia:call("GET", "/v1/consents/nope").headers["x-jws-signature"])
  end)

  it("sends scaOAuth, or not (sca.oauth_link)", function()
    assert.truthy(berlin:create_consent().json._links.scaOAuth)
    H.configure(sb, { sca = { oauth_link = false } })
    local res = berlin:create_consent()
    assert.equal(201, res.status)
    assert.is_nil(res.json._links.scaOAuth)
    assert.truthy(res.json._links.scaStatus)
    -- the authorisation still waits for the OAuth page, found through the metadata
    local _, tok = berlin:valid_consent()
    assert.truthy(tok.access_token)
  end)

  it("serves the OAuth metadata per variant, at the host root, or both (oauth_metadata)", function()
    local function md(url) return sb:request{ url = url, cert = false } end
    local root = sb.base_url .. "/.well-known/oauth-authorization-server"
    local per = georgia.root .. "/.well-known/oauth-authorization-server"
    assert.equal(200, md(per).status)
    assert.equal(404, md(root).status)
    H.configure(sb, { oauth_metadata = "root" })
    assert.equal(404, md(per).status)
    local r = md(root)
    assert.equal(200, r.status)
    assert.equal(berlin.root .. "/oauth/token", r.json.token_endpoint)
    -- only Georgia at the root: the root serves Georgia's
    sb:config{ variants = { berlin = { oauth_metadata = "variant" } } }
    assert.equal(georgia.root .. "/oauth/token", md(root).json.token_endpoint)
    assert.equal(200, md(berlin.root .. "/.well-known/oauth-authorization-server").status)
    local null = require("support.sandbox").json.null
    sb:config{ variants = { berlin = { oauth_metadata = null } } }
    H.configure(sb, { oauth_metadata = "both" })
    assert.equal(200, md(per).status)
    assert.equal(200, md(root).status)
  end)

  it("answers token errors with 401 or 403 (token_error_status)", function()
    local id, tok = berlin:valid_consent()
    local r401 = berlin:ais("/v1/accounts", id, "not-a-token")
    assert.equal(401, r401.status)
    assert.equal("TOKEN_UNKNOWN", r401.json.code)
    H.configure(sb, { token_error_status = 403 })
    local r403 = berlin:ais("/v1/accounts", id, "not-a-token")
    assert.equal(403, r403.status)
    assert.equal("TOKEN_UNKNOWN", r403.json.code)
    -- other errors keep their status
    assert.equal(400, berlin:ais("/v1/accounts", "nope", tok.access_token).status)
  end)

  it("writes links host-absolute, as absolute URLs or relative to the variant root (link_form)", function()
    local path = "/v1/consents/"
    local function self_href(tpp) return tpp:create_consent().json._links.self.href end
    assert.equal(berlin.path_root .. path, self_href(berlin):sub(1, #berlin.path_root + #path))
    assert.equal(georgia.root .. path, self_href(georgia):sub(1, #georgia.root + #path))
    sb:config{ variants = { berlin = { link_form = "absolute" }, georgia = { link_form = "variant" } } }
    assert.equal(berlin.root .. path, self_href(berlin):sub(1, #berlin.root + #path))
    assert.equal(path, self_href(georgia):sub(1, #path))
    sb:config{ variants = { georgia = { link_form = "host" } } }
    assert.equal(georgia.path_root .. path, self_href(georgia):sub(1, #georgia.path_root + #path))
  end)

  describe("frequencyPerDay (frequency_rule)", function()
    local function read(tpp, path, id, tok)
      return tpp:ais(path, id, tok, { psu_ip = false }).status
    end

    it("counts per endpoint and account, follow-up pages free, by default", function()
      H.configure(sb, { page_size = 5 })
      local id, tok = berlin:valid_consent(H.consent_body(nil, { frequencyPerDay = 1 }))
      local tx = "/v1/accounts/" .. berlin:main(true).resourceId .. "/transactions?bookingStatus=booked"
        .. "&dateFrom=2026-01-01"
      assert.equal(200, read(berlin, tx, id, tok.access_token))
      assert.equal(200, read(berlin, tx .. "&page=2", id, tok.access_token))
      assert.equal(200, read(berlin, tx .. "&page=3", id, tok.access_token))
      assert.equal(200, read(berlin, "/v1/accounts", id, tok.access_token))
      assert.equal(429, read(berlin, "/v1/accounts", id, tok.access_token))
      assert.equal(429, read(berlin, tx, id, tok.access_token))
    end)

    it("counts every call against the consent under the strict rule", function()
      H.configure(sb, { page_size = 5, frequency_rule = "consent" })
      local id, tok = berlin:valid_consent(H.consent_body(nil, { frequencyPerDay = 2 }))
      local tx = "/v1/accounts/" .. berlin:main(true).resourceId .. "/transactions?bookingStatus=booked"
        .. "&dateFrom=2026-01-01"
      assert.equal(200, read(berlin, tx, id, tok.access_token))
      assert.equal(200, read(berlin, tx .. "&page=2", id, tok.access_token))
      local res = berlin:ais(tx .. "&page=3", id, tok.access_token, { psu_ip = false })
      assert.equal(429, res.status)
      assert.equal("ACCESS_EXCEEDED", res.json.code)
      assert.equal(429, read(berlin, "/v1/accounts", id, tok.access_token))
    end)
  end)

  it("caps validUntil at max_consent_days (180 Berlin, 90 Georgia), or refuses it", function()
    local far = H.consent_body(nil, { validUntil = "9999-12-31" })
    local b = berlin:create_consent(far)
    assert.equal(201, b.status)
    local bv = berlin:call("GET", "/v1/consents/" .. b.json.consentId).json.validUntil
    assert.equal(os.date("!%Y-%m-%d", os.time() + 180 * 86400), bv)
    local g = georgia:create_consent(far)
    assert.equal(os.date("!%Y-%m-%d", os.time() + 90 * 86400),
      georgia:call("GET", "/v1/consents/" .. g.json.consentId).json.validUntil)
    H.configure(sb, { consent_over_max = "refuse" })
    local refused = georgia:create_consent(H.consent_body(nil, {
      validUntil = os.date("!%Y-%m-%d", os.time() + 91 * 86400) }))
    assert.equal(400, refused.status)
    assert.equal("FORMAT_ERROR", refused.json.code)
    assert.equal(201, georgia:create_consent(H.consent_body(nil, {
      validUntil = os.date("!%Y-%m-%d", os.time() + 89 * 86400) })).status)
  end)

  describe("the PSU picks on the bank's page", function()
    it("the accounts of a bank-offered consent (empty accounts, balances, transactions)", function()
      local body = H.consent_body({ accounts = {}, balances = {}, transactions = {} })
      local res = berlin:create_consent(body)
      assert.equal(201, res.status)
      local id = res.json.consentId
      local usd = berlin:account("multicurrency", true)
      local url = berlin:authorization_url("AIS:" .. id)
      -- no pick: refused on the page
      local none, page = H.psu.authorize(url, { username = "alice", password = "alice-pass" })
      assert.is_nil(none)
      assert.truthy(page.error:find("choose", 1, true))
      -- another PSU's account: refused
      local bob = berlin:owner("bob", true)
      assert.is_nil((H.psu.authorize(url, { username = "alice", password = "alice-pass",
        choose = { bob.resourceId } })))
      local tok = berlin:oauth("AIS:" .. id, "alice", { choose = { usd.resourceId } })
      local c = berlin:call("GET", "/v1/consents/" .. id).json
      assert.equal("valid", c.consentStatus)
      assert.equal(1, #c.access.accounts)
      assert.equal(usd.iban, c.access.accounts[1].iban)
      assert.equal("USD", c.access.accounts[1].currency)
      local list = berlin:ais("/v1/accounts", id, tok.access_token)
      assert.equal(200, list.status)
      assert.equal(1, #list.json.accounts)
      assert.equal(usd.resourceId, list.json.accounts[1].resourceId)
    end)

    it("the debtor account of a payment without debtorAccount", function()
      for _, tpp in ipairs({ berlin, georgia }) do
        local body = tpp:payment_body("1.25")
        body.debtorAccount = nil
        local res = tpp:call("POST", "/v1/payments/" .. tpp:product(), { body = body })
        assert.equal(201, res.status)
        local id = res.json.paymentId
        local low = tpp:account("low-balance", true)
        local before = tpp:account("low-balance").available
        tpp:oauth("PIS:" .. id, "alice", { choose = { low.resourceId } })
        local p = tpp:call("GET", "/v1/payments/" .. tpp:product() .. "/" .. id).json
        assert.equal(low.iban, p.debtorAccount.iban)
        assert.equal("ACSC", p.transactionStatus)
        assert.not_equal(before, tpp:account("low-balance").available)
      end
      -- not under an approach without a page
      H.configure(sb, { sca = { approach = "embedded" } })
      local body = berlin:payment_body("1.00")
      body.debtorAccount = nil
      assert.equal(400, berlin:call("POST", "/v1/payments/sepa-credit-transfers", { body = body }).status)
    end)
  end)

  it("ends the PSU's older consent with terminatedByTpp, or keeps several (multiple_consents)", function()
    H.configure(sb, { multiple_consents = "replace" })
    local first = berlin:valid_consent()
    local second = berlin:valid_consent()
    assert.equal("terminatedByTpp", status_of(berlin, first))
    assert.equal("valid", status_of(berlin, second))
    -- another PSU's consent is left alone
    local bobs = berlin:valid_consent(nil, "bob")
    berlin:valid_consent()
    assert.equal("valid", status_of(berlin, bobs))
    H.configure(sb, { multiple_consents = "keep" })
    local a = berlin:valid_consent()
    local b = berlin:valid_consent()
    assert.equal("valid", status_of(berlin, a))
    assert.equal("valid", status_of(berlin, b))
  end)

  it("answers 415 to a body that is not JSON", function()
    local res = berlin:call("POST", "/v1/consents", { body = "access=all",
      headers = { ["Content-Type"] = "text/plain" } })
    assert.equal(415, res.status)
    assert.equal(201, berlin:call("POST", "/v1/consents", { body = H.consent_body(),
      headers = { ["Content-Type"] = "application/json; charset=utf-8" } }).status)
  end)

  it("lets a consent's SCA wait one day (sca.consent_auth_timeout) and a payment's 15 minutes", function()
    local c = berlin:create_consent().json.consentId
    local p = berlin:call("POST", "/v1/payments/sepa-credit-transfers", { body = berlin:payment_body("1.00") })
      .json.paymentId
    H.configure(sb, { clock_offset = 3600 })
    assert.equal("received", status_of(berlin, c))
    assert.equal("RJCT", berlin:call("GET", "/v1/payments/sepa-credit-transfers/" .. p .. "/status")
      .json.transactionStatus)
    H.configure(sb, { clock_offset = 86400 + 60 })
    assert.equal("rejected", status_of(berlin, c))
    H.configure(sb, { clock_offset = 0 })
  end)

  it("offers SEPA, instant SEPA, TARGET2 and domestic RON transfers on Berlin", function()
    local ron = berlin:account("ron", true)
    assert.equal("RON", ron.currency)
    local ro = "RO49AAAA1B31007593840000"
    for product, ccy in pairs({ ["sepa-credit-transfers"] = "EUR", ["instant-sepa-credit-transfers"] = "EUR",
        ["target-2-payments"] = "EUR", ["ron-credit-transfers"] = "RON" }) do
      local body = berlin:payment_body("2.00", product == "ron-credit-transfers" and ro or nil)
      body.instructedAmount.currency = ccy
      if ccy == "RON" then body.debtorAccount = { iban = ron.iban, currency = "RON" } end
      local res = berlin:call("POST", "/v1/payments/" .. product, { body = body })
      assert.equal(201, res.status, product .. " " .. res.body)
    end
    -- RON needs a Romanian creditor and a RON amount
    local eur = berlin:payment_body("2.00")
    assert.equal(400, berlin:call("POST", "/v1/payments/ron-credit-transfers", { body = eur }).status)
  end)

  it("spells the SCA status scatransactionStatus when asked (sca.status_field)", function()
    H.configure(sb, { sca = { status_field = "scatransactionStatus" } })
    local res = berlin:create_consent()
    local href = res.json._links.scaStatus.href
    local st = berlin:call("GET", nil, { url = href })
    assert.equal(200, st.status)
    assert.equal("received", st.json.scatransactionStatus)
    assert.is_nil(st.json.scaStatus)
  end)
end)
