-- Paysera MAC signing selected by the documented client option
-- `mac = { id, key }` (no profile_overrides): against a sandbox whose Berlin
-- variant demands `Authorization: MAC ... ext="body_hash=..."` on PIS, a
-- payment goes through with the option and is refused without it; bad
-- option values are config errors.
local sandbox = require "support.sandbox"
local support = require "support.client"
local xs2a = require "xs2a"

local MAC = { id = "tpp-mac-id", key = "sandbox-mac-key-0123456789abcdef" }

describe("MAC signing option #network", function()
  local sb, body

  setup(function()
    sb = sandbox.start{ config = {
      rate = { per_second = 1000, per_hour = 100000, concurrent = 50 },
      variants = { berlin = { signing = { scheme = "mac", required_for = { "PIS" } } } },
      mac = MAC,
    } }
    local _, b = sb:control("GET", "/accounts")
    local acc = {}
    for _, a in ipairs(b.accounts) do acc[a.resourceId] = a end
    body = { instructedAmount = { currency = "EUR", amount = "1.00" },
      debtorAccount = { iban = acc["b-alice-eur"].iban }, creditorAccount = { iban = acc["b-bob-eur"].iban },
      creditorName = "Bob" }
  end)
  teardown(function() if sb then sb:stop() end end)

  it("signs PIS requests with MAC when the option is given", function()
    local seen
    local c = support.new_client("berlin", { limits = false, mac = { id = MAC.id, key = MAC.key } }, sb)
    local real = c.transport
    c.transport = { request = function(_, req) seen = req return real.request(real, req) end }
    local p, err = c:initiate_payment("sepa-credit-transfers", body, { psu_ip = "192.0.2.10" })
    c.transport = real
    assert.is_table(p, tostring(err))
    assert.matches('^MAC id="tpp%-mac%-id", ts="%d+", nonce="[^"]+", mac="[^"]+", ext="body_hash=',
      seen.headers.Authorization)
    assert.is_nil(seen.headers.Signature)
    -- AIS is not signed (the profile signs PIS only)
    local consent = assert(c:create_consent(support.consent_body(), { psu_ip = "192.0.2.10" }))
    assert.is_string(consent.id)
  end)

  it("is refused by the MAC bank without the option, and a wrong key is refused", function()
    local c = support.new_client("berlin", { limits = false }, sb)
    local p, err = c:initiate_payment("sepa-credit-transfers", body, { psu_ip = "192.0.2.10" })
    assert.is_nil(p)
    assert.equal(401, err.status)
    assert.equal("SIGNATURE_MISSING", err.code)
    local w = support.new_client("berlin", { limits = false, mac = { id = MAC.id, key = "not-the-key" } }, sb)
    local p2, err2 = w:initiate_payment("sepa-credit-transfers", body, { psu_ip = "192.0.2.10" })
    assert.is_nil(p2)
    assert.equal("SIGNATURE_INVALID", err2.code)
    assert.not_matches("not%-the%-key", tostring(err2))
  end)

  it("checks the option", function()
    for _, bad in ipairs({ "x", { id = "a" }, { key = "k" }, { id = "a", key = "k", services = "PIS" } }) do
      local c, err = xs2a.client{ profile = "paysera-berlin", base_url = sb.base_url,
        qwac = support.identity("qwac"), qseal = support.identity("qseal"), mac = bad }
      assert.is_nil(c)
      assert.equal("config", err.kind)
    end
  end)
end)
