--- Token records and their refresh: where a resource's OAuth tokens live
-- (`client.store`, JSON under `tokens.store_key(token_key)`:
-- `{ access_token, refresh_token, token_type, expires_at, scope, token_endpoint }`),
-- the token endpoint call over the client's own mTLS transport (RFC 8705:
-- no client secret; `client_id` is the QWAC's organizationIdentifier), and
-- the single-flight refresh of rotating tokens.
--
-- Tokens never reach a log event or an error message.
-- @module xs2a.sca.tokens
local json = require "xs2a.codec.json"
local errors = require "xs2a.errors"
local date = require "xs2a.net.date"
local parallel = require "xs2a.parallel"
local pipeline = require "xs2a.pipeline"

local type, tostring, tonumber, pcall, error = type, tostring, tonumber, pcall, error

local _M = {}

--- Seconds before expiry at which an access token is refreshed proactively,
-- unless the client sets `oauth = { refresh_margin = seconds }`.
_M.SKEW = 60
--- The margin is at most this fraction of the token's lifetime: a 20 s
-- token is refreshed in its last 5 s, not on every call.
_M.MARGIN_FRACTION = 0.25
--- Called as `on_as_failure(client, meta_url)` when a call to the AS fails
-- (set by `xs2a.sca.oauth`: it drops the cached metadata).
_M.on_as_failure = nil
--- How long a refresh may hold the lock, and how long others wait for it (seconds).
_M.LOCK_TTL = 30

local now = date.now
local new_error = errors.make

-- the context's own sleep (scheduler aware), else the parallel scheduler's
local function sleep(client, s)
  if type(client.sleep) == "function" then return client:sleep(s) end
  return parallel.sleep(s)
end

-- logs through the client when it has a logger; never raises
local function log(client, level, event, fields)
  if client and type(client.log) == "function" then
    pcall(client.log, client, level, event, fields or {})
  end
end
_M.log = log

--- The store key of a token record.
-- @tparam string token_key e.g. the resource's `token_key`
function _M.store_key(token_key)
  return "xs2a:oauth:token:" .. tostring(token_key)
end

local function https(u)
  return type(u) == "string" and u:lower():match("^https://[^/]") ~= nil
end
_M.https = https

-- A failing store (e.g. Redis down) is an error of its own: the caller must
-- not take it for "no token" nor lose a token it could not write.
local function store_error(what, why)
  return new_error{ kind = "store", code = "STORE_UNAVAILABLE", retryable = true,
    message = "oauth: token store " .. what .. " failed: " .. tostring(why) }
end

local function read_record(client, token_key)
  if not client.store then return nil end
  local raw, why = client.store:get(_M.store_key(token_key))
  if raw == nil then
    if why ~= nil then return nil, store_error("read", why) end
    return nil
  end
  local rec = json.decode(raw)
  if type(rec) ~= "table" or type(rec.access_token) ~= "string" then return nil end
  return rec
end

--- The token record of `token_key` (`{ access_token, refresh_token,
-- token_type, expires_at, scope, token_endpoint }`), for tools.
-- @param client the client (its store)
-- @tparam string token_key the resource's token key
-- @return record | nil (none) | nil, err (the store failed)
-- @function read_record
_M.read_record = read_record

-- How long a refresh token may work: no longer than its consent (the end
-- of its validUntil day when the consent was made by this client), and no
-- longer than the bank's longest consent (profile `max_consent_days`).
-- @return seconds, or 0 for "no limit known"
local function refresh_lifetime(client, token_key)
  local limit = 0
  local days = client.profile and client.profile.max_consent_days
  if days then limit = days * 86400 + _M.SKEW end
  local id = type(token_key) == "string" and token_key:match("^consent:(.+)$")
  local last = id and client.store:get("xs2a:consent:" .. id .. ":until")
  local y, m, d
  if type(last) == "string" then y, m, d = last:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)$") end
  if y then
    local left = math.ceil(date.timegm(tonumber(y), tonumber(m), tonumber(d), 0, 0, 0) + 86400 - now()) + _M.SKEW
    if left < 1 then left = 1 end
    if limit == 0 or left < limit then limit = left end
  end
  return limit
end

local function write_record(client, token_key, rec)
  local ttl = 0
  -- keep the record while the refresh token may still work (no longer than
  -- its consent); without one, drop it a little after the access token expires
  if rec.refresh_token then
    ttl = refresh_lifetime(client, token_key)
  elseif rec.expires_at then
    ttl = math.max(1, math.ceil(rec.expires_at - now()) + _M.SKEW)
  end
  local ok, why = client.store:set(_M.store_key(token_key), assert(json.encode(rec)), ttl)
  if not ok then return nil, store_error("write", why) end
  return true
end

-- POSTs a form to the token endpoint; returns the decoded token response.
-- `allow_foreign`: the caller checked that the endpoint's origin is trusted.
local function token_request(client, endpoint, form, what, allow_foreign)
  local res, err = pipeline.request(client, {
    method = "POST", url = endpoint, form = form, service = "OAUTH",
    headers = { Accept = "application/json" }, idempotent = false, allow_foreign = allow_foreign,
  })
  if not res then return nil, err end
  local body = res.json
  if type(body) ~= "table" then body = res.body and json.decode(res.body) end
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
  local t = now()
  return {
    access_token = body.access_token,
    -- rotation: a new refresh token replaces the old one; none keeps the old
    refresh_token = (type(body.refresh_token) == "string" and body.refresh_token ~= "")
      and body.refresh_token or (old and old.refresh_token) or nil,
    token_type = "Bearer",
    expires_at = expires_in and (t + expires_in) or nil,
    expires_in = expires_in,                 -- the lifetime the AS gave (caps the refresh margin)
    scope = type(body.scope) == "string" and body.scope or (old and old.scope) or nil,
    token_endpoint = endpoint,
    obtained_at = t,
    -- where the tokens came from: the metadata and the origins it made trusted
    meta_url = old and old.meta_url or nil,
    as_origins = old and old.as_origins or nil,
  }
end

local function origin_of(u)
  return type(u) == "string" and u:lower():match("^(https://[^/?#]+)") or nil
end

-- true when a refresh may go to `endpoint`: the bank's origin, an origin the
-- client option `oauth.trusted_origins` lists, or one the AS metadata named
-- when the tokens were obtained (`rec.as_origins`)
local function endpoint_trusted(client, rec, endpoint)
  local o = origin_of(endpoint)
  if not o then return false end
  if o == origin_of(client.origin) then return true end
  local conf = type(client.oauth) == "table" and client.oauth.trusted_origins or {}
  for _, list in ipairs({ conf, rec.as_origins or {} }) do
    for _, t in ipairs(list) do
      if origin_of(t) == o then return true end
    end
  end
  return false
end

--- The refresh margin of a record for `client` (seconds).
function _M.margin(client, rec)
  local m = type(client.oauth) == "table" and tonumber(client.oauth.refresh_margin) or _M.SKEW
  local life = tonumber(rec.expires_in)
    or (rec.expires_at and rec.obtained_at and (rec.expires_at - rec.obtained_at))
  if life and life > 0 and m > life * _M.MARGIN_FRACTION then m = life * _M.MARGIN_FRACTION end
  return m
end

_M.token_request = token_request
_M.record_from = record_from
_M.write_record = write_record

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
-- @param client the client (its `store` holds the token record)
-- @tparam string token_key the resource's token key ("consent:<id>", "payment:<id>")
-- @tparam[opt] string stale the access token the caller found unusable
-- @tparam[opt] table opts `{ lock_wait = seconds }`
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
      if not endpoint_trusted(client, rec, endpoint) then
        unlock()
        return nil, errors.protocol("oauth: refusing a token endpoint on an untrusted origin ("
          .. tostring(origin_of(endpoint)) .. ")", nil, "FOREIGN_LINK")
      end
      local ok, body, err = pcall(token_request, client, endpoint, {
        grant_type = "refresh_token",
        refresh_token = rec.refresh_token,
        client_id = client.client_id,
      }, "refresh", true)
      if not ok then
        unlock()
        error(body, 0)
      end
      if not body then
        -- only an invalid_grant means the refresh token is dead: drop the
        -- record so callers see "authorise again" instead of retrying forever
        -- (any other refusal, a 400 invalid_request included, keeps it)
        if type(err) == "table" and err.code == "invalid_grant" then
          store:delete(key)
        end
        if rec.meta_url and _M.on_as_failure then pcall(_M.on_as_failure, client, rec.meta_url) end
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
-- within the client's refresh margin (`margin`).
-- @return access_token | nil (no token) | nil, err (refresh failed)
function _M.access_token(client, token_key, opts)
  local rec, rerr = read_record(client, token_key)
  if rerr then return nil, rerr end
  if not rec then return nil end
  local skew = (opts and opts.skew) or _M.margin(client, rec)
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
