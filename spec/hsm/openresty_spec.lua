-- HSM identities inside real nginx workers (issue 12): each worker opens the
-- token's QWAC and QSealC itself after fork, with the PIN from `env`; a
-- consent and a payment end to end against the sandbox through the ngx
-- transport (mTLS key and seal key in the token); the pool key keeps two
-- identities apart; an identity opened by the master in init_by_lua is
-- refused in the workers with a typed error. Run by the openresty suite.
local helper = require "helper"
local harness = require "openresty.harness"
local sandbox = require "support.sandbox"
local softhsm = require "hsm.softhsm"
local psu = require "support.psu"

describe("#openresty HSM identities in nginx workers", function()
  local tok, ng, sb, base, consent_id
  local missing = softhsm.missing()

  local function call(fn, extra)
    local args = {}
    for k, v in pairs(base) do args[k] = v end
    for k, v in pairs(extra or {}) do args[k] = v end
    local r = ng:call("hsm.ngx_cases", fn, args, 90)
    assert.is_true(r.ok, r.err)
    return r.result
  end

  lazy_setup(function()
    if missing then return end
    tok = assert(softhsm.setup())
    sb = sandbox.start{}
    ng = harness.start{
      workers = 2,
      main = "env SOFTHSM2_CONF=" .. tok.conf .. ";\nenv XS2A_HSM_PIN=" .. tok.pin .. ";",
      -- the anti-pattern, for the refusal case: the master opens an identity
      init = ([[
    local ffi = require "ffi"
    ffi.cdef "int setenv(const char *name, const char *value, int overwrite);"
    ffi.C.setenv("SOFTHSM2_CONF", %q, 1)
    XS2A_HSM_MASTER_IDENTITY = assert(require("xs2a.identity").new{ cert = %q,
      key = "pkcs11:token=%s;object=qseal;type=private", pin = %q, module = %q })]]):format(
        tok.conf, helper.pki("qseal.pem"), tok.token, tok.pin, tok.module),
    }
    base = { base_url = sb.base_url, pki = helper.pki_dir, token = tok.token, module = tok.module }
  end)

  lazy_teardown(function()
    if ng then ng:stop() end
    if sb then sb:stop() end
    softhsm.teardown(tok)
  end)

  if missing then
    it("needs SoftHSM2, opensc and libengine-pkcs11-openssl (make deps)", function() error(missing) end)
    return
  end

  it("opens the token identities in each worker after fork", function()
    local pids = {}
    for _ = 1, 8 do
      local r = call("info")
      assert.equal("pkcs11", r.key_store)
      assert.equal(tok.token, r.token)
      assert.matches("pkcs11%)$", r.tostring)
      pids[r.pid] = true
    end
    local n = 0
    for _ in pairs(pids) do n = n + 1 end
    assert.is_true(n >= 1)
  end)

  it("refuses in a worker an identity the master opened in init_by_lua", function()
    local r = call("inherited")
    assert.is_true(r.loaded)
    assert.is_false(r.ok)
    assert.equal("config", r.code)
    assert.matches("does not cross fork", r.err, 1, true)
  end)

  local function authorise(start)
    local location, page = psu.authorize(start.url, { username = "alice", password = "alice-pass",
      decision = "approve" })
    assert.is_string(location, page and page.error)
    return location
  end

  it("runs a consent and a payment end to end with the keys in the token", function()
    local key = "hsm-consent-" .. os.time() .. "-" .. math.random(1, 1e9)
    local start = call("consent_start", { key = key })
    local done = call("consent_finish", { key = key, consent_id = start.consent_id, callback = authorise(start) })
    assert.equal("valid", done.status)
    assert.is_true(done.accounts >= 1)
    consent_id = start.consent_id
    local _, body = sb:control("GET", "/accounts")
    local debtor, creditor
    for _, a in ipairs(body.accounts) do
      if a.variant == "berlin" and a.kind == "account" then
        if a.owner == "alice" and a.tag == "main" then debtor = a end
        if a.owner == "bob" then creditor = creditor or a end
      end
    end
    key = "hsm-payment-" .. os.time() .. "-" .. math.random(1, 1e9)
    local p = call("payment_start", { key = key, debtor = debtor.iban, creditor = creditor.iban,
      currency = debtor.currency })
    assert.is_string(p.payment_id)
    local fin = call("payment_finish", { key = key, callback = authorise(p) })
    assert.is_string(fin.status)
    assert.not_equal("RJCT", fin.status)
  end)

  it("keeps two identities on separate connections: the bank sees each one's certificate", function()
    assert.is_string(consent_id, "needs the consent of the previous test")
    local r = call("two_identities", { consent_id = consent_id })
    assert.equal(4, #r)
    for _, x in ipairs(r) do
      if x.who == "hsm" then
        assert.equal("valid", x.status, x.err)
      else                                   -- TPP002 must not see TPP001's consent
        assert.is_nil(x.status)
        assert.equal(403, x.http)
        assert.matches("CONSENT_UNKNOWN", x.err, 1, true)
      end
    end
  end)
end)
