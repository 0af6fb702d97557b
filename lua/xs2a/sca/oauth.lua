--- OAuth 2.0 for XS2A SCA: discovery (RFC 8414), the authorization URL
-- (PKCE S256) and the code exchange. Token records and their refresh are in
-- `xs2a.sca.tokens`; `read_record`, `refresh`, `forget`, `set_record` and
-- `access_token` are re-exported here for tools.
-- @module xs2a.oauth
local json = require "xs2a.codec.json"
local errors = require "xs2a.errors"
local url_mod = require "xs2a.net.url"
local date = require "xs2a.net.date"
local pipeline = require "xs2a.pipeline"
local tokens = require "xs2a.sca.tokens"

local type, tonumber, ipairs, assert, error, setmetatable, pcall =
  type, tonumber, ipairs, assert, error, setmetatable, pcall

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

local function log(client, level, event, fields)
  if client and type(client.log) == "function" then
    pcall(client.log, client, level, event, fields or {})
  end
end

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

--- Checks an authorization server metadata document (RFC 8414).
-- @return meta | nil, err
function _M.validate_metadata(meta)
  if type(meta) ~= "table" then
    return nil, new_error{ kind = "protocol", code = "OAUTH_METADATA",
      message = "oauth: metadata is not a JSON object" }
  end
  for _, f in ipairs{ "authorization_endpoint", "token_endpoint" } do
    if not https(meta[f]) then
      return nil, new_error{ kind = "protocol", code = "OAUTH_METADATA",
        message = "oauth: metadata " .. f .. " is missing or not https" }
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

local function absolute(client, url)
  if type(url) ~= "string" then return url end
  if url:match("^%a[%w+.-]*://") then return url end
  local base = client.base_url
  if type(base) == "string" and url:sub(1, 1) == "/" then
    return (base:match("^(%a[%w+.-]*://[^/]+)") or base) .. url
  end
  return url
end

--- Fetches (or returns the cached) authorization server metadata.
-- Cached per client and in `client.store` for `METADATA_TTL` seconds.
-- @param client an xs2a client
-- @tparam string url the `scaOAuth` href (absolute or relative)
-- @return meta | nil, err
function _M.metadata(client, url)
  if type(url) ~= "string" or url == "" then
    return nil, new_error{ kind = "protocol", code = "OAUTH_METADATA", message = "oauth: no metadata URL" }
  end
  local abs = absolute(client, url)
  local cache = meta_cache[client]
  if not cache then cache = {}; meta_cache[client] = cache end
  local hit = cache[abs]
  if hit and hit.expires > now() then return hit.meta end

  local store = client.store
  local skey = "xs2a:oauth:meta:" .. abs
  if store then
    local raw = store:get(skey)
    local meta = raw and json.decode(raw)
    if meta and _M.validate_metadata(meta) then
      cache[abs] = { meta = meta, expires = now() + _M.METADATA_TTL }
      return meta
    end
  end

  local res, err = pipeline.request(client, { method = "GET", url = url, service = "OAUTH", idempotent = true })
  if not res then return nil, err end
  local meta = res.json
  if type(meta) ~= "table" then meta = res.body and json.decode(res.body) end
  local ok, verr = _M.validate_metadata(meta)
  if not ok then
    if type(verr) == "table" then verr.request_id = verr.request_id or res.request_id end
    return nil, verr
  end
  cache[abs] = { meta = meta, expires = now() + _M.METADATA_TTL }
  if store then
    local enc = json.encode(meta)
    if enc then store:set(skey, enc, _M.METADATA_TTL) end
  end
  return meta
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
function _M.exchange_code(client, meta, token_key, code, verifier, redirect_uri)
  if type(code) ~= "string" or code == "" then
    return nil, new_error{ kind = "sca", code = "OAUTH_NO_CODE", message = "oauth: callback without code" }
  end
  redirect_uri = redirect_uri or client.redirect_uri
  local body, err = token_request(client, meta.token_endpoint, {
    grant_type = "authorization_code",
    client_id = client.client_id,
    code = code,
    redirect_uri = redirect_uri,
    code_verifier = verifier,
  }, "code exchange")
  if not body then return nil, err end
  local rec = record_from(body, meta.token_endpoint)
  local stored, serr = write_record(client, token_key, rec)
  if not stored then return nil, serr end
  log(client, "info", "oauth.token", { grant = "authorization_code", expires_in = tonumber(body.expires_in),
    refresh = rec.refresh_token ~= nil })
  return rec
end

_M.read_record = tokens.read_record
_M.set_record = tokens.set_record
_M.forget = tokens.forget
_M.refresh = tokens.refresh
_M.access_token = tokens.access_token

return _M
