-- Pure-Lua parts of the sandbox platform, outside nginx: the DER certificate
-- reader (robust to garbage) and the JSON/IBAN/date helpers.
local helper = require "helper"

local sh = require("support.proc").output

local function load_module(name)
  package.loaded["sandbox." .. name] = nil
  local saved = package.path
  package.path = helper.root .. "/sandbox/lua/?.lua;" .. package.path
  local m = require("sandbox." .. name)
  package.path = saved
  return m
end

local der = load_module("der")
local util = load_module("util")

local function cert_der(name)
  return sh("openssl x509 -in " .. helper.pki(name) .. " -outform DER")
end

describe("sandbox DER reader", function()
  it("reads serial, issuer, organization id and the PSD2 QCStatement of the QWAC", function()
    local c = assert(der.parse_cert(cert_der("qwac.pem")))
    local out = sh("openssl x509 -in " .. helper.pki("qwac.pem") .. " -noout -serial -issuer -nameopt RFC2253")
    assert.are.equal(out:match("serial=(%x+)"):gsub("^0+", ""), c.serial)
    assert.are.equal(out:match("issuer=([^\n]+)"), der.name_string(c.issuer))
    assert.are.equal("PSDLT-BOL-TPP001", c.org_id)
    assert.is_true(c.roles.PSP_AI and c.roles.PSP_PI and c.roles.PSP_IC)
    assert.are.equal("Bank of Lithuania", c.nca_name)
    assert.are.equal("LT-BOL", c.nca_id)
    assert.is_true(c.not_after > os.time())
  end)

  it("sees the single role of the AI-only QWAC and the past end of the expired one", function()
    local ai = assert(der.parse_cert(cert_der("qwac-ai.pem")))
    assert.are.same({ PSP_AI = true }, ai.roles)
    assert.are.equal("PSDLT-BOL-TPP002", ai.org_id)
    local expired = assert(der.parse_cert(cert_der("qwac-expired.pem")))
    assert.is_true(expired.not_after < os.time())
  end)

  it("reads a certificate without PSD2 data", function()
    local c = assert(der.parse_cert(cert_der("server.pem")))
    assert.is_nil(c.org_id)
    assert.is_nil(next(c.roles))
  end)

  it("returns nil and a message for garbage, truncations and flipped bytes", function()
    for _, junk in ipairs{ "", "\48", "\48\130\255\255", "\48\128\0\0", string.rep("\255", 50), "hello" } do
      local c, err = der.parse_cert(junk)
      assert.is_nil(c)
      assert.is_string(err)
    end
    local d = cert_der("qwac.pem")
    for i = 1, #d - 1, 5 do
      local ok, c, err = pcall(der.parse_cert, d:sub(1, i))
      assert.is_true(ok)
      assert.is_true(c == nil and type(err) == "string")
    end
    for i = 1, #d, 2 do
      local flipped = d:sub(1, i - 1) .. string.char((d:byte(i) + 0x5b) % 256) .. d:sub(i + 1)
      local ok = pcall(der.parse_cert, flipped)
      assert.is_true(ok, "raised on a flipped byte at " .. i)
    end
  end)

  it("turns a raw ECDSA r||s into DER", function()
    local r = "\0\128" .. string.rep("\1", 30)
    local s = string.rep("\2", 32)
    local d = der.ecdsa_raw_to_der(r .. s)
    local tag, a, b = der.tlv(d, 1, #d)
    assert.are.equal(0x30, tag)
    local t1, ra, rb, nxt = der.tlv(d, a, b)
    assert.are.equal(2, t1)
    assert.are.equal("\0\128" .. string.rep("\1", 30), d:sub(ra, rb))   -- leading zero kept for the sign bit
    local _, sa, sb = der.tlv(d, nxt, b)
    assert.are.equal(s, d:sub(sa, sb))
    assert.is_nil(der.ecdsa_raw_to_der("abc"))
  end)
end)

describe("sandbox util", function()
  it("encodes JSON with forced arrays, null and stable key order", function()
    assert.are.equal('{"a":[],"b":null,"c":[1,2],"d":{}}',
      util.json_encode{ d = {}, c = { 1, 2 }, b = util.null, a = util.array() })
    assert.are.equal('"x\\n\\"\\u0001"', util.json_encode('x\n"\1'))
    assert.are.equal("12.5", util.json_encode(12.5))
    assert.is_nil(util.json_encode{ f = print })
    assert.is_nil(util.json_decode("{nope"))
  end)

  it("makes and checks IBANs", function()
    local iban = util.make_iban("LT", "35000", "00100011011")
    assert.are.equal(20, #iban)
    assert.is_true(util.iban_valid(iban))
    assert.is_true(util.iban_valid("GB82 WEST 1234 5698 7654 32"))
    assert.is_false(util.iban_valid("GB83WEST12345698765432"))
    assert.is_false(util.iban_valid(nil))
  end)

  it("parses dates and recognises UUIDs", function()
    assert.are.equal(0, util.parse_date("1970-01-01"))
    assert.are.equal(1772323200, util.parse_date("2026-03-01"))
    assert.is_nil(util.parse_date("2026-02-30"))
    assert.is_nil(util.parse_date("2026-2-3"))
    assert.is_true(util.is_uuid("99391c7e-ad88-49ec-a2ad-99ddcb1f7721"))
    assert.is_false(util.is_uuid("99391c7e-ad88-49ec-a2ad"))
  end)
end)
