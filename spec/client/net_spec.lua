local url = require "xs2a.net.url"
local headers = require "xs2a.net.headers"
local redact = require "xs2a.redact"
local json = require "xs2a.codec.json"

describe("xs2a.net and xs2a.redact", function()
  describe("redaction", function()
    it("masks secret headers, keeping the Authorization scheme", function()
      local h = redact.headers({ Authorization = "Bearer abc.def", ["PSU-ID"] = "alice", ["Consent-ID"] = "c1",
        Signature = "keyId=...", ["TPP-Signature-Certificate"] = "MII", ["x-jws-signature"] = "e..s",
        Cookie = "s=1", ["X-Request-ID"] = "r1", ["PSU-Corporate-ID"] = "corp" })
      assert.equal("Bearer [redacted]", h.Authorization)
      for _, k in ipairs({ "PSU-ID", "Consent-ID", "Signature", "TPP-Signature-Certificate", "x-jws-signature",
          "Cookie", "PSU-Corporate-ID" }) do
        assert.equal("[redacted]", h[k])
      end
      assert.equal("r1", h["X-Request-ID"])
    end)

    it("masks tokens, passwords, OTPs and IBANs in bodies", function()
      local b = redact.body({ access_token = "AT", refresh_token = "RT", psuData = { password = "pw" },
        scaAuthenticationData = "123456", debtorAccount = { iban = "LT601010012345678901" },
        remittanceInformationUnstructured = "pay LT601010012345678901" })
      local s = json.encode(b)
      for _, secret in ipairs({ "AT", "RT", "pw", "123456", "LT601010012345678901" }) do
        assert.is_nil(s:find('"' .. secret .. '"', 1, true))
        assert.is_nil(s:find(secret .. '"', 1, true))
      end
      assert.equal("LT**************8901", b.debtorAccount.iban)
      local str = redact.body('{"access_token":"AT1","token_type":"Bearer","refresh_token":"RT1"}')
      assert.is_nil(str:find("AT1", 1, true))
      assert.is_nil(str:find("RT1", 1, true))
      local form = redact.body("grant_type=authorization_code&code=C0DE&code_verifier=V3R&client_id=PSD")
      assert.is_nil(form:find("C0DE", 1, true))
      assert.is_nil(form:find("V3R", 1, true))
      assert.truthy(form:find("client_id=PSD", 1, true))
    end)
  end)

  describe("URLs", function()
    it("percent-encodes path segments and queries", function()
      assert.equal("/v1/accounts/a%2Fb%20c", url.path("v1", "accounts", "a/b c"))
      assert.equal("a=1&b=x%26y&c=true", url.encode_query({ c = true, b = "x&y", a = 1 }))
      assert.has_error(function() url.path("v1", "") end)
    end)

    it("resolves hrefs with and without the root, relative and absolute", function()
      local base, root = "https://h:8443", "/xs2a/berlin/1.3"
      assert.equal("https://h:8443/xs2a/berlin/1.3/v1/x?page=2",
      url.resolve(base, root, "/xs2a/berlin/1.3/v1/x?page=2"))
      assert.equal("https://h:8443/xs2a/berlin/1.3/v1/x?page=2", url.resolve(base, root, "/v1/x?page=2"))
      assert.equal("https://h:8443/xs2a/berlin/1.3/v1/x", url.resolve(base, root, "v1/x"))
      assert.equal("https://o:1/p", url.resolve(base, root, "https://o:1/p"))
      assert.is_nil((url.resolve(base, root, "//evil/x")))
      assert.is_nil((url.resolve(base, root, "/v1/x\r\nX: y")))
    end)

    it("parses URLs", function()
      local u = assert(url.parse("HTTPS://Example.COM:8443/a/b?x=1#f"))
      assert.equal("example.com", u.host)
      assert.equal(8443, u.port)
      assert.equal("/a/b", u.path)
      assert.equal("x=1", u.query)
      assert.equal("https://example.com:8443", u.origin)
      assert.is_nil((url.parse("ftp://x")))
      assert.is_nil((url.parse("https://user:pw@x/")))
    end)
  end)

  it("rejects CR and LF in header values", function()
    assert.is_true(headers.ok("X-A", "ok"))
    assert.is_false((headers.ok("X-A", "a\r\nB: c")))
    assert.is_false((headers.ok("X-A", "a\nb")))
    assert.is_false((headers.ok("Bad Name", "v")))
  end)
end)
