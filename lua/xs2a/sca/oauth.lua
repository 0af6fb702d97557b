--- OAuth 2.0 for XS2A SCA: discovery (RFC 8414), the authorization URL
-- (PKCE S256), the mix-up check of the callback (RFC 9207), the code
-- exchange and token revocation (RFC 7009). Token records and their refresh
-- are in `xs2a.sca.tokens`; `read_record`, `refresh`, `forget`, `set_record`
-- and `access_token` are re-exported here for tools.
--
-- The authorization server may live on an origin of its own. The client
-- then trusts exactly: the bank's origin; the origins the metadata names
-- (`authorization_endpoint`, `token_endpoint`, `revocation_endpoint` and
-- every `mtls_endpoint_aliases` entry, RFC 8705 section 5), the metadata
-- having been fetched over mutual TLS from the bank's own `scaOAuth` link
-- and naming an `issuer` of that link's origin; and the origins listed in
-- the client option `oauth = { trusted_origins = {...} }`. A token or
-- revocation endpoint anywhere else is refused (`FOREIGN_LINK`) before
-- anything is sent. Token and refresh calls use the mTLS alias of the token
-- endpoint when the metadata gives one.
--
-- Metadata is cached per issuer (metadata URL) for `oauth.metadata_ttl`
-- seconds (default 3600, shorter when the answer's `Cache-Control: max-age`
-- says so) and dropped when a call to the AS fails, so the next one fetches
-- it again.
-- @module xs2a.sca.oauth
local json = require "xs2a.codec.json"
local errors = require "xs2a.errors"
local url_mod = require "xs2a.net.url"
local date = require "xs2a.net.date"
local pipeline = require "xs2a.pipeline"
local tokens = require "xs2a.sca.tokens"

local type, tonumber, tostring, ipairs, pairs, assert, error, setmetatable =
  type, tonumber, tostring, ipairs, pairs, assert, error, setmetatable

local _M = {}

--- Seconds before expiry at which an access token is refreshed proactively.
_M.SKEW = tokens.SKEW
--- How long discovery documents stay cached (seconds).
_M.METADATA_TTL = 3600
_M.LOCK_TTL = tokens.LOCK_TTL

local now = date.now
--- The wall clock the token records use (seconds, sub-second).
_M.now = now
local new_error = errors.make
local https = tokens.https
local token_request, record_from, write_record = tokens.token_request, tokens.record_from, tokens.write_record

local log = tokens.log

--- Percent-encodes a string for a URL query or a form body (RFC 3986 unreserved kept).
_M.urlencode = url_mod.escape
--- Decodes a percent-encoded query component (`+` is a space).
_M.urldecode = url_mod.unescape
--- Parses the query (and fragment) of a URL into a table (first value of a
-- repeated key wins, as everywhere in the Lua layer).
_M.parse_query = url_mod.query_of
--- Encodes a table as a query string with sorted keys.
_M.encode_query = url_mod.encode_query
_M.store_key = tokens.store_key

local function list_has(list, value)
  if type(list) ~= "table" then return false end
  for _, v in ipairs(list) do if v == value then return true end end
  return false
end

local function meta_error(text)
  return new_error{ kind = "protocol", code = "OAUTH_METADATA", message = "oauth: " .. text }
end

local function origin_of(u)
  local p = type(u) == "string" and url_mod.parse(u)
  return p and p.origin or nil
end

--- Checks an authorization server metadata document (RFC 8414).
-- @param meta the decoded document
-- @tparam[opt] string from the URL it was fetched from: the `issuer` must
--   then be an https URL of the same origin (RFC 8414 section 3.3)
-- @return meta | nil, err
function _M.validate_metadata(meta, from)
  if type(meta) ~= "table" then return nil, meta_error("metadata is not a JSON object") end
  for _, f in ipairs{ "authorization_endpoint", "token_endpoint" } do
    if not https(meta[f]) then return nil, meta_error("metadata " .. f .. " is missing or not https") end
  end
  for _, f in ipairs{ "revocation_endpoint" } do
    if meta[f] ~= nil and not https(meta[f]) then return nil, meta_error("metadata " .. f .. " is not https") end
  end
  local aliases = meta.mtls_endpoint_aliases
  if aliases ~= nil then
    if type(aliases) ~= "table" then return nil, meta_error("mtls_endpoint_aliases is not an object") end
    for k, v in pairs(aliases) do
      if not https(v) then return nil, meta_error("mtls_endpoint_aliases." .. tostring(k) .. " is not https") end
    end
  end
  if meta.issuer ~= nil and not https(meta.issuer) then return nil, meta_error("issuer is not an https URL") end
  if from then
    if meta.issuer == nil then return nil, meta_error("metadata without issuer") end
    if origin_of(meta.issuer) ~= origin_of(from) then
      return nil, meta_error("issuer " .. tostring(origin_of(meta.issuer)) .. " is not the origin the metadata "
        .. "came from")
    end
  end
  local methods = meta.code_challenge_methods_supported
  if methods ~= nil and not list_has(methods, "S256") then
    return nil, new_error{ kind = "protocol", code = "OAUTH_METADATA",
      message = "oauth: authorization server does not support PKCE S256" }
  end
  local rt = meta.response_types_supported
  if rt ~= nil and not list_has(rt, "code") then
    return nil, new_error{ kind = "protocol", code = "OAUTH_METADATA",
      message = "oauth: authorization server does not support response_type=code" }
  end
  return meta
end

-- per-client cache: weak keys so a dropped client frees its documents
local meta_cache = setmetatable({}, { __mode = "k" })

-- the URL a link names, resolved as every link is (a "/..." href not
-- under the variant root is relative to it): the cache key
local function absolute(client, url)
  if type(url) ~= "string" then return url end
  if type(client.base_url) ~= "string" then return url end
  return url_mod.resolve(client.base_url, client.root or "", url) or url
end

-- the client's OAuth settings (`opts.oauth`, checked by the builder)
local function settings(client)
  return type(client.oauth) == "table" and client.oauth or {}
end

-- seconds of `Cache-Control: max-age`, or nil
local function max_age(res)
  local cc = res and res.headers and res.headers["cache-control"]
  local n = type(cc) == "string" and cc:match("max%-age%s*=%s*(%d+)")
  return n and tonumber(n) or nil
end

--- Fetches (or returns the cached) authorization server metadata from the
-- bank's own `scaOAuth` link, over the client's mutual-TLS transport; the
-- link may name another origin (the AS's). Cached per issuer (per metadata
-- URL) in the client and in `client.store`.
-- @param client an xs2a client
-- @tparam string url the `scaOAuth` href (absolute or relative)
-- @return meta | nil, err
function _M.metadata(client, url)
  if type(url) ~= "string" or url == "" then
    return nil, new_error{ kind = "protocol", code = "OAUTH_METADATA", message = "oauth: no metadata URL" }
  end
  local abs = absolute(client, url)
  if not https(abs) then return nil, meta_error("the metadata link is not https") end
  local cache = meta_cache[client]
  if not cache then cache = {}; meta_cache[client] = cache end
  local hit = cache[abs]
  if hit and hit.expires > now() then return hit.meta end
  local ttl = tonumber(settings(client).metadata_ttl) or _M.METADATA_TTL

  local store = client.store
  local skey = "xs2a:oauth:meta:" .. abs
  if store then
    local raw = store:get(skey)
    local rec = raw and json.decode(raw)
    if type(rec) == "table" and type(rec.meta) == "table" and tonumber(rec.expires)
        and rec.expires > now() and _M.validate_metadata(rec.meta, abs) then
      cache[abs] = { meta = rec.meta, expires = rec.expires }
      return rec.meta
    end
  end

  local res, err = pipeline.request(client, { method = "GET", url = abs, service = "OAUTH", idempotent = true,
    allow_foreign = true })
  if not res then return nil, err end
  local meta = res.json
  if type(meta) ~= "table" then meta = res.body and json.decode(res.body) end
  local ok, verr = _M.validate_metadata(meta, abs)
  if not ok then
    if type(verr) == "table" then verr.request_id = verr.request_id or res.request_id end
    return nil, verr
  end
  local age = max_age(res)
  if age and age < ttl then ttl = age end
  local expires = now() + ttl
  cache[abs] = { meta = meta, expires = expires }
  if store and ttl > 0 then
    local enc = json.encode({ meta = meta, expires = expires })
    if enc then store:set(skey, enc, math.ceil(ttl)) end
  end
  return meta
end

--- Drops the cached metadata of `url` (after a failed call to its AS: the
-- next use fetches it again, e.g. after a key or endpoint rotation).
function _M.invalidate(client, url)
  if type(url) ~= "string" then return end
  local abs = absolute(client, url)
  local cache = meta_cache[client]
  if cache then cache[abs] = nil end
  if client.store then client.store:delete("xs2a:oauth:meta:" .. abs) end
end

--- The origins a metadata document makes trusted (a set).
function _M.trusted_origins(client, meta)
  local set = { [client.origin] = true }
  for _, o in ipairs(settings(client).trusted_origins or {}) do
    local oo = origin_of(o) or o
    set[oo] = true
  end
  if type(meta) == "table" then
    for _, f in ipairs{ "authorization_endpoint", "token_endpoint", "revocation_endpoint" } do
      local o = origin_of(meta[f])
      if o then set[o] = true end
    end
    if type(meta.mtls_endpoint_aliases) == "table" then
      for _, v in pairs(meta.mtls_endpoint_aliases) do
        local o = origin_of(v)
        if o then set[o] = true end
      end
    end
  end
  return set
end

--- Checks that `endpoint` is on a trusted origin (see the module description).
-- @return true | nil, err (`FOREIGN_LINK`, nothing was sent)
function _M.check_trusted(client, meta, endpoint)
  local o = origin_of(endpoint)
  if o and _M.trusted_origins(client, meta)[o] then return true end
  return nil, errors.protocol("oauth: refusing an endpoint on an untrusted origin (" .. tostring(o) .. ")",
    nil, "FOREIGN_LINK")
end

--- The endpoint to use for `name` ("token_endpoint", "revocation_endpoint"):
-- its mTLS alias when the metadata gives one (RFC 8705 section 5).
function _M.endpoint(meta, name)
  local aliases = type(meta.mtls_endpoint_aliases) == "table" and meta.mtls_endpoint_aliases or {}
  return aliases[name] or meta[name]
end

--- RFC 9207: the `iss` of an authorization response must be the metadata's
-- issuer when the AS advertises `authorization_response_iss_parameter_supported`
-- or the response carries one.
-- @return true | nil, err (`sca` ISSUER_MISMATCH)
function _M.check_iss(meta, iss)
  local required = meta.authorization_response_iss_parameter_supported == true
  if iss == nil and not required then return true end
  if type(iss) == "string" and type(meta.issuer) == "string" and iss == meta.issuer then return true end
  return nil, new_error{ kind = "sca", code = "ISSUER_MISMATCH",
    message = iss == nil and "oauth: the authorization response names no issuer (iss), the AS promised one"
      or "oauth: the authorization response comes from another issuer than the authorization server's" }
end

-- statuses that say "no metadata document here": try the next place
local NOT_HERE = { [404] = true, [405] = true, [410] = true }

--- The metadata when an answer carries no `scaOAuth` link (docs/paysera.md,
-- reading 2): the profile's `oauth_metadata` paths under `base_url`, in
-- order (per variant, then the host root for the Paysera profiles).
-- @return meta, url | nil, err
function _M.discover(client)
  local paths = client.profile and client.profile.oauth_metadata or {}
  local tried = {}
  for _, p in ipairs(paths) do
    local u = client.base_url .. p
    local meta, err = _M.metadata(client, u)
    if meta then return meta, u end
    if not (type(err) == "table" and err.kind == "http" and NOT_HERE[err.status]) then return nil, err end
    tried[#tried + 1] = p
  end
  return nil, new_error{ kind = "config", code = "OAUTH_METADATA",
    message = "oauth: no scaOAuth link, and no metadata at " .. (#tried > 0 and table.concat(tried, ", ") or
      "any place") .. "; set the profile's oauth_metadata to where the bank serves it (docs/paysera.md)" }
end

--- Builds the authorization request URL (response_type=code, PKCE S256).
-- @tparam table meta metadata from `oauth.metadata`
-- @tparam table p `{ client_id, scope, state, redirect_uri, code_challenge }`
-- @treturn string URL to send the PSU's browser to
function _M.authorization_url(meta, p)
  assert(type(meta) == "table" and type(meta.authorization_endpoint) == "string",
    "oauth.authorization_url: metadata without authorization_endpoint")
  for _, f in ipairs{ "client_id", "scope", "state", "redirect_uri", "code_challenge" } do
    if type(p[f]) ~= "string" or p[f] == "" then
      error("oauth.authorization_url: " .. f .. " is required", 2)
    end
  end
  local q = _M.encode_query{
    response_type = "code",
    client_id = p.client_id,
    scope = p.scope,
    state = p.state,
    redirect_uri = p.redirect_uri,
    code_challenge = p.code_challenge,
    code_challenge_method = "S256",
  }
  local ep = meta.authorization_endpoint
  local sep = ep:find("?", 1, true) and "&" or "?"
  return ep .. sep .. q
end

--- Exchanges an authorization code for tokens and stores them.
-- @param client the xs2a client (mTLS transport, store)
-- @tparam table meta metadata
-- @tparam string token_key where the tokens belong (resource.token_key)
-- @tparam string code the authorization code from the callback
-- @tparam string verifier the PKCE code verifier
-- @tparam[opt] string redirect_uri must equal the one of the authorization request
-- @return record | nil, err
-- @tparam[opt] string meta_url where `meta` came from (kept in the record
--   for the refresh's trust check and for revocation)
function _M.exchange_code(client, meta, token_key, code, verifier, redirect_uri, meta_url)
  if type(code) ~= "string" or code == "" then
    return nil, new_error{ kind = "sca", code = "OAUTH_NO_CODE", message = "oauth: callback without code" }
  end
  redirect_uri = redirect_uri or client.redirect_uri
  local endpoint = _M.endpoint(meta, "token_endpoint")
  local trusted, terr = _M.check_trusted(client, meta, endpoint)
  if not trusted then return nil, terr end
  local body, err = token_request(client, endpoint, {
    grant_type = "authorization_code",
    client_id = client.client_id,
    code = code,
    redirect_uri = redirect_uri,
    code_verifier = verifier,
  }, "code exchange", true)
  if not body then
    if meta_url then _M.invalidate(client, meta_url) end
    return nil, err
  end
  local rec = record_from(body, endpoint)
  rec.meta_url = meta_url and absolute(client, meta_url) or nil
  local origins = {}
  for o in pairs(_M.trusted_origins(client, meta)) do
    if o ~= client.origin then origins[#origins + 1] = o end
  end
  table.sort(origins)
  rec.as_origins = origins
  local stored, serr = write_record(client, token_key, rec)
  if not stored then return nil, serr end
  log(client, "info", "oauth.token", { grant = "authorization_code", expires_in = tonumber(body.expires_in),
    refresh = rec.refresh_token ~= nil })
  return rec
end

--- Revokes the tokens of `token_key` at the AS (RFC 7009; the refresh
-- token, then the access token) and forgets them. Needs a record from
-- `exchange_code` (it knows the metadata) and an AS with a
-- `revocation_endpoint` (its mTLS alias when given).
-- @return true | nil, err
function _M.revoke(client, token_key)
  local rec, rerr = tokens.read_record(client, token_key)
  if rerr then return nil, rerr end
  if not rec then return true end
  if type(rec.meta_url) ~= "string" then
    return nil, new_error{ kind = "config", code = "REVOCATION_UNSUPPORTED",
      message = "oauth: this token record does not name its authorization server" }
  end
  local meta, merr = _M.metadata(client, rec.meta_url)
  if not meta then return nil, merr end
  local endpoint = _M.endpoint(meta, "revocation_endpoint")
  if not endpoint then
    return nil, new_error{ kind = "config", code = "REVOCATION_UNSUPPORTED",
      message = "oauth: the authorization server has no revocation_endpoint" }
  end
  local trusted, terr = _M.check_trusted(client, meta, endpoint)
  if not trusted then return nil, terr end
  for _, t in ipairs({ { rec.refresh_token, "refresh_token" }, { rec.access_token, "access_token" } }) do
    if t[1] then
      local res, err = pipeline.request(client, { method = "POST", url = endpoint, service = "OAUTH",
        form = { token = t[1], token_type_hint = t[2], client_id = client.client_id },
        headers = { Accept = "application/json" }, idempotent = true, allow_foreign = true })
      if not res then
        _M.invalidate(client, rec.meta_url)
        return nil, err
      end
    end
  end
  tokens.forget(client, token_key)
  log(client, "info", "oauth.revoke", { result = "ok" })
  return true
end

tokens.on_as_failure = _M.invalidate

_M.read_record = tokens.read_record
_M.set_record = tokens.set_record
_M.forget = tokens.forget
_M.refresh = tokens.refresh
_M.access_token = tokens.access_token

return _M
