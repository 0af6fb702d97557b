-- The bank's OAuth authorization server: metadata, the authorization page
-- as a browser uses it, PKCE, the token endpoint, certificate-bound tokens
-- and refresh-token rotation. Real TLS, real nginx.
local H = dofile("spec/sandbox/bank_helper.lua")
local psu = H.psu

describe("sandbox bank #network OAuth", function()
  local sb, berlin, georgia
  setup(H.setup_bank(function(s, b, g) sb, berlin, georgia = s, b, g end))
  teardown(function() H.restore(sb) end)

  describe("metadata", function()
    it("publishes RFC 8414 metadata for each variant without a client certificate", function()
      for _, tpp in ipairs({ berlin, georgia }) do
        local res = tpp:call("GET", "/.well-known/oauth-authorization-server", { cert = false })
        assert.equal(200, res.status)
        local md = res.json
        assert.equal(tpp.root, md.issuer)
        assert.equal(tpp.root .. "/oauth/authorize", md.authorization_endpoint)
        assert.equal(tpp.root .. "/oauth/token", md.token_endpoint)
        assert.same({ "code" }, md.response_types_supported)
        assert.same({ "S256" }, md.code_challenge_methods_supported)
        assert.same({ "tls_client_auth" }, md.token_endpoint_auth_methods_supported)
        assert.is_true(md.tls_client_certificate_bound_access_tokens)
        assert.same({ "authorization_code", "refresh_token" }, md.grant_types_supported)
      end
    end)
  end)

  describe("consent creation", function()
    it("answers 201 with scaOAuth (relative on Berlin, absolute on Georgia) and an implicit authorisation", function()
      local res = berlin:create_consent()
      assert.equal(201, res.status)
      assert.equal("received", res.json.consentStatus)
      assert.equal("REDIRECT", res.headers["aspsp-sca-approach"])
      local id = res.json.consentId
      assert.equal(sb.roots.berlin .. "/v1/consents/" .. id, res.headers["location"])
      assert.equal(berlin.path_root .. "/.well-known/oauth-authorization-server", res.json._links.scaOAuth.href)
      assert.equal(berlin.path_root .. "/v1/consents/" .. id, res.json._links.self.href)
      assert.truthy(res.json._links.scaStatus.href:find("/authorisations/", 1, true))
      local auths = berlin:call("GET", "/v1/consents/" .. id .. "/authorisations").json.authorisationIds
      assert.equal(1, #auths)
      local st = berlin:call("GET", "/v1/consents/" .. id .. "/authorisations/" .. auths[1])
      assert.equal("received", st.json.scaStatus)

      local g = georgia:create_consent()
      assert.equal(201, g.status)
      assert.equal(sb.roots.georgia .. "/.well-known/oauth-authorization-server", g.json._links.scaOAuth.href)
    end)
  end)

  describe("code flow", function()
    it("runs authorization page, code + PKCE exchange, AIS access and refresh rotation", function()
      local res = berlin:create_consent(nil, { ["TPP-Redirect-URI"] = "https://tpp.example/cb" })
      local id = res.json.consentId
      local url, verifier, state = berlin:authorization_url("AIS:" .. id)

      -- the page, as a browser sees it
      local page = psu.fetch("GET", url)
      assert.equal(200, page.status)
      assert.matches("text/html", page.headers["content-type"])
      assert.not_matches("<script", page.html)
      local form = psu.parse_form(page.html)
      assert.equal("POST", form.method)
      assert.equal("password", form.inputs.password)
      assert.equal("text", form.inputs.username)
      assert.equal("AIS:" .. id, form.fields.scope)
      assert.equal(state, form.fields.state)
      assert.same({ { "decision", "approve" }, { "decision", "deny" } }, form.buttons)
      assert.matches("all your payment accounts", page.html)

      local location = psu.authorize(url, { username = "alice", password = "alice-pass" })
      assert.truthy(location)
      assert.equal("https://tpp.example/cb", location:match("^[^?]+"))
      local q = psu.query(location)
      assert.equal(state, q.state)
      assert.truthy(q.code)
      -- approved on the page, but final only when the TPP exchanges the code
      assert.equal("received", berlin:call("GET", "/v1/consents/" .. id .. "/status").json.consentStatus)

      local tok = berlin:token({ grant_type = "authorization_code", code = q.code, code_verifier = verifier,
        redirect_uri = "https://tpp.example/cb", client_id = "PSDLT-BOL-TPP001" })
      assert.equal(200, tok.status)
      assert.equal("no-store", tok.headers["cache-control"])
      assert.equal("Bearer", tok.json.token_type)
      assert.equal("AIS:" .. id, tok.json.scope)
      assert.equal(3600, tok.json.expires_in)
      assert.truthy(tok.json.refresh_token)
      assert.equal("valid", berlin:call("GET", "/v1/consents/" .. id .. "/status").json.consentStatus)

      local acc = berlin:ais("/v1/accounts", id, tok.json.access_token)
      assert.equal(200, acc.status)
      assert.is_true(#acc.json.accounts >= 3)

      -- the code is single-use
      local again = berlin:token({ grant_type = "authorization_code", code = q.code, code_verifier = verifier,
        redirect_uri = "https://tpp.example/cb", client_id = "PSDLT-BOL-TPP001" })
      assert.equal(400, again.status)
      assert.equal("invalid_grant", again.json.error)

      -- refresh rotates: the new pair works, the old refresh token is dead
      local r1 = berlin:token({ grant_type = "refresh_token", refresh_token = tok.json.refresh_token,
        client_id = "PSDLT-BOL-TPP001" })
      assert.equal(200, r1.status)
      assert.are_not.equal(tok.json.refresh_token, r1.json.refresh_token)
      assert.are_not.equal(tok.json.access_token, r1.json.access_token)
      assert.equal(200, berlin:ais("/v1/accounts", id, r1.json.access_token).status)
      local old = berlin:token({ grant_type = "refresh_token", refresh_token = tok.json.refresh_token,
        client_id = "PSDLT-BOL-TPP001" })
      assert.equal(400, old.status)
      assert.equal("invalid_grant", old.json.error)
      local r2 = berlin:token({ grant_type = "refresh_token", refresh_token = r1.json.refresh_token,
        client_id = "PSDLT-BOL-TPP001" })
      assert.equal(200, r2.status)
      -- once the TPP deletes the consent, neither token nor refresh helps
      assert.equal(204, berlin:call("DELETE", "/v1/consents/" .. id).status)
      local gone = berlin:ais("/v1/accounts", id, r2.json.access_token)
      assert.equal(401, gone.status)
      assert.equal("CONSENT_INVALID", gone.json.code)
      local r3 = berlin:token({ grant_type = "refresh_token", refresh_token = r2.json.refresh_token,
        client_id = "PSDLT-BOL-TPP001" })
      assert.equal("invalid_grant", r3.json.error)
    end)

    it("rejects a wrong code_verifier, a wrong redirect_uri and another client's id", function()
      local id = berlin:create_consent().json.consentId
      local url, verifier = berlin:authorization_url("AIS:" .. id)
      local code = psu.query(psu.authorize(url, { username = "alice", password = "alice-pass" })).code
      local other = psu.pkce()
      local bad = berlin:token({ grant_type = "authorization_code", code = code, code_verifier = other,
        redirect_uri = "https://tpp.example/cb", client_id = "PSDLT-BOL-TPP001" })
      assert.equal(400, bad.status)
      assert.equal("invalid_grant", bad.json.error)
      -- that attempt used the code up
      local retry = berlin:token({ grant_type = "authorization_code", code = code, code_verifier = verifier,
        redirect_uri = "https://tpp.example/cb", client_id = "PSDLT-BOL-TPP001" })
      assert.equal("invalid_grant", retry.json.error)

      local id2 = berlin:create_consent().json.consentId
      local url2, verifier2 = berlin:authorization_url("AIS:" .. id2)
      local code2 = psu.query(psu.authorize(url2, { username = "alice", password = "alice-pass" })).code
      local wrong_uri = berlin:token({ grant_type = "authorization_code", code = code2, code_verifier = verifier2,
        redirect_uri = "https://evil.example/cb", client_id = "PSDLT-BOL-TPP001" })
      assert.equal("invalid_grant", wrong_uri.json.error)

      local client = berlin:token({ grant_type = "authorization_code", code = "x", code_verifier = verifier2,
        redirect_uri = "https://tpp.example/cb", client_id = "PSDLT-BOL-TPP002" })
      assert.equal(401, client.status)
      assert.equal("invalid_client", client.json.error)

      local grant = berlin:token({ grant_type = "password", client_id = "PSDLT-BOL-TPP001" })
      assert.equal("unsupported_grant_type", grant.json.error)

      local nocert = berlin:token({ grant_type = "refresh_token", refresh_token = "x",
        client_id = "PSDLT-BOL-TPP001" }, { cert = false })
      assert.equal(401, nocert.status)
    end)

    it("binds tokens to the client certificate and honours token_ttl", function()
      local id, tok = georgia:valid_consent()
      assert.equal(200, georgia:ais("/v1/accounts", id, tok.access_token).status)
      -- another certificate presenting the same token
      local other = georgia:ais("/v1/accounts", id, tok.access_token, { cert = "qwac-ai" })
      assert.equal(401, other.status)
      assert.equal("TOKEN_INVALID", other.json.code)
      -- no token at all, and an unknown one
      assert.equal("TOKEN_UNKNOWN", georgia:ais("/v1/accounts", id, nil).json.code)
      assert.equal("TOKEN_UNKNOWN", georgia:ais("/v1/accounts", id, "not-a-token").json.code)
      -- a token of another consent
      local id2 = georgia:valid_consent()
      local cross = georgia:ais("/v1/accounts", id2, tok.access_token)
      assert.equal(401, cross.status)
      assert.equal("TOKEN_INVALID", cross.json.code)

      H.configure(sb, { token_ttl = 0 })
      local id3, tok3 = georgia:valid_consent()
      local expired = georgia:ais("/v1/accounts", id3, tok3.access_token)
      assert.equal(401, expired.status)
      assert.equal("TOKEN_EXPIRED", expired.json.code)
      H.restore(sb)
    end)
  end)

  describe("lifetimes", function()
    after_each(function() H.restore(sb) end)

    it("announces token_ttl in expires_in and refuses a refresh token past refresh_ttl", function()
      H.configure(sb, { token_ttl = 120, refresh_ttl = 0 })
      local _, tok = berlin:valid_consent()
      assert.equal(120, tok.expires_in)
      local res = berlin:token{ grant_type = "refresh_token", refresh_token = tok.refresh_token,
        client_id = "PSDLT-BOL-TPP001" }
      assert.equal(400, res.status)
      assert.equal("invalid_grant", res.json.error)
      assert.matches("expired", res.json.error_description)
      -- with a lifetime, the same exchange works (and rotates)
      H.configure(sb, { refresh_ttl = 600 })
      _, tok = berlin:valid_consent()
      res = berlin:token{ grant_type = "refresh_token", refresh_token = tok.refresh_token,
        client_id = "PSDLT-BOL-TPP001" }
      assert.equal(200, res.status)
      assert.are_not.equal(tok.refresh_token, res.json.refresh_token)
    end)

    it("refuses an authorization code past code_ttl", function()
      H.configure(sb, { code_ttl = 0 })
      local consent = georgia:create_consent()
      local url, verifier, state = georgia:authorization_url("AIS:" .. consent.json.consentId)
      local location = assert(psu.authorize(url, { username = "alice", password = "alice-pass",
        decision = "approve" }))
      local q = psu.query(location)
      assert.equal(state, q.state)
      local res = georgia:token{ grant_type = "authorization_code", code = q.code, code_verifier = verifier,
        redirect_uri = "https://tpp.example/cb", client_id = "PSDLT-BOL-TPP001" }
      assert.equal(400, res.status)
      assert.equal("invalid_grant", res.json.error)
      assert.matches("expired", res.json.error_description)
    end)
  end)

  describe("authorization page", function()
    it("shows the form again on a wrong password and redirects with access_denied on deny", function()
      local id = berlin:create_consent().json.consentId
      local url, _, state = berlin:authorization_url("AIS:" .. id)
      local location, page = psu.authorize(url, { username = "alice", password = "wrong" })
      assert.is_nil(location)
      assert.equal(200, page.status)
      assert.matches("wrong", page.error)
      assert.truthy(psu.parse_form(page.html))
      assert.not_matches("alice%-pass", page.html)

      location = psu.authorize(url, { username = "alice", password = "alice-pass", decision = "deny" })
      local q = psu.query(location)
      assert.equal("access_denied", q.error)
      assert.equal(state, q.state)
      assert.equal("rejected", berlin:call("GET", "/v1/consents/" .. id .. "/status").json.consentStatus)
    end)

    it("rejects bad authorization requests", function()
      local id = berlin:create_consent(nil, { ["TPP-Redirect-URI"] = "https://tpp.example/cb" }).json.consentId
      -- unknown scope: no redirect, an error page
      local url = berlin:authorization_url("AIS:no-such-consent")
      local page = psu.fetch("GET", url)
      assert.equal(400, page.status)
      -- another TPP's client id cannot open this consent
      page = psu.fetch("GET", (berlin:authorization_url("AIS:" .. id, { client_id = "PSDLT-BOL-TPP002" })))
      assert.equal(400, page.status)
      -- redirect_uri must equal the TPP-Redirect-URI of the consent
      page = psu.fetch("GET", (berlin:authorization_url("AIS:" .. id, { redirect_uri = "https://other.example/cb" })))
      assert.equal(400, page.status)
      -- PKCE is mandatory: plain is refused with a redirect carrying the error
      page = psu.fetch("GET", (berlin:authorization_url("AIS:" .. id, { method = "plain" })))
      assert.equal(302, page.status)
      assert.equal("invalid_request", psu.query(page.location).error)
    end)
  end)
end)
