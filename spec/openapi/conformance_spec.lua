-- OpenAPI conformance: the client sends every request type it can send to a
-- private sandbox that records each request as it arrives
-- (sandbox.recorder), and a JSON-Schema validator (spec/openapi/validate.py,
-- Debian python3-jsonschema) checks every recorded request against the
-- official Berlin Group OpenAPI 1.3.11 file (spec/openapi/, patched in memory
-- as spec/openapi/README.md says): path, query and header parameters and the
-- JSON body. The last spec fails when any request type is invalid or when a
-- type the client can send was not exercised.
local support = require "support.client"
local sandbox = require "support.sandbox"
local proc = require "support.proc"
local helper = require "helper"

local PSU = { psu_ip = "198.51.100.7" }
local PRODUCTS = {
  berlin = { "sepa-credit-transfers", "instant-sepa-credit-transfers", "target-2-payments" },
  georgia = { "domestic" },
}
local SERVICES = { "payments", "periodic-payments", "bulk-payments" }
local CUR = { berlin = "EUR", georgia = "GEL" }

-- true when the type `name` is the wanted one: `want` found in it, ending
-- the name or followed by " " (a payment product, a form); a `want` that
-- ends in punctuation may be followed by anything
local function covers(name, want)
  local at = name:find(want, 1, true)
  if not at then return false end
  local after = name:sub(at + #want, at + #want)
  return after == "" or after == " " or not want:sub(-1):match("[%w}]")
end

describe("OpenAPI 1.3.11 conformance #network", function()
  local sb, accounts

  setup(function()
    sb = sandbox.start{ config = { record = true, signing_baskets = true, funds_confirmation = true,
      rate = { per_second = 1000, per_hour = 100000, concurrent = 50 } } }
    local _, body = sb:control("GET", "/accounts")
    accounts = {}
    for _, a in ipairs(body.accounts) do accounts[a.resourceId] = a end
  end)
  teardown(function() if sb then sb:stop() end end)
  after_each(function() sb:config{ sca = { approach = "oauth" } } end)

  local function client(variant, over)
    -- every approach, and funds confirmation (off in the Paysera profiles): the whole API
    local o = { limits = false, profile_overrides = { funds_confirmation = true,
      sca = { approaches = { "oauth", "redirect", "decoupled", "embedded" } } } }
    for k, v in pairs(over or {}) do o[k] = v end
    return support.new_client(variant, o, sb)
  end

  local function ibans(variant)
    local p, c = variant == "georgia" and "g" or "b", CUR[variant]:lower()
    return accounts[p .. "-alice-" .. c], accounts[p .. "-bob-" .. c]
  end

  local function single(variant, amount)
    local d, c = ibans(variant)
    return {
      instructedAmount = { currency = CUR[variant], amount = amount or "1.00" },
      debtorAccount = { iban = d.iban, currency = CUR[variant] },
      creditorAccount = { iban = c.iban }, creditorName = "Bob",
      remittanceInformationUnstructured = "conformance",
    }
  end

  local function body_for(variant, service)
    local b = single(variant)
    if service == "periodic-payments" then
      b.startDate = os.date("!%Y-%m-%d", os.time() + 86400 * 3)
      b.frequency = "Monthly"
      b.dayOfExecution = "5"
    elseif service == "bulk-payments" then
      local d, c = ibans(variant)
      b = { debtorAccount = { iban = d.iban, currency = CUR[variant] }, payments = {
        { instructedAmount = { currency = CUR[variant], amount = "1.00" }, creditorAccount = { iban = c.iban },
          creditorName = "Bob" },
      } }
    end
    return b
  end

  local function oauth(resource, opts)
    local step = assert(support.authorise(resource, opts))
    assert.equal("done", step.kind)
    return step
  end

  for _, variant in ipairs({ "berlin", "georgia" }) do
    it(variant .. ": consents and every account read with its query parameters", function()
      local c = client(variant)
      local consent = assert(c:create_consent(support.consent_body(), PSU))
      assert(consent:get())
      assert(consent:status())
      oauth(consent)
      local list = assert(consent:accounts({ with_balance = true, psu_ip = PSU.psu_ip }))
      assert(consent:accounts(PSU))
      local id = list[1].resourceId
      assert(consent:account(id, { with_balance = true, psu_ip = PSU.psu_ip }))
      assert(consent:account(id, PSU))
      assert(consent:balances(id, PSU))
      local from = os.date("!%Y-%m-%d", os.time() - 30 * 86400)
      local to = os.date("!%Y-%m-%d")
      local txs = assert(consent:transaction_list(id, { dateFrom = from, dateTo = to, bookingStatus = "both",
        withBalance = "true" }, PSU))
      assert(consent:transaction_list(id, { dateFrom = from, bookingStatus = "booked" }, PSU))
      assert(consent:transaction_list(id, { dateFrom = from, bookingStatus = "pending" }, PSU))
      assert(consent:transaction_list(id, { dateFrom = from, entryReferenceFrom = "0", bookingStatus = "booked" }, PSU))
      assert(consent:transaction_list(id, { dateFrom = from, deltaList = "true", bookingStatus = "booked" }, PSU))
      local tx = txs[1] or {}
      if tx.transactionId then assert(consent:transaction(id, tx.transactionId, PSU)) end
      if c.profile.card_accounts then
        local cards = assert(consent:card_accounts(PSU))
        if cards[1] then
          local cid = cards[1].resourceId
          assert(consent:card_account(cid, PSU))
          assert(consent:card_balances(cid, PSU))
          local it_ = assert(consent:card_transactions(cid, { dateFrom = from, dateTo = to, bookingStatus = "booked" },
            PSU))
          assert.is_nil(select(2, it_()))
        end
      end
      assert(consent:delete())
    end)

    it(variant .. ": payments of every service and product, their reads, cancellation", function()
      local c = client(variant)
      for _, service in ipairs(SERVICES) do
        for _, product in ipairs(PRODUCTS[variant]) do
          local p = assert(c:initiate_payment(product, body_for(variant, service),
            { service = service, psu_ip = PSU.psu_ip }))
          assert(p:get())
          assert(p:status())
          local r = assert(p:cancel())
          if r.cancellation_required then oauth(p, { cancellation = true }) end
        end
      end
      -- one authorised payment through OAuth
      local p = assert(c:initiate_payment(PRODUCTS[variant][1], single(variant, "0.50"), PSU))
      oauth(p)
    end)

    it(variant .. ": embedded and decoupled SCA (identification, authentication, method, OTP)", function()
      local c = client(variant)
      sb:config{ sca = { approach = "embedded" } }
      for _, make in ipairs({
        function() return c:create_consent(support.consent_body(), PSU) end,
        function() return c:initiate_payment(PRODUCTS[variant][1], single(variant, "0.20"), PSU) end,
      }) do
        local res = assert(make())
        local flow = assert(res:authorise())
        assert.equal("credentials", assert(flow:next()).kind)
        assert.equal("choose_method", assert(flow:next{ psu_id = "alice", password = "alice-pass" }).kind)
        assert.equal("otp", assert(flow:next{ method = "sms" }).kind)
        assert.equal("done", assert(flow:next{ otp = "123456" }).kind)
      end
      sb:config{ sca = { approach = "decoupled", decoupled_delay = 0 } }
      local consent = assert(c:create_consent(support.consent_body(), PSU))
      local flow = assert(consent:authorise{ poll = false, poll_interval = 0.1 })
      local step = assert(flow:next())
      assert.equal("credentials", step.kind)
      step = assert(flow:next{ psu_id = "alice" })
      assert.equal("wait", step.kind)
      assert.equal(200, (sb:control("POST", "/decoupled/" .. step.authorisation_id, { decision = "approve" })))
      assert.equal("done", assert(flow:next()).kind)
    end)
  end

  -- the authorisation API in all its forms on one resource
  local function walk(resource)
    local auth = assert(resource:start_authorisation(PSU))
    assert(resource:authorisations())
    assert(auth:status())
    assert(auth:identify{ psu_id = "alice", psu_ip = PSU.psu_ip })
    assert(auth:authenticate("alice-pass", { psu_id = "alice" }))
    assert(auth:select_method("sms"))
    assert.equal("done", assert(auth:authorise_transaction("123456")).next)
  end

  for _, variant in ipairs({ "berlin", "georgia" }) do
    it(variant .. ": the authorisation API on consents, payments and cancellations", function()
      sb:config{ sca = { approach = "embedded" } }
      local c = client(variant)
      walk(assert(c:create_consent(support.consent_body(), PSU)))
      local p = assert(c:initiate_payment(PRODUCTS[variant][1], body_for(variant, "periodic-payments"),
        { service = "periodic-payments", psu_ip = PSU.psu_ip }))
      walk(p)
      assert.is_true(assert(p:cancel()).cancellation_required)
      walk(p:cancellation())
    end)
  end

  it("berlin: explicit start with the redirect URIs, and the basket's authorisation API", function()
    sb:config{ sca = { approach = "redirect" } }
    local c = client("berlin", { nok_redirect_uri = "https://tpp.example/nok" })
    -- the TPP asks for an explicit start (TPP-Explicit-Authorisation-Preferred on the creation)
    local consent = assert(c:create_consent(support.consent_body(), { psu_ip = PSU.psu_ip, explicit = true }))
    local _, r = assert(consent:start_authorisation(PSU))
    assert.equal("redirect", r.next)
    assert.is_string(r.redirect_url)
    sb:config{ sca = { approach = "embedded" } }
    local bc = support.new_client("berlin-group", { limits = false,
      profile_overrides = { root = "/xs2a/berlin/1.3", signing = { scheme = "berlin", services = { "PIS" } } } }, sb)
    local p = assert(bc:initiate_payment("sepa-credit-transfers", single("berlin", "0.35"), PSU))
    walk(assert(bc:create_signing_basket({ paymentIds = { p.id } }, PSU)))
  end)

  it("berlin: redirect approach with the authorisation confirmation", function()
    sb:config{ sca = { approach = "redirect" } }
    local c = client("berlin")
    local consent = assert(c:create_consent(support.consent_body(), PSU))
    oauth(consent)
  end)

  it("berlin: funds confirmation", function()
    local c = client("berlin")
    local d = ibans("berlin")
    assert.is_boolean((c:confirm_funds({ account = { iban = d.iban },
      instructedAmount = { currency = "EUR", amount = "1.00" } })))
  end)

  it("berlin: signing baskets", function()
    local c = support.new_client("berlin-group", { limits = false,
      profile_overrides = { root = "/xs2a/berlin/1.3", signing = { scheme = "berlin", services = { "PIS" } } } }, sb)
    local p1 = assert(c:initiate_payment("sepa-credit-transfers", single("berlin", "0.30"), PSU))
    local con = assert(c:create_consent(support.consent_body(), PSU))
    local basket = assert(c:create_signing_basket({ paymentIds = { p1.id }, consentIds = { con.id } }, PSU))
    assert(basket:get())
    assert(basket:status())
    local p2 = assert(c:initiate_payment("sepa-credit-transfers", single("berlin", "0.40"), PSU))
    local other = assert(c:create_signing_basket({ paymentIds = { p2.id } }, PSU))
    assert(other:delete())
    oauth(basket)
  end)

  local function validate(log)
    local out = proc.output("/usr/bin/python3 " .. proc.quote(helper.root .. "/spec/openapi/validate.py") .. " "
      .. proc.quote(helper.root .. "/spec/openapi/psd2-api_v1.3.11-2021-10-01v1.yaml") .. " " .. proc.quote(log))
    return assert(sandbox.json.decode(out), "validator output: " .. out)
  end

  it("the validator refuses requests that break the OpenAPI file", function()
    local rid = "0c8a2a71-9e24-48e4-9f5b-274892a60b25"
    local h = { ["x-request-id"] = rid, ["psu-ip-address"] = "192.0.2.1", ["content-type"] = "application/json" }
    local function req(method, path, over)
      local r = { variant = "berlin", listener = "bank", method = method, path = path, query = "", headers = {},
        body = "" }
      for k, v in pairs(h) do r.headers[k] = v end
      for k, v in pairs(over or {}) do r[k] = v end
      return r
    end
    local bad = {
      req("GET", "/v1/accounts", { headers = { ["consent-id"] = "c1" } }),                    -- no X-Request-ID
      req("GET", "/v1/accounts", { query = "withBalance=maybe" }),                           -- not a boolean
      req("GET", "/v1/accounts/a1/transactions", { query = "bookingStatus=booked&colour=red" }), -- unknown
      req("POST", "/v1/consents", { body = '{"access":{}}' }),                                -- required members
      req("POST", "/v1/payments/sepa-credit-transfers", { body = '{"instructedAmount":{"amount":"1"}}' }),
      req("POST", "/v1/payments/domestic", { body = "{}" }),                                  -- not a BG product
      req("PUT", "/v1/consents/c1/authorisations/a1", { body = '{"psuData":{"password":"x"},"extra":1,'
        .. '"authenticationMethodId":"sms"}' }),                                              -- two forms
      req("POST", "/v1/nothing-here"),
    }
    bad[1].headers["x-request-id"] = nil
    local lines = {}
    for _, r in ipairs(bad) do lines[#lines + 1] = assert(sandbox.json.encode(r)) end
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write(table.concat(lines, "\n"), "\n")
    f:close()
    local report = validate(path)
    os.remove(path)
    assert.equal(0, report.valid, sandbox.json.encode(report))
    assert.equal(#bad - 1, report.total)   -- the two /v1/accounts requests are one type
  end)

  it("every recorded request type is valid against the OpenAPI file", function()
    local report = validate(sb.prefix .. "/logs/requests.jsonl")
    local bad, names = {}, {}
    for name, t in pairs(report.types) do
      names[#names + 1] = name
      if not t.valid then bad[#bad + 1] = name .. ":\n    " .. table.concat(t.errors, "\n    ") end
    end
    table.sort(names)
    table.sort(bad)
    io.stderr:write(string.format("\nOpenAPI 1.3.11: %d of %d request types valid (%d oneOf [{}] patched)\n",
      report.valid, report.total, report.patched_oneof))
    if os.getenv("XS2A_OPENAPI_LIST") then io.stderr:write(table.concat(names, "\n"), "\n") end
    assert.equal(0, #bad, "invalid request types:\n" .. table.concat(bad, "\n"))
    -- explicit starts (by the API and by flows) carry the redirect URIs the
    -- spec lists there; the client with nok_redirect_uri sends both
    local starts, noks, explicit = 0, 0, 0
    for line in io.lines(sb.prefix .. "/logs/requests.jsonl") do
      local r = sandbox.json.decode(line)
      if r.path == "/v1/consents" and r.headers["tpp-explicit-authorisation-preferred"] == "true" then
        explicit = explicit + 1
      end
      if r.method == "POST" and r.path:find("authorisations$") then
        starts = starts + 1
        assert.is_string(r.headers["tpp-redirect-uri"], "an explicit start without TPP-Redirect-URI: " .. r.path)
        if r.headers["tpp-nok-redirect-uri"] then
          noks = noks + 1
          assert.equal("https://tpp.example/nok", r.headers["tpp-nok-redirect-uri"])
        end
      end
    end
    assert.is_true(starts >= 10, "explicit starts recorded: " .. starts)
    assert.is_true(explicit >= 1, "no creation carried TPP-Explicit-Authorisation-Preferred")
    assert.is_true(noks >= 1, "no explicit start carried TPP-Nok-Redirect-URI")
    -- the kinds of request the client can send, each exercised at least once
    local want = {
      "POST /v1/consents", "GET /v1/consents/{consentId}", "GET /v1/consents/{consentId}/status",
      "DELETE /v1/consents/{consentId}", "GET /v1/accounts", "GET /v1/accounts/{account-id}",
      "GET /v1/accounts/{account-id}/balances", "GET /v1/accounts/{account-id}/transactions",
      "GET /v1/card-accounts", "POST /v1/funds-confirmations", "POST /v1/signing-baskets",
      "GET /v1/signing-baskets/{basketId}", "GET /v1/signing-baskets/{basketId}/status",
      "DELETE /v1/signing-baskets/{basketId}",
      "(update PSU authentication)", "(select SCA method)", "(transaction authorisation)",
      "(authorisation confirmation)", "(update PSU identification)", "(start)",
      "GET /v1/consents/{consentId}/authorisations", "GET /v1/consents/{consentId}/authorisations/{authorisationId}",
      "/{paymentId}/authorisations/{authorisationId} [",
      "GET /v1/{payment-service}/{payment-product}/{paymentId}/cancellation-authorisations [",
      "PUT /v1/{payment-service}/{payment-product}/{paymentId}/cancellation-authorisations/{authorisationId}",
      "GET /v1/signing-baskets/{basketId}/authorisations", "PUT /v1/signing-baskets/{basketId}/authorisations/",
      "georgia PUT /v1/consents/{consentId}/authorisations/{authorisationId} (update PSU identification)",
    }
    for _, service in ipairs(SERVICES) do
      for _, v in ipairs({ "berlin", "georgia" }) do
        for _, product in ipairs(PRODUCTS[v]) do
          want[#want + 1] = v .. " POST /v1/{payment-service}/{payment-product} [" .. service .. "/" .. product .. "]"
        end
      end
    end
    for _, w in ipairs(want) do
      local seen = false
      for _, n in ipairs(names) do
        if covers(n, w) then seen = true break end
      end
      assert.is_true(seen, "no request of type " .. w .. " was recorded")
    end
  end)
end)
