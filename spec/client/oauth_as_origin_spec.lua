-- OAuth against an authorization server on origins of its own (a private
-- sandbox started with separate_as: the AS and its mTLS aliases on two more
-- ports): discovery from the bank's own scaOAuth link, code exchange and
-- refresh at the mtls_endpoint_aliases token endpoint, rotation,
-- revocation; the RFC 9207 iss check; trust limited to the origins the
-- metadata names (plus oauth.trusted_origins); the refresh margin of short
-- tokens; metadata cached per issuer and fetched again after a failure.
local sandbox = require "support.sandbox"
local support = require "support.client"
local psu = require "support.psu"
local oauth = require "xs2a.sca.oauth"
local tokens = require "xs2a.sca.tokens"

local PSU = { psu_ip = "198.51.100.7" }
local CB = "https://tpp.example/callback"

describe("OAuth with the AS on another origin #network", function()
  local sb

  setup(function()
    sb = sandbox.start{ separate_as = true,
      config = { rate = { per_second = 1000, per_hour = 100000, concurrent = 50 } } }
  end)
  teardown(function() if sb then sb:stop() end end)
  after_each(function() sb:reset() end)

  local function client(over)
    local o = { limits = false, redirect_uri = CB, store = require("xs2a.store").memory() }
    for k, v in pairs(over or {}) do o[k] = v end
    return support.new_client("berlin", o, sb)
  end

  -- lines of the access log matching `pattern` (a plain substring). nginx
  -- writes a line after the answer went out, so wait until `want` lines are
  -- there (or 1 s), or 0.3 s when no number is expected.
  local function count(pattern, want)
    local n
    for _ = 1, 20 do
      n = 0
      for _, l in ipairs(sb:access_log()) do
        if l:find(pattern, 1, true) then n = n + 1 end
      end
      if want and n >= want then return n end
      os.execute("sleep 0.05")
      if not want and _ >= 6 then return n end
    end
    return n
  end
  local TOKEN = '"POST /xs2a/berlin/1.3/oauth/token '
  local META = '"GET /xs2a/berlin/1.3/.well-known/oauth-authorization-server '

  -- a consent authorised through the flow; returns consent, client
  local function authorised(c)
    c = c or client()
    local consent = assert(c:create_consent(support.consent_body(), PSU))
    local flow = assert(consent:authorise())
    local step = assert(flow:next())
    assert.equal("redirect", step.kind)
    local callback = assert(psu.authorize(step.url, { username = "alice", password = "alice-pass",
      redirect_uri = CB }))
    step = assert(flow:next{ callback = callback })
    assert.equal("done", step.kind)
    return consent, c, callback
  end

  it("discovers the AS from the bank's link, exchanges the code at the mTLS alias, refreshes, rotates, revokes",
    function()
      local c = client()
      local consent = assert(c:create_consent(support.consent_body(), PSU))
      assert.equal(sb.as_url, consent.links.scaOAuth.href:match("^(https://[^/]+)"))
      local flow = assert(consent:authorise())
      local step = assert(flow:next())
      -- the PSU goes to the AS's own origin
      assert.equal(sb.as_url, step.url:match("^(https://[^/]+)"))
      local callback = assert(psu.authorize(step.url, { username = "alice", password = "alice-pass",
        redirect_uri = CB }))
      assert.equal(sb.as_url .. "/xs2a/berlin/1.3", psu.query(callback).iss)
      step = assert(flow:next{ callback = callback })
      assert.equal("done", step.kind)
      local rec = oauth.read_record(c, consent.token_key)
      -- the plain token endpoint refuses mTLS clients, so success means the alias was used
      assert.equal(sb.as_mtls_url .. "/xs2a/berlin/1.3/oauth/token", rec.token_endpoint)
      assert.is_true(#assert(consent:accounts(PSU)) > 0)

      -- refresh at the alias, with rotation
      local old = rec.refresh_token
      assert(oauth.refresh(c, consent.token_key, rec.access_token))
      local rec2 = oauth.read_record(c, consent.token_key)
      assert.are_not.equal(old, rec2.refresh_token)
      assert.are_not.equal(rec.access_token, rec2.access_token)
      assert.is_true(#assert(consent:accounts(PSU)) > 0)

      -- revocation at the alias: the bank no longer takes the access token
      assert.is_true(oauth.revoke(c, consent.token_key))
      assert.is_nil(oauth.read_record(c, consent.token_key))
      local res = sb:request{ url = sb.roots.berlin .. "/v1/accounts", headers = {
        ["X-Request-ID"] = "7d0c4a2e-1111-4bbb-8ccc-123456789abc", ["Consent-ID"] = consent.id,
        Authorization = "Bearer " .. rec2.access_token } }
      assert.equal(401, res.status)
      assert.equal("TOKEN_UNKNOWN", res.json.code)
    end)

  it("refuses an authorization response from another issuer (RFC 9207) before any token request", function()
    sb:config{ oauth = { iss = "https://evil.example" } }
    local c = client()
    local consent = assert(c:create_consent(support.consent_body(), PSU))
    local flow = assert(consent:authorise())
    local step = assert(flow:next())
    local callback = assert(psu.authorize(step.url, { username = "alice", password = "alice-pass",
      redirect_uri = CB }))
    assert.equal("https://evil.example", psu.query(callback).iss)
    local before = count(TOKEN)
    local done, err = flow:next{ callback = callback }
    assert.is_nil(done)
    assert.equal("sca", err.kind)
    assert.equal("ISSUER_MISMATCH", err.code)
    assert.equal("failed", flow:state())
    assert.equal(before, count(TOKEN))
    assert.is_nil(oauth.read_record(c, consent.token_key))
    -- and a missing iss where the AS promised one is refused the same way
    sb:config{ oauth = { iss = false } }
    local c2 = client()
    local consent2 = assert(c2:create_consent(support.consent_body(), PSU))
    local flow2 = assert(consent2:authorise())
    local step2 = assert(flow2:next())
    local cb2 = assert(psu.authorize(step2.url, { username = "alice", password = "alice-pass", redirect_uri = CB }))
    local meta = assert(oauth.metadata(c2, consent2.links.scaOAuth.href))
    meta.authorization_response_iss_parameter_supported = true   -- (the cached copy says so)
    local d2, e2 = flow2:next{ callback = cb2 }
    assert.is_nil(d2)
    assert.equal("ISSUER_MISMATCH", e2.code)
  end)

  it("trusts only the origins the metadata names and oauth.trusted_origins; refuses others unsent", function()
    local consent, c = authorised()
    local meta = assert(oauth.metadata(c, consent.links.scaOAuth.href))
    assert.is_true(oauth.check_trusted(c, meta, meta.token_endpoint))
    assert.is_true(oauth.check_trusted(c, meta, meta.mtls_endpoint_aliases.token_endpoint))
    local no, err = oauth.check_trusted(c, meta, "https://evil.example/token")
    assert.is_nil(no)
    assert.equal("FOREIGN_LINK", err.code)
    local c2 = client{ oauth = { trusted_origins = { "https://idp.bank.example" } } }
    assert.is_true(oauth.check_trusted(c2, meta, "https://idp.bank.example/token"))
    -- a record pointing its refresh at an unnamed origin: refused, nothing sent
    local rec = oauth.read_record(c, consent.token_key)
    rec.token_endpoint = "https://evil.example/token"
    assert(oauth.set_record(c, consent.token_key, rec))
    local sent = 0
    local real = c.transport
    c.transport = { request = function(_, req) sent = sent + 1 return real.request(real, req) end }
    local tok, rerr = oauth.refresh(c, consent.token_key, rec.access_token)
    c.transport = real
    assert.is_nil(tok)
    assert.equal("FOREIGN_LINK", rerr.code)
    assert.equal(0, sent)
    -- bad option values are config errors naming the option
    local bad, berr = require("xs2a").client{ profile = "paysera-berlin", base_url = sb.base_url,
      qwac = support.identity("qwac"), qseal = support.identity("qseal"), oauth = { trusted_origins = { "http://x" } } }
    assert.is_nil(bad)
    assert.equal("config", berr.kind)
    assert.matches("oauth.trusted_origins", berr.text or berr.message or tostring(berr))
  end)

  it("20 s tokens are not refreshed on every call; refresh_margin is per client", function()
    sb:config{ token_ttl = 20 }
    local consent, c = authorised()
    local rec = oauth.read_record(c, consent.token_key)
    assert.equal(5, tokens.margin(c, rec))               -- a quarter of 20 s, not the default 60
    local before = count(TOKEN)
    for _ = 1, 4 do assert(consent:accounts(PSU)) end
    assert.equal(before, count(TOKEN))                   -- no refresh, no rotation
    assert.equal(rec.refresh_token, oauth.read_record(c, consent.token_key).refresh_token)
    local c2 = client{ oauth = { refresh_margin = 2 } }
    assert.equal(2, tokens.margin(c2, rec))
    -- inside the margin the next call refreshes once
    rec.obtained_at, rec.expires_at = oauth.now() - 17, oauth.now() + 3
    assert(oauth.set_record(c, consent.token_key, rec))
    assert(consent:accounts(PSU))
    assert.equal(before + 1, count(TOKEN, before + 1))
  end)

  it("caches metadata per issuer and fetches it again after a failed call to the AS", function()
    local c = client()
    local consent = assert(c:create_consent(support.consent_body(), PSU))
    local link = consent.links.scaOAuth.href
    local n0 = count(META)
    assert(oauth.metadata(c, link))
    assert(oauth.metadata(c, link))
    assert.equal(n0 + 1, count(META, n0 + 1))
    -- a code exchange the AS refuses drops the cached document
    local meta = assert(oauth.metadata(c, link))
    local rec, err = oauth.exchange_code(c, meta, consent.token_key, "no-such-code", string.rep("v", 43), CB, link)
    assert.is_nil(rec)
    assert.is_table(err)
    assert(oauth.metadata(c, link))
    assert.equal(n0 + 2, count(META, n0 + 2))
    -- Cache-Control max-age (300 here) bounds the TTL below the client's
    local c3 = client{ oauth = { metadata_ttl = 0 } }
    assert(oauth.metadata(c3, link))
    assert(oauth.metadata(c3, link))
    assert.equal(n0 + 4, count(META, n0 + 4))
  end)
end)
