-- Hostile PSD2 QCStatements (ETSI TS 119 495) against both certificate parsers:
-- the core's (csrc/identity.c, core.cert_info) and the sandbox bank's own DER
-- reader (sandbox/lua/sandbox/der.lua). A role is what its OID says, never its
-- name text; malformed role data grants no role at all.
local core = require "xs2a.core"
local helper = require "helper"
local cli = require "core.openssl_cli"

local function load_sandbox_der()
  local saved = package.path
  package.path = helper.root .. "/sandbox/lua/?.lua;" .. package.path
  package.loaded["sandbox.der"] = nil
  local m = require "sandbox.der"
  package.path = saved
  return m
end
local der = load_sandbox_der()

-- DER building blocks
local function len(n)
  if n < 128 then return string.char(n) end
  if n < 256 then return string.char(0x81, n) end
  return string.char(0x82, math.floor(n / 256), n % 256)
end
local function tlv(tag, body) return string.char(tag) .. len(#body) .. body end
local function unhex(h) return (h:gsub("..", function(x) return string.char(tonumber(x, 16)) end)) end
local function oid(last) return tlv(0x06, unhex("0400819827") .. last) end   -- 0.4.0.19495.<last>
local ROLE = { AS = "0101", PI = "0102", AI = "0103", IC = "0104" }
local function role(r, name)      -- r: key of ROLE or raw hex of the arcs after 0.4.0.19495
  local body = oid(unhex(ROLE[r] or r))
  if name then body = body .. tlv(0x0c, name) end
  return tlv(0x30, body)
end
local function psd2(roles_body, info)
  info = info or tlv(0x30, tlv(0x30, roles_body) .. tlv(0x0c, "Test NCA") .. tlv(0x0c, "XX-NCA"))
  return tlv(0x30, oid(unhex("02")) .. info)
end
local function qcs(...) return tlv(0x30, table.concat({ ... })) end

-- a self-signed certificate carrying `ext` as its qcStatements extension;
-- returns its PEM (for the core) and DER (for the sandbox reader)
local function cert_with(ext)
  local base = os.tmpname()
  local keyp, certp = base .. ".key", base .. ".pem"
  cli.run("req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=hostile -days 1"
    .. " -addext " .. cli.quote("1.3.6.1.5.5.7.1.3=DER:" .. core.hex(ext))
    .. " -keyout " .. cli.quote(keyp) .. " -out " .. cli.quote(certp))
  local pem = helper.read(certp)
  os.remove(keyp); os.remove(certp); os.remove(base)
  return pem, assert(der.pem_to_der(pem, core.b64decode))
end

-- roles by both parsers: core list, sandbox list (nil when the sandbox refuses the certificate)
local function roles_of(ext)
  local pem, d = cert_with(ext)
  local info = assert(core.cert_info(pem))
  local c = der.parse_cert(d)
  return info.roles, c and c.role_list, info, c
end

describe("PSD2 roles by OID, in the core and in the sandbox's DER reader", function()
  it("reads the roles of a well-formed statement, names matching", function()
    local cr, sr, info, c = roles_of(qcs(psd2(role("AI", "PSP_AI") .. role("PI", "PSP_PI"))))
    assert.same({ "PSP_AI", "PSP_PI" }, cr)
    assert.same({ "PSP_AI", "PSP_PI" }, sr)
    assert.same({ PSP_AI = true, PSP_PI = true }, c.roles)
    assert.equal("Test NCA", info.nca_name)
    assert.equal("XX-NCA", c.nca_id)
  end)

  it("believes the OID when the name says another role", function()
    local cr, sr, _, c = roles_of(qcs(psd2(role("AI", "PSP_PI"))))
    assert.same({ "PSP_AI" }, cr)
    assert.same({ "PSP_AI" }, sr)
    assert.is_nil(c.roles.PSP_PI)
    -- a role name with an OID outside the role arc grants nothing
    cr, sr = roles_of(qcs(psd2(role("0105", "PSP_PI") .. role("0201", "PSP_AI"))))
    assert.same({}, cr)
    assert.same({}, sr)
  end)

  it("counts a repeated role once", function()
    local cr, sr = roles_of(qcs(psd2(role("AI", "PSP_AI") .. role("AI", "PSP_AI") .. role("IC", "x")
      .. role("AI", "PSP_IC"))))
    assert.same({ "PSP_AI", "PSP_IC" }, cr)
    assert.same({ "PSP_AI", "PSP_IC" }, sr)
  end)

  it("skips unknown OIDs: .0, .5, a longer arc, a foreign OID", function()
    local foreign = tlv(0x30, tlv(0x06, unhex("2a0304")) .. tlv(0x0c, "PSP_PI"))   -- 1.2.3.4
    local cr, sr = roles_of(qcs(psd2(role("0100", "PSP_AS") .. role("0105", "PSP_PI")
      .. role("010301", "PSP_AI") .. foreign .. role("IC", "PSP_IC"))))
    assert.same({ "PSP_IC" }, cr)
    assert.same({ "PSP_IC" }, sr)
  end)

  it("takes a role without a name from its OID, and refuses a name that is not text", function()
    local cr, sr = roles_of(qcs(psd2(role("AS") .. role("PI", ""))))
    assert.same({ "PSP_AS", "PSP_PI" }, cr)
    assert.same({ "PSP_AS", "PSP_PI" }, sr)
    cr, sr = roles_of(qcs(psd2(tlv(0x30, oid(unhex(ROLE.AI)) .. tlv(0x02, "\1")))))   -- INTEGER name
    assert.same({}, cr)
    assert.is_nil(sr)
  end)

  it("grants nothing for two PSD2 statements", function()
    local cr, sr = roles_of(qcs(psd2(role("AI", "PSP_AI")), psd2(role("PI", "PSP_PI"))))
    assert.same({}, cr)
    assert.is_nil(sr)
  end)

  it("grants nothing for truncated sequences", function()
    local good = role("AI", "PSP_AI")
    for _, roles_body in ipairs({
      good .. good:sub(1, 5),                                  -- second role cut inside its OID
      good .. "\48",                                           -- a role with no length
      good .. tlv(0x30, oid(unhex(ROLE.PI))):sub(1, -2),       -- second role one byte short
      good .. tlv(0x30, oid(unhex(ROLE.PI)) .. tlv(0x0c, "PSP_PI") .. "\0"), -- trailing byte in a role
    }) do
      local cr, sr = roles_of(qcs(psd2(roles_body)))
      assert.same({}, cr)
      assert.is_nil(sr)
    end
    -- the PSD2 statement without its QcType, and a QcType without its roles
    for _, stmt in ipairs({ tlv(0x30, oid(unhex("02"))), psd2(nil, tlv(0x30, "")) }) do
      local cr, sr = roles_of(qcs(stmt))
      assert.same({}, cr)
      assert.is_nil(sr)
    end
  end)

  it("grants nothing for over-long lengths", function()
    local good = role("AI", "PSP_AI")
    local inner = oid(unhex(ROLE.PI)) .. tlv(0x0c, "PSP_PI")
    for _, roles_body in ipairs({
      good .. "\48\132\255\255\255\255" .. inner,              -- 4-byte length far past the end
      good .. "\48\136\0\0\0\0\0\0\0" .. string.char(#inner) .. inner, -- 8-byte length form
      good .. "\48" .. string.char(#inner + 1) .. inner,        -- one longer than its container
      good .. "\48\128" .. inner .. "\0\0",                    -- indefinite length (BER, not DER)
    }) do
      local cr, sr = roles_of(qcs(psd2(roles_body)))
      assert.same({}, cr)
      assert.is_nil(sr)
    end
    -- the rolesOfPSP list itself claims more than the statement holds
    local body = good .. good
    local liar = tlv(0x30, oid(unhex("02")) .. tlv(0x30, "\48" .. len(#body + 10) .. body
      .. tlv(0x0c, "Test NCA") .. tlv(0x0c, "XX-NCA")))
    local cr, sr = roles_of(qcs(liar))
    assert.same({}, cr)
    assert.is_nil(sr)
  end)
end)
