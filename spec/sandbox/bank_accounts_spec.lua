-- The bank's consents and AIS reads: consent endpoints and validation,
-- accounts, balances, transactions with pagination (relative links on
-- Berlin, absolute on Georgia), consent scope, frequencyPerDay, card
-- accounts, funds confirmation, signing baskets.
local H = dofile("spec/sandbox/bank_helper.lua")

describe("sandbox bank #network consents and accounts", function()
  local sb, berlin, georgia
  setup(H.setup_bank(function(s, b, g) sb, berlin, georgia = s, b, g end))
  teardown(function() H.restore(sb) end)

  describe("consents", function()
    it("reads, reports status, and deletes a consent; other TPPs get 403 CONSENT_UNKNOWN", function()
      local main = berlin:main()
      local body = H.consent_body({ accounts = { { iban = main.iban } }, balances = { { iban = main.iban } },
        transactions = {} }, { frequencyPerDay = 2, recurringIndicator = false })
      local id = berlin:create_consent(body).json.consentId
      local res = berlin:call("GET", "/v1/consents/" .. id)
      assert.equal(200, res.status)
      assert.equal("received", res.json.consentStatus)
      assert.equal(main.iban, res.json.access.accounts[1].iban)
      assert.same({}, res.json.access.transactions)
      assert.truthy(res.body:find('"transactions":[]', 1, true))
      assert.equal(2, res.json.frequencyPerDay)
      assert.is_false(res.json.recurringIndicator)
      assert.equal(os.date("!%Y-%m-%d"), res.json.lastActionDate)

      local other = berlin:call("GET", "/v1/consents/" .. id, { cert = "qwac-ai" })
      assert.equal(403, other.status)
      assert.equal("CONSENT_UNKNOWN", other.json.code)
      assert.equal(403, berlin:call("GET", "/v1/consents/" .. id .. "/status", { cert = "qwac-ai" }).status)
      assert.equal(403, berlin:call("GET", "/v1/consents/nope").status)
      -- the other variant does not know it either
      assert.equal(403, georgia:call("GET", "/v1/consents/" .. id).status)

      assert.equal(204, berlin:call("DELETE", "/v1/consents/" .. id).status)
      assert.equal("terminatedByTpp", berlin:call("GET", "/v1/consents/" .. id .. "/status").json.consentStatus)
      assert.equal(409, berlin:call("DELETE", "/v1/consents/" .. id).status)
    end)

    it("validates the consent body", function()
      local cases = {
        { H.consent_body(nil, { frequencyPerDay = 5 }), "FORMAT_ERROR" },
        { H.consent_body(nil, { frequencyPerDay = 0 }), "FORMAT_ERROR" },
        { H.consent_body(nil, { validUntil = "2020-01-01" }), "FORMAT_ERROR" },
        { H.consent_body(nil, { validUntil = "2026-02-30" }), "FORMAT_ERROR" },
        { H.consent_body(nil, { recurringIndicator = "yes" }), "FORMAT_ERROR" },
        { H.consent_body({ accounts = { { iban = "LT000000000000000000" } } }), "FORMAT_ERROR" },
        { H.consent_body({ accounts = {} }), "FORMAT_ERROR" },
        { H.consent_body({ allPsd2 = "everything" }), "FORMAT_ERROR" },
        { H.consent_body(nil, { combinedServiceIndicator = true }), "SESSIONS_NOT_SUPPORTED" },
      }
      for i, c in ipairs(cases) do
        local res = berlin:create_consent(c[1])
        assert.equal(400, res.status, "case " .. i)
        assert.equal(c[2], res.json.code, "case " .. i)
        assert.equal("application/problem+json", res.headers["content-type"])
      end
      local b = H.consent_body()
      b.access = nil
      assert.equal(400, berlin:create_consent(b).status)
      assert.equal(400, berlin:call("POST", "/v1/consents", { body = "{not json" }).status)
      -- PSU-IP-Address is mandatory on consent creation
      local noip = berlin:call("POST", "/v1/consents", { body = H.consent_body(), psu_ip = false })
      assert.equal(400, noip.status)
      assert.equal("FORMAT_ERROR", noip.json.code)
    end)
  end)

  describe("accounts", function()
    it("lists the PSU's accounts with balances, details and balances endpoints", function()
      local id, tok = berlin:valid_consent()
      local res = berlin:ais("/v1/accounts?withBalance=true", id, tok.access_token)
      assert.equal(200, res.status)
      local mine = {}
      for _, a in ipairs(berlin:accounts()) do
        if a.owner == "alice" and a.kind == "account" then mine[a.resourceId] = a end
      end
      local n = 0
      for _, a in ipairs(res.json.accounts) do
        n = n + 1
        local seed = mine[a.resourceId]
        assert.truthy(seed, a.resourceId)
        assert.equal(seed.iban, a.iban)
        assert.equal(seed.currency, a.currency)
        assert.equal(2, #a.balances)
        assert.equal(berlin.path_root .. "/v1/accounts/" .. a.resourceId .. "/balances", a._links.balances.href)
      end
      local expected = 0
      for _ in pairs(mine) do expected = expected + 1 end
      assert.equal(expected, n)
      -- multicurrency: one IBAN, two sub-accounts
      assert.equal(mine["b-alice-eur"].iban, mine["b-alice-usd"].iban)

      local plain = berlin:ais("/v1/accounts", id, tok.access_token)
      assert.is_nil(plain.json.accounts[1].balances)
      assert.equal(400, berlin:ais("/v1/accounts?withBalance=maybe", id, tok.access_token).status)

      local main = berlin:main()
      local det = berlin:ais("/v1/accounts/" .. main.resourceId, id, tok.access_token)
      assert.equal(200, det.status)
      assert.equal(main.iban, det.json.account.iban)
      local bal = berlin:ais("/v1/accounts/" .. main.resourceId .. "/balances", id, tok.access_token)
      assert.equal(200, bal.status)
      local types = {}
      for _, b in ipairs(bal.json.balances) do types[b.balanceType] = b.balanceAmount end
      assert.equal(main.balance, types.interimBooked.amount)
      assert.equal(main.available, types.interimAvailable.amount)
      assert.equal("EUR", types.interimBooked.currency)
      local unknown = berlin:ais("/v1/accounts/no-such-account", id, tok.access_token)
      assert.equal(404, unknown.status)
      assert.equal("RESOURCE_UNKNOWN", unknown.json.code)
      -- bob's account is not alice's
      local bob = berlin:ais("/v1/accounts/" .. berlin:owner("bob").resourceId, id, tok.access_token)
      assert.equal(401, bob.status)
      assert.equal("CONSENT_INVALID", bob.json.code)
    end)

    it("limits a dedicated consent to the accounts and services it names", function()
      local main, low = georgia:main(), georgia:account("low-balance")
      local id, tok = georgia:valid_consent(H.consent_body({
        accounts = { { iban = main.iban, currency = main.currency } },
        transactions = { { iban = low.iban } },
      }))
      local list = georgia:ais("/v1/accounts?withBalance=true", id, tok.access_token)
      assert.equal(2, #list.json.accounts)
      for _, a in ipairs(list.json.accounts) do assert.is_nil(a.balances) end
      local bal = georgia:ais("/v1/accounts/" .. main.resourceId .. "/balances", id, tok.access_token)
      assert.equal(401, bal.status)
      assert.equal("CONSENT_INVALID", bal.json.code)
      assert.equal(401, georgia:ais("/v1/accounts/" .. main.resourceId
        .. "/transactions?bookingStatus=booked&dateFrom=2026-01-01", id, tok.access_token).status)
      assert.equal(200, georgia:ais("/v1/accounts/" .. low.resourceId
        .. "/transactions?bookingStatus=booked&dateFrom=2026-01-01", id, tok.access_token).status)
      -- the USD sub-account of the same IBAN is not covered (currency given)
      local usd = georgia:account("multicurrency")
      assert.equal(401, georgia:ais("/v1/accounts/" .. usd.resourceId, id, tok.access_token).status)
    end)

    it("refuses a consent naming accounts the PSU does not hold", function()
      local bob = berlin:owner("bob")
      local id = berlin:create_consent(H.consent_body({ accounts = { { iban = bob.iban } } })).json.consentId
      local url = berlin:authorization_url("AIS:" .. id)
      local location, page = H.psu.authorize(url, { username = "alice", password = "alice-pass" })
      assert.is_nil(location)
      assert.matches("do not hold", page.error)
      -- AIS with a consent that is not valid yet
      local res = berlin:ais("/v1/accounts", id, nil)
      assert.equal(401, res.status)
      assert.equal("CONSENT_INVALID", res.json.code)
      assert.equal("CONSENT_UNKNOWN", berlin:ais("/v1/accounts", "nope", nil).json.code)
      assert.equal("FORMAT_ERROR", berlin:call("GET", "/v1/accounts").json.code)
    end)
  end)

  describe("transactions", function()
    local function follow(_, href)
      if href:sub(1, 1) == "/" then return sb.base_url .. href end
      return href
    end

    for _, variant in ipairs({ "berlin", "georgia" }) do
      it("pages through hundreds of booked transactions on " .. variant, function()
        local tpp = variant == "berlin" and berlin or georgia
        local id, tok = tpp:valid_consent()
        local main = tpp:main()
        local path = "/v1/accounts/" .. main.resourceId .. "/transactions?bookingStatus=booked&dateFrom=2026-01-01"
        local res = tpp:ais(path, id, tok.access_token)
        assert.equal(200, res.status)
        local links = res.json.transactions._links
        if variant == "berlin" then
          assert.equal(tpp.path_root .. "/v1/accounts/" .. main.resourceId, links.next.href:match("^(.-)/transactions"))
        else
          assert.equal(sb.base_url .. tpp.path_root, links.next.href:sub(1, #sb.base_url + #tpp.path_root))
        end
        assert.is_nil(links.previous)
        assert.truthy(links.first and links.last)
        local seen, pages, count = {}, 1, 0
        local last_date = "9999-12-31"
        while true do
          for _, tx in ipairs(res.json.transactions.booked) do
            assert.is_nil(seen[tx.transactionId])
            seen[tx.transactionId] = true
            count = count + 1
            assert.is_true(tx.bookingDate <= last_date)      -- newest first
            last_date = tx.bookingDate
          end
          assert.is_nil(res.json.transactions.pending)
          local nxt = res.json.transactions._links.next
          if not nxt then break end
          assert.truthy(nxt.href:find("page=" .. (pages + 1), 1, true))
          res = tpp:ais(nil, id, tok.access_token, { url = follow(tpp, nxt.href) })
          assert.equal(200, res.status)
          assert.truthy(res.json.transactions._links.previous)
          pages = pages + 1
        end
        assert.equal(main.transactions, count)
        assert.is_true(count >= 260)
        assert.equal(math.ceil(count / 50), pages)
        assert.truthy(res.json.transactions._links.last.href:find("page=" .. pages, 1, true))

        -- a date window, pending, both, and details
        local window = tpp:ais("/v1/accounts/" .. main.resourceId
          .. "/transactions?bookingStatus=both&dateFrom=2026-03-01&dateTo=2026-03-31", id, tok.access_token)
        assert.equal(200, window.status)
        assert.is_true(#window.json.transactions.booked > 10)
        for _, tx in ipairs(window.json.transactions.booked) do
          assert.is_true(tx.bookingDate >= "2026-03-01" and tx.bookingDate <= "2026-03-31")
        end
        assert.is_true(#window.json.transactions.pending >= 1)
        local tx = window.json.transactions.booked[1]
        local det = tpp:ais(nil, id, tok.access_token, { url = follow(tpp, tx._links.transactionDetails.href) })
        assert.equal(200, det.status)
        assert.equal(tx.transactionId, det.json.transactionsDetails.transactionId)
        assert.same(tx.transactionAmount, det.json.transactionsDetails.transactionAmount)
        assert.equal(404, tpp:ais("/v1/accounts/" .. main.resourceId .. "/transactions/nope", id,
          tok.access_token).status)
      end)
    end

    it("checks bookingStatus, dates and page", function()
      local id, tok = berlin:valid_consent()
      local base = "/v1/accounts/" .. berlin:main().resourceId .. "/transactions"
      local cases = {
        { "?dateFrom=2026-01-01", "FORMAT_ERROR" },
        { "?bookingStatus=everything&dateFrom=2026-01-01", "FORMAT_ERROR" },
        { "?bookingStatus=booked", "FORMAT_ERROR" },
        { "?bookingStatus=booked&dateFrom=2026-13-01", "FORMAT_ERROR" },
        { "?bookingStatus=booked&dateFrom=2026-05-01&dateTo=2026-04-01", "PERIOD_INVALID" },
        { "?bookingStatus=booked&dateFrom=2026-01-01&page=0", "FORMAT_ERROR" },
      }
      for _, c in ipairs(cases) do
        local res = berlin:ais(base .. c[1], id, tok.access_token)
        assert.equal(400, res.status, c[1])
        assert.equal(c[2], res.json.code, c[1])
      end
      -- bookingStatus=all (Berlin Group 1.3.9+): booked, pending and information together
      local all = berlin:ais(base .. "?bookingStatus=all&dateFrom=2026-01-01", id, tok.access_token)
      assert.equal(200, all.status)
      assert.truthy(all.json.transactions.booked and all.json.transactions.pending)
      assert.truthy(all.json.transactions.information)
      local xml = berlin:ais(base .. "?bookingStatus=booked&dateFrom=2026-01-01", id, tok.access_token,
        { headers = { Accept = "application/xml" } })
      assert.equal(406, xml.status)
      assert.equal("REQUESTED_FORMATS_INVALID", xml.json.code)
      local info = berlin:ais(base .. "?bookingStatus=information", id, tok.access_token)
      assert.equal(200, info.status)
      assert.truthy(info.json.transactions.information)
    end)
  end)

  describe("frequencyPerDay", function()
    it("counts reads without PSU-IP-Address and answers 429 ACCESS_EXCEEDED beyond it", function()
      local id, tok = georgia:valid_consent(H.consent_body(nil, { frequencyPerDay = 2 }))
      assert.equal(200, georgia:ais("/v1/accounts", id, tok.access_token, { psu_ip = false }).status)
      assert.equal(200, georgia:ais("/v1/accounts", id, tok.access_token, { psu_ip = false }).status)
      local res = georgia:ais("/v1/accounts", id, tok.access_token, { psu_ip = false })
      assert.equal(429, res.status)
      assert.equal("ACCESS_EXCEEDED", res.json.code)
      assert.truthy(tonumber(res.headers["retry-after"]))
      -- the PSU present: not counted
      assert.equal(200, georgia:ais("/v1/accounts", id, tok.access_token).status)
    end)
  end)

  describe("card accounts", function()
    it("serves the card account on Berlin and refuses card accounts on Georgia", function()
      local id, tok = berlin:valid_consent()
      local card = berlin:account("card")
      local list = berlin:ais("/v1/card-accounts", id, tok.access_token)
      assert.equal(200, list.status)
      assert.equal(1, #list.json.cardAccounts)
      assert.equal(card.maskedPan, list.json.cardAccounts[1].maskedPan)
      local det = berlin:ais("/v1/card-accounts/" .. card.resourceId, id, tok.access_token)
      assert.equal(card.maskedPan, det.json.cardAccount.maskedPan)
      local bal = berlin:ais("/v1/card-accounts/" .. card.resourceId .. "/balances", id, tok.access_token)
      assert.equal(200, bal.status)
      assert.equal(2, #bal.json.balances)
      local tx = berlin:ais("/v1/card-accounts/" .. card.resourceId .. "/transactions?bookingStatus=booked"
        .. "&dateFrom=2026-01-01", id, tok.access_token)
      assert.equal(200, tx.status)
      assert.equal(card.transactions, #tx.json.cardTransactions.booked)
      -- a card account is not a payment account
      assert.equal(404, berlin:ais("/v1/accounts/" .. card.resourceId, id, tok.access_token).status)

      local gid, gtok = georgia:valid_consent()
      local g = georgia:ais("/v1/card-accounts", gid, gtok.access_token)
      assert.equal(405, g.status)
      assert.equal("SERVICE_INVALID", g.json.code)
    end)
  end)

  describe("funds confirmation", function()
    it("is off by default (Paysera: coming soon): 405 SERVICE_INVALID", function()
      local res = berlin:call("POST", "/v1/funds-confirmations", { body = {
        account = { iban = berlin:main().iban }, instructedAmount = { currency = "EUR", amount = "1" } } })
      assert.equal(405, res.status)
      assert.equal("SERVICE_INVALID", res.json.code)
    end)

    it("answers fundsAvailable from the ledger when switched on", function()
      H.configure(sb, { funds_confirmation = true })
      local main, low = berlin:main(), berlin:account("low-balance")
      local function ask(iban, amount)
        return berlin:call("POST", "/v1/funds-confirmations", { body = {
          account = { iban = iban }, instructedAmount = { currency = "EUR", amount = amount } } })
      end
      local yes = ask(main.iban, "100.00")
      assert.equal(200, yes.status)
      assert.is_true(yes.json.fundsAvailable)
      assert.is_false(ask(low.iban, "100.00").json.fundsAvailable)
      assert.is_true(ask(low.iban, low.available).json.fundsAvailable)
      assert.equal(400, ask("LT000000000000000000", "1.00").status)
      assert.equal(400, ask(main.iban, "1,00").status)
      local _, dump = berlin:accounts()
      local foreign = ask(dump.external.berlin, "1")
      assert.equal(400, foreign.status)
      assert.equal("RESOURCE_UNKNOWN", foreign.json.code)
      -- PIIS needs the PSP_IC role, which qwac-ai lacks
      local role = berlin:call("POST", "/v1/funds-confirmations", { cert = "qwac-ai", body = {
        account = { iban = main.iban }, instructedAmount = { currency = "EUR", amount = "1" } } })
      assert.equal(401, role.status)
      assert.equal("ROLE_INVALID", role.json.code)
    end)
  end)

  describe("signing baskets", function()
    it("are not offered (405 SERVICE_INVALID)", function()
      local res = berlin:call("POST", "/v1/signing-baskets", { body = { paymentIds = { "x" } } })
      assert.equal(405, res.status)
      assert.equal("SERVICE_INVALID", res.json.code)
      assert.equal(405, georgia:call("GET", "/v1/signing-baskets/abc/status").status)
    end)
  end)
end)
