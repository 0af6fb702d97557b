--- Request checks done by the platform before a bank handler runs: the
-- client certificate (QWAC) and its PSD2 roles, rate limits per TPP,
-- X-Request-ID and PSU-IP-Address. Each check returns nil when fine, or
-- status, code, detail[, headers].
local der = require "sandbox.der"
local crypto = require "sandbox.crypto"
local util = require "sandbox.util"

local _M = {}

local SERVICE_ROLE = { AIS = "PSP_AI", PIS = "PSP_PI", PIIS = "PSP_IC" }
_M.SERVICE_ROLE = SERVICE_ROLE

-- worker-local cache of parsed client certificates by their PEM text
local cert_cache, cert_cache_n = {}, 0

local function hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

--- The SHA-256 fingerprint (lower-case hex) of a DER certificate, as the
-- revocation and block lists name certificates.
function _M.fingerprint(der_bytes)
  return hex(crypto.sha256(der_bytes))
end

--- Parses a PEM certificate into the ctx.tpp table.
-- @return tpp table, or nil, message
function _M.tpp_from_pem(pem)
  local hit = cert_cache[pem]
  if hit then return hit end
  local d = der.pem_to_der(pem, ngx.decode_base64)
  if not d then return nil, "client certificate is not PEM" end
  local c, err = der.parse_cert(d)
  if not c then return nil, err end
  local org_name
  for _, rdn in ipairs(c.subject or {}) do
    if rdn.short == "O" then org_name = rdn.value end
  end
  local tpp = {
    org_id = c.org_id,
    org_name = org_name,
    roles = c.roles,
    role_list = c.role_list,
    nca_name = c.nca_name,
    nca_id = c.nca_id,
    fingerprint = _M.fingerprint(d),
    subject = der.name_string(c.subject),
    issuer = der.name_string(c.issuer),
    serial = c.serial,
    not_after = c.not_after,
  }
  if cert_cache_n > 200 then cert_cache, cert_cache_n = {}, 0 end
  cert_cache[pem] = tpp
  cert_cache_n = cert_cache_n + 1
  return tpp
end

--- The client certificate of this request as ctx.tpp, or nil plus the
-- failure: "missing" | "expired" | "invalid" and a detail text.
-- @param cert_error true when nginx already refused the certificate (495)
function _M.client_cert(cert_error)
  local verify = ngx.var.ssl_client_verify or "NONE"
  if cert_error or verify:sub(1, 6) == "FAILED" then
    local reason = verify:match("^FAILED:(.*)") or "verification failed"
    if reason:find("expired", 1, true) then
      return nil, "expired", "client certificate has expired"
    end
    return nil, "invalid", "client certificate is not trusted: " .. reason
  end
  if verify ~= "SUCCESS" then
    return nil, "missing", "a QWAC client certificate is required"
  end
  local pem = ngx.var.ssl_client_raw_cert
  if not pem or pem == "" then
    return nil, "missing", "a QWAC client certificate is required"
  end
  local tpp, err = _M.tpp_from_pem(pem)
  if not tpp then return nil, "invalid", err end
  if tpp.not_after and tpp.not_after < ngx.time() then
    return nil, "expired", "client certificate has expired"
  end
  if not tpp.org_id or tpp.org_id == "" then
    return nil, "invalid", "client certificate has no organizationIdentifier"
  end
  return tpp
end

local CERT_CODES = { missing = "CERTIFICATE_MISSING", expired = "CERTIFICATE_EXPIRED", invalid = "CERTIFICATE_INVALID" }

local function listed(list, value)
  if type(list) ~= "table" or value == nil then return false end
  for _, v in ipairs(list) do
    if type(v) == "string" and v:lower() == tostring(value):lower() then return true end
  end
  return false
end

--- The configuration's revocation and block lists (`certificates.revoked`,
-- `certificates.blocked`: serial numbers in hex or SHA-256 fingerprints in
-- hex) applied to one certificate.
-- @param cfg the variant's configuration
-- @param serial hex serial (no leading zeros), fingerprint hex SHA-256
-- @return nil when neither list names it, else status, code, detail
function _M.listed_certificate(cfg, serial, fingerprint, what)
  local lists = cfg.certificates or {}
  what = what or "client certificate"
  if listed(lists.revoked, serial) or listed(lists.revoked, fingerprint) then
    return 401, "CERTIFICATE_REVOKED", "the " .. what .. " is revoked"
  end
  if listed(lists.blocked, serial) or listed(lists.blocked, fingerprint) then
    return 401, "CERTIFICATE_BLOCKED", "the " .. what .. " is blocked"
  end
  return nil
end

--- Certificate check for an mTLS route: a valid QWAC that the revocation
-- and block lists do not name.
function _M.certificate(ctx, cert_error)
  local tpp, why, detail = _M.client_cert(cert_error)
  if not tpp then return 401, CERT_CODES[why], detail end
  ctx.tpp = tpp
  -- the bank's pages name the TPP by its organisation (QWAC subject O)
  if tpp.org_name and tpp.org_id then require("sandbox.state").set("tpp_name:" .. tpp.org_id, tpp.org_name) end
  if ctx.cfg then
    local status, code, text = _M.listed_certificate(ctx.cfg, tpp.serial, tpp.fingerprint)
    if status then return status, code, text end
  end
  return nil
end

local PRODUCT_PATH = "^/v1/[%w%-]*payments/([^/]+)"

--- The bank's policy for a request that passed the platform checks, from
-- the configuration:
-- * `unsupported_parameters`: query parameters (or headers) the bank does
--   not support -> 400 PARAMETER_NOT_SUPPORTED;
-- * `corporate_ids`: when set, the only PSU-Corporate-ID values the bank
--   knows -> 401 CORPORATE_ID_INVALID for others;
-- * `blocked_services`: services ("AIS", "PIS", "PIIS") blocked for TPPs
--   -> 403 SERVICE_BLOCKED;
-- * `invalid_products`: payment products the bank knows but does not
--   offer to TPPs -> 403 PRODUCT_INVALID.
-- @return nil when allowed, else status, code, detail
function _M.policy(ctx, route)
  local cfg = ctx.cfg or {}
  for _, name in ipairs(cfg.unsupported_parameters or {}) do
    if ctx.args and ctx.args[name] ~= nil then
      return 400, "PARAMETER_NOT_SUPPORTED", "query parameter " .. name .. " is not supported"
    end
    if ctx.headers[name:lower()] ~= nil then
      return 400, "PARAMETER_NOT_SUPPORTED", "header " .. name .. " is not supported"
    end
  end
  local corp = ctx.headers["psu-corporate-id"]
  if corp ~= nil and type(cfg.corporate_ids) == "table" and not listed(cfg.corporate_ids, corp) then
    return 401, "CORPORATE_ID_INVALID", "PSU-Corporate-ID is not known"
  end
  if route.service and listed(cfg.blocked_services, route.service) then
    return 403, "SERVICE_BLOCKED", "the " .. route.service .. " service is blocked for this TPP"
  end
  local product = ctx.path and ctx.path:match(PRODUCT_PATH)
  if product and listed(cfg.invalid_products, product) then
    return 403, "PRODUCT_INVALID", "payment product " .. product .. " is not available to this TPP"
  end
  return nil
end

--- Role check: the QWAC must carry the role the service needs.
function _M.role(ctx, service)
  local need = SERVICE_ROLE[service]
  if not need then return nil end
  if not (ctx.tpp and ctx.tpp.roles[need]) then
    return 401, "ROLE_INVALID", "the certificate lacks the role " .. need .. " needed for " .. service
  end
  return nil
end

--- Rate limits per TPP organization id, shared by all workers
-- (lua_shared_dict sandbox_limits). Counts every request that reaches it.
-- Sets ngx.ctx.sandbox_concurrent so app.log() can release the slot.
function _M.rate(ctx)
  local rate = ctx.cfg.rate or {}
  local org = ctx.tpp and ctx.tpp.org_id or "-"
  local d = ngx.shared.sandbox_limits
  local now = ngx.now()
  local sec = math.floor(now)
  local conc = tonumber(rate.concurrent) or 0
  if conc > 0 then
    local key = "rl:c:" .. org
    local n = d:incr(key, 1, 0, 300)
    ngx.ctx.sandbox_concurrent = key
    if n and n > conc then
      return 429, "ACCESS_EXCEEDED", "too many concurrent requests (limit " .. conc .. ")",
        { ["Retry-After"] = "1" }
    end
  end
  local per_second = tonumber(rate.per_second) or 0
  if per_second > 0 then
    local n = d:incr("rl:s:" .. org .. ":" .. sec, 1, 0, 2)
    if n and n > per_second then
      return 429, "ACCESS_EXCEEDED", "rate limit of " .. per_second .. " requests per second exceeded",
        { ["Retry-After"] = "1" }
    end
  end
  local per_hour = tonumber(rate.per_hour) or 0
  if per_hour > 0 then
    local hour = math.floor(sec / 3600)
    local n = d:incr("rl:h:" .. org .. ":" .. hour, 1, 0, 3601)
    if n and n > per_hour then
      local wait = (hour + 1) * 3600 - sec
      if wait < 1 then wait = 1 end
      return 429, "ACCESS_EXCEEDED", "rate limit of " .. per_hour .. " requests per hour exceeded",
        { ["Retry-After"] = tostring(wait) }
    end
  end
  return nil
end

--- Releases the concurrency slot taken by rate() (log phase).
function _M.release()
  local key = ngx.ctx.sandbox_concurrent
  if key then
    ngx.ctx.sandbox_concurrent = nil
    ngx.shared.sandbox_limits:incr(key, -1, 1)
  end
end

--- X-Request-ID must be present and a UUID (when `required`; when not
-- required it is still checked if sent).
function _M.request_id(ctx, required)
  local rid = ctx.headers["x-request-id"]
  if rid == nil or rid == "" then
    if not required then return nil end
    return 400, "FORMAT_ERROR", "header X-Request-ID is missing"
  end
  if not util.is_uuid(rid) then
    return 400, "FORMAT_ERROR", "header X-Request-ID must be a UUID"
  end
  return nil
end

local function ipv4(s)
  local a, b, c, d = s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return false end
  for _, x in ipairs{ a, b, c, d } do
    if #x > 3 or tonumber(x) > 255 then return false end
  end
  return true
end

local function ipv6(s)
  if #s < 2 or #s > 45 or not s:find(":", 1, true) then return false end
  if s:find(":::", 1, true) then return false end
  local tail4 = s:match(":(%d+%.%d+%.%d+%.%d+)$")
  if tail4 then
    if not ipv4(tail4) then return false end
    s = s:sub(1, #s - #tail4) .. "0:0"
  end
  if not s:match("^[%x:]+$") then return false end
  local groups = 0
  for g in (s .. ":"):gmatch("([^:]*):") do
    if #g > 4 then return false end
    if g ~= "" then groups = groups + 1 end
  end
  local _, dbl = s:gsub("::", "")
  if dbl > 1 then return false end
  return (dbl == 1 and groups < 8) or (dbl == 0 and groups == 8)
end

--- True when `s` is an IPv4 or IPv6 address.
function _M.ip_valid(s)
  return type(s) == "string" and (ipv4(s) or ipv6(s))
end

--- PSU-IP-Address must be present and an IP address.
function _M.psu_ip(ctx)
  local ip = ctx.headers["psu-ip-address"]
  if ip == nil or ip == "" then
    return 400, "FORMAT_ERROR", "header PSU-IP-Address is missing"
  end
  if not _M.ip_valid(ip) then
    return 400, "FORMAT_ERROR", "header PSU-IP-Address is not an IP address"
  end
  return nil
end

return _M
