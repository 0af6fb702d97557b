-- xs2a.core identities (xs2a.Identity) and the public xs2a.identity module.
local core = require "xs2a.core"
local identity = require "xs2a.identity"
local helper = require "helper"
local cli = require "core.openssl_cli"

local pki, read = helper.pki, helper.read
local PASS = "test-passphrase"

local function load(name, extra)
  local opts = { cert = pki(name .. ".pem"), key = pki(name .. ".key") }
  for k, v in pairs(extra or {}) do opts[k] = v end
  return core.identity(opts)
end

-- no error text or tostring may contain key material or a passphrase
local function assert_no_secret(s)
  assert.is_string(s)
  assert.is_nil(s:find("PRIVATE KEY", 1, true))
  assert.is_nil(s:find(PASS, 1, true))
  assert.is_nil(s:find("wrong-pass", 1, true))
  for _, name in ipairs({ "qwac.key", "other.key" }) do
    local body = read(pki(name)):match("KEY%-%-%-%-%-\n(.-)\n")
    assert.is_nil(s:find(body, 1, true))
  end
end

describe("xs2a.core.identity", function()
  describe("loading", function()
    it("loads a certificate and key from paths", function()
      local id, err = load("qwac")
      assert.is_nil(err)
      assert.equal("userdata", type(id))
      assert.equal("xs2a.Identity (CN=tpp.example, RSA 2048)", tostring(id))
      id:close()
    end)

    it("loads PEM contents from memory", function()
      local id = assert(core.identity{ cert = read(pki("qwac.pem")), key = read(pki("qwac.key")) })
      assert.equal("tpp.example", id:info().common_name)
      id:close()
    end)

    it("loads a DER certificate and a DER key", function()
      local der = assert(load("qwac")):cert_der()
      local keyder = cli.run("pkey -in " .. cli.quote(pki("qwac.key")) .. " -outform DER | base64 -w0")
      local id, err = core.identity{ cert = der, key = core.b64decode(keyder) }
      assert.is_nil(err)
      assert.equal(der, id:cert_der())
      id:close()
    end)

    it("loads an encrypted key with its passphrase", function()
      local id, err = core.identity{ cert = pki("qwac.pem"), key = pki("qwac-enc.key"), passphrase = PASS }
      assert.is_nil(err)
      assert.equal("PSDLT-BOL-TPP001", id:info().organization_identifier)
      id:close()
    end)

    it("loads PKCS#12 from a path and from DER bytes", function()
      local a = assert(core.identity{ p12 = pki("qwac.p12"), passphrase = PASS })
      local b = assert(core.identity{ p12 = read(pki("qwac.p12")), passphrase = PASS })
      local c = assert(load("qwac"))
      assert.equal(c:cert_der(), a:cert_der())
      assert.equal(c:cert_der(), b:cert_der())
      for _, der in ipairs(a:chain_der()) do   -- mkpki may bundle the CA
        assert.is_table(core.cert_info(der))
      end
      a:close(); b:close(); c:close()
    end)

    it("loads a key that sits in the certificate PEM", function()
      local both = read(pki("qseal.pem")) .. read(pki("qseal.key"))
      local id = assert(core.identity{ cert = both })
      assert.equal("RSA", id:info().key_type)
      id:close()
    end)

    it("keeps extra certificates of a PEM bundle as the chain", function()
      local bundle = read(pki("qwac.pem")) .. read(pki("ca.pem"))
      local id = assert(core.identity{ cert = bundle, key = pki("qwac.key") })
      local chain = id:chain_der()
      assert.equal(1, #chain)
      assert.equal("CN=lua-xs2a Test Root CA,O=lua-xs2a test,C=LT", core.cert_info(chain[1]).subject)
      id:close()
    end)
  end)

  describe("errors", function()
    local function fails(opts, code, pattern)
      local id, err, c = core.identity(opts)
      assert.is_nil(id)
      assert.equal(code, c)
      assert.matches(pattern, err)
      assert_no_secret(err)
    end

    it("answers a token certificate with a key from a file as a config error, without raising", function()
      -- found by the identity fuzz target: the certificate value is data, so this is an error value
      fails({ cert = "pkcs11:token=tpp;object=qwac;type=cert", key = pki("qwac.key") }, "config",
        "a certificate from a token needs key")
    end)

    it("names a file that cannot be read", function()
      fails({ cert = "/nonexistent/qwac.pem", key = pki("qwac.key") }, "io",
        "cannot read certificate file '/nonexistent/qwac.pem': No such file")
      fails({ cert = pki("qwac.pem"), key = "/nonexistent/qwac.key" }, "io", "cannot read private key file")
      fails({ cert = helper.pki_dir, key = pki("qwac.key") }, "io", "cannot read certificate file")
      fails({ p12 = "/nonexistent/x.p12", passphrase = PASS }, "io", "cannot read PKCS#12 file")
    end)

    it("says when the passphrase is wrong or missing", function()
      fails({ cert = pki("qwac.pem"), key = pki("qwac-enc.key"), passphrase = "wrong-pass" }, "passphrase",
        "wrong passphrase")
      fails({ cert = pki("qwac.pem"), key = pki("qwac-enc.key") }, "passphrase", "no passphrase was given")
      fails({ p12 = pki("qwac.p12"), passphrase = "wrong-pass" }, "passphrase", "wrong passphrase")
      fails({ p12 = pki("qwac.p12") }, "passphrase", "no passphrase was given")
    end)

    it("says when the key does not match the certificate", function()
      fails({ cert = pki("qwac.pem"), key = pki("other.key") }, "mismatch", "does not match the certificate")
      fails({ cert = pki("qwac.pem"), key = pki("qseal-ec.key") }, "mismatch", "does not match")
    end)

    it("rejects key types other than RSA and EC", function()
      local base = os.tmpname()
      local keyp, certp = base .. ".key", base .. ".pem"
      cli.run("req -x509 -newkey ed25519 -nodes -subj /CN=ed -days 1 -keyout " .. cli.quote(keyp)
        .. " -out " .. cli.quote(certp))
      fails({ cert = certp, key = keyp }, "unsupported", "unsupported key type ED25519")
      os.remove(keyp); os.remove(certp); os.remove(base)
    end)

    it("rejects garbage as certificate, key or PKCS#12", function()
      fails({ cert = "-----BEGIN CERTIFICATE-----\nnonsense\n-----END CERTIFICATE-----\n", key = pki("qwac.key") },
        "parse", "not a valid PEM or DER certificate")
      fails({ cert = "\48\1\2\3garbage", key = pki("qwac.key") }, "parse", "not a valid PEM or DER certificate")
      fails({ cert = pki("qwac.key"), key = pki("qwac.key") }, "parse", "not a valid PEM or DER certificate")
      fails({ cert = pki("qwac.pem"), key = pki("qwac.pem") }, "parse", "not a valid PEM or DER key")
      fails({ cert = pki("qwac.pem"), key = "\48\130\1\1junk" }, "parse", "not a valid PEM or DER key")
      fails({ cert = string.rep("x", 5000), key = pki("qwac.key") }, "parse", "neither a readable file")
      fails({ p12 = "\48\3\2\1\0", passphrase = PASS }, "parse", "PKCS#12")
      fails({ p12 = read(pki("qwac.pem")) }, "parse", "not PEM")
    end)

    it("does not echo in-memory key material when reading fails", function()
      local body = read(pki("other.key")):match("KEY%-%-%-%-%-\n(.-)\n")
      local id, err = core.identity{ cert = pki("qwac.pem"), key = body }
      assert.is_nil(id)
      assert_no_secret(err)
    end)

    it("raises on a programming error", function()
      assert.has_error(function() core.identity() end)
      assert.has_error(function() core.identity{} end)
      assert.has_error(function() core.identity{ cert = 1 } end)
      assert.has_error(function() core.identity{ p12 = "x", cert = "y" } end)
      assert.has_error(function() core.identity{ cert = load("qwac"):cert_der() } end)
    end)
  end)

  describe(":info()", function()
    it("reports what mkpki wrote into the QWAC", function()
      local id = assert(load("qwac"))
      local info = id:info()
      assert.same({ "PSP_AI", "PSP_PI", "PSP_IC" }, info.roles)
      assert.equal("PSDLT-BOL-TPP001", info.organization_identifier)
      assert.equal("Bank of Lithuania", info.nca_name)
      assert.equal("LT-BOL", info.nca_id)
      assert.equal("RSA", info.key_type)
      assert.equal(2048, info.key_bits)
      assert.is_false(info.expired)
      assert.equal("tpp.example", info.common_name)
      id:close()
    end)

    it("has exactly the documented fields, with their types", function()
      local types = {
        subject = "string", issuer = "string", serial = "string", not_before = "number", not_after = "number",
        organization_identifier = "string", roles = "table", nca_name = "string", nca_id = "string",
        key_type = "string", key_bits = "number", expired = "boolean", fingerprint = "string",
        common_name = "string",
      }
      for _, name in ipairs({ "qwac", "qseal-ec" }) do
        local id = assert(load(name))
        local info = id:info()
        for k, v in pairs(info) do assert.equal(types[k], type(v), name .. ": field " .. tostring(k)) end
        for k in pairs(types) do assert.is_not_nil(info[k], name .. ": missing " .. k) end
        assert.matches("^%x+$", info.serial)
        assert.equal(info.serial:upper(), info.serial)
        assert.matches("^%x+$", info.fingerprint)
        assert.equal(64, #info.fingerprint)
        if math.type then assert.equal("integer", math.type(info.not_after)) end   -- Lua 5.4
        id:close()
      end
    end)

    it("agrees with the openssl command line", function()
      local path = pki("qwac.pem")
      local info = assert(load("qwac")):info()
      local serial = cli.run("x509 -noout -serial -in " .. cli.quote(path)):match("serial=(%x+)")
      assert.equal((serial:upper():gsub("^0+(.)", "%1")), info.serial)
      assert.equal(cli.run("x509 -noout -subject -nameopt RFC2253 -in " .. cli.quote(path)):match("subject=(.*)"),
        info.subject)
      assert.equal(cli.run("x509 -noout -issuer -nameopt RFC2253 -in " .. cli.quote(path)):match("issuer=(.*)"),
        info.issuer)
      local fp = cli.run("x509 -noout -fingerprint -sha256 -in " .. cli.quote(path)):match("=([%x:]+)")
      assert.equal(fp:gsub(":", ""):lower(), info.fingerprint)
      local enddate = cli.run("x509 -noout -enddate -dateopt iso_8601 -in " .. cli.quote(path))
      local y, m, d, H, M, S = enddate:match("(%d+)-(%d+)-(%d+) (%d+):(%d+):(%d+)")
      if y then   -- older openssl has no -dateopt
        local t = os.time{ year = tonumber(y), month = tonumber(m), day = tonumber(d), hour = tonumber(H),
          min = tonumber(M), sec = tonumber(S) }
        local utc_offset = os.time(os.date("*t", t)) - os.time(os.date("!*t", t))
        assert.equal(t + utc_offset, info.not_after)
      end
      assert.is_true(info.not_before < os.time() and os.time() < info.not_after)
    end)

    it("reports PSP_AI only for the AI-only QWAC", function()
      local info = assert(load("qwac-ai")):info()
      assert.same({ "PSP_AI" }, info.roles)
      assert.equal("PSDLT-BOL-TPP002", info.organization_identifier)
    end)

    it("flags an expired certificate", function()
      local info = assert(load("qwac-expired")):info()
      assert.is_true(info.expired)
      assert.is_true(info.not_after < os.time())
    end)

    it("knows EC keys", function()
      local id = assert(load("qseal-ec"))
      local info = id:info()
      assert.equal("EC", info.key_type)
      assert.equal(256, info.key_bits)
      assert.matches("^xs2a%.Identity %(CN=.*, EC 256%)$", tostring(id))
    end)

    it("does not crash on malformed or foreign QCStatements", function()
      local base = os.tmpname()
      local keyp, certp = base .. ".key", base .. ".pem"
      local exts = {
        "DER:3003060100",                         -- truncated statement id
        "DER:30",                                 -- cut off
        "DER:3008300606040400819827",             -- OID cut in the middle
        "DER:300d300b06060400819827023001ff",     -- PSD2 statement with a BOOLEAN inside
        "DER:3010300e060604008198270230043002300005",  -- roles list holds an empty SEQUENCE
        "DER:300a3008060604008e4601010500",       -- another statement (QcCompliance-like)
        "DER:3080300006060400819827020000",       -- indefinite length
        "DER:30ffffffff",                         -- absurd length
      }
      for _, e in ipairs(exts) do
        cli.run("req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=bad -days 1"
          .. " -addext " .. cli.quote("1.3.6.1.5.5.7.1.3=" .. e)
          .. " -keyout " .. cli.quote(keyp) .. " -out " .. cli.quote(certp))
        local info = assert(core.cert_info(read(certp)))
        assert.same({}, info.roles)
        assert.is_nil(info.nca_name)
        local id = assert(core.identity{ cert = certp, key = keyp })
        assert.same({}, id:info().roles)
        id:close()
        os.remove(certp)
      end
      os.remove(keyp); os.remove(base)
    end)

    it("maps role OIDs to names when a role name is empty", function()
      local function tlv(tag, body)
        local n = #body
        local len = n < 128 and string.char(n) or string.char(0x81, n)
        return string.char(tag) .. len .. body
      end
      local function hex(s) return (s:gsub("..", function(h) return string.char(tonumber(h, 16)) end)) end
      local role = function(last, name)
        return tlv(0x30, tlv(0x06, hex("04008198270" .. "1" .. last)) .. tlv(0x0c, name))
      end
      local psd2 = tlv(0x30, tlv(0x30, role("01", "") .. role("03", "") .. role("02", "PSP_PI"))
        .. tlv(0x0c, "Test NCA") .. tlv(0x0c, "XX-NCA"))
      local ext = tlv(0x30, tlv(0x30, tlv(0x06, hex("040081982702")) .. psd2))
      local base = os.tmpname()
      local keyp, certp = base .. ".key", base .. ".pem"
      cli.run("req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=roles -days 1"
        .. " -addext " .. cli.quote("1.3.6.1.5.5.7.1.3=DER:" .. core.hex(ext))
        .. " -keyout " .. cli.quote(keyp) .. " -out " .. cli.quote(certp))
      local info = assert(core.cert_info(read(certp)))
      assert.same({ "PSP_AS", "PSP_AI", "PSP_PI" }, info.roles)
      assert.equal("Test NCA", info.nca_name)
      assert.equal("XX-NCA", info.nca_id)
      os.remove(keyp); os.remove(certp); os.remove(base)
    end)
  end)

  describe("certificate access", function()
    it("returns DER and PEM of the certificate", function()
      local id = assert(load("qseal"))
      local pem = id:cert_pem()
      assert.matches("^%-%-%-%-%-BEGIN CERTIFICATE%-%-%-%-%-\n", pem)
      assert.equal(read(pki("qseal.pem")):gsub("%s+$", ""), pem:gsub("%s+$", ""))
      assert.equal(pem, (core.identity{ cert = id:cert_der(), key = pki("qseal.key") }):cert_pem())
    end)

    it("_pkey_handle gives the ngx transport its own reference to the key, never key bytes", function()
      local id = assert(load("qseal-ec"))
      local h = id:_pkey_handle()
      assert.equal("userdata", type(h))
      assert.is_nil(getmetatable(h))          -- a bare pointer: nothing to print or serialise
      if not jit then return end              -- only LuaJIT's ffi (nginx) can take it
      local ffi = require "ffi"
      pcall(ffi.cdef, [[
        int EVP_PKEY_get_bits(const void *pkey);
        int EVP_PKEY_get_base_id(const void *pkey);
        void EVP_PKEY_free(void *pkey);
      ]])
      local crypto = ffi.load("crypto")
      local key = ffi.gc(ffi.cast("void *", h), crypto.EVP_PKEY_free)
      id:close()                              -- the handle holds its own reference
      collectgarbage()
      assert.equal(256, crypto.EVP_PKEY_get_bits(key))
      assert.equal(408, crypto.EVP_PKEY_get_base_id(key))   -- NID_X9_62_id_ecPublicKey
      assert.has_error(function() id:_pkey_handle() end, "identity is closed")
    end)

    it("never hands out the private key as bytes", function()
      local id = assert(load("qseal-ec"))
      assert.is_nil(id.export_key_pem)
      for name, f in pairs(getmetatable(id).__index) do
        if type(f) == "function" and name ~= "close" and name ~= "sign" and name ~= "_pkey_handle"
          and name ~= "_sign_berlin" then   -- signers: their outputs are signatures and headers
          local out = f(id)
          local text = type(out) == "table" and table.concat((function()
            local t = {}
            for _, v in pairs(out) do t[#t + 1] = tostring(v) end
            return t
          end)(), "\n") or tostring(out)
          assert.is_nil(text:find("PRIVATE KEY", 1, true), name)
        end
      end
    end)
  end)

  describe("core.cert_info()", function()
    it("reads PEM and DER certificates", function()
      local pem = read(pki("qseal.pem"))
      local a = assert(core.cert_info(pem))
      local b = assert(core.cert_info(assert(load("qseal")):cert_der()))
      assert.same(a, b)
      assert.same({ "PSP_AI", "PSP_PI", "PSP_IC" }, a.roles)
      assert.equal("RSA", a.key_type)
    end)

    it("returns nil, err for garbage and never crashes on truncated DER", function()
      local info, err = core.cert_info("not a certificate")
      assert.is_nil(info)
      assert.matches("cert_info: ", err)
      local der = assert(load("qwac")):cert_der()
      for n = 0, #der - 1, 7 do
        assert.is_nil((core.cert_info(der:sub(1, n))))
      end
    end)
  end)

  describe(":sign()", function()
    it("signs with RSA PKCS#1, PSS and EC in DER or raw form", function()
      local rsa, ec = assert(load("qseal")), assert(load("qseal-ec"))
      assert.equal(256, #rsa:sign("x"))
      assert.equal(256, #rsa:sign("x", { hash = "sha512", padding = "pss" }))
      assert.equal(64, #ec:sign("x", { ec_format = "raw" }))
      local der = ec:sign("x", { ec_format = "der" })
      assert.equal(0x30, der:byte(1))
      assert.is_true(cli.verify(pki("qseal-ec.pem"), "x", der))
      assert.is_true(cli.verify(pki("qseal.pem"), "x", rsa:sign("x", { hash = "sha384" }), "sha384"))
    end)

    it("raises on impossible options", function()
      local ec = assert(load("qseal-ec"))
      assert.has_error(function() ec:sign("x", { padding = "pss" }) end)
      assert.has_error(function() ec:sign("x", { hash = "md5" }) end)
      assert.has_error(function() ec:sign("x", { ec_format = "jose" }) end)
      assert.has_error(function() ec:sign() end)
    end)
  end)

  describe("lifecycle", function()
    it("closes twice without complaint and raises on use after close", function()
      local id = assert(load("qwac"))
      id:close()
      id:close()
      assert.equal("xs2a.Identity (closed)", tostring(id))
      for _, m in ipairs({ "info", "cert_der", "cert_pem", "chain_der", "_pkey_handle" }) do
        assert.has_error(function() id[m](id) end, "identity is closed")
      end
      assert.has_error(function() id:sign("x") end, "identity is closed")
    end)

    it("is freed by the garbage collector", function()
      local weak = setmetatable({}, { __mode = "v" })
      do
        weak[1] = assert(load("qwac"))
      end
      collectgarbage()
      collectgarbage()
      assert.is_nil(weak[1])
    end)

    it("closes a <close> variable on Lua 5.4", function()
      local chunk = load([[
        local core, opts = ...
        local keep
        do
          local id <close> = assert(core.identity(opts))
          keep = id
        end
        return tostring(keep)
      ]])
      if not chunk then return end    -- LuaJIT has no <close>
      assert.equal("xs2a.Identity (closed)",
        chunk(core, { cert = pki("qwac.pem"), key = pki("qwac.key") }))
    end)

    it("never shows key material in tostring", function()
      for _, n in ipairs({ "qwac", "qseal", "qseal-ec" }) do
        local id = assert(load(n))
        assert_no_secret(tostring(id))
      end
    end)
  end)
end)

describe("xs2a.identity", function()
  it("is callable and has .new", function()
    local a = assert(identity{ cert = pki("qwac.pem"), key = pki("qwac.key") })
    local b = assert(identity.new{ p12 = pki("qwac.p12"), passphrase = PASS })
    assert.equal(a:cert_der(), b:cert_der())
    assert.is_true(identity.is_identity(a))
    assert.is_false(identity.is_identity({}))
    assert.equal("PSDLT-BOL-TPP001", identity.cert_info(a:cert_pem()).organization_identifier)
  end)

  it("returns nil, err for a failure the caller should handle", function()
    local id, err = identity{ cert = pki("qwac.pem"), key = pki("other.key") }
    assert.is_nil(id)
    assert.matches("does not match", err)
    assert.has_error(function() identity("qwac.pem") end)
  end)
end)
