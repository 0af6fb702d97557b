-- xs2a.oauth: the parts that need no bank (URL building, parsing, metadata
-- checks, token records in a store).
local oauth = require "xs2a.sca.oauth"
local crypto = require "xs2a.crypto"
local memory = require "xs2a.store.memory"

local META = {
  issuer = "https://bank.example",
  authorization_endpoint = "https://bank.example/oauth/authorize?lang=en",
  token_endpoint = "https://bank.example/oauth/token",
  code_challenge_methods_supported = { "S256" },
  response_types_supported = { "code" },
}

describe("xs2a.oauth", function()
  describe(".authorization_url()", function()
    it("carries every parameter, percent-encoded, with PKCE S256", function()
      local verifier, challenge = crypto.pkce()
      local state = crypto.state()
      local url = oauth.authorization_url(META, {
        client_id = "PSDLT-BOL-TPP001", scope = "AIS:abc/def+1", state = state,
        redirect_uri = "https://tpp.example/cb?x=1", code_challenge = challenge,
      })
      assert.truthy(url:find("^https://bank%.example/oauth/authorize%?lang=en&"))
      local q = oauth.parse_query(url)
      assert.equal("code", q.response_type)
      assert.equal("PSDLT-BOL-TPP001", q.client_id)
      assert.equal("AIS:abc/def+1", q.scope)
      assert.equal(state, q.state)
      assert.equal("https://tpp.example/cb?x=1", q.redirect_uri)
      assert.equal(challenge, q.code_challenge)
      assert.equal(crypto.pkce_challenge(verifier), q.code_challenge)
      assert.equal("S256", q.code_challenge_method)
      assert.equal("en", q.lang)
      -- the raw URL has the scope's reserved characters encoded
      assert.truthy(url:find("scope=AIS%3Aabc%2Fdef%2B1", 1, true))
    end)

    it("raises when a required parameter is missing", function()
      assert.has_error(function()
        oauth.authorization_url(META, { client_id = "x", scope = "AIS:1", state = "s", redirect_uri = "https://t/cb" })
      end)
    end)
  end)

  describe(".parse_query()", function()
    it("decodes values and keeps the first of repeated keys", function()
      local q = oauth.parse_query("https://tpp.example/cb?code=a%2Bb&state=x+y&state=z&empty=")
      assert.same({ code = "a+b", state = "x y", empty = "" }, q)
    end)
    it("reads a fragment too and copes with no query", function()
      assert.same({}, oauth.parse_query("https://tpp.example/cb"))
      assert.same({ code = "1", state = "s" }, oauth.parse_query("https://tpp.example/cb#code=1&state=s"))
      assert.same({}, oauth.parse_query(nil))
    end)
  end)

  describe(".validate_metadata()", function()
    it("accepts a good document", function()
      assert.equal(META, (oauth.validate_metadata(META)))
    end)
    it("refuses plain http endpoints", function()
      local m = {}
      for k, v in pairs(META) do m[k] = v end
      m.token_endpoint = "http://bank.example/oauth/token"
      local ok, err = oauth.validate_metadata(m)
      assert.is_nil(ok)
      assert.equal("OAUTH_METADATA", err.code)
      assert.matches("token_endpoint", tostring(err))
    end)
    it("refuses an authorization server without S256", function()
      local m = {}
      for k, v in pairs(META) do m[k] = v end
      m.code_challenge_methods_supported = { "plain" }
      local ok, err = oauth.validate_metadata(m)
      assert.is_nil(ok)
      assert.matches("S256", tostring(err))
    end)
    it("refuses a document that is not an object", function()
      assert.is_nil((oauth.validate_metadata("nope")))
      assert.is_nil((oauth.validate_metadata({ authorization_endpoint = "https://a/x" })))
    end)
  end)

  describe(".access_token()", function()
    local client
    before_each(function()
      client = { store = memory.new(), client_id = "PSDLT-BOL-TPP001", opts = {} }
    end)

    it("returns nil when there is no token", function()
      local tok, err = oauth.access_token(client, "consent:none")
      assert.is_nil(tok)
      assert.is_nil(err)
    end)

    it("returns a token that is valid beyond the skew, without refreshing", function()
      oauth.set_record(client, "k", { access_token = "AT1", refresh_token = "RT1", expires_at = oauth.now() + 600,
        token_endpoint = "https://bank.example/oauth/token" })
      assert.equal("AT1", oauth.access_token(client, "k"))
    end)

    it("reports an expired token without a refresh token as an error", function()
      oauth.set_record(client, "k", { access_token = "AT1", expires_at = oauth.now() - 1 })
      local tok, err = oauth.access_token(client, "k")
      assert.is_nil(tok)
      assert.equal("TOKEN_EXPIRED", err.code)
      assert.falsy(tostring(err):find("AT1", 1, true))
    end)

    it("uses a token another flow already rotated instead of refreshing again", function()
      -- the stored token differs from the one the caller saw fail: no request at all
      oauth.set_record(client, "k", { access_token = "NEW", refresh_token = "RT2", expires_at = oauth.now() + 600,
        token_endpoint = "https://bank.example/oauth/token" })
      client.request = function() error("must not call the token endpoint") end
      assert.equal("NEW", (oauth.refresh(client, "k", "OLD")))
    end)

    it("waits for a refresh in progress elsewhere and takes its result", function()
      oauth.set_record(client, "k", { access_token = "OLD", refresh_token = "RT1", expires_at = oauth.now() - 1,
        token_endpoint = "https://bank.example/oauth/token" })
      client.request = function() error("must not call the token endpoint") end
      local unlock = assert(client.store:lock(oauth.store_key("k") .. ":lock", 5))
      local slept = 0
      client.sleep = function()
        slept = slept + 1
        -- the other holder finishes while we wait
        if slept == 2 then
          oauth.set_record(client, "k", { access_token = "ROTATED", refresh_token = "RT2",
            expires_at = oauth.now() + 600, token_endpoint = "https://bank.example/oauth/token" })
          unlock()
        end
      end
      assert.equal("ROTATED", (oauth.access_token(client, "k")))
      assert.is_true(slept >= 2)
    end)

    it("gives up waiting for a stuck lock with a typed error", function()
      oauth.set_record(client, "k", { access_token = "OLD", refresh_token = "RT1", expires_at = oauth.now() - 1,
        token_endpoint = "https://bank.example/oauth/token" })
      assert(client.store:lock(oauth.store_key("k") .. ":lock", 60))
      client.sleep = function() end
      local tok, err = oauth.refresh(client, "k", "OLD", { lock_wait = 0.05 })
      assert.is_nil(tok)
      assert.equal("REFRESH_LOCK_TIMEOUT", err.code)
    end)
  end)
end)
