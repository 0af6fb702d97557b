-- The bank's payments: initiation and validation, OAuth authorisation and
-- execution through the ledger (balances and transactions change),
-- insufficient funds, cancellation rules, periodic schedules, bulk.
local H = dofile("spec/sandbox/bank_helper.lua")

describe("sandbox bank #network payments", function()
  local sb, berlin, georgia
  setup(H.setup_bank(function(s, b, g) sb, berlin, georgia = s, b, g end))
  teardown(function() H.restore(sb) end)

  local function cents(s)
    local neg, i, f = s:match("^(%-?)(%d+)%.?(%d*)$")
    local v = tonumber(i) * 100 + tonumber(((f or "") .. "00"):sub(1, 2))
    return neg == "-" and -v or v
  end

  local function pay(tpp, service, product, body, headers)
    return tpp:call("POST", "/v1/" .. service .. "/" .. product, { body = body, headers = headers })
  end

  local function without(body, key)
    body[key] = nil
    return body
  end

  local function payment_count()
    local _, dump = sb:control("GET", "/payments")
    return dump.count
  end

  describe("initiation", function()
    it("validates bodies and products", function()
      local p = berlin:product()
      local function bad(body, code, product, service)
        local res = pay(berlin, service or "payments", product or p, body)
        assert.equal(code == "PRODUCT_UNKNOWN" and 404 or 400, res.status, code)
        assert.equal(code, res.json.code)
      end
      local before = payment_count()
      bad(berlin:payment_body("10.00", "LT000000000000000000"), "FORMAT_ERROR")
      bad(berlin:payment_body("10,00"), "FORMAT_ERROR")
      bad(berlin:payment_body("0.00"), "FORMAT_ERROR")
      bad(berlin:payment_body("1.2345"), "FORMAT_ERROR")
      bad(berlin:payment_body("10.00", nil, { instructedAmount = { currency = "eur", amount = "1" } }), "FORMAT_ERROR")
      bad(berlin:payment_body("10.00", nil, { creditorName = "" }), "FORMAT_ERROR")
      bad(berlin:payment_body("10.00", nil, { remittanceInformationUnstructured = string.rep("x", 141) }),
        "FORMAT_ERROR")
      bad(berlin:payment_body("10.00", nil, { requestedExecutionDate = "2020-01-01" }), "EXECUTION_DATE_INVALID")
      bad(berlin:payment_body("10.00", nil, { debtorAccount = { iban = "DE89370400440532013000" } }),
        "RESOURCE_UNKNOWN")
      bad(berlin:payment_body("10.00", nil, { instructedAmount = { currency = "USD", amount = "1" } }),
        "FORMAT_ERROR")
      bad(berlin:payment_body("10.00"), "PRODUCT_UNKNOWN", "domestic")
      bad(berlin:payment_body("10.00"), "FORMAT_ERROR", p, "periodic-payments")     -- no startDate/frequency
      bad({ debtorAccount = { iban = berlin:main().iban }, payments = {} }, "FORMAT_ERROR", p, "bulk-payments")
      local gbad = pay(georgia, "payments", "domestic", georgia:payment_body("5.00", "LT023500000010002201"))
      assert.equal(400, gbad.status)
      assert.equal(404, pay(georgia, "payments", "sepa-credit-transfers", georgia:payment_body()).status)
      -- PSU-IP-Address is mandatory
      local noip = berlin:call("POST", "/v1/payments/" .. p, { body = berlin:payment_body(), psu_ip = false })
      assert.equal(400, noip.status)
      assert.equal(before, payment_count())
    end)

    it("validates IBAN checksums, amounts, currencies and dates on both variants", function()
      for _, tpp in ipairs({ berlin, georgia }) do
        local v = tpp.variant
        local good = tpp:owner("bob", true).iban
        -- one digit of the account part changed: the checksum no longer holds
        local last = tonumber(good:sub(-1))
        local broken = good:sub(1, -2) .. tostring((last + 1) % 10)
        local ccy = v == "berlin" and "EUR" or "GEL"
        local cases = {
          { tpp:payment_body("10.00", broken), "FORMAT_ERROR", "IBAN checksum" },
          { tpp:payment_body("10.00", "XX"), "FORMAT_ERROR", "IBAN shape" },
          { tpp:payment_body("10,00"), "FORMAT_ERROR", "decimal comma" },
          { tpp:payment_body("-1.00"), "FORMAT_ERROR", "negative amount" },
          { tpp:payment_body("1e3"), "FORMAT_ERROR", "exponent" },
          { tpp:payment_body("10.00", nil, { instructedAmount = { currency = ccy:lower(), amount = "1.00" } }),
            "FORMAT_ERROR", "lower-case currency" },
          { tpp:payment_body("10.00", nil, { instructedAmount = { currency = "EURO", amount = "1.00" } }),
            "FORMAT_ERROR", "four-letter currency" },
          { tpp:payment_body("10.00", nil, { instructedAmount = { amount = "1.00" } }), "FORMAT_ERROR",
            "no currency" },
          { without(tpp:payment_body("10.00"), "creditorAccount"), "FORMAT_ERROR", "no creditor" },
          { tpp:payment_body("10.00", nil, { requestedExecutionDate = "2026-13-45" }), "FORMAT_ERROR",
            "impossible date" },
          { tpp:payment_body("10.00", nil, { requestedExecutionDate = "2020-01-01" }), "EXECUTION_DATE_INVALID",
            "past date" },
        }
        local before = payment_count()
        for _, c in ipairs(cases) do
          local res = pay(tpp, "payments", tpp:product(), c[1])
          assert.equal(400, res.status, v .. ": " .. c[3])
          assert.equal(c[2], res.json and res.json.code, v .. ": " .. c[3])
        end
        assert.equal(before, payment_count(), v)
        -- and the good IBAN is accepted
        assert.equal(201, pay(tpp, "payments", tpp:product(), tpp:payment_body("1.00", good)).status, v)
      end
    end)

    it("answers 409 STATUS_INVALID to a second cancellation on both variants", function()
      for _, tpp in ipairs({ berlin, georgia }) do
        local res = pay(tpp, "payments", tpp:product(), tpp:payment_body("1.00"))
        assert.equal(201, res.status, tpp.variant)
        local path = "/v1/payments/" .. tpp:product() .. "/" .. res.json.paymentId
        assert.equal(204, tpp:call("DELETE", path).status, tpp.variant)
        assert.equal("CANC", tpp:call("GET", path .. "/status").json.transactionStatus)
        local again = tpp:call("DELETE", path)
        assert.equal(409, again.status, tpp.variant)
        assert.equal("STATUS_INVALID", again.json.code, tpp.variant)
      end
    end)

    it("records every initiation once and answers 201 RCVD with links", function()
      local before = payment_count()
      local res = pay(berlin, "payments", berlin:product(), berlin:payment_body("1.00"))
      assert.equal(201, res.status)
      assert.equal("RCVD", res.json.transactionStatus)
      local id = res.json.paymentId
      assert.equal(sb.roots.berlin .. "/v1/payments/sepa-credit-transfers/" .. id, res.headers["location"])
      assert.equal(berlin.path_root .. "/.well-known/oauth-authorization-server", res.json._links.scaOAuth.href)
      assert.equal(before + 1, payment_count())
      local get = berlin:call("GET", "/v1/payments/sepa-credit-transfers/" .. id)
      assert.equal(200, get.status)
      assert.equal("1.00", get.json.instructedAmount.amount)
      assert.equal("RCVD", get.json.transactionStatus)
      local st = berlin:call("GET", "/v1/payments/sepa-credit-transfers/" .. id .. "/status")
      assert.same({ transactionStatus = "RCVD", fundsAvailable = true }, st.json)
      -- a certificate without PSP_PI, another product or service path
      assert.equal("ROLE_INVALID", berlin:call("GET", "/v1/payments/sepa-credit-transfers/" .. id,
        { cert = "qwac-ai" }).json.code)
      assert.equal("RESOURCE_UNKNOWN", berlin:call("GET", "/v1/payments/target-2-payments/" .. id).json.code)
      assert.equal(403, berlin:call("GET", "/v1/periodic-payments/sepa-credit-transfers/" .. id).status)
    end)
  end)

  describe("execution", function()
    it("moves money between sandbox accounts after OAuth authorisation (ledger)", function()
      local alice0, bob0 = berlin:main(), berlin:owner("bob")
      local res = pay(berlin, "payments", berlin:product(), berlin:payment_body("25.30"))
      local id = res.json.paymentId
      local tok = berlin:oauth("PIS:" .. id, "alice")
      assert.equal("PIS:" .. id, tok.scope)
      assert.is_nil(tok.refresh_token)
      local st = berlin:call("GET", "/v1/payments/sepa-credit-transfers/" .. id .. "/status")
      assert.equal("ACSC", st.json.transactionStatus)
      local alice1, bob1 = berlin:main(), berlin:owner("bob")
      assert.equal(cents(alice0.balance) - 2530, cents(alice1.balance))
      assert.equal(cents(bob0.balance) + 2530, cents(bob1.balance))
      assert.equal(alice0.transactions + 1, alice1.transactions)
      assert.equal(bob0.transactions + 1, bob1.transactions)
      -- the booked transaction tops both statements
      local cid, ctok = berlin:valid_consent(nil, "bob")
      local tx = berlin:ais("/v1/accounts/" .. bob1.resourceId .. "/transactions?bookingStatus=booked&dateFrom="
        .. os.date("!%Y-%m-%d"), cid, ctok.access_token).json.transactions.booked[1]
      assert.equal("25.30", tx.transactionAmount.amount)
      assert.equal(alice1.iban, tx.debtorAccount.iban)
      -- executed: not cancellable, 409 STATUS_INVALID (Paysera's Georgia page)
      local del = berlin:call("DELETE", "/v1/payments/sepa-credit-transfers/" .. id)
      assert.equal(409, del.status)
      assert.equal("STATUS_INVALID", del.json.code)
    end)

    it("rejects a payment without funds (RJCT) and moves nothing", function()
      local low0 = georgia:account("low-balance")
      local body = georgia:payment_body("100.00", nil, { debtorAccount = { iban = low0.iban } })
      local res = pay(georgia, "payments", "domestic", body)
      assert.equal(201, res.status)
      assert.is_false(georgia:call("GET", "/v1/payments/domestic/" .. res.json.paymentId .. "/status")
        .json.fundsAvailable)
      georgia:oauth("PIS:" .. res.json.paymentId, "alice")
      local st = georgia:call("GET", "/v1/payments/domestic/" .. res.json.paymentId .. "/status")
      assert.equal("RJCT", st.json.transactionStatus)
      local low1 = georgia:account("low-balance")
      assert.equal(low0.balance, low1.balance)
      assert.equal(low0.transactions, low1.transactions)
    end)

    it("settles instant payments as ACCC and pays a creditor outside the sandbox", function()
      local _, dump = berlin:accounts()
      local alice0 = berlin:main()
      local res = pay(berlin, "payments", "instant-sepa-credit-transfers",
        berlin:payment_body("2.00", dump.external.berlin))
      berlin:oauth("PIS:" .. res.json.paymentId, "alice")
      local st = berlin:call("GET", "/v1/payments/instant-sepa-credit-transfers/" .. res.json.paymentId .. "/status")
      assert.equal("ACCC", st.json.transactionStatus)
      assert.equal(cents(alice0.balance) - 200, cents(berlin:main().balance))
    end)

    it("executes a bulk payment as one batch", function()
      local bob0, carol0 = berlin:owner("bob"), berlin:owner("carol")
      local body = { debtorAccount = { iban = berlin:main().iban }, batchBookingPreferred = true, payments = {
        { instructedAmount = { currency = "EUR", amount = "3.00" }, creditorAccount = { iban = bob0.iban },
          creditorName = "Bob" },
        { instructedAmount = { currency = "EUR", amount = "4.50" }, creditorAccount = { iban = carol0.iban },
          creditorName = "Carol" },
      } }
      local res = pay(berlin, "bulk-payments", "sepa-credit-transfers", body)
      assert.equal(201, res.status)
      local get = berlin:call("GET", "/v1/bulk-payments/sepa-credit-transfers/" .. res.json.paymentId)
      assert.equal(2, #get.json.payments)
      berlin:oauth("PIS:" .. res.json.paymentId, "alice")
      assert.equal("ACSC", berlin:call("GET", "/v1/bulk-payments/sepa-credit-transfers/" .. res.json.paymentId
        .. "/status").json.transactionStatus)
      assert.equal(cents(bob0.balance) + 300, cents(berlin:owner("bob").balance))
      assert.equal(cents(carol0.balance) + 450, cents(berlin:owner("carol").balance))
    end)

    it("refuses a PSU who does not hold the debtor account", function()
      local res = pay(berlin, "payments", berlin:product(), berlin:payment_body("1.00"))
      local url = berlin:authorization_url("PIS:" .. res.json.paymentId)
      local location, page = H.psu.authorize(url, { username = "bob", password = "bob-pass" })
      assert.is_nil(location)
      assert.matches("not yours", page.error)
    end)
  end)

  describe("cancellation and standing orders", function()
    it("cancels an unauthorised payment at once (204)", function()
      local res = pay(berlin, "payments", berlin:product(), berlin:payment_body("1.00"))
      local path = "/v1/payments/sepa-credit-transfers/" .. res.json.paymentId
      assert.equal(204, berlin:call("DELETE", path).status)
      assert.equal("CANC", berlin:call("GET", path .. "/status").json.transactionStatus)
      local again = berlin:call("DELETE", path)
      assert.equal(409, again.status)
      assert.equal("STATUS_INVALID", again.json.code)
    end)

    it("lists a standing order's schedule and cancels it through a cancellation authorisation (202)", function()
      local start = os.date("!%Y-%m-%d", os.time() + 3 * 86400)
      local body = georgia:payment_body("7.00", nil, { startDate = start, frequency = "Monthly",
        executionRule = "following", dayOfExecution = start:sub(9, 10):gsub("^0", "") })
      local res = pay(georgia, "periodic-payments", "domestic", body)
      assert.equal(201, res.status)
      local path = "/v1/periodic-payments/domestic/" .. res.json.paymentId
      local get = georgia:call("GET", path)
      assert.equal(12, #get.json.schedule)
      assert.is_true(get.json.schedule[1] >= start)
      for i = 2, #get.json.schedule do assert.is_true(get.json.schedule[i] > get.json.schedule[i - 1]) end
      local main0 = georgia:main()
      georgia:oauth("PIS:" .. res.json.paymentId, "alice")
      assert.equal("ACTC", georgia:call("GET", path .. "/status").json.transactionStatus)
      assert.equal(main0.balance, georgia:main().balance)          -- nothing due yet
      -- a standing order shows as "information" on the account
      local cid, ctok = georgia:valid_consent()
      local info = georgia:ais("/v1/accounts/" .. main0.resourceId .. "/transactions?bookingStatus=information",
        cid, ctok.access_token)
      local found = false
      for _, so in ipairs(info.json.transactions.information) do
        if so.transactionId == res.json.paymentId then found = true end
      end
      assert.is_true(found)

      local del = georgia:call("DELETE", path)
      assert.equal(202, del.status)
      assert.equal("ACTC", del.json.transactionStatus)
      local start_href = del.json._links.startAuthorisation.href
      assert.equal(sb.roots.georgia .. path .. "/cancellation-authorisations", start_href)
      local ca = georgia:call("POST", nil, { url = start_href, body = {} })
      assert.equal(201, ca.status)
      assert.truthy(ca.json._links.scaOAuth)
      local ids = georgia:call("GET", path .. "/cancellation-authorisations").json.authorisationIds
      assert.same({ ca.json.authorisationId }, ids)
      georgia:oauth("PIS:" .. res.json.paymentId, "alice")
      assert.equal("CANC", georgia:call("GET", path .. "/status").json.transactionStatus)
      assert.equal("finalised", georgia:call("GET", path .. "/cancellation-authorisations/" .. ids[1])
        .json.scaStatus)
    end)
  end)
end)
