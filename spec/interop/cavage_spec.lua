-- Berlin Group signature (draft-cavage profile, IG 1.3.8 §4.2) against
-- third-party verifiers: joyent's `http-signature` (npm) parses and verifies
-- the Signature header of what the client sends, and Node's crypto.verify
-- checks it again over the signing string spec/interop/bank.mjs rebuilds from
-- the documented rule (RSA PKCS#1 v1.5, ECDSA DER); Node's crypto checks the
-- Digest, also on the IG's published example body.
local support = require "support.client"
local helper = require "helper"
local proc = require "support.proc"
local interop = require "interop.bank"
local sign = require "xs2a.sign"
local common = require "xs2a.sign.common"
local transport = require "xs2a.transport"

describe("Berlin Group signature against http-signature and Node crypto #interop", function()
  local bank, t

  setup(function()
    bank = interop.start()
    t = assert(transport.new{ kind = "curl", identity = support.identity("qwac"), ca_file = helper.pki("ca.pem") })
  end)
  teardown(function() if bank then bank:stop() end end)

  local function last() local v = bank:verdicts() return v[#v] end

  for _, case in ipairs({ { "qseal", "rsa-sha256" }, { "qseal-ec", "ecdsa-sha256" } }) do
    it("a payment the client signs with " .. case[2] .. " verifies", function()
      local c = support.new_client("berlin", { base_url = bank.url, qseal = case[1], ca_file = helper.pki("ca.pem"),
        store = require("xs2a.store").memory() })
      local p, err = c:initiate_payment("sepa-credit-transfers", {
        instructedAmount = { currency = "EUR", amount = "1.00" },
        debtorAccount = { iban = "LT601010012345678901" }, creditorAccount = { iban = "LT121000011101001000" },
        creditorName = "Bob" }, { psu_ip = "192.0.2.10" })
      local v = last()
      assert.is_table(v, "the bank logged no verdict")
      assert.is_true(v.ok, tostring(v.reason))
      assert.matches("^http%-signature ", v.verifier)
      assert.equal(case[2], v.details.alg)
      assert.matches("^SN=%x+,CA=", v.details.keyId)
      assert.is_table(p, tostring(err))
      assert.matches("^interop%-", p.id)
    end)
  end

  it("SHA-512 (Digest and signature hash) and the lowercase keyId serial verify too", function()
    for _, c in ipairs({ { "qseal", "rsa-sha512" }, { "qseal-ec", "ecdsa-sha512" } }) do
      local req = { method = "POST", url = bank.url .. "/xs2a/berlin/v1/payments/sepa-credit-transfers",
        body = '{"instructedAmount":{"currency":"EUR","amount":"3.00"}}',
        headers = { ["X-Request-ID"] = "5d1b2a34-0000-4000-8000-000000000002", ["Content-Type"] = "application/json",
          ["TPP-Redirect-URI"] = "https://tpp.example/callback" } }
      assert(sign.berlin(support.identity(c[1]), { digest = "SHA-512", keyid_serial_case = "lower" }):sign(req))
      assert.matches("^SHA%-512=", req.headers.Digest)
      assert.equal(201, assert(t:request(req)).status)
      local v = last()
      assert.is_true(v.ok, c[2] .. ": " .. tostring(v.reason))
      assert.equal(c[2], v.details.alg)
      assert.same({ "digest", "x-request-id", "tpp-redirect-uri" }, v.details.headers)
    end
  end)

  it("a signed header changed after signing, or another body, is rejected", function()
    local function signed()
      local req = { method = "POST", url = bank.url .. "/xs2a/berlin/v1/payments/sepa-credit-transfers",
        body = '{"instructedAmount":{"currency":"EUR","amount":"2.00"}}',
        headers = { ["X-Request-ID"] = "5d1b2a34-0000-4000-8000-000000000001", ["Content-Type"] = "application/json",
          ["PSU-ID"] = "alice", ["PSU-IP-Address"] = "192.0.2.10" } }
      assert(sign.berlin(support.identity("qseal")):sign(req))
      return req
    end
    local req = signed()
    req.headers["PSU-ID"] = "mallory"
    local res = assert(t:request(req))
    assert.equal(401, res.status)
    assert.matches("http%-signature: signature does not verify", last().reason)
    req = signed()
    req.body = req.body:gsub("2%.00", "9.00")
    res = assert(t:request(req))
    assert.equal(401, res.status)
    assert.matches("Digest does not match", last().reason)
    -- untouched, the same request passes (the rejections are the tampering's)
    res = assert(t:request(signed()))
    assert.equal(201, res.status)
  end)

  it("the Digest agrees with Node's crypto and the IG 1.3.8 example vector", function()
    local ig = "eyAgICANCiAgICJpbnN0cnVjdGVkQW1vdW50IjogeyJjdXJyZW5jeSI6ICJFVVIiLCAiYW1vdW50IjogIjEyMyJ9LA0KICAgImRl"
      .. "YnRvckFjY291bnQiOiB7ImliYW4iOiAiREUyMzEwMDEwMDEwMTIzNDU2Nzg5In0sDQogICAiY3JlZGl0b3IiOiB7Im5hbWUiOiAiTWVyY2hh"
      .. "bnQxMjMifSwNCiAgICJjcmVkaXRvckFjY291bnQiOiB7ImliYW4iOiAiREUyMzEwMDEyMDAyMDEyMzQ1Njc4OSJ9LA0KICAgInJlbWl0dGFu"
      .. "Y2VJbmZvcm1hdGlvblVuc3RydWN0dXJlZCI6ICJSZWYgTnVtYmVyIE1lcmNoYW50Ig0KfQ=="
    local body = assert(require("xs2a.core").b64decode(ig))
    local node = proc.output("node -e " .. proc.quote(
      "const c=require('crypto');const b=Buffer.from(process.argv[1],'base64');"
      .. "for (const a of ['sha256','sha512']) console.log(c.createHash(a).update(b).digest('base64'))") .. " " .. ig)
    local n256, n512 = node:match("^(%S+)\n(%S+)\n$")
    assert.equal("iXhCYo105ae/y5v/UJkQWuBe1I+mdKG0JxwU35vwsgo=", n256)   -- xs2a-reference §4.1 vector 2
    assert.equal("SHA-256=" .. n256, common.digest_value("SHA-256", body))
    assert.equal("SHA-512=" .. n512, common.digest_value("SHA-512", body))
  end)
end)
