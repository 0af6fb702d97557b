-- Consents, accounts, balances, transactions and card accounts against the
-- shared sandbox, for both variants. #network
local sandbox = require "support.sandbox"
local support = require "support.client"
local errors = require "xs2a.errors"
local json = require "xs2a.codec.json"

local PSU = { psu_ip = "198.51.100.7" }

local function consent_body(fpd)
  return { access = { allPsd2 = "allAccounts" }, recurringIndicator = true, validUntil = "2027-01-31",
    frequencyPerDay = fpd or 4, combinedServiceIndicator = false }
end

for _, variant in ipairs({ "berlin", "georgia" }) do
  describe("AIS (" .. variant .. ") #network", function()
    local client, consent, accounts

    setup(function()
      sandbox.shared()
      client = support.new_client(variant)
      consent = assert(client:create_consent(consent_body(), PSU))
      assert(support.authorise(consent))
      accounts = assert(consent:accounts(PSU))
    end)

    it("creates a consent with id, status, links and approach", function()
      local c = assert(client:create_consent(consent_body(), PSU))
      assert.is_string(c.id)
      assert.equal("received", c.last_status)
      assert.is_table(c.links.scaOAuth)
      assert.equal("AIS:" .. c.id, c.scope)
      assert.equal("consent:" .. c.id, c.token_key)
      assert.equal("/v1/consents/" .. c.id .. "/authorisations", c.authorisations_path)
      local st = assert(c:current_status())
      assert.equal("received", st)
      assert.is_true(c.final.valid)
      assert.is_true(c.success.valid)
      local ref = c:ref()
      assert.is_string(json.encode(ref))
      local again = assert(client:resource_from_ref(ref))
      assert.equal(c.id, again.id)
      assert.equal("consent", again.kind)
    end)

    it("reads the consent and its status, and deletes it", function()
      local c = assert(client:create_consent(consent_body(), PSU))
      assert(support.authorise(c))
      assert.equal("valid", (c:status()))
      local data = assert(c:get())
      assert.equal("valid", data.consentStatus)
      assert.equal(4, data.frequencyPerDay)
      assert.is_true(assert(c:delete()))
      local st = c:status()
      assert.equal("terminatedByTpp", st)
      local acc, err = c:accounts(PSU)
      assert.is_nil(acc)
      assert.equal("http", err.kind)
      assert.is_true(err.status == 401 or err.status == 403, tostring(err))
    end)

    it("lists accounts and reads one account and its balances", function()
      assert.is_true(#accounts >= 1)
      local a = accounts[1]
      assert.is_string(a.resourceId)
      assert.is_string(a.iban)
      local one = assert(consent:account(a.resourceId, PSU))
      assert.equal(a.resourceId, one.resourceId)
      local balances = assert(consent:balances(a.resourceId, PSU))
      assert.is_true(#balances >= 1)
      assert.is_string(balances[1].balanceType)
      local with = assert(consent:accounts({ with_balance = true, psu_ip = PSU.psu_ip }))
      assert.equal(#accounts, #with)
    end)

    it("iterates transactions across many pages and reads a transaction's details", function()
      local main
      for _, a in ipairs(accounts) do
        if a.currency == (variant == "berlin" and "EUR" or "GEL") and not main then main = a end
      end
      local n, seen, ids = 0, {}, {}
      local q = { bookingStatus = "both", dateFrom = "2026-01-01" }
      for tx, err in consent:transactions(main.resourceId, q, PSU) do
        assert.is_not_false(tx, tostring(err))
        n = n + 1
        seen[tx._status] = true
        if tx.transactionId then
          assert.is_nil(ids[tx.transactionId], "transaction seen twice")
          ids[tx.transactionId] = true
        end
      end
      -- the main account holds 260+ booked transactions: several pages of 50
      assert.is_true(n > 250, "only " .. n .. " transactions")
      assert.is_true(seen.booked)
      local list = assert(consent:transaction_list(main.resourceId,
        { bookingStatus = "booked", dateFrom = "2026-01-01" }, PSU))
      assert.is_true(#list > 250)
      local tx_id
      for _, tx in ipairs(list) do if tx.transactionId then tx_id = tx.transactionId break end end
      local details = assert(consent:transaction(main.resourceId, tx_id, PSU))
      assert.equal(tx_id, details.transactionId)
    end)

    it("refreshes once and retries when the bank says the token expired", function()
      local oauth = require "xs2a.sca.oauth"
      local sb = sandbox.shared()
      local c, events = support.new_client(variant, { capture_log = true })
      local k = assert(c:create_consent(consent_body(), PSU))
      local cfg = sb:config{}
      sb:config{ token_ttl = 1 }
      local ok, err = support.authorise(k)
      sb:config{ token_ttl = cfg.token_ttl or 3600 }
      assert(ok, tostring(err))
      -- the client believes the token is fresh; the bank has let it expire
      local rec = assert(oauth.read_record(c, k.token_key))
      rec.expires_at = os.time() + 3600
      oauth.set_record(c, k.token_key, rec)
      require("xs2a.parallel").sleep(2.1)
      local list = assert(k:accounts(PSU))
      assert.is_true(#list >= 1)
      local statuses = {}
      for _, e in ipairs(events) do
        if e.event == "response" and e.fields.path == "/v1/accounts" then statuses[#statuses + 1] = e.fields.status end
      end
      assert.same({ 401, 200 }, statuses)
      assert.is_not.equal(rec.access_token, oauth.read_record(c, k.token_key).access_token)
      -- a token the bank does not know (TOKEN_UNKNOWN) is refreshed once too
      -- (docs/paysera.md, reading 3); with a refresh token it does not know
      -- either, the bank's 401 comes back with the refused refresh as cause
      rec = assert(oauth.read_record(c, k.token_key))
      rec.access_token = "bogus-token"
      oauth.set_record(c, k.token_key, rec)
      assert(k:accounts(PSU))
      rec = assert(oauth.read_record(c, k.token_key))
      rec.access_token, rec.refresh_token = "bogus-token", "bogus-refresh-token"
      oauth.set_record(c, k.token_key, rec)
      local none, uerr = k:accounts(PSU)
      assert.is_nil(none)
      assert.equal(401, uerr.status)
      assert.equal("invalid_grant", uerr.cause and uerr.cause.code)
    end)

    it("reports an unknown account as a typed 404", function()
      local acc, err = consent:account("no-such-account", PSU)
      assert.is_nil(acc)
      assert.equal(404, err.status)
      assert.is_true(errors.is(err, "RESOURCE_UNKNOWN"))
    end)

    if variant == "berlin" then
      it("lists card accounts, card balances and card transactions", function()
        local cards = assert(consent:card_accounts(PSU))
        assert.is_true(#cards >= 1)
        local card = cards[1]
        assert.is_string(card.maskedPan)
        assert(consent:card_account(card.resourceId, PSU))
        assert(consent:card_balances(card.resourceId, PSU))
        local n = 0
        for tx, err in consent:card_transactions(card.resourceId, { bookingStatus = "booked", dateFrom = "2026-01-01" },
            PSU) do
          assert.is_not_false(tx, tostring(err))
          n = n + 1
        end
        assert.is_true(n >= 1)
      end)
    else
      it("refuses card accounts locally (the profile has none)", function()
        local cards, err = consent:card_accounts(PSU)
        assert.is_nil(cards)
        assert.equal("SERVICE_UNSUPPORTED", err.code)
      end)
    end

    it("refuses locally once frequencyPerDay is used up without the PSU", function()
      local c = assert(client:create_consent(consent_body(2), PSU))
      assert(support.authorise(c))
      assert(c:accounts())
      assert(c:accounts())
      local acc, err = c:accounts()
      assert.is_nil(acc)
      assert.equal("limit", err.kind, tostring(err))
      assert.equal("ACCESS_EXCEEDED", err.code)
      -- with the PSU present the call is not counted
      assert(c:accounts(PSU))
    end)
  end)
end
