-- The OAuth authorization server on origins of its own (sandbox started
-- with --as-port / --as-mtls-port): RFC 8414 metadata naming the AS origin,
-- mtls_endpoint_aliases (RFC 8705 section 5), the iss parameter of RFC 9207,
-- RFC 7009 revocation, and the bank's origin serving none of it. Real TLS,
-- real nginx.
local H = dofile("spec/sandbox/bank_helper.lua")
local sandbox = require "support.sandbox"
local psu = H.psu

describe("sandbox bank #network AS on its own origin", function()
  local sb, berlin, md

  setup(function()
    sb = sandbox.start{ separate_as = true }
    H.restore(sb)
    berlin = H.tpp(sb, "berlin")
  end)
  teardown(function() if sb then sb:stop() end end)

  it("publishes metadata on the AS origin with mTLS aliases, iss support and revocation", function()
    assert.truthy(sb.as_url and sb.as_mtls_url)
    local res = sb:request{ url = sb.as_url .. "/xs2a/berlin/1.3/.well-known/oauth-authorization-server", cert = false }
    assert.equal(200, res.status)
    md = res.json
    local iss = sb.as_url .. "/xs2a/berlin/1.3"
    assert.equal(iss, md.issuer)
    assert.equal(iss .. "/oauth/authorize", md.authorization_endpoint)
    assert.equal(iss .. "/oauth/token", md.token_endpoint)
    assert.equal(iss .. "/oauth/revoke", md.revocation_endpoint)
    assert.is_true(md.authorization_response_iss_parameter_supported)
    assert.equal(sb.as_mtls_url .. "/xs2a/berlin/1.3/oauth/token", md.mtls_endpoint_aliases.token_endpoint)
    assert.equal(sb.as_mtls_url .. "/xs2a/berlin/1.3/oauth/revoke", md.mtls_endpoint_aliases.revocation_endpoint)
    berlin._md = md
    -- the bank's origin no longer serves the AS
    local bank = berlin:call("GET", "/.well-known/oauth-authorization-server")
    assert.equal(404, bank.status)
    -- and the AS origin serves no bank API
    local api = sb:request{ method = "GET", url = sb.as_url .. "/xs2a/berlin/1.3/v1/accounts",
      headers = { ["X-Request-ID"] = H.uuid() } }
    assert.equal(404, api.status)
  end)

  it("links scaOAuth to the AS, sends iss, exchanges codes only at the mTLS alias, refreshes and revokes", function()
    local res = berlin:create_consent(nil, { ["TPP-Redirect-URI"] = "https://tpp.example/cb" })
    assert.equal(201, res.status)
    local id = res.json.consentId
    assert.equal(md.issuer .. "/.well-known/oauth-authorization-server", res.json._links.scaOAuth.href)

    local url, verifier, state = berlin:authorization_url("AIS:" .. id)
    assert.equal(sb.as_url, url:match("^(https://[^/]+)"))
    local location = psu.authorize(url, { username = "alice", password = "alice-pass" })
    local q = psu.query(location)
    assert.equal(state, q.state)
    assert.equal(md.issuer, q.iss)
    local form = { grant_type = "authorization_code", code = q.code, code_verifier = verifier,
      redirect_uri = "https://tpp.example/cb", client_id = "PSDLT-BOL-TPP001" }

    -- the plain token endpoint refuses mutual-TLS clients: they belong at the alias
    local plain = berlin:token(form)
    assert.equal(401, plain.status)
    assert.equal("invalid_client", plain.json.error)
    assert.matches("mtls_endpoint_aliases", plain.json.error_description)

    local function at_alias(name, f)
      local parts = {}
      for k, v in pairs(f) do parts[#parts + 1] = psu.urlencode(k) .. "=" .. psu.urlencode(v) end
      return sb:request{ method = "POST", url = md.mtls_endpoint_aliases[name], body = table.concat(parts, "&"),
        headers = { ["Content-Type"] = "application/x-www-form-urlencoded" } }
    end
    local tok = at_alias("token_endpoint", form)
    assert.equal(200, tok.status)
    assert.equal(200, berlin:ais("/v1/accounts", id, tok.json.access_token).status)

    local r1 = at_alias("token_endpoint", { grant_type = "refresh_token", refresh_token = tok.json.refresh_token,
      client_id = "PSDLT-BOL-TPP001" })
    assert.equal(200, r1.status)
    assert.are_not.equal(tok.json.refresh_token, r1.json.refresh_token)

    -- revocation (RFC 7009): the access token, then the refresh token
    local rv = at_alias("revocation_endpoint", { token = r1.json.access_token, token_type_hint = "access_token",
      client_id = "PSDLT-BOL-TPP001" })
    assert.equal(200, rv.status)
    local gone = berlin:ais("/v1/accounts", id, r1.json.access_token)
    assert.equal(401, gone.status)
    assert.equal("TOKEN_UNKNOWN", gone.json.code)
    assert.equal(200, at_alias("revocation_endpoint", { token = r1.json.refresh_token,
      client_id = "PSDLT-BOL-TPP001" }).status)
    local dead = at_alias("token_endpoint", { grant_type = "refresh_token", refresh_token = r1.json.refresh_token,
      client_id = "PSDLT-BOL-TPP001" })
    assert.equal(400, dead.status)
    assert.equal("invalid_grant", dead.json.error)
    -- unknown tokens are answered 200 as well (RFC 7009 section 2.2)
    assert.equal(200, at_alias("revocation_endpoint", { token = "nope", client_id = "PSDLT-BOL-TPP001" }).status)
  end)

  it("sends a configured foreign iss (for the client's mix-up specs) and none when switched off", function()
    sb:config{ oauth = { iss = "https://evil.example" } }
    local id = berlin:create_consent().json.consentId
    local url = berlin:authorization_url("AIS:" .. id)
    local q = psu.query(psu.authorize(url, { username = "alice", password = "alice-pass" }))
    assert.equal("https://evil.example", q.iss)
    sb:config{ oauth = { iss = false } }
    id = berlin:create_consent().json.consentId
    url = berlin:authorization_url("AIS:" .. id)
    q = psu.query(psu.authorize(url, { username = "alice", password = "alice-pass" }))
    assert.is_nil(q.iss)
    H.restore(sb)
  end)
end)
