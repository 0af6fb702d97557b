-- Georgian JWS (x-jws-signature) against a third-party implementation:
-- panva's `jose` (npm) in spec/interop/bank.mjs verifies what the client
-- signs (RS256 and ES256, b64=false, crit sigT/sigD, x5c), over the payload
-- the bank rebuilds from the documented rule out of the headers as they
-- arrived; and jose signs the bank's answer, which the client's
-- xs2a.sign.verify must accept (bank pinned) and refuse once tampered.
local support = require "support.client"
local helper = require "helper"
local proc = require "support.proc"
local interop = require "interop.bank"
local sign = require "xs2a.sign"
local verify = require "xs2a.sign.verify"
local transport = require "xs2a.transport"

describe("Georgian JWS against jose #interop", function()
  local bank, t

  setup(function()
    bank = interop.start()
    t = assert(transport.new{ kind = "curl", identity = support.identity("qwac"), ca_file = helper.pki("ca.pem") })
  end)
  teardown(function() if bank then bank:stop() end end)

  local PAYMENT = { instructedAmount = { currency = "GEL", amount = "1.00" },
    debtorAccount = { iban = "GE29NB0000000101904917" }, creditorAccount = { iban = "GE60NB0000000123456789" },
    creditorName = "Bob" }

  local function client(qseal)
    return support.new_client("georgia", { base_url = bank.url, qseal = qseal, ca_file = helper.pki("ca.pem"),
      response_cert = helper.pki("aspsp-seal.pem"), store = require("xs2a.store").memory() })
  end

  local function last() local v = bank:verdicts() return v[#v] end

  for _, case in ipairs({ { "qseal", "RS256" }, { "qseal-ec", "ES256" } }) do
    it("a payment the client signs with " .. case[2] .. " verifies with jose; jose's signed answer is accepted",
      function()
        local p, err = client(case[1]):initiate_payment("domestic", PAYMENT, { psu_ip = "192.0.2.10" })
        local v = last()
        assert.is_table(v, "the bank logged no verdict")
        assert.is_true(v.ok, tostring(v.reason))
        assert.matches("^jose ", v.verifier)
        assert.equal(case[2], v.details.alg)
        assert.is_true(#v.details.pars >= 7)   -- target, host, id, type, length, digest, psu-ip-address
        -- the answer carried jose's signature and the client verified it
        assert.is_table(p, tostring(err))
        assert.matches("^interop%-", p.id)
        -- a GET (no body: no content-type, no content-length in the set)
        local st, serr = p:status()
        assert.equal("RCVD", st, tostring(serr))
        v = last()
        assert.is_true(v.ok, tostring(v.reason))
        assert.equal("GET", v.method)
        assert.same({ "(request-target)", "host", "x-request-id", "digest" }, v.details.pars)
      end)
  end

  local function signed_request(qseal, opts)
    local req = { method = "POST", url = bank.url .. "/xs2a/georgia/0.8/v1/payments/domestic",
      body = '{"instructedAmount":{"currency":"GEL","amount":"2.00"}}',
      headers = { ["X-Request-ID"] = "7d1b2a34-0000-4000-8000-00000000000" .. math.random(9),
        ["Content-Type"] = "application/json", ["PSU-IP-Address"] = "192.0.2.10" } }
    if type(qseal) == "string" then qseal = support.identity(qseal) end
    assert(sign.jws(qseal, opts):sign(req))
    return req
  end

  it("jose verifies every JWS alg the signer offers for RSA (RS*, PS* with the hash-length salt RFC 7518 asks)",
    function()
      for _, alg in ipairs({ "RS256", "RS384", "RS512", "PS256", "PS384", "PS512" }) do
        local req = signed_request("qseal", { alg = alg })
        local res = assert(t:request(req))
        local v = last()
        assert.is_true(v.ok, alg .. ": " .. tostring(v.reason))
        assert.equal(alg, v.details.alg)
        assert.equal(201, res.status)
      end
    end)

  it("jose verifies ES384 and ES512 (P-521: r||s of 66 bytes each) from keys the test CA certifies", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. proc.quote(dir)))
    for _, c in ipairs({ { "secp384r1", "ES384" }, { "secp521r1", "ES512" } }) do
      local key, csr, cert = dir .. "/" .. c[2] .. ".key", dir .. "/" .. c[2] .. ".csr", dir .. "/" .. c[2] .. ".pem"
      local ok, out = proc.run(string.format("openssl ecparam -name %s -genkey -noout -out %s && "
        .. "openssl req -new -key %s -subj '/C=LT/O=interop TPP/CN=%s seal' -out %s && "
        .. "openssl x509 -req -in %s -CA %s -CAkey %s -set_serial %d -days 2 -out %s",
        c[1], key, key, c[2], csr, csr, proc.quote(helper.pki("ca.pem")), proc.quote(helper.pki("ca.key")),
        math.random(1000, 999999), cert))
      assert(ok, out)
      local id = assert(require("xs2a.identity").new{ cert = cert, key = key })
      local req = signed_request(id)
      assert.equal(201, assert(t:request(req)).status)
      local v = last()
      assert.is_true(v.ok, c[2] .. ": " .. tostring(v.reason))
      assert.equal(c[2], v.details.alg)
    end
    os.execute("rm -rf " .. proc.quote(dir))
  end)

  it("jose rejects a signed header changed after signing, and a flipped signature", function()
    local req = signed_request("qseal")
    req.headers["PSU-IP-Address"] = "192.0.2.11"
    local res = assert(t:request(req))
    assert.equal(401, res.status)
    local v = last()
    assert.is_false(v.ok)
    assert.matches("signature verification failed", v.reason)

    req = signed_request("qseal-ec")
    local h = req.headers["x-jws-signature"]
    local last_char = h:sub(-2, -2)
    req.headers["x-jws-signature"] = h:sub(1, -3) .. (last_char == "A" and "B" or "A") .. h:sub(-1)
    res = assert(t:request(req))
    assert.equal(401, res.status)
    assert.matches("signature verification failed", last().reason)
  end)

  it("xs2a.sign.verify accepts jose's response signatures (RS256, ES256) with the bank pinned, refuses them tampered",
    function()
    local req = signed_request("qseal")
    local res = assert(t:request(req))
    assert.equal(201, res.status)
    local id = req.headers["X-Request-ID"]
    local seal = assert(require("support.proc").read_all(helper.pki("aspsp-seal.pem")))
    local opts = { cert = seal, x_request_id = id, organization_identifier = "PSDLT-BOL-ASPSP1" }
    local ok, why = verify.verify_jws(res, opts)
    assert.is_true(ok, tostring(why))
    -- another status than the one jose signed
    ok = verify.verify_jws({ status = 200, headers = res.headers, body = res.body }, opts)
    assert.is_false(ok)
    -- another body: the Digest no longer matches
    ok, why = verify.verify_jws({ status = res.status, headers = res.headers, body = res.body .. " " }, opts)
    assert.is_false(ok)
    assert.matches("[Dd]igest", why)
    -- another signer pinned: the bank's seal is refused
    ok = verify.verify_jws(res, { cert = seal, x_request_id = id,
      organization_identifier = "PSDLT-OTHER" })
    assert.is_false(ok)
    -- an ES256 answer (jose's raw r||s) from a P-256 seal
    req = signed_request("qseal")
    req.headers["x-interop-sign-with"] = "ec"
    res = assert(t:request(req))
    local ec = assert(require("support.proc").read_all(helper.pki("qseal-ec.pem")))
    local eopts = { cert = ec, x_request_id = req.headers["X-Request-ID"],
      organization_identifier = "PSDLT-BOL-TPP001" }
    local ph
    ok, ph = verify.verify_jws(res, eopts)
    assert.is_true(ok, tostring(ph))
    assert.equal("ES256", ph.alg)
    local sig = res.headers["x-jws-signature"]
    res.headers["x-jws-signature"] = sig:sub(1, -3) .. (sig:sub(-2, -2) == "A" and "B" or "A") .. sig:sub(-1)
    assert.is_false((verify.verify_jws(res, eopts)))
  end)
end)
