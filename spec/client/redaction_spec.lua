-- Every event logged during a full run (consent + OAuth + accounts +
-- transactions + payment + refresh) is free of secrets. #network
local sandbox = require "support.sandbox"
local support = require "support.client"
local helper = require "helper"
local json = require "xs2a.json"

describe("log redaction #network", function()
  it("never logs a token, key, PSU-ID or full IBAN", function()
    sandbox.shared()
    local c, events = support.new_client("berlin", { capture_log = true })
    local psu = { ip = "198.51.100.7", id = "alice-psu-id-77" }
    local consent = assert(c:create_consent({ access = { allPsd2 = "allAccounts" }, recurringIndicator = true,
      validUntil = "2027-01-31", frequencyPerDay = 4, combinedServiceIndicator = false }, { psu = psu }))
    assert(support.authorise(consent))
    local accounts = assert(consent:accounts({ psu = psu }))
    local n = 0
    for tx in consent:transactions(accounts[1].resourceId, { dateFrom = "2026-01-01" }, { psu = psu }) do
      assert.is_not_false(tx)
      n = n + 1
    end
    assert.is_true(n > 0)
    local oauth = require "xs2a.oauth"
    local rec = assert(oauth.read_record(c, consent.token_key))
    -- force a refresh so refresh tokens go over the wire too
    assert(oauth.refresh(c, consent.token_key, rec.access_token))
    local rec2 = assert(oauth.read_record(c, consent.token_key))
    local p = assert(c:initiate_payment("sepa-credit-transfers", {
      debtorAccount = { iban = "LT203500000010001101", currency = "EUR" },
      instructedAmount = { currency = "EUR", amount = "1.00" },
      creditorAccount = { iban = "LT023500000010002201" }, creditorName = "Bob",
    }, { psu = psu }))
    assert(support.authorise(p))

    local secrets = { rec.access_token, rec2.access_token, psu.id, "LT203500000010001101", "LT023500000010002201" }
    if rec.refresh_token then secrets[#secrets + 1] = rec.refresh_token end
    if rec2.refresh_token then secrets[#secrets + 1] = rec2.refresh_token end
    for _, a in ipairs(accounts) do if a.iban then secrets[#secrets + 1] = a.iban end end
    -- private key material
    local key = helper.read(helper.pki("qseal.key")):match("%-%-%-%-%-\n([^\n]+)")
    secrets[#secrets + 1] = key
    local qwac_key = helper.read(helper.pki("qwac.key")):match("%-%-%-%-%-\n([^\n]+)")
    secrets[#secrets + 1] = qwac_key

    assert.is_true(#events > 20)
    local kinds = {}
    for _, e in ipairs(events) do
      kinds[e.event] = true
      local text = assert(json.encode({ e.level, e.event, e.fields }), "log fields must be JSON-encodable")
      for _, s in ipairs(secrets) do
        assert.is_nil(text:find(s, 1, true), "a secret reached the log in event " .. e.event)
      end
      -- no base64 certificate/signature blobs either
      assert.is_nil(text:find("MII", 1, true), "certificate material in event " .. e.event)
    end
    assert.is_true(kinds.request and kinds.response and true or false)
    -- the run did send bearer tokens and PSU-IDs: they are there, masked
    local bearer, psu_id = false, false
    for _, e in ipairs(events) do
      local h = e.fields.headers or {}
      if h.Authorization == "Bearer [redacted]" then bearer = true end
      if h["PSU-ID"] == "[redacted]" then psu_id = true end
    end
    assert.is_true(bearer)
    assert.is_true(psu_id)
  end)
end)
