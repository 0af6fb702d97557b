-- OAuth 2.0 against a third-party authorization server: panva's
-- `oidc-provider` (npm) on 127.0.0.1 over TLS (spec/interop/as.mjs), PKCE
-- required, refresh tokens rotated on every use. The client's sca/oauth.lua
-- and sca/tokens.lua do discovery from its metadata, build the
-- authorization URL, check the callback's iss (RFC 9207), exchange the code
-- and refresh; a PSU "browser" (the curl tool, with a cookie jar) follows
-- the redirects, the AS approving at once.
local support = require "support.client"
local helper = require "helper"
local proc = require "support.proc"
local interop = require "interop.bank"
local oauth = require "xs2a.sca.oauth"
local tokens = require "xs2a.sca.tokens"
local crypto = require "xs2a.crypto"

local REDIRECT = "https://tpp.example/callback"

describe("OAuth against oidc-provider #interop", function()
  local as, client, meta, meta_url

  setup(function()
    as = interop.start{ script = "as.mjs", args = { "--client-id", "interop-tpp", "--redirect-uri", REDIRECT } }
    client = support.new_client("berlin", { base_url = as.url, client_id = "interop-tpp", redirect_uri = REDIRECT,
      ca_file = helper.pki("ca.pem"), store = require("xs2a.store").memory() })
  end)
  teardown(function() if as then as:stop() end end)

  -- the PSU's browser: follows redirects (keeping cookies) until the AS
  -- sends it to the TPP's redirect URI; returns that URL
  local function browse(url)
    local jar = os.tmpname()
    for _ = 1, 10 do
      local out = proc.output("curl -s --cacert " .. proc.quote(helper.pki("ca.pem")) .. " -b " .. proc.quote(jar)
        .. " -c " .. proc.quote(jar) .. " -o /dev/null -w '%{http_code} %{redirect_url}' " .. proc.quote(url))
      local code, loc = out:match("^(%d+) (%S*)")
      if not (code and loc ~= "") then os.remove(jar) end
      assert(code and loc ~= "", "the AS did not redirect: " .. tostring(out))
      if loc:sub(1, #REDIRECT) == REDIRECT then os.remove(jar) return loc end
      url = loc
    end
    os.remove(jar)
    error("too many redirects")
  end

  local function authorise(verifier_for_exchange)
    local verifier, challenge = crypto.pkce()
    local state = crypto.state()
    local url = oauth.authorization_url(meta, { client_id = client.client_id, scope = "openid offline_access",
      state = state, redirect_uri = REDIRECT, code_challenge = challenge })
    local q = oauth.parse_query(browse(url))
    assert.equal(state, q.state)
    assert(oauth.check_iss(meta, q.iss))
    return oauth.exchange_code(client, meta, "interop-consent", q.code, verifier_for_exchange or verifier, REDIRECT,
      meta_url)
  end

  it("discovers the AS, gets a code with PKCE S256 and exchanges it", function()
    local err
    meta_url = as.url .. "/.well-known/openid-configuration"
    meta, err = oauth.metadata(client, meta_url)
    assert.is_table(meta, tostring(err))
    assert.equal(as.url, meta.issuer)
    assert.same({ "S256" }, meta.code_challenge_methods_supported)
    assert.is_true(meta.authorization_response_iss_parameter_supported)   -- so check_iss demands iss
    local rec, xerr = authorise()
    assert.is_table(rec, tostring(xerr))
    assert.is_string(rec.access_token)
    assert.is_string(rec.refresh_token)
    assert.is_true(rec.expires_at > os.time())
  end)

  it("the AS refuses a code exchanged with another PKCE verifier", function()
    local rec, err = authorise(select(1, crypto.pkce()))
    assert.is_nil(rec)
    assert.equal("invalid_grant", err.code)
  end)

  it("refreshes with rotation; the rotated-out refresh token is refused and the record dropped", function()
    local old = assert(tokens.read_record(client, "interop-consent"))
    local access, err = tokens.refresh(client, "interop-consent")
    assert.is_string(access, tostring(err))
    assert.not_equal(old.access_token, access)
    local new = assert(tokens.read_record(client, "interop-consent"))
    assert.not_equal(old.refresh_token, new.refresh_token)
    -- replay the old refresh token: oidc-provider refuses it (and, as RFC
    -- 9700 asks, revokes the grant); the client forgets the dead record
    assert(tokens.set_record(client, "interop-consent", old))
    local again, rerr = tokens.refresh(client, "interop-consent")
    assert.is_nil(again)
    assert.equal("invalid_grant", rerr.code)
    assert.is_nil((tokens.read_record(client, "interop-consent")))
  end)

  it("revokes at the AS (RFC 7009): the revoked refresh token is refused afterwards", function()
    local rec, err = authorise()
    assert.is_table(rec, tostring(err))
    local ok, rerr = oauth.revoke(client, "interop-consent")
    assert.is_true(ok, tostring(rerr))
    assert.is_nil((tokens.read_record(client, "interop-consent")))
    -- put the revoked tokens back: the AS no longer honours the refresh token
    assert(tokens.set_record(client, "interop-consent", rec))
    local again, ferr = tokens.refresh(client, "interop-consent")
    assert.is_nil(again)
    assert.equal("invalid_grant", ferr.code)
  end)
end)
