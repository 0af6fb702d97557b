-- xs2a.core crypto functions and the public xs2a.crypto module.
local core = require "xs2a.core"
local crypto = require "xs2a.crypto"
local helper = require "helper"
local cli = require "core.openssl_cli"
local V = dofile("spec/fixtures/vectors.lua")

describe("xs2a.core crypto", function()
  describe("digest()", function()
    it("reproduces the FIPS 180 'abc' vectors", function()
      for alg, hex in pairs(V.digest_abc) do
        assert.equal(hex, core.hex(core.digest(alg, "abc")))
      end
    end)
    it("accepts SHA-256 style names", function()
      assert.equal(V.digest_abc.sha256, core.hex(core.digest("SHA-256", "abc")))
    end)
    it("raises on an unknown algorithm", function()
      assert.has_error(function() core.digest("md5", "x") end)
    end)
  end)

  describe("hmac()", function()
    it("reproduces RFC 4231 test cases 1 and 2", function()
      for _, c in ipairs(V.hmac) do
        assert.equal(c.sha256, core.hex(core.hmac("sha256", c.key, c.data)))
        assert.equal(c.sha512, core.hex(core.hmac("sha512", c.key, c.data)))
      end
    end)
  end)

  describe("b64encode() / b64decode()", function()
    it("reproduces RFC 4648 §10", function()
      for _, c in ipairs(V.base64) do
        assert.equal(c[2], core.b64encode(c[1]))
        assert.equal(c[1], core.b64decode(c[2]))
      end
    end)
    it("round-trips every length of random bytes", function()
      for n = 0, 70 do
        local s = core.random(n)
        assert.equal(s, core.b64decode(core.b64encode(s)))
        assert.equal(s, core.b64url_decode(core.b64url_encode(s)))
      end
    end)
    it("returns nil, err on bad input", function()
      for _, bad in ipairs({ "Zg=", "Zg", "Z===", "Zm9v!", "Zm 9v", "Zm9v\n", "Zh==", "=Zg=", "Zm-_" }) do
        local s, err = core.b64decode(bad)
        assert.is_nil(s, bad)
        assert.matches("^b64decode: ", err)
      end
    end)
    it("uses the URL alphabet without padding for b64url", function()
      assert.equal("-_8", core.b64url_encode("\251\255"))
      assert.equal("\251\255", core.b64url_decode("-_8"))
      assert.is_nil((core.b64url_decode("-_8=")))
      assert.is_nil((core.b64url_decode("+/8")))
      assert.is_nil((core.b64url_decode("A")))
    end)
  end)

  describe("random()", function()
    it("returns n fresh bytes", function()
      assert.equal("", core.random(0))
      assert.equal(32, #core.random(32))
      assert.equal(100000, #core.random(100000))
      assert.not_equal(core.random(16), core.random(16))
    end)
    it("raises on a negative size", function()
      assert.has_error(function() core.random(-1) end)
    end)
  end)

  describe("uuid4()", function()
    it("returns distinct RFC 4122 version 4 UUIDs", function()
      local seen = {}
      for _ = 1, 500 do
        local u = core.uuid4()
        assert.matches("^%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89ab]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$", u)
        assert.is_nil(seen[u])
        seen[u] = true
      end
    end)

    -- ids come from a per-state pool of random bytes: a forked child (an
    -- nginx worker) must not hand out the ids its parent hands out next
    local fork_it = rawget(_G, "jit") and it or pending
    fork_it("gives a forked child ids of its own (LuaJIT: fork through the ffi)", function()
      local ffi = require "ffi"
      pcall(ffi.cdef, "int fork(void); int waitpid(int pid, int *status, int options); void _exit(int status);")
      core.uuid4()                                   -- the pool is filled here, before fork
      local tmp = os.tmpname()
      local pid = ffi.C.fork()
      if pid == 0 then
        local f = io.open(tmp, "w")
        for _ = 1, 4 do f:write(core.uuid4(), "\n") end
        f:close()
        ffi.C._exit(0)
      end
      ffi.C.waitpid(pid, ffi.new("int[1]"), 0)
      local child = {}
      for line in io.lines(tmp) do child[line] = true end
      os.remove(tmp)
      local n = 0
      for _ in pairs(child) do n = n + 1 end
      assert.equal(4, n)
      for _ = 1, 4 do assert.is_nil(child[core.uuid4()]) end
    end)
  end)

  describe("ct_equal()", function()
    it("compares contents and lengths", function()
      assert.is_true(core.ct_equal("abc", "abc"))
      assert.is_true(core.ct_equal("", ""))
      assert.is_false(core.ct_equal("abc", "abd"))
      assert.is_false(core.ct_equal("abc", "ab"))
      assert.is_false(core.ct_equal("", "a"))
      assert.is_true(core.ct_equal("a\0b", "a\0b"))
      assert.is_false(core.ct_equal("a\0b", "a\0c"))
    end)
  end)

  describe("hex()", function()
    it("writes lowercase hex", function()
      assert.equal("00ff10", core.hex("\0\255\16"))
      assert.equal("", core.hex(""))
    end)
  end)

  describe("verify()", function()
    local id
    setup(function()
      id = assert(core.identity{ cert = helper.pki("qseal.pem"), key = helper.pki("qseal.key") })
    end)
    teardown(function() id:close() end)

    it("accepts a signature for the certificate (PEM, DER, identity)", function()
      local sig = id:sign("data")
      assert.is_true(core.verify(id:cert_pem(), "data", sig))
      assert.is_true(core.verify(id:cert_der(), "data", sig))
      assert.is_true(core.verify(id, "data", sig))
    end)
    it("says no for other data, other keys and garbage", function()
      local sig = id:sign("data")
      local ok, why = core.verify(id:cert_pem(), "datA", sig)
      assert.is_false(ok)
      assert.matches("does not match", why)
      assert.is_false((core.verify(helper.read(helper.pki("qwac.pem")), "data", sig)))
      ok, why = core.verify("garbage", "data", sig)
      assert.is_false(ok)
      assert.matches("not a certificate", why)
      assert.is_false((core.verify(id:cert_pem(), "data", "short")))
    end)
    it("keeps PKCS#1 and PSS apart", function()
      local pss = id:sign("data", { padding = "pss" })
      assert.is_true(core.verify(id:cert_pem(), "data", pss, { padding = "pss" }))
      assert.is_false((core.verify(id:cert_pem(), "data", pss)))
    end)
    it("raises on bad options", function()
      assert.has_error(function() core.verify(id:cert_pem(), "d", "s", { hash = "md5" }) end)
      assert.has_error(function() core.verify(id:cert_pem(), "d", "s", { padding = "oaep" }) end)
    end)
  end)

  describe("cert_issued_by()", function()
    it("knows which CA issued a certificate", function()
      local ca = helper.read(helper.pki("ca.pem"))
      assert.is_true(core.cert_issued_by(helper.read(helper.pki("qwac.pem")), ca))
      local ok, why = core.cert_issued_by(helper.read(helper.pki("qwac-foreign.pem")), ca)
      assert.is_false(ok)
      assert.is_string(why)
      assert.is_false((core.cert_issued_by("junk", ca)))
    end)

    it("checks the validity dates: an expired certificate of the right CA is refused", function()
      local ca = helper.read(helper.pki("ca.pem"))
      local ok, why = core.cert_issued_by(helper.read(helper.pki("qwac-expired.pem")), ca)
      assert.is_false(ok)
      assert.equal("cert_issued_by: certificate not trusted: certificate has expired", why)
    end)
  end)

  describe("cert_verify()", function()
    local read, pki = helper.read, helper.pki
    local ca, seal, tpp_seal = read(pki("ca.pem")), read(pki("aspsp-seal.pem")), read(pki("qseal.pem"))
    local chain                 -- root -> intermediate -> leaf, made by the openssl CLI

    setup(function()
      local dir = os.tmpname()
      os.remove(dir)
      assert(os.execute("mkdir -p " .. cli.quote(dir)))
      local function f(n) return cli.quote(dir .. "/" .. n) end
      cli.write(dir .. "/ca.ext", "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign\n")
      cli.write(dir .. "/leaf.ext", "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n")
      local ec = " -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
      cli.run("req -x509" .. ec .. "-subj /CN=chain-root -days 2 -addext basicConstraints=critical,CA:TRUE"
        .. " -addext keyUsage=critical,keyCertSign -keyout " .. f("root.key") .. " -out " .. f("root.pem"))
      cli.run("req -new" .. ec .. "-subj /CN=chain-int -keyout " .. f("int.key") .. " -out " .. f("int.csr"))
      cli.run("x509 -req -in " .. f("int.csr") .. " -CA " .. f("root.pem") .. " -CAkey " .. f("root.key")
        .. " -CAcreateserial -days 2 -extfile " .. f("ca.ext") .. " -out " .. f("int.pem"))
      cli.run("req -new" .. ec .. "-subj /CN=chain-leaf/organizationIdentifier=PSDXX-BANK-1 -keyout "
        .. f("leaf.key") .. " -out " .. f("leaf.csr"))
      cli.run("x509 -req -in " .. f("leaf.csr") .. " -CA " .. f("int.pem") .. " -CAkey " .. f("int.key")
        .. " -CAcreateserial -days 2 -extfile " .. f("leaf.ext") .. " -out " .. f("leaf.pem"))
      chain = { root = read(dir .. "/root.pem"), int = read(dir .. "/int.pem"), leaf = read(dir .. "/leaf.pem") }
      os.execute("rm -rf " .. cli.quote(dir))
    end)

    it("fails closed without a trust anchor", function()
      local ok, why = core.cert_verify(seal, {})
      assert.is_false(ok)
      assert.equal("cert_verify: no trust anchor configured", why)
      assert.is_false((core.cert_verify(seal, { anchors = {} })))
      assert.is_false((core.cert_verify(seal, { anchors = "not a certificate" })))
      assert.is_false((core.cert_verify("junk", { anchors = ca })))
    end)

    it("trusts a certificate of the anchor CA, refuses a foreign one", function()
      assert.is_true(core.cert_verify(seal, { anchors = ca }))
      assert.is_true(core.cert_verify(seal, { anchors = { read(pki("foreign-ca.pem")), ca } }))
      local ok, why = core.cert_verify(read(pki("qwac-foreign.pem")), { anchors = ca })
      assert.is_false(ok)
      assert.matches("^cert_verify: certificate not trusted: ", why)
    end)

    it("pins to the bank by organisation identifier: the TPP's own seal of the same CA is refused", function()
      assert.is_true(core.cert_verify(seal, { anchors = ca, organization_identifier = "PSDLT-BOL-ASPSP1" }))
      local ok, why = core.cert_verify(tpp_seal, { anchors = ca, organization_identifier = "PSDLT-BOL-ASPSP1" })
      assert.is_false(ok)
      assert.equal("cert_verify: certificate is not the pinned organisation's", why)
      assert.is_false((core.cert_verify(seal, { anchors = ca, organization_identifier = "PSDLT-BOL-ASPSP" })))
    end)

    it("pins to the bank by its own certificate (as anchor, or by fingerprint)", function()
      assert.is_true(core.cert_verify(seal, { anchors = seal }))
      assert.is_false((core.cert_verify(tpp_seal, { anchors = seal })))
      local fp = assert(core.cert_info(seal)).fingerprint
      assert.is_true(core.cert_verify(seal, { anchors = ca, fingerprint = fp:upper() }))
      local ok, why = core.cert_verify(tpp_seal, { anchors = ca, fingerprint = fp })
      assert.is_false(ok)
      assert.equal("cert_verify: certificate is not the pinned certificate", why)
    end)

    it("checks validity dates, now or at a given time", function()
      local ok, why = core.cert_verify(read(pki("qwac-expired.pem")), { anchors = ca })
      assert.is_false(ok)
      assert.equal("cert_verify: certificate not trusted: certificate has expired", why)
      local info = assert(core.cert_info(seal))
      assert.is_true(core.cert_verify(seal, { anchors = ca, at = info.not_before + 60 }))
      ok, why = core.cert_verify(seal, { anchors = ca, at = info.not_after + 1 })
      assert.is_false(ok)
      assert.matches("has expired", why)
      ok, why = core.cert_verify(seal, { anchors = ca, at = info.not_before - 3600 })
      assert.is_false(ok)
      assert.matches("not yet valid", why)
      -- a path through an intermediate: dates are checked along it
      ok, why = core.cert_verify(chain.leaf, { anchors = chain.root, chain = { chain.int },
        at = os.time() + 5 * 86400 })
      assert.is_false(ok)
      assert.matches("has expired", why)
    end)

    it("builds the path through untrusted intermediates, and only through them", function()
      assert.is_true(core.cert_verify(chain.leaf, { anchors = chain.root, chain = { chain.int } }))
      assert.is_true(core.cert_verify(chain.leaf, { anchors = chain.root, chain = chain.int }))
      local ok, why = core.cert_verify(chain.leaf, { anchors = chain.root })
      assert.is_false(ok)
      assert.matches("unable to get local issuer certificate", why)
      assert.is_true(core.cert_verify(chain.leaf, { anchors = chain.int }))            -- partial chain
      assert.is_true(core.cert_verify(chain.leaf, { anchors = chain.root, chain = { chain.int },
        organization_identifier = "PSDXX-BANK-1" }))
      assert.is_false((core.cert_verify(chain.leaf, { anchors = ca, chain = { chain.int } })))
      -- an intermediate is not an anchor just because the caller passed it along
      assert.is_false((core.cert_verify(chain.int, { anchors = ca, chain = { chain.root } })))
    end)

    it("raises on option values of the wrong type", function()
      assert.has_error(function() core.cert_verify(seal) end)
      assert.has_error(function() core.cert_verify(seal, { anchors = ca, organization_identifier = 1 }) end)
      assert.has_error(function() core.cert_verify(seal, { anchors = ca, at = "now" }) end)
    end)
  end)
end)

describe("xs2a.crypto", function()
  describe("pkce()", function()
    it("computes the RFC 7636 Appendix B challenge", function()
      assert.equal(V.pkce.challenge, crypto.pkce_challenge(V.pkce.verifier))
    end)
    it("makes verifiers of unreserved characters with a matching S256 challenge", function()
      for _, len in ipairs({ 43, 64, 100, 128 }) do
        local v, c, m = crypto.pkce(len)
        assert.equal(len, #v)
        assert.matches("^[A-Za-z0-9%-._~]+$", v)
        assert.equal(core.b64url_encode(core.digest("sha256", v)), c)
        assert.equal("S256", m)
      end
      assert.equal(64, #crypto.pkce())
      assert.not_equal(crypto.pkce(), crypto.pkce())
    end)
    it("raises on lengths outside 43..128", function()
      assert.has_error(function() crypto.pkce(42) end)
      assert.has_error(function() crypto.pkce(129) end)
    end)
  end)

  describe("state()", function()
    it("is URL-safe, 256 bits and fresh", function()
      local a, b = crypto.state(), crypto.state()
      assert.matches("^[A-Za-z0-9_%-]+$", a)
      assert.equal(43, #a)
      assert.not_equal(a, b)
      assert.equal(32, #core.b64url_decode(a))
    end)
  end)

  describe("helpers", function()
    it("exposes uuid, base64, ct_equal and digests", function()
      assert.matches("^%x+%-%x+%-4", crypto.uuid())
      assert.equal("Zm9v", crypto.b64encode("foo"))
      assert.equal("foo", crypto.b64decode("Zm9v"))
      assert.equal("foo", crypto.b64url_decode(crypto.b64url_encode("foo")))
      assert.is_true(crypto.ct_equal("x", "x"))
      assert.equal(V.digest_abc.sha256, crypto.hex(crypto.sha256("abc")))
      assert.equal(V.digest_abc.sha256, crypto.sha256_hex("abc"))
      assert.equal(V.digest_abc.sha512, crypto.hex(crypto.sha512("abc")))
      assert.equal(22, #crypto.nonce())
      assert.equal(43, #crypto.token())
    end)
    it("formats RFC 3230 digest values (reference §4.1 vectors)", function()
      for _, c in ipairs(V.digest_header) do
        assert.equal(c.value, crypto.digest_header(c.alg, c.body))
      end
      assert.equal(V.ig.digest, crypto.digest_header("SHA-256", core.b64decode(V.ig.body_b64)))
      assert.has_error(function() crypto.digest_header("MD5", "") end)
    end)
  end)
end)
