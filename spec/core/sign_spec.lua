-- xs2a.sign: Berlin Group signatures, Georgian JWS and Paysera MAC.
local core = require "xs2a.core"
local sign = require "xs2a.sign"
local identity = require "xs2a.identity"
local helper = require "helper"
local cli = require "core.openssl_cli"
local V = dofile("spec/fixtures/vectors.lua")

local pki, read = helper.pki, helper.read

local function load(name)
  return assert(identity{ cert = pki(name .. ".pem"), key = pki(name .. ".key") })
end

local function params(sig_header)
  return sign.parse_signature_header(sig_header)
end

-- the cavage signing string for the names in `headers` of a signed request
local function signing_string(req)
  local p = params(req.headers.Signature)
  local lines = {}
  for h in p.headers:gmatch("%S+") do
    local v
    if h == "(request-target)" then
      v = req.method:lower() .. " " .. req.url:match("^https?://[^/]+(.*)$")
    else
      v = sign.header_get(req.headers, h)
    end
    lines[#lines + 1] = h .. ": " .. v
  end
  return table.concat(lines, "\n")
end

local function ig_request()
  return {
    method = "POST",
    url = "https://bank.example/v1/payments/sepa-credit-transfers",
    headers = {
      ["X-Request-ID"] = V.ig.x_request_id,
      ["PSU-ID"] = V.ig.psu_id,
      ["TPP-Redirect-URI"] = V.ig.tpp_redirect_uri,
      ["Content-Type"] = "application/json",
    },
    body = core.b64decode(V.ig.body_b64),
  }
end

-- DER of an ECDSA signature from raw r||s (independent of xs2a.core)
local function ecdsa_der(raw)
  local function int(b)
    b = b:gsub("^%z+", "")
    if b == "" then b = "\0" end
    if b:byte(1) >= 0x80 then b = "\0" .. b end
    return "\2" .. string.char(#b) .. b
  end
  local half = #raw / 2
  local body = int(raw:sub(1, half)) .. int(raw:sub(half + 1))
  return "\48" .. string.char(#body) .. body
end

describe("xs2a.sign", function()
  local qseal, qseal_ec
  setup(function()
    qseal, qseal_ec = load("qseal"), load("qseal-ec")
  end)

  describe("berlin()", function()
    it("writes the reference digest vectors", function()
      for _, c in ipairs(V.digest_header) do
        local req = { method = "POST", url = "https://b.example/x", headers = { ["X-Request-ID"] = "1" },
          body = c.body }
        assert(sign.berlin(qseal, { digest = c.alg }):sign(req))
        assert.equal(c.value, req.headers.Digest)
      end
      local req = ig_request()
      assert(sign.berlin(qseal):sign(req))
      assert.equal(V.ig.digest, req.headers.Digest)
      assert.equal(V.ig.digest_hex, core.hex(core.b64decode(req.headers.Digest:sub(9))))
    end)

    it("signs the IG 1.3.8 §12 signing string, verified by openssl", function()
      local req = ig_request()
      assert(sign.berlin(qseal):sign(req))
      local p = params(req.headers.Signature)
      assert.equal(V.ig.headers, p.headers)
      assert.equal("rsa-sha256", p.algorithm)
      assert.is_true(cli.verify(pki("qseal.pem"), V.ig.signing_string, core.b64decode(p.signature)))
      assert.is_false(cli.verify(pki("qseal.pem"), V.ig.signing_string .. "\n", core.b64decode(p.signature)))
    end)

    it("names the certificate in keyId and TPP-Signature-Certificate", function()
      local req = ig_request()
      assert(sign.berlin(qseal):sign(req))
      local path = cli.quote(pki("qseal.pem"))
      local serial = cli.run("x509 -noout -serial -in " .. path):match("serial=(%x+)"):gsub("^0+(.)", "%1")
      local issuer = cli.run("x509 -noout -issuer -nameopt RFC2253 -in " .. path):match("issuer=(.*)")
      assert.equal("SN=" .. serial:upper() .. ",CA=" .. issuer:gsub(" ", "%%20"), params(req.headers.Signature).keyId)
      local der = cli.run("x509 -outform DER -in " .. path .. " | base64 -w0")
      assert.equal(der, req.headers["TPP-Signature-Certificate"])
      assert.matches('^keyId="[^"]+",algorithm="rsa%-sha256",headers="[^"]+",signature="[%w+/=]+"$',
        req.headers.Signature)
    end)

    it("signs only digest and x-request-id when no PSU header is sent", function()
      local req = { method = "GET", url = "https://b.example/v1/accounts", headers = { ["x-request-id"] = "r1" } }
      assert(sign.berlin(qseal):sign(req))
      assert.equal("digest x-request-id", params(req.headers.Signature).headers)
      assert.equal(V.digest_header[3].value, req.headers.Digest)
      req.headers["PSU-Corporate-ID"] = "corp"
      assert(sign.berlin(qseal):sign(req))
      assert.equal("digest x-request-id psu-corporate-id", params(req.headers.Signature).headers)
      assert.is_true(sign.verify_berlin(req, { cert = read(pki("ca.pem")) }))
    end)

    it("produces EC signatures that openssl verifies", function()
      local req = ig_request()
      local s = sign.berlin(qseal_ec)
      assert(s:sign(req))
      local p = params(req.headers.Signature)
      assert.equal("ecdsa-sha256", p.algorithm)
      assert.is_true(cli.verify(pki("qseal-ec.pem"), V.ig.signing_string, core.b64decode(p.signature)))
      assert.is_true(sign.verify_berlin(req, { cert = read(pki("ca.pem")) }))
    end)

    it("follows the dialect options", function()
      local req = ig_request()
      local now = 1565103757    -- Tue, 06 Aug 2019 15:02:37 GMT
      local s = sign.berlin(qseal, { digest = "SHA-512", keyid_serial_case = "lower", algorithm = "SHA512withRSA",
        headers = { "date", "(request-target)" }, now = function() return now end })
      assert(s:sign(req))
      local p = params(req.headers.Signature)
      assert.equal("Tue, 06 Aug 2019 15:02:37 GMT", req.headers.Date)
      assert.equal("SHA512withRSA", p.algorithm)
      assert.equal(V.ig.headers .. " date (request-target)", p.headers)
      assert.matches("^SHA%-512=", req.headers.Digest)
      assert.equal(p.keyId:match("^SN=(%x+)"):lower(), p.keyId:match("^SN=(%x+)"))
      local ss = signing_string(req)
      local tail = "\ndate: Tue, 06 Aug 2019 15:02:37 GMT\n(request-target): post /v1/payments/sepa-credit-transfers"
      assert.equal(tail, ss:sub(-#tail))
      assert.is_true(cli.verify(pki("qseal.pem"), ss, core.b64decode(p.signature), "sha512"))
      assert.is_true(sign.verify_berlin(req, { cert = read(pki("ca.pem")) }))
    end)

    it("keeps an existing Date header and signs PSS when asked", function()
      local req = ig_request()
      req.headers.date = "Sun, 06 Aug 2019 15:02:37 GMT"
      assert(sign.berlin(qseal, { padding = "pss", headers = { "date" } }):sign(req))
      assert.is_nil(req.headers.Date)
      local p = params(req.headers.Signature)
      assert.equal("rsa-pss-sha256", p.algorithm)
      assert.is_true(cli.verify(pki("qseal.pem"), signing_string(req), core.b64decode(p.signature), "sha256",
        "-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest"))
      assert.is_true(sign.verify_berlin(req, { cert = read(pki("ca.pem")) }))
    end)

    it("replaces headers of any spelling instead of duplicating them", function()
      local req = ig_request()
      req.headers.digest = "SHA-256=old"
      req.headers.SIGNATURE = "old"
      assert(sign.berlin(qseal):sign(req))
      assert.is_nil(req.headers.digest)
      assert.is_nil(req.headers.SIGNATURE)
      assert.equal(V.ig.digest, req.headers.Digest)
    end)

    it("fails when any signed header or the body is tampered with", function()
      local req = ig_request()
      assert(sign.berlin(qseal):sign(req))
      assert.is_true(sign.verify_berlin(req, { cert = read(pki("ca.pem")) }))
      for _, h in ipairs({ "X-Request-ID", "PSU-ID", "TPP-Redirect-URI" }) do
        local copy = {}
        for k, v in pairs(req.headers) do copy[k] = v end
        copy[h] = copy[h] .. "x"
        local ok, why = sign.verify_berlin({ method = req.method, url = req.url, headers = copy, body = req.body },
          { cert = read(pki("ca.pem")) })
        assert.is_false(ok, h)
        assert.matches("does not match", why)
      end
      local ok, why = sign.verify_berlin({ method = req.method, url = req.url, headers = req.headers,
        body = req.body .. " " }, { cert = read(pki("ca.pem")) })
      assert.is_false(ok)
      assert.matches("digest does not match", why)
      local removed = {}
      for k, v in pairs(req.headers) do if k ~= "PSU-ID" then removed[k] = v end end
      assert.is_false((sign.verify_berlin({ headers = removed, body = req.body }, { cert = read(pki("ca.pem")) })))
    end)

    it("signs what the verifier reads when a header comes in two spellings", function()
      local req = ig_request()
      req.headers["psu-id"] = "other"
      req.headers["Digest"], req.headers["DIGEST"] = "SHA-256=a", "SHA-256=b"
      assert(sign.berlin(qseal):sign(req))
      assert.is_nil(req.headers.DIGEST)
      assert.matches("psu%-id", params(req.headers.Signature).headers)
      assert.is_true(sign.verify_berlin(req, { cert = read(pki("ca.pem")) }))
    end)

    it("fails closed without a trust anchor, and pins the signer's organisation", function()
      local req = ig_request()
      assert(sign.berlin(qseal):sign(req))
      for _, opts in ipairs({ {}, { cert = {} } }) do
        local ok, why = sign.verify_berlin(req, opts)
        assert.is_false(ok)
        assert.equal("signing certificate is not trusted: no trust anchor configured", why)
      end
      assert.is_false((sign.verify_berlin(req)))
      local ca = read(pki("ca.pem"))
      assert.is_true(sign.verify_berlin(req, { cert = ca, organization_identifier = "PSDLT-BOL-TPP001" }))
      local ok, why = sign.verify_berlin(req, { cert = ca, organization_identifier = "PSDLT-BOL-TPP002" })
      assert.is_false(ok)
      assert.matches("not the pinned organisation", why)
    end)

    it("refuses a signature by an expired certificate of the trusted CA", function()
      local expired = assert(require("xs2a.identity").new{ cert = pki("qwac-expired.pem"),
        key = pki("qwac-expired.key") })
      local req = ig_request()
      assert(sign.berlin(expired):sign(req))
      local ok, why = sign.verify_berlin(req, { cert = read(pki("ca.pem")) })
      assert.is_false(ok)
      assert.matches("has expired", why)
    end)

    it("rejects an untrusted signing certificate", function()
      local req = ig_request()
      assert(sign.berlin(qseal):sign(req))
      local ok, why = sign.verify_berlin(req, { cert = read(pki("foreign-ca.pem")) })
      assert.is_false(ok)
      assert.matches("not trusted", why)
    end)

    it("returns nil, err without X-Request-ID and raises on bad options", function()
      local res, err = sign.berlin(qseal):sign{ method = "GET", url = "https://b.example/", headers = {} }
      assert.is_nil(res)
      assert.matches("X%-Request%-ID", err)
      assert.has_error(function() sign.berlin(qseal, { digest = "MD5" }) end)
      assert.has_error(function() sign.berlin(qseal_ec, { padding = "pss" }) end)
      assert.has_error(function() sign.berlin(qseal, { keyid_serial_case = "mixed" }) end)
      assert.has_error(function() sign.berlin("not an identity") end)
    end)

    describe("in one call to the C core (identity:_sign_berlin)", function()
      -- counts what the fast path answered (true: signed, false: left to the
      -- general Lua path) while f runs; the real method is called
      local function watched(id, f)
        local methods = getmetatable(id).__index
        local real, seen = methods._sign_berlin, {}
        methods._sign_berlin = function(...)
          local ok, err, code = real(...)
          seen[#seen + 1] = ok
          return ok, err, code
        end
        local ok, e = pcall(f)
        methods._sign_berlin = real
        assert(ok, e)
        return seen
      end
      local function copy(t)
        local c = {}
        for k, v in pairs(t) do c[k] = type(v) == "table" and copy(v) or v end
        return setmetatable(c, getmetatable(t))
      end
      -- the same request signed by the one call and by the general path (an
      -- extra name that is signed anyway keeps the header list): RSA PKCS#1
      -- v1.5 is deterministic, so both header tables must be equal
      local function same_as_general(req, opts, want_fast)
        opts = opts or {}
        local general_opts = copy(opts)
        general_opts.headers = { "x-request-id" }
        local a, b = copy(req), copy(req)
        local ra, ea, rb, eb
        local seen = watched(qseal, function()
          ra, ea = sign.berlin(qseal, opts):sign(a)
        end)
        assert.same({ want_fast }, seen)
        seen = watched(qseal, function()
          rb, eb = sign.berlin(qseal, general_opts):sign(b)
        end)
        assert.same({}, seen)
        assert.equal(ea, eb)
        assert.equal(ra == nil, rb == nil)
        assert.same(b.headers, a.headers)
        return a
      end

      it("signs byte for byte what the general path signs", function()
        local long = "https://tpp.example/cb?state=" .. string.rep("x", 700)
        local cases = {
          { req = ig_request() },
          { req = ig_request(), opts = { digest = "SHA-512" } },
          { req = ig_request(), opts = { hash = "sha512", algorithm = "SHA512withRSA" } },
          { req = ig_request(), opts = { keyid_serial_case = "lower" } },
          { req = { method = "GET", url = "https://b.example/v1/accounts", headers = { ["x-request-id"] = "r1",
            ["psu-corporate-id"] = "corp", ["PSU-ID"] = "", Accept = "application/json" } } },
          { req = { method = "POST", url = "https://b.example/v1/x", body = "",
            headers = { ["X-REQUEST-ID"] = "r2", ["tpp-redirect-uri"] = long, digest = "SHA-256=old",
              SIGNATURE = "old", ["tpp-signature-certificate"] = "old", [1] = "not a header" } } },
          { req = { method = "POST", url = "https://b.example/v1/x", body = string.rep("{}", 5000),
            headers = { ["X-Request-ID"] = string.rep("7", 600), ["PSU-ID"] = "p",
              Digest = "x", Signature = "y", ["TPP-Signature-Certificate"] = "z" } } },
        }
        for _, c in ipairs(cases) do
          local req = same_as_general(c.req, c.opts, true)
          assert.is_nil(req.headers.digest or req.headers.SIGNATURE or req.headers["tpp-signature-certificate"])
          assert.is_true(sign.verify_berlin(req, { cert = read(pki("ca.pem")) }))
        end
        -- the IG vector through the one call, checked by openssl
        local req = ig_request()
        assert.same({ true }, watched(qseal, function() assert(sign.berlin(qseal):sign(req)) end))
        assert.equal(V.ig.digest, req.headers.Digest)
        assert.is_true(cli.verify(pki("qseal.pem"), V.ig.signing_string,
          core.b64decode(params(req.headers.Signature).signature)))
      end)

      it("signs ECDSA and RSA-PSS that openssl and the verifier accept, the same request again and again", function()
        for _, c in ipairs({ { qseal_ec, {} }, { qseal_ec, { digest = "SHA-512", hash = "sha512" } },
                             { qseal, { padding = "pss" } } }) do
          local s, req = sign.berlin(c[1], c[2]), ig_request()
          local seen = watched(c[1], function()
            for _ = 1, 3 do assert(s:sign(req)) end
          end)
          assert.same({ true, true, true }, seen)
          local p = params(req.headers.Signature)
          local cert = c[1] == qseal_ec and "qseal-ec.pem" or "qseal.pem"
          assert.is_true(cli.verify(pki(cert), signing_string(req), core.b64decode(p.signature), c[2].hash or "sha256",
            c[2].padding and "-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest" or nil), p.algorithm)
          assert.is_true(sign.verify_berlin(req, { cert = read(pki("ca.pem")) }))
        end
      end)

      it("leaves the header tables it does not read to the general path", function()
        local function with(h)
          local req = ig_request()
          for k, v in pairs(h) do req.headers[k] = v end
          return req
        end
        same_as_general(with{ ["x-request-id"] = "second spelling" }, nil, false)
        same_as_general(with{ ["PSU-ID"] = { "a", "b" } }, nil, false)
        same_as_general(with{ ["X-Request-ID"] = 42 }, nil, false)
        same_as_general(with{ digest = "a", DIGEST = "b" }, nil, false)
        same_as_general({ method = "GET", url = "https://b.example/", headers = {} }, nil, false)
        local req = ig_request()
        setmetatable(req.headers, { __index = function() return nil end })
        same_as_general(req, nil, false)
      end)

      it("agrees with the general path on random header tables", function()
        -- the names both paths look at, in random spellings, with values of
        -- every kind; a fixed seed keeps the run repeatable
        local names = { "X-Request-ID", "PSU-ID", "PSU-Corporate-ID", "TPP-Redirect-URI", "Digest", "Signature",
          "TPP-Signature-Certificate", "Content-Type", "PSU-IP-Address" }
        local values = { "v", "", "a b, c", string.rep("z", 530), 7, { "x", "y" }, true }
        local rng = 12345
        local function rand(n)             -- a small LCG: math.random differs between interpreters
          rng = (rng * 1103515245 + 12345) % 2147483648
          return rng % n + 1
        end
        local function spelling(n)
          local mode = rand(4)
          if mode == 1 then return n:lower() elseif mode == 2 then return n:upper() end
          return n
        end
        local fast, general = 0, 0
        for _ = 1, 120 do
          local h = {}
          for _ = 1, rand(8) do h[spelling(names[rand(#names)])] = values[rand(#values)] end
          if rand(3) > 1 then h["X-Request-ID"] = "id-" .. rand(1000) end
          local req = { method = "POST", url = "https://b.example/v1/x", headers = h,
            body = rand(2) == 1 and "{}" or nil }
          local seen = watched(qseal, function() sign.berlin(qseal):sign(copy(req)) end)
          if seen[1] then fast = fast + 1 else general = general + 1 end
          same_as_general(req, nil, seen[1])
        end
        assert.is_true(fast > 20 and general > 20, fast .. " fast, " .. general .. " general")
      end)

      it("raises on bad arguments and on a closed identity, never crashes", function()
        local s = sign.berlin(qseal)
        local h = { ["X-Request-ID"] = "1" }
        local bad = {
          { "not a table", nil, 0, s.sig_prefix, s.certificate },
          { h, {}, 0, s.sig_prefix, s.certificate },
          { h, nil, 8, s.sig_prefix, s.certificate },
          { h, nil, -1, s.sig_prefix, s.certificate },
          { h, nil, "x", s.sig_prefix, s.certificate },
          { h, nil, 0, nil, s.certificate },
          { h, nil, 0, s.sig_prefix, false },
        }
        for i, args in ipairs(bad) do
          assert.has_error(function() qseal:_sign_berlin((table.unpack or unpack)(args, 1, 5)) end, nil, i)
        end
        assert.has_error(function() qseal_ec:_sign_berlin(h, nil, 4, s.sig_prefix, s.certificate) end)
        assert.is_nil(h.Digest)
        local closed = load("qseal-ec")
        local cs = sign.berlin(closed)
        closed:close()
        assert.has_error(function() cs:sign(ig_request()) end, "identity is closed")
      end)

      it("a failure of the one call is the signer's failure: nil, err, and no Signature", function()
        local methods = getmetatable(qseal).__index
        local real = methods._sign_berlin
        methods._sign_berlin = function() return nil, "identity.sign: the token failed", "io" end
        local s = sign.berlin(qseal)
        local req = ig_request()
        local ok, res, err = pcall(s.sign, s, req)
        methods._sign_berlin = real
        assert(ok, res)
        assert.is_nil(res)
        assert.equal("identity.sign: the token failed", err)
        assert.is_nil(req.headers.Signature)
      end)
    end)

    it("keeps neither the body nor key material", function()
      local s = sign.berlin(qseal)
      local req = ig_request()
      assert(s:sign(req))
      for _, v in pairs(s) do
        if type(v) == "string" then
          assert.is_nil(v:find(req.body, 1, true))
          assert.is_nil(v:find("PRIVATE", 1, true))
        end
      end
      assert.matches("^xs2a%.sign%.berlin %(SN=", tostring(s))
    end)
  end)

  describe("jws()", function()
    local function request()
      return {
        method = "POST",
        url = "https://bank.example:8443/xs2a/georgia/0.8/payments/domestic?x=1",
        headers = { ["X-Request-ID"] = "6f0c4a2e-1111-4bbb-8ccc-123456789abc", ["Content-Type"] = "application/json",
          ["PSU-IP-Address"] = "192.0.2.1", ["PSU-ID"] = "alice" },
        body = '{"instructedAmount":{"currency":"GEL","amount":"1.00"}}',
      }
    end
    local function header_of(msg)
      local h = msg.headers["x-jws-signature"]:match("^([^.]+)%.%.")
      return require("cjson").decode(core.b64url_decode(h))
    end

    it("signs ES256 with a 64-byte r||s signature that openssl verifies", function()
      local req = request()
      local now = os.time()
      assert(sign.jws(qseal_ec, { now = function() return now end }):sign(req))
      local head, sig = req.headers["x-jws-signature"]:match("^([%w_-]+)%.%.([%w_-]+)$")
      local raw = core.b64url_decode(sig)
      assert.equal(64, #raw)
      local ph = header_of(req)
      assert.equal("ES256", ph.alg)
      assert.is_false(ph.b64)
      assert.same({ "sigT", "sigD", "b64" }, ph.crit)
      assert.equal(os.date("!%Y-%m-%dT%H:%M:%SZ", now), ph.sigT)
      assert.equal("http://uri.etsi.org/19182/HttpHeaders", ph.sigD.mId)
      -- the Content-Length the transport will send is signed too (strict rule)
      assert.same({ "(request-target)", "host", "x-request-id", "content-type", "content-length", "digest",
        "psu-id", "psu-ip-address" }, ph.sigD.pars)
      assert.equal(core.b64encode(qseal_ec:cert_der()), ph.x5c[1])
      local ss = table.concat({
        "(request-target): post /xs2a/georgia/0.8/payments/domestic?x=1",
        "host: bank.example:8443",
        "x-request-id: " .. req.headers["X-Request-ID"],
        "content-type: application/json",
        "content-length: " .. #req.body,
        "digest: " .. req.headers.Digest,
        "psu-id: alice",
        "psu-ip-address: 192.0.2.1",
      }, "\n")
      assert.is_true(cli.verify(pki("qseal-ec.pem"), head .. "." .. ss, ecdsa_der(raw)))
      assert.is_true(sign.verify_jws(req, { cert = read(pki("qseal-ec.pem")), request = true }))
    end)

    it("signs RS256 and PS256", function()
      for _, alg in ipairs({ "RS256", "PS256" }) do
        local req = request()
        assert(sign.jws(qseal, { alg = alg }):sign(req))
        assert.equal(alg, header_of(req).alg)
        assert.is_true(sign.verify_jws(req, { cert = read(pki("ca.pem")), request = true }))
      end
      assert.has_error(function() sign.jws(qseal, { alg = "ES256" }) end)
      assert.has_error(function() sign.jws(qseal_ec, { alg = "RS256" }) end)
    end)

    it("verifies a signed response and notices tampering", function()
      local now = 1700000000
      local signer = sign.jws(qseal, { response = true, now = function() return now end })
      local function response()
        local res = { status = 201, headers = { ["X-Request-ID"] = "abc", ["Content-Type"] = "application/json" },
          body = '{"transactionStatus":"RCVD"}' }
        assert(signer:sign(res))
        return res
      end
      local opts = { cert = read(pki("qseal.pem")), now = function() return now + 5 end, x_request_id = "abc" }
      local res = response()
      assert.same({ "(response-status)", "x-request-id", "content-type", "digest" }, header_of(res).sigD.pars)
      assert.is_true(sign.verify_jws(res, opts))

      local cases = {
        function(r) r.status = 200 end,
        function(r) r.body = r.body .. " " end,
        function(r) r.headers["X-Request-ID"] = "abd" end,
        function(r) r.headers["Content-Type"] = "text/plain" end,
        function(r) r.headers.Digest = "SHA-256=" .. core.b64encode(core.digest("sha256", "x")) end,
        function(r) r.headers["x-jws-signature"] = r.headers["x-jws-signature"]:gsub("%.%.(.)", function(c)
          return ".." .. (c == "A" and "B" or "A") end) end,
        function(r) r.headers["x-jws-signature"] = nil end,
      }
      for i, tamper in ipairs(cases) do
        local r = response()
        tamper(r)
        local ok, why = sign.verify_jws(r, opts)
        assert.is_false(ok, "case " .. i)
        assert.is_string(why)
      end
      local ok, why = sign.verify_jws(response(), { cert = read(pki("qseal.pem")), x_request_id = "other",
        now = opts.now })
      assert.is_false(ok)
      assert.matches("x%-request%-id", why)
    end)

    it("enforces the sigT window", function()
      local now = 1700000000
      local res = { status = 200, headers = { ["x-request-id"] = "r" }, body = "" }
      assert(sign.jws(qseal, { response = true, now = function() return now end }):sign(res))
      local cert = read(pki("qseal.pem"))
      assert.is_true(sign.verify_jws(res, { cert = cert, now = function() return now + 60 end }))
      local ok, why = sign.verify_jws(res, { cert = cert, now = function() return now + 61 end })
      assert.is_false(ok)
      assert.matches("too old", why)
      ok, why = sign.verify_jws(res, { cert = cert, now = function() return now - 3 end })
      assert.is_false(ok)
      assert.matches("future", why)
    end)

    it("accepts only the trusted signer or its CA", function()
      local res = { status = 200, headers = { ["x-request-id"] = "r" }, body = "{}" }
      assert(sign.jws(qseal, { response = true }):sign(res))
      assert.is_true(sign.verify_jws(res, { cert = read(pki("ca.pem")) }))
      assert.is_true(sign.verify_jws(res, { cert = { read(pki("aspsp-seal.pem")), read(pki("qseal.pem")) } }))
      local ok, why = sign.verify_jws(res, { cert = read(pki("aspsp-seal.pem")) })
      assert.is_false(ok)
      assert.matches("not trusted", why)
      assert.is_false((sign.verify_jws(res, { cert = read(pki("foreign-ca.pem")) })))
      assert.has_error(function() sign.verify_jws(res, {}) end)
      assert.is_false((sign.verify_jws(res, { cert = {} })))
    end)

    it("refuses a response signed with the TPP's own QSealC when pinned to the bank", function()
      local ca = read(pki("ca.pem"))
      local bank = assert(require("xs2a.identity").new{ cert = pki("aspsp-seal.pem"), key = pki("aspsp-seal.key") })
      local pin = { cert = ca, organization_identifier = assert(bank:info().organization_identifier) }
      local own = { status = 200, headers = { ["x-request-id"] = "r" }, body = "{}" }
      assert(sign.jws(qseal, { response = true }):sign(own))       -- same CA as the bank's seal
      local ok, why = sign.verify_jws(own, pin)
      assert.is_false(ok)
      assert.matches("organization identifier does not match", why)
      local real = { status = 200, headers = { ["x-request-id"] = "r" }, body = "{}" }
      assert(sign.jws(bank, { response = true }):sign(real))
      assert.is_true(sign.verify_jws(real, pin))
      -- pinned by the bank's own certificate as the only anchor
      assert.is_true(sign.verify_jws(real, { cert = read(pki("aspsp-seal.pem")) }))
      assert.is_false((sign.verify_jws(own, { cert = read(pki("aspsp-seal.pem")) })))
    end)

    it("rejects a protected header that breaks the profile", function()
      local cert = read(pki("qseal.pem"))
      local function forged(ph_json)
        return { status = 200, headers = { ["x-request-id"] = "r", digest = V.digest_header[3].value,
          ["x-jws-signature"] = core.b64url_encode(ph_json) .. "..AAAA" }, body = "" }
      end
      for _, ph in ipairs({
        '{"alg":"none","b64":false,"crit":["sigT","sigD","b64"]}',
        '{"alg":"RS256","b64":true,"crit":["sigT","sigD","b64"]}',
        '{"alg":"RS256","b64":false,"crit":["sigT"]}',
        '{"alg":"RS256","b64":false,"crit":["sigT","sigD","b64"],"sigT":"2023-11-14T22:13:20Z",'
          .. '"sigD":{"pars":["x-request-id","digest"],"mId":"http://uri.etsi.org/19182/HttpHeaders"}}',
        "not json",
      }) do
        local ok, why = sign.verify_jws(forged(ph), { cert = cert, now = function() return 1700000000 end })
        assert.is_false(ok)
        assert.is_string(why)
      end
      assert.is_false((sign.verify_jws({ status = 200, headers = { ["x-jws-signature"] = "a.b.c" } }, { cert = cert })))
    end)
  end)

  describe("mac()", function()
    local function signer(extra)
      local opts = { id = "client-1", key = V.mac.key, now = function() return V.mac.ts end,
        nonce = function() return V.mac.nonce end }
      for k, v in pairs(extra or {}) do opts[k] = v end
      return sign.mac(opts)
    end

    it("reproduces Paysera's official example", function()
      local req = { method = V.mac.get.method, url = V.mac.get.url }
      assert(signer():sign(req))
      assert.equal(string.format('MAC id="client-1", ts="%d", nonce="%s", mac="%s"', V.mac.ts, V.mac.nonce,
        V.mac.get.mac), req.headers.Authorization)
    end)

    it("adds body_hash in ext for a body", function()
      local req = { method = V.mac.post.method, url = V.mac.post.url, body = V.mac.post.body, headers = {} }
      assert(signer():sign(req))
      assert.equal(string.format('MAC id="client-1", ts="%d", nonce="%s", mac="%s", ext="%s"', V.mac.ts, V.mac.nonce,
        V.mac.post.mac, V.mac.post.ext), req.headers.Authorization)
    end)

    it("builds the normalized string from method, target, host and port", function()
      local function mac_of(url, method, body)
        local req = { method = method or "GET", url = url, body = body }
        assert(signer():sign(req))
        return req.headers.Authorization:match('mac="([^"]+)"')
      end
      local function expected(method, target, host, port, ext)
        local n = table.concat({ V.mac.ts, V.mac.nonce, method, target, host, port, ext or "" }, "\n") .. "\n"
        return core.b64encode(core.hmac("sha256", V.mac.key, n))
      end
      assert.equal(V.mac.get.mac, mac_of("https://WALLET.Paysera.com:443/rest/v1/payment/10145"))
      assert.equal(expected("GET", "/p?a=1&b=2", "127.0.0.1", "8443"), mac_of("https://127.0.0.1:8443/p?a=1&b=2#frag"))
      assert.equal(expected("DELETE", "/", "h.example", "80"), mac_of("http://h.example", "delete"))
      assert.not_equal(V.mac.get.mac, mac_of("https://wallet.paysera.com/rest/v1/payment/10146"))
    end)

    it("uses fresh printable nonces and the current time by default", function()
      local s = sign.mac{ id = "client-1", key = V.mac.key }
      local a, b = { url = "https://h.example/x" }, { url = "https://h.example/x" }
      assert(s:sign(a)); assert(s:sign(b))
      local na = a.headers.Authorization:match('nonce="([^"]+)"')
      assert.equal(32, #na)
      assert.matches("^[%w]+$", na)
      assert.not_equal(na, b.headers.Authorization:match('nonce="([^"]+)"'))
      assert.is_true(math.abs(tonumber(a.headers.Authorization:match('ts="(%d+)"')) - os.time()) <= 2)
    end)

    it("never reveals the MAC key", function()
      local s = signer()
      assert.equal("xs2a.sign.mac (id=client-1)", tostring(s))
      assert.is_false(getmetatable(s))
      for k, v in pairs(s) do
        assert.is_nil(tostring(k):find(V.mac.key, 1, true))
        assert.is_nil(tostring(v):find(V.mac.key, 1, true))
      end
      assert.has_error(function() sign.mac{ id = "x" } end)
      assert.has_error(function() sign.mac{ key = "k" } end)
      local ok, err = pcall(sign.mac, { id = "x", key = 42 })
      assert.is_false(ok)
      assert.is_nil(tostring(err):find("42", 1, true))
    end)
  end)
end)
