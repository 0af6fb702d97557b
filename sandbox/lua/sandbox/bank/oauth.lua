--- The OAuth 2.0 authorization server of the OAuth SCA approach: RFC 8414
-- metadata, the authorization page (code + PKCE S256), and the token
-- endpoint with mTLS client authentication (RFC 8705), certificate-bound
-- access tokens and rotating refresh tokens.
local common = require "sandbox.bank.common"
local sca = require "sandbox.bank.sca"
local pages = require "sandbox.bank.pages"
local util = common.util

local type = type

local _M = {}

local CLIENT_ID = "^PSD%u%u%-[%w]+%-[%w%-%.]+$"
local PKCE = "^[%w%-%._~]+$"

local function crypto() return require("sandbox.crypto") end

local function b64url(raw)
  return (ngx.encode_base64(raw, true):gsub("%+", "-"):gsub("/", "_"))
end

-- tokens are stored under a digest of their value, never the value itself
local function token_key(prefix, token)
  return prefix .. b64url(crypto().sha256(token))
end

---------------------------------------------------------------------------
-- metadata and origins
--
-- By default the authorization server shares the bank's origin. When the
-- sandbox was started with --as-port (and --as-mtls-port), it lives on
-- origins of its own: the issuer, the authorization page, the plain token
-- and revocation endpoints on the AS port, and their mutual-TLS aliases
-- (RFC 8705 section 5) on the mTLS port; the bank's origin then serves none
-- of these and its scaOAuth links name the AS's metadata. Configuration
-- (`oauth` table): `mtls_aliases` (default true), `iss` (RFC 9207: true =
-- send the issuer, false = send none, a string = send that instead),
-- `revocation` (default true).

local function oauth_cfg(ctx)
  return ctx.cfg and ctx.cfg.oauth or {}
end

-- true when the AS lives on its own origin
local function separate(ctx)
  return ctx.ports ~= nil and ctx.ports.as ~= nil
end

local function origin(ctx, which)
  return "https://127.0.0.1:" .. ctx.ports[which]
end

local function issuer(ctx)
  if separate(ctx) then return origin(ctx, "as") .. ctx.root end
  return ctx.base_url .. ctx.root
end

-- the base of the mutual-TLS aliases, or nil when none are advertised
local function mtls_base(ctx)
  if separate(ctx) and ctx.ports.as_mtls and oauth_cfg(ctx).mtls_aliases ~= false then
    return origin(ctx, "as_mtls") .. ctx.root
  end
end

--- The scaOAuth link of the bank's answers: the AS's metadata document.
function _M.metadata_link(ctx)
  if separate(ctx) then return { href = issuer(ctx) .. "/.well-known/oauth-authorization-server" } end
  return common.link(ctx, "/.well-known/oauth-authorization-server")
end

-- the `iss` of an authorization response (RFC 9207), or nil
local function response_iss(ctx)
  local v = oauth_cfg(ctx).iss
  if v == false then return nil end
  if type(v) == "string" then return v end
  return issuer(ctx)
end

local function metadata(ctx)
  local base = issuer(ctx)
  local oc = oauth_cfg(ctx)
  local m = {
    issuer = base,
    authorization_endpoint = base .. "/oauth/authorize",
    token_endpoint = base .. "/oauth/token",
    response_types_supported = util.array({ "code" }),
    response_modes_supported = util.array({ "query" }),
    grant_types_supported = util.array({ "authorization_code", "refresh_token" }),
    code_challenge_methods_supported = util.array({ "S256" }),
    token_endpoint_auth_methods_supported = util.array({ "tls_client_auth" }),
    tls_client_certificate_bound_access_tokens = true,
    scopes_supported = util.array({ "AIS", "PIS" }),
    authorization_response_iss_parameter_supported = oc.iss ~= false,
  }
  if oc.revocation ~= false then
    m.revocation_endpoint = base .. "/oauth/revoke"
    m.revocation_endpoint_auth_methods_supported = util.array({ "tls_client_auth" })
  end
  local alias = mtls_base(ctx)
  if alias then
    m.mtls_endpoint_aliases = { token_endpoint = alias .. "/oauth/token" }
    if m.revocation_endpoint then m.mtls_endpoint_aliases.revocation_endpoint = alias .. "/oauth/revoke" end
  end
  return 200, m, { ["Cache-Control"] = "public, max-age=300" }
end

---------------------------------------------------------------------------
-- the authorization request

local first = common.first

-- the resource a scope names: "AIS:<consentId>", "PIS:<paymentId>" or
-- "PIS:<basketId>" (other space-separated scopes such as offline_access are
-- ignored); returns the resource, its service and its kind
local function resource_of(ctx, scope, client_id)
  local found
  for word in tostring(scope or ""):gmatch("%S+") do
    local svc, id = word:match("^(%u%u%u):(.+)$")
    if svc == "AIS" or svc == "PIS" then
      if found then return nil end
      found = { service = svc, id = id }
    end
  end
  if not found then return nil end
  local res, kind
  if found.service == "AIS" then
    res, kind = require("sandbox.bank.consents").raw(found.id), "consent"
  else
    res, kind = require("sandbox.bank.payments").raw(found.id), "payment"
    if not res then res, kind = require("sandbox.bank.baskets").raw(found.id), "basket" end
  end
  if not res or res.variant ~= ctx.variant or res.org_id ~= client_id then return nil end
  return res, found.service, kind
end

local function describe(res, service, auth)
  local name = common.get("tpp_name:" .. tostring(res.org_id))
  local lines = { "Requested by " .. (type(name) == "string" and (name .. " (" .. tostring(res.org_id) .. ")")
    or tostring(res.org_id)) .. "." }
  if service == "AIS" then
    local a = res.access
    if a.allPsd2 then
      lines[#lines + 1] = "Read access to all your payment accounts: details, balances and transactions."
    elseif a.availableAccountsWithBalance then
      lines[#lines + 1] = "See the list of your payment accounts with their balances."
    elseif a.availableAccounts then
      lines[#lines + 1] = "See the list of your payment accounts."
    end
    for _, k in ipairs({ "accounts", "balances", "transactions" }) do
      for _, ref in ipairs(a[k] or {}) do
        lines[#lines + 1] = "Access to " .. k .. " of " .. (ref.iban or ref.maskedPan or ref.bban or ref.pan or "?")
          .. (ref.currency and (" (" .. ref.currency .. ")") or "")
      end
    end
    lines[#lines + 1] = "Valid until " .. res.validUntil .. ", up to " .. res.frequencyPerDay
      .. " automatic reads a day" .. (res.recurringIndicator and ", recurring." or ", one-off.")
  elseif auth and auth.kind == "basket" then
    for _, l in ipairs(require("sandbox.bank.baskets").describe(res)) do lines[#lines + 1] = l end
  else
    local d = require("sandbox.bank.payments").describe(res)
    if auth and auth.kind == "cancellation" then d = "Cancel: " .. d end
    lines[#lines + 1] = d
  end
  if (res.required or 1) > 1 and not (auth and auth.kind == "cancellation") then
    lines[#lines + 1] = "This needs " .. res.required .. " different people to approve; "
      .. #(res.approvals or {}) .. " already did."
  end
  return lines
end

local function error_redirect(ctx, uri, err, desc, state)
  return pages.redirect(common.add_query(uri,
    { error = err, error_description = desc, state = state, iss = response_iss(ctx) }))
end

-- Validates an authorization request (query or form). Returns a table of
-- the request, or nil and a response (a 400 page, or a redirect with an error).
local function check_request(ctx, params)
  local p = {}
  for _, k in ipairs({ "response_type", "client_id", "scope", "redirect_uri", "state",
      "code_challenge", "code_challenge_method", "authorisation_id" }) do
    p[k] = first(params[k])
  end
  if type(p.client_id) ~= "string" or not p.client_id:match(CLIENT_ID) then
    return nil, { pages.message(400, "Invalid request", "client_id is missing or not an organisation identifier") }
  end
  local res, service, kind = resource_of(ctx, p.scope, p.client_id)
  if not res then
    return nil, { pages.message(400, "Invalid request", "scope must name one consent (AIS:<consentId>), "
      .. "payment (PIS:<paymentId>) or signing basket (PIS:<basketId>) of this client") }
  end
  if type(p.redirect_uri) ~= "string" or not p.redirect_uri:match("^https?://[^%s#]+$") then
    return nil, { pages.message(400, "Invalid request", "redirect_uri is missing or not an absolute URL") }
  end
  if res.redirect_uri and res.redirect_uri ~= p.redirect_uri then
    return nil, { pages.message(400, "Invalid request", "redirect_uri differs from the TPP-Redirect-URI given before") }
  end
  local function fail(err, desc) return nil, { error_redirect(ctx, p.redirect_uri, err, desc, p.state) } end
  if p.response_type ~= "code" then return fail("unsupported_response_type", "response_type must be code") end
  if type(p.state) ~= "string" or p.state == "" then return fail("invalid_request", "state is required") end
  if type(p.code_challenge) ~= "string" or #p.code_challenge < 43 or #p.code_challenge > 128
      or not p.code_challenge:match(PKCE) then
    return fail("invalid_request", "code_challenge (PKCE) is required")
  end
  if p.code_challenge_method ~= "S256" then return fail("invalid_request", "code_challenge_method must be S256") end
  if res.approach ~= "oauth" then
    return fail("invalid_request", "this resource uses the " .. tostring(res.approach) .. " approach")
  end
  -- the authorisation this page completes: the one named (a page re-post),
  -- else the most recent open OAuth authorisation, else an implicit one
  local auth
  if p.authorisation_id then
    auth = sca.tick(sca.load(p.authorisation_id))
    if not auth or auth.rid ~= res.id or sca.FINAL[auth.status] then auth = nil end
  else
    auth = sca.open_auth(res, "oauth")
  end
  if not auth then
    if sca.awaiting(res, kind) and #(res.auths or {}) == 0 and (res.required or 1) == 1 then
      auth = sca.create(ctx, res, kind, {})
    else
      return fail("invalid_request", "nothing waits for an authorisation here"
        .. ((res.required or 1) > 1 and " (start one with POST .../authorisations)" or ""))
    end
  end
  p.authorisation_id = auth.id
  return p, res, service, auth
end

local function form(ctx, p, res, service, auth, err, username)
  local hidden = {}
  for k, v in pairs(p) do hidden[k] = v end
  return pages.authorise_form({
    title = service == "AIS" and "Give account access"
      or auth.kind == "basket" and "Confirm signing basket" or "Confirm payment",
    bank = "Paysera sandbox bank", lines = describe(res, service, auth),
    action = ctx.root .. "/oauth/authorize", hidden = hidden, error = err, username = username,
    choice = sca.choices(res, auth.kind),
  })
end

local function authorize_get(ctx)
  local p, res, service, auth = check_request(ctx, ctx.args or {})
  if not p then return common.unpack(res) end
  return form(ctx, p, res, service, auth)
end

local function authorize_post(ctx)
  local params = ctx.form or common.form(ctx.body)
  local p, res, service, auth = check_request(ctx, params)
  if not p then return common.unpack(res) end
  local decision = first(params.decision)
  if decision == "deny" then
    sca.finish(auth.id, false)
    return error_redirect(ctx, p.redirect_uri, "access_denied", "the PSU denied the request", p.state)
  end
  if decision ~= "approve" then return pages.message(400, "Invalid request", "decision must be approve or deny") end
  local username, password = first(params.username), first(params.password)
  if not common.psu_login(username, password) then
    return form(ctx, p, res, service, auth, "User name or password is wrong.", type(username) == "string" and username)
  end
  local kind = auth.kind
  local ok, why = sca.pick(res, kind, username, params[(sca.choices(res, kind) or {}).name or ""])
  if ok then ok, why = sca.psu_allowed(res, kind, username) end
  if not ok then return form(ctx, p, res, service, auth, "You cannot approve this: " .. why .. ".", username) end
  local code = util.random_token(43)
  local ttl = tonumber(ctx.cfg and ctx.cfg.code_ttl) or 300
  common.set(token_key("code:", code), {
    auth_id = auth.id, client_id = p.client_id, redirect_uri = p.redirect_uri, challenge = p.code_challenge,
    scope = service .. ":" .. res.id, psu = username, expires = common.now() + ttl, variant = ctx.variant,
    service = service,
  })
  sca.unconfirmed(auth.id, username)
  return pages.redirect(common.add_query(p.redirect_uri, { code = code, state = p.state, iss = response_iss(ctx) }))
end

---------------------------------------------------------------------------
-- the token endpoint

local function oauth_error(status, err, desc)
  return status, { error = err, error_description = desc },
    { ["Cache-Control"] = "no-store", ["Pragma"] = "no-cache" }
end

local function issue(ctx, scope, service, psu)
  local ttl = tonumber(ctx.cfg and ctx.cfg.token_ttl) or 3600
  -- a refresh token lives as long as the variant's longest consent unless
  -- `refresh_ttl` says otherwise (readings: docs/paysera.md)
  local rttl = tonumber(ctx.cfg and ctx.cfg.refresh_ttl)
    or (tonumber(ctx.cfg and ctx.cfg.max_consent_days) or 90) * 86400
  local now = common.now()
  local access = util.random_token(48)
  common.set(token_key("at:", access), {
    scope = scope, client_id = ctx.tpp.org_id, fingerprint = ctx.tpp.fingerprint,
    expires = now + ttl, variant = ctx.variant, psu = psu,
  })
  local body = { access_token = access, token_type = "Bearer", expires_in = ttl, scope = scope }
  if service == "AIS" then
    local refresh = util.random_token(48)
    common.set(token_key("rt:", refresh), {
      scope = scope, client_id = ctx.tpp.org_id, expires = now + rttl, variant = ctx.variant, psu = psu,
      service = service,
    })
    body.refresh_token = refresh
  end
  return 200, body, { ["Cache-Control"] = "no-store", ["Pragma"] = "no-cache" }
end

-- takes a single-use record: returns it (and marks it used) or nil, "used"/"unknown"
local function take(key)
  local rec, why = nil, "unknown"
  common.update(key, function(r)
    if not r then return nil end
    if r.used then why = "used" return nil end
    r.used = true
    rec = r
    return r
  end)
  return rec, why
end

-- Takes a one-use grant (an authorization code or a refresh token) for the
-- calling TPP: the record, or nil and the invalid_grant answer (used,
-- unknown, issued to another client, expired).
local function redeem(ctx, prefix, value, what, used_text)
  local rec, why = take(token_key(prefix, value))
  if not rec then
    return nil, oauth_error(400, "invalid_grant", what .. " " .. (why == "used" and used_text or "unknown"))
  end
  if rec.variant ~= ctx.variant or rec.client_id ~= ctx.tpp.org_id then
    return nil, oauth_error(400, "invalid_grant", what .. " was issued to another client")
  end
  if common.now() >= rec.expires then return nil, oauth_error(400, "invalid_grant", what .. " expired") end
  return rec
end

local function grant_code(ctx, params)
  local code, verifier, redirect_uri = first(params.code), first(params.code_verifier), first(params.redirect_uri)
  if type(code) ~= "string" or type(verifier) ~= "string" or type(redirect_uri) ~= "string" then
    return oauth_error(400, "invalid_request", "code, redirect_uri and code_verifier are required")
  end
  local rec, status, body, headers = redeem(ctx, "code:", code, "authorization code", "already used")
  if not rec then return status, body, headers end
  if rec.redirect_uri ~= redirect_uri then return oauth_error(400, "invalid_grant", "redirect_uri does not match") end
  if #verifier < 43 or #verifier > 128 or not verifier:match(PKCE)
      or not crypto().equal(b64url(crypto().sha256(verifier)), rec.challenge) then
    return oauth_error(400, "invalid_grant", "code_verifier does not match the code_challenge")
  end
  if not sca.finish(rec.auth_id, true, rec.psu) then
    return oauth_error(400, "invalid_grant", "the authorisation is no longer pending")
  end
  return issue(ctx, rec.scope, rec.service, rec.psu)
end

local function grant_refresh(ctx, params)
  local rt = first(params.refresh_token)
  if type(rt) ~= "string" or rt == "" then return oauth_error(400, "invalid_request", "refresh_token is required") end
  local rec, status, body, headers = redeem(ctx, "rt:", rt, "refresh token", "already used (rotated)")
  if not rec then return status, body, headers end
  local cid = rec.scope:match("^AIS:(.+)$")
  local c = cid and require("sandbox.bank.consents").raw(cid)
  if not c or (c.status ~= "valid" and c.status ~= "partiallyAuthorised") then
    return oauth_error(400, "invalid_grant", "the consent is no longer valid")
  end
  return issue(ctx, rec.scope, rec.service, rec.psu)
end

-- The client authentication of the token and revocation endpoints
-- (tls_client_auth): the form's parameters, or nil and the error answer.
local function client_form(ctx, what)
  local ct = (ctx.headers["content-type"] or ""):lower()
  if not ct:find("application/x-www-form-urlencoded", 1, true) then
    return nil, { oauth_error(400, "invalid_request", "Content-Type must be application/x-www-form-urlencoded") }
  end
  if ctx.listener == "as" and mtls_base(ctx) then
    return nil, { oauth_error(401, "invalid_client", "mutual-TLS client authentication is served at "
      .. "mtls_endpoint_aliases." .. what .. " (RFC 8705 section 5)") }
  end
  local params = ctx.form or common.form(ctx.body)
  local client_id = first(params.client_id)
  if type(client_id) ~= "string" or client_id == "" then
    return nil, { oauth_error(400, "invalid_request", "client_id is required (tls_client_auth)") }
  end
  if client_id ~= ctx.tpp.org_id then
    return nil, { oauth_error(401, "invalid_client", "client_id does not match the client certificate") }
  end
  return params
end

local function token(ctx)
  local params, e = client_form(ctx, "token_endpoint")
  if not params then return common.unpack(e) end
  local grant = first(params.grant_type)
  if grant == "authorization_code" then return grant_code(ctx, params) end
  if grant == "refresh_token" then return grant_refresh(ctx, params) end
  return oauth_error(400, "unsupported_grant_type", "grant_type must be authorization_code or refresh_token")
end

-- RFC 7009 token revocation: an access or refresh token of the calling
-- client stops working; unknown tokens are answered 200 as well.
local function revoke(ctx)
  if oauth_cfg(ctx).revocation == false then
    return oauth_error(404, "invalid_request", "no revocation endpoint")
  end
  local params, e = client_form(ctx, "revocation_endpoint")
  if not params then return common.unpack(e) end
  local t = first(params.token)
  if type(t) ~= "string" or t == "" then return oauth_error(400, "invalid_request", "token is required") end
  local hint = first(params.token_type_hint)
  local order = hint == "refresh_token" and { "rt:", "at:" } or { "at:", "rt:" }
  for _, prefix in ipairs(order) do
    local done = false
    common.update(token_key(prefix, t), function(r)
      if not r or r.client_id ~= ctx.tpp.org_id or r.variant ~= ctx.variant then return nil end
      r.revoked, r.used = true, true      -- a used refresh token is refused by redeem()
      done = true
      return r
    end)
    if done then break end
  end
  return 200, {}, { ["Cache-Control"] = "no-store", ["Pragma"] = "no-cache" }
end

--- The record of an access token, or nil (used by the AIS guard).
function _M.access_token(t)
  if type(t) ~= "string" or t == "" then return nil end
  local rec = common.get(token_key("at:", t))
  if rec and rec.revoked then return nil end
  return rec
end

-- on the bank's origin only while the AS shares it
local function on_bank_origin(ctx)
  return ctx.listener ~= "bank" or not separate(ctx)
end

local AS, BOTH = { as = true }, { as = true, as_mtls = true }

_M.routes = {
  { method = "GET", pattern = "^/%.well%-known/oauth%-authorization%-server$", handler = metadata, auth = "none",
    listeners = AS, enabled = on_bank_origin },
  { method = "GET", pattern = "^/oauth/authorize$", handler = authorize_get, auth = "none",
    listeners = AS, enabled = on_bank_origin },
  { method = "POST", pattern = "^/oauth/authorize$", handler = authorize_post, auth = "none",
    listeners = AS, enabled = on_bank_origin },
  { method = "POST", pattern = "^/oauth/token$", handler = token, auth = "mtls",
    listeners = BOTH, enabled = on_bank_origin },
  { method = "POST", pattern = "^/oauth/revoke$", handler = revoke, auth = "mtls",
    listeners = BOTH, enabled = on_bank_origin },
}

return _M
