-- The client's signers (xs2a.sign over the C core) against the sandbox's own
-- verifiers (LuaJIT FFI to libcrypto): two independent implementations of
-- each scheme must agree, over real TLS.
local sandbox = require "support.sandbox"
local identity = require "xs2a.identity"
local sign = require "xs2a.sign"
local helper = require "helper"

local function uuid()
  local f = assert(io.open("/proc/sys/kernel/random/uuid"))
  local s = f:read("*l")
  f:close()
  return s
end

describe("sandbox and client signatures", function()
  local sb, qseal, qseal_ec

  setup(function()
    sb = sandbox.shared()
    qseal = assert(identity.new{ cert = helper.pki("qseal.pem"), key = helper.pki("qseal.key") })
    qseal_ec = assert(identity.new{ cert = helper.pki("qseal-ec.pem"), key = helper.pki("qseal-ec.key") })
  end)

  teardown(function()
    qseal:close()
    qseal_ec:close()
  end)

  before_each(function()
    sb:reset()
    sb:config{ platform_test_routes = true }
  end)

  local function request(variant, signer, opts)
    opts = opts or {}
    local path = (variant == "berlin" and "/xs2a/berlin/1.3" or "/xs2a/georgia/0.8") .. "/v1/_platform/pis"
    local req = {
      method = "POST", url = sb.base_url .. path,
      headers = { ["X-Request-ID"] = uuid(), ["PSU-IP-Address"] = "192.0.2.7", ["Content-Type"] = "application/json" },
      body = '{"instructedAmount":{"currency":"EUR","amount":"1.00"}}',
    }
    if opts.psu_id then req.headers["PSU-ID"] = opts.psu_id end
    assert(signer:sign(req))
    if opts.tamper then req.body = req.body:gsub("1%.00", "2.00") end
    return sb:request{ method = "POST", url = req.url, headers = req.headers, body = req.body }
  end

  for _, case in ipairs{
    { "RSA PKCS#1", function() return sign.berlin(qseal) end },
    { "RSA-PSS", function() return sign.berlin(qseal, { padding = "pss" }) end },
    { "ECDSA", function() return sign.berlin(qseal_ec) end },
    { "SHA-512 and a lower-case serial", function()
      return sign.berlin(qseal, { digest = "SHA-512", keyid_serial_case = "lower" })
    end },
  } do
    it("verifies the client's Berlin Group signature: " .. case[1], function()
      local res = request("berlin", case[2](), { psu_id = "alice" })
      assert.are.equal(200, res.status, res.body)
      assert.are.equal("berlin", res.json.signer.scheme)
      res = request("berlin", case[2](), { tamper = true })
      assert.are.equal(401, res.status)
      assert.are.equal("SIGNATURE_INVALID", res.json.code)
    end)
  end

  for _, case in ipairs{
    { "RS256", function() return sign.jws(qseal) end },
    { "PS256", function() return sign.jws(qseal, { alg = "PS256" }) end },
    { "ES256", function() return sign.jws(qseal_ec) end },
  } do
    it("verifies the client's Georgian JWS (" .. case[1] .. ") and the client verifies the answer", function()
      local res = request("georgia", case[2]())
      assert.are.equal(200, res.status, res.body)
      assert.are.equal("jws", res.json.signer.scheme)
      local ok, why = sign.verify_jws({ status = res.status, headers = res.headers, body = res.body },
        { cert = helper.read(helper.pki("ca.pem")) })
      assert.is_true(ok, tostring(why))
      local tampered = { status = res.status, headers = res.headers, body = res.body .. " " }
      assert.is_false((sign.verify_jws(tampered, { cert = helper.read(helper.pki("ca.pem")) })))
      res = request("georgia", case[2](), { tamper = true })
      assert.are.equal("SIGNATURE_INVALID", res.json.code)
    end)
  end

  it("verifies the client's Paysera MAC", function()
    sb:config{ variants = { berlin = { signing = { scheme = "mac" } } } }
    local signer = sign.mac{ id = "tpp-mac-id", key = "sandbox-mac-key-0123456789abcdef" }
    local res = request("berlin", signer)
    assert.are.equal(200, res.status, res.body)
    assert.are.equal("mac", res.json.signer.scheme)
    local wrong = sign.mac{ id = "tpp-mac-id", key = "another-key" }
    res = request("berlin", wrong)
    assert.are.equal("SIGNATURE_INVALID", res.json.code)
  end)
end)
