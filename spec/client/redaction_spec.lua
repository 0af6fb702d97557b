-- Every event logged during a full run (consent + OAuth + accounts +
-- transactions + payment + refresh) is free of secrets. #network
local sandbox = require "support.sandbox"
local support = require "support.client"
local helper = require "helper"
local json = require "xs2a.codec.json"

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
    local oauth = require "xs2a.sca.oauth"
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

describe("secrets in SCA input, errors, saved flows and tostring #network", function()
  local fs = require "client.flow_support"
  after_each(function() fs.restore() end)

  -- true when `text` holds the OTP as a JSON string value (a bare number
  -- such as a duration may contain the digits by chance)
  local function has_otp(text, otp)
    return text:find('"' .. otp, 1, true) ~= nil or text:find("=" .. otp, 1, true) ~= nil
  end

  it("never logs a password or OTP of the embedded approach, nor puts them in errors or saved flows", function()
    fs.sandbox()
    fs.configure{ sca = { approach = "embedded" } }
    local c, events = support.new_client("berlin", { capture_log = true, store = fs.store,
      profile_overrides = support.ANY_APPROACH })
    local consent = assert(c:create_consent({ access = { allPsd2 = "allAccounts" }, recurringIndicator = true,
      validUntil = "2027-01-31", frequencyPerDay = 4, combinedServiceIndicator = false },
      { psu_ip = "198.51.100.7", psu_id = "alice" }))
    local flow = assert(consent:authorise())
    assert.equal("credentials", assert(flow:next()).kind)
    local _, perr = flow:next{ psu_id = "alice", password = "Wr0ng-Secret-pw" }
    assert.equal("PSU_CREDENTIALS_INVALID", perr.code)
    assert(flow:next{ psu_id = "alice", password = "alice-pass" })
    local step = assert(flow:next{ method = "sms" })
    assert.equal("otp", step.kind)
    local _, oerr = flow:next{ otp = "987654" }
    assert.equal("SCA_INVALID", oerr.code)
    local saved = assert(json.encode(flow:save()))
    step = assert(flow:next{ otp = "123456" })
    assert.equal("valid", step.status)
    local saved_done = assert(json.encode(flow:save()))
    local rec = assert(require("xs2a.sca.oauth").read_record(c, consent.token_key) or { access_token = "-" })

    local texts = { saved, saved_done, tostring(perr), tostring(oerr), tostring(flow), tostring(c),
      tostring(consent), tostring(c.store), tostring(c.qwac), tostring(c.qseal), tostring(c.transport) }
    -- every field of the errors, too
    for _, e in ipairs({ perr, oerr }) do
      local copy = {}
      for k, v in pairs(e) do if type(v) ~= "table" and type(v) ~= "function" then copy[k] = v end end
      copy.messages = e.messages
      texts[#texts + 1] = assert(json.encode(copy))
    end
    for _, e in ipairs(events) do
      texts[#texts + 1] = assert(json.encode({ e.level, e.event, e.fields }))
    end
    assert.is_true(#events > 10)
    local key = helper.read(helper.pki("qwac.key")):match("%-%-%-%-%-\n([^\n]+)")
    for i, text in ipairs(texts) do
      for _, secret in ipairs({ "Wr0ng-Secret-pw", "alice-pass", key }) do
        assert.is_nil(text:find(secret, 1, true), "secret in text " .. i .. ": " .. text:sub(1, 200))
      end
      if rec.access_token ~= "-" then assert.is_nil(text:find(rec.access_token, 1, true)) end
      assert.is_false(has_otp(text, "987654"), "OTP in text " .. i)
      assert.is_false(has_otp(text, "123456"), "OTP in text " .. i)
      assert.is_nil(text:find("\n", 1, true) and i > 2 and i <= 11 and text or nil, "multi-line: " .. text)
    end
    -- the input did go over the wire, masked in the log
    local masked = 0
    for _, e in ipairs(events) do
      if e.event == "request" and type(e.fields.body) == "string" and e.fields.body:find("[redacted]", 1, true) then
        masked = masked + 1
      end
    end
    assert.is_true(masked >= 4, "password and OTP requests logged with masked bodies")
  end)
end)
