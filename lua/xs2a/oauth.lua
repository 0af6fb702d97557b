--- OAuth 2.0 for XS2A SCA: discovery, authorization URL, code exchange and
-- single-flight refresh of rotating tokens.
--
-- The token endpoint is called over the client's own mTLS transport (RFC 8705
-- client authentication: no client secret; `client_id` is the QWAC's
-- organizationIdentifier). Token records live in `client.store` as JSON under
-- `oauth.store_key(token_key)`:
--
--     { access_token, refresh_token, token_type, expires_at, scope, token_endpoint }
--
-- Tokens never reach a log event or an error message.
-- @module xs2a.oauth
local cjson = require "cjson.safe"

local _M = {}

local str_format, str_gsub, str_byte, str_char = string.format, string.gsub, string.byte, string.char
local tconcat = table.concat

--- Seconds before expiry at which an access token is refreshed proactively.
_M.SKEW = 60
--- How long discovery documents stay cached (seconds).
_M.METADATA_TTL = 3600
--- How long a refresh may hold the lock, and how long others wait for it (seconds).
_M.LOCK_TTL = 30

local core_ok, core = pcall(require, "xs2a.core")
if not core_ok then core = nil end

-- wall clock with sub-second precision where we can get it
local function now()
  local ngx = rawget(_G, "ngx")
  if ngx and ngx.now then return ngx.now() end
  if core and core.now then return core.now() end
  return os.time()
end
_M.now = now

-- Waits without blocking other coroutines where the runtime allows it: the
-- client's own sleep (scheduler aware), a parallel scheduler, nginx, then a
-- plain blocking sleep.
local function sleep(client, s)
  if client and type(client.sleep) == "function" then return client:sleep(s) end
  local pok, parallel = pcall(require, "xs2a.parallel")
  if pok and type(parallel) == "table" and type(parallel.sleep) == "function" then
    return parallel.sleep(s)
  end
  local ngx = rawget(_G, "ngx")
  if ngx and ngx.sleep then return ngx.sleep(s) end
  if core and core.sleep then return core.sleep(s * 1000) end
  local t = os.clock() + s
  repeat until os.clock() >= t
end
_M.sleep = sleep

-- fields: kind, code, message (-> text), plus any xs2a.Error field
local function new_error(fields)
  local errors = require "xs2a.errors"
  local kind = fields.kind
  local f = {}
  for k, v in pairs(fields) do f[k] = v end
  f.kind, f.text, f.message = nil, f.text or f.message, nil
  return errors.new(kind, f)
end
_M.new_error = new_error

local function log(client, level, event, fields)
  if client and type(client.log) == "function" then
    pcall(client.log, client, level, event, fields or {})
  end
end

--- Percent-encodes a string for a URL query or a form body (RFC 3986 unreserved kept).
function _M.urlencode(s)
  return (str_gsub(tostring(s), "[^%w%-%._~]", function(c)
    return str_format("%%%02X", str_byte(c))
  end))
end
local urlencode = _M.urlencode

--- Decodes a percent-encoded query component (`+` is a space).
function _M.urldecode(s)
  s = str_gsub(s, "+", " ")
  return (str_gsub(s, "%%(%x%x)", function(h) return str_char(tonumber(h, 16)) end))
end
local urldecode = _M.urldecode

--- Parses the query (and fragment) of a URL into a table of first values.
-- @return table (empty when there is no query)
function _M.parse_query(url)
  local out = {}
  if type(url) ~= "string" then return out end
  local q = url:match("%?([^#]*)") or ""
  local frag = url:match("#(.*)$")
  local function absorb(s)
    for pair in s:gmatch("[^&;]+") do
      local k, v = pair:match("^([^=]*)=?(.*)$")
      if k and k ~= "" then
        k = urldecode(k)
        if out[k] == nil then out[k] = urldecode(v) end
      end
    end
  end
  absorb(q)
  if frag then absorb(frag) end
  return out
end

--- Encodes a table as a query string with sorted keys.
function _M.encode_query(t)
  local keys = {}
  for k, v in pairs(t) do if v ~= nil then keys[#keys + 1] = k end end
  table.sort(keys)
  local parts = {}
  for i, k in ipairs(keys) do parts[i] = urlencode(k) .. "=" .. urlencode(t[k]) end
  return tconcat(parts, "&")
end

--- The store key of a token record.
-- @tparam string token_key e.g. the resource's `token_key`
function _M.store_key(token_key)
  return "xs2a:oauth:token:" .. tostring(token_key)
end

local function https(u)
  return type(u) == "string" and u:lower():match("^https://[^/]") ~= nil
end

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
  local base = client.base_url or (client.opts and client.opts.base_url)
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
    local meta = raw and cjson.decode(raw)
    if meta and _M.validate_metadata(meta) then
      cache[abs] = { meta = meta, expires = now() + _M.METADATA_TTL }
      return meta
    end
  end

  local res, err = client:request{ method = "GET", url = url, service = "OAUTH", idempotent = true }
  if not res then return nil, err end
  local meta = res.json
  if type(meta) ~= "table" then meta = res.body and cjson.decode(res.body) end
  local ok, verr = _M.validate_metadata(meta)
  if not ok then
    if type(verr) == "table" then verr.request_id = verr.request_id or res.request_id end
    return nil, verr
  end
  cache[abs] = { meta = meta, expires = now() + _M.METADATA_TTL }
  if store then
    local enc = cjson.encode(meta)
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

-- A failing store (e.g. Redis down) is an error of its own: the caller must
-- not take it for "no token" nor lose a token it could not write.
local function store_error(what, why)
  return new_error{ kind = "store", code = "STORE_UNAVAILABLE", retryable = true,
    message = "oauth: token store " .. what .. " failed: " .. tostring(why) }
end

--- The token record of `token_key`.
-- @return record | nil (none) | nil, err (the store failed)
local function read_record(client, token_key)
  if not client.store then return nil end
  local raw, why = client.store:get(_M.store_key(token_key))
  if raw == nil then
    if why ~= nil then return nil, store_error("read", why) end
    return nil
  end
  local rec = cjson.decode(raw)
  if type(rec) ~= "table" or type(rec.access_token) ~= "string" then return nil end
  return rec
end
_M.read_record = read_record

local function write_record(client, token_key, rec)
  local ttl = 0
  -- keep the record while the refresh token may still work; without one,
  -- drop it a little after the access token expires
  if not rec.refresh_token and rec.expires_at then
    ttl = math.max(1, math.ceil(rec.expires_at - now()) + _M.SKEW)
  end
  local ok, why = client.store:set(_M.store_key(token_key), assert(cjson.encode(rec)), ttl)
  if not ok then return nil, store_error("write", why) end
  return true
end

-- POSTs a form to the token endpoint; returns the decoded token response.
local function token_request(client, endpoint, form, what)
  local res, err = client:request{
    method = "POST", url = endpoint, form = form, service = "OAUTH",
    headers = { Accept = "application/json" }, idempotent = false,
  }
  if not res then return nil, err end
  local body = res.json
  if type(body) ~= "table" then body = res.body and cjson.decode(res.body) end
  if res.status and res.status >= 400 then
    -- client:request normally maps these; handle a raw answer too
    local code = type(body) == "table" and body.error or nil
    return nil, new_error{ kind = "sca", status = res.status, code = code or "OAUTH_ERROR",
      message = "oauth: " .. what .. " failed" .. (code and (": " .. tostring(code)) or ""),
      request_id = res.request_id }
  end
  if type(body) ~= "table" or type(body.access_token) ~= "string" or body.access_token == "" then
    return nil, new_error{ kind = "protocol", status = res.status, code = "OAUTH_TOKEN_RESPONSE",
      message = "oauth: " .. what .. ": token response without access_token", request_id = res.request_id }
  end
  local tt = body.token_type
  if tt ~= nil and (type(tt) ~= "string" or tt:lower() ~= "bearer") then
    return nil, new_error{ kind = "protocol", status = res.status, code = "OAUTH_TOKEN_RESPONSE",
      message = "oauth: " .. what .. ": unsupported token_type", request_id = res.request_id }
  end
  return body
end

local function record_from(body, endpoint, old)
  local expires_in = tonumber(body.expires_in)
  return {
    access_token = body.access_token,
    -- rotation: a new refresh token replaces the old one; none keeps the old
    refresh_token = (type(body.refresh_token) == "string" and body.refresh_token ~= "")
      and body.refresh_token or (old and old.refresh_token) or nil,
    token_type = "Bearer",
    expires_at = expires_in and (now() + expires_in) or nil,
    scope = type(body.scope) == "string" and body.scope or (old and old.scope) or nil,
    token_endpoint = endpoint,
    obtained_at = now(),
  }
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
  redirect_uri = redirect_uri or (client.opts and client.opts.redirect_uri)
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

--- Stores a token record given by the caller (e.g. obtained elsewhere).
function _M.set_record(client, token_key, rec)
  assert(type(rec) == "table" and type(rec.access_token) == "string", "oauth.set_record: access_token required")
  return write_record(client, token_key, rec)
end

--- Forgets the tokens of `token_key`.
function _M.forget(client, token_key)
  if client.store then client.store:delete(_M.store_key(token_key)) end
end

--- Refreshes the tokens of `token_key`, single-flight across every client
-- sharing `client.store`.
-- When another holder has the lock this waits (polling the store) until it is
-- released, then uses the token that holder stored. When the stored access
-- token already differs from `stale`, someone else rotated it: that token is
-- returned and no second refresh is made (a rotated refresh token must not be
-- used twice).
-- @tparam[opt] string stale the access token the caller found unusable
-- @return access_token | nil, err
function _M.refresh(client, token_key, stale, opts)
  opts = opts or {}
  local store = client.store
  if not store then
    return nil, new_error{ kind = "config", code = "NO_STORE", message = "oauth.refresh: client has no store" }
  end
  local key = _M.store_key(token_key)
  local lock_key = key .. ":lock"
  local wait_until = now() + (opts.lock_wait or _M.LOCK_TTL)
  local delay = 0.02
  local waited = false
  while true do
    local rec, rerr = read_record(client, token_key)
    if rerr then return nil, rerr end
    if not rec then
      return nil, new_error{ kind = "sca", code = "TOKEN_MISSING",
        message = "oauth: no token for this resource (authorise it first)" }
    end
    if stale and rec.access_token ~= stale then return rec.access_token end
    if waited and stale == nil then return rec.access_token end
    local unlock, lerr = store:lock(lock_key, _M.LOCK_TTL)
    if not unlock and lerr ~= nil and lerr ~= "locked" then
      -- the store failed, nobody holds the lock: waiting would not help
      return nil, store_error("lock", lerr)
    end
    if unlock then
      -- re-read under the lock: a holder may have finished just before we got it
      rec, rerr = read_record(client, token_key)
      if rerr then
        unlock()
        return nil, rerr
      end
      if rec and stale and rec.access_token ~= stale then
        unlock()
        return rec.access_token
      end
      if not rec or not rec.refresh_token then
        unlock()
        return nil, new_error{ kind = "sca", code = "TOKEN_EXPIRED",
          message = "oauth: access token expired and no refresh token is available" }
      end
      local endpoint = rec.token_endpoint
      if not https(endpoint) then
        unlock()
        return nil, new_error{ kind = "sca", code = "TOKEN_EXPIRED",
          message = "oauth: token record has no usable token_endpoint" }
      end
      local ok, body, err = pcall(token_request, client, endpoint, {
        grant_type = "refresh_token",
        refresh_token = rec.refresh_token,
        client_id = client.client_id,
      }, "refresh")
      if not ok then
        unlock()
        error(body, 0)
      end
      if not body then
        -- an invalid_grant means the refresh token is dead: drop the record so
        -- callers see "authorise again" instead of retrying forever
        if type(err) == "table" and (err.code == "invalid_grant" or err.status == 400) then
          store:delete(key)
        end
        unlock()
        log(client, "warn", "oauth.refresh", { result = "failed", code = type(err) == "table" and err.code or nil })
        return nil, err
      end
      local new = record_from(body, endpoint, rec)
      local stored, serr = write_record(client, token_key, new)
      unlock()
      log(client, "info", "oauth.refresh", { result = "ok", expires_in = tonumber(body.expires_in),
        rotated = type(body.refresh_token) == "string" })
      if not stored then
        -- the bank has rotated the refresh token already: this call can still
        -- use the new access token, but the next refresh will be refused
        log(client, "error", "oauth.store", { result = "write failed", error = tostring(serr) })
      end
      return new.access_token
    end
    if now() > wait_until then
      return nil, new_error{ kind = "sca", code = "REFRESH_LOCK_TIMEOUT", retryable = true,
        message = "oauth: timed out waiting for another token refresh" }
    end
    waited = true
    sleep(client, delay)
    delay = math.min(delay * 2, 0.25)
  end
end

--- The usable access token of `token_key`, refreshed first when it expires
-- within `SKEW` seconds.
-- @return access_token | nil (no token) | nil, err (refresh failed)
function _M.access_token(client, token_key, opts)
  local rec, rerr = read_record(client, token_key)
  if rerr then return nil, rerr end
  if not rec then return nil end
  local skew = (opts and opts.skew) or _M.SKEW
  if not rec.expires_at or rec.expires_at - now() > skew then
    return rec.access_token
  end
  if rec.refresh_token then
    local tok, err = _M.refresh(client, token_key, rec.access_token, opts)
    return tok, err
  end
  if rec.expires_at > now() then return rec.access_token end
  return nil, new_error{ kind = "sca", code = "TOKEN_EXPIRED",
    message = "oauth: access token expired and no refresh token is available" }
end

return _M
