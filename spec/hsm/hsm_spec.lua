-- Keys in a hardware security module (issue 12), proven with SoftHSM2: a
-- private token per run holds the test PKI's QWAC and QSealC keys as
-- sensitive, non-extractable objects. Each scenario runs in a process of its
-- own (spec/hsm/child.lua) under the interpreter busted runs in, so the
-- lua54 suite proves Lua 5.4 and the luajit suite LuaJIT; the nginx workers
-- are spec/hsm/openresty_spec.lua. #network
local helper = require "helper"
local proc = require "support.proc"
local softhsm = require "hsm.softhsm"
local sandbox = require "support.sandbox"
local cjson = require "cjson"

local LUA = rawget(_G, "jit") and "luajit" or "lua5.4"
local missing = softhsm.missing()

describe("HSM identities through PKCS#11 (SoftHSM2, " .. LUA .. ") #network", function()
  local tok, extra_env = nil, ""

  local function child(case, env)
    local cmd = table.concat({
      tok.env, "XS2A_HSM_MODULE=" .. proc.quote(tok.module), "XS2A_HSM_TOKEN=" .. tok.token,
      "XS2A_HSM_PIN=" .. proc.quote(tok.pin), "XS2A_PKI=" .. proc.quote(helper.pki_dir), extra_env, env or "",
      LUA, "spec/hsm/child.lua", case }, " ")
    local _, out = proc.run(cmd)
    local line = out:match("RESULT (%b{})")
    assert(line, "child " .. case .. " printed no result:\n" .. out)
    local r = cjson.decode(line)
    assert(r.ok, "child " .. case .. ": " .. tostring(r.err))
    return r.result, out
  end

  setup(function()
    if missing then return end
    tok = assert(softhsm.setup())
  end)

  teardown(function() softhsm.teardown(tok) end)

  if missing then
    it("needs SoftHSM2, opensc and libengine-pkcs11-openssl (make deps)", function()
      error(missing)
    end)
    return
  end

  it("keeps the keys in the token as sensitive, non-extractable objects", function()
    local listing = tok.objects()
    local private = 0
    for access in listing:gmatch("Private Key Object[^\n]*\n.-Access:%s*([^\n]*)") do
      private = private + 1
      assert.matches("sensitive", access)
      assert.is_nil(access:gsub("never extractable", ""):find("extractable"), access)
    end
    assert.equal(3, private)
  end)

  it("loads identities from pkcs11: URIs, certificate from a file or the token", function()
    local r = child("identity")
    assert.equal("pkcs11", r.key_store)
    assert.equal("xs2a-test", r.token)
    assert.equal("RSA", r.key_type)
    assert.equal(2048, r.key_bits)
    assert.equal(r.file_fingerprint, r.fingerprint)
    assert.equal("xs2a.Identity (CN=Example TPP UAB seal, RSA 2048, pkcs11)", r.tostring)
    assert.matches("EC 256, pkcs11%)$", r.tostring_ec)
    assert.same({ "PSP_AI", "PSP_PI", "PSP_IC" }, r.qwac_roles)
    assert.is_true(r.rsa_ok)
    assert.is_true(r.pss_ok)
    assert.is_true(r.ec_ok)
    assert.is_false(r.ec_bad)
  end)

  it("signs Berlin Group (RSA and ECDSA) and Georgian JWS unchanged with token keys", function()
    local r = child("signers")
    assert.same({ berlin_qseal = true, ["berlin_qseal-ec"] = true, jws_qseal = true, ["jws_qseal-ec"] = true }, r)
  end)

  it("runs a consent and a payment end to end against the sandbox, mTLS and seal keys in the token", function()
    -- a sandbox of its own: the child's limiter cannot see this process's
    -- requests, so it must not share the per-TPP budget of the shared one
    local sb = sandbox.start{}
    finally(function() sb:stop() end)
    local _, body = sb:control("GET", "/accounts")
    local ibans = {}
    for _, variant in ipairs({ "berlin", "georgia" }) do
      local debtor, creditor
      for _, a in ipairs(body.accounts) do
        if a.variant == variant and a.kind == "account" then
          if a.owner == "alice" and a.tag == "main" then debtor = a end
          if a.owner == "bob" then creditor = creditor or a end
        end
      end
      ibans[#ibans + 1] = variant .. "=" .. debtor.iban .. "," .. creditor.iban .. "," .. debtor.currency
    end
    local r = child("e2e", "XS2A_SANDBOX_URL=" .. proc.quote(sb.base_url) .. " XS2A_HSM_IBANS="
      .. proc.quote(table.concat(ibans, ";")))
    for _, key in ipairs({ "berlin_qseal", "georgia_qseal", "berlin_qseal-ec" }) do
      assert.equal("valid", r[key .. "_consent"], key)
      assert.is_true(r[key .. "_accounts"] > 0, key)
      assert.is_string(r[key .. "_payment"], key)
      assert.is_string(r[key .. "_payment_status"], key)
    end
  end)

  it("gives each failure its typed error and never shows the PIN", function()
    local r, raw = child("errors")
    local want = {
      wrong_pin = { "passphrase", "wrong PIN" },
      no_pin = { "passphrase", "no PIN was given" },
      pin_env_unset = { "passphrase", "XS2A_HSM_NO_SUCH_VARIABLE is not set" },
      pin_cb_raises = { "passphrase", "PIN callback raised" },
      pin_in_uri = { "config", "must not carry the PIN" },
      module_missing = { "config", "softhsm2" },
      token_missing = { "not_found", "not found" },
      object_missing = { "not_found", "not found" },
      cert_missing = { "not_found", "certificate was not found" },
      mismatch = { "mismatch", "does not match" },
      other_module = { "config", "one PKCS#11 module per process" },
    }
    for name, w in pairs(want) do
      local e = r[name]
      assert.is_false(e.ok, name)
      assert.equal(w[1], e.code, name .. ": " .. tostring(e.err))
      assert.matches(w[2], e.err, 1, true)
    end
    assert.is_nil(raw:find(tok.pin, 1, true))            -- not in any message of the child
  end)

  it("names the Debian package when the engine is missing", function()
    local r = child("no_engine", "OPENSSL_ENGINES=" .. proc.quote(tok.dir))
    assert.is_false(r.ok)
    assert.equal("config", r.code)
    assert.matches("libengine-pkcs11-openssl", r.err, 1, true)
  end)

  if LUA == "luajit" then
    it("refuses a handle across fork(); a child that opens its own identity signs", function()
      local r = child("fork")
      assert.is_false(r.inherited.ok)
      assert.equal("config", r.inherited.code)
      assert.matches("does not cross fork", r.inherited.err, 1, true)
      assert.is_false(r.inherited_handle)
      assert.is_true(r.own)
      assert.is_true(r.parent_after)
    end)

    it("re-opens once when the token's sessions are lost, then fails cleanly with io", function()
      local r = child("lost")
      for _, name in ipairs({ "callback", "string" }) do
        local e = r[name]
        assert.is_false(e.ok, name)
        assert.equal("io", e.code, name)
        assert.is_false(e.ok2, name)
        assert.equal("io", e.code2, name)
      end
      assert.matches("opening the key again failed", r.callback.err, 1, true)
      assert.matches("wiped after login", r.string.err, 1, true)
    end)
  end
end)
