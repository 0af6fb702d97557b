--- The Georgian detached JWS signature (`x-jws-signature`, b64=false,
-- sigT, sigD, x5c, crit) over the listed headers, with `Digest`.
-- @module xs2a.sign.jws
local core = require "xs2a.core"
local json = require "xs2a.codec.json"
local headers_mod = require "xs2a.net.headers"
local common = require "xs2a.sign.common"

local type, pairs, ipairs, tostring, error, setmetatable = type, pairs, ipairs, tostring, error, setmetatable
local str_lower, str_sub = string.lower, string.sub
local tconcat, tsort = table.concat, table.sort
local os_time, os_date = os.time, os.date
local b64encode, b64url_encode = core.b64encode, core.b64url_encode
local header_value, header_set = headers_mod.value, headers_mod.set
local DIGESTS, digest_value, check_identity, check_req, target_of =
  common.DIGESTS, common.digest_value, common.check_identity, common.check_req, common.target_of

local _M = {}

local JWS_MID = "http://uri.etsi.org/19182/HttpHeaders"
_M.MID = JWS_MID

local JWS_ALGS = {
  RS256 = { "sha256", "pkcs1", "RSA" }, RS384 = { "sha384", "pkcs1", "RSA" }, RS512 = { "sha512", "pkcs1", "RSA" },
  PS256 = { "sha256", "pss", "RSA" }, PS384 = { "sha384", "pss", "RSA" }, PS512 = { "sha512", "pss", "RSA" },
  ES256 = { "sha256", nil, "EC", 256 }, ES384 = { "sha384", nil, "EC", 384 }, ES512 = { "sha512", nil, "EC", 521 },
}
local DIGEST_OF_HASH = { sha256 = "SHA-256", sha384 = "SHA-384", sha512 = "SHA-512" }

local jws_mt = {}
jws_mt.__index = jws_mt
jws_mt.__tostring = function(self) return "xs2a.sign.jws (" .. self.alg .. ", " .. self.subject .. ")" end

--- A Georgian JWS signer: adds `Digest` and `x-jws-signature`.
-- @param qseal an identity (QSealC)
-- @tparam[opt] table opts `alg` (RS256 default for RSA, PS256..., ES256 for
--  P-256 keys), `digest` (default follows alg), `now` (epoch seconds function),
--  `response` (true to sign responses: `(response-status)` instead of
--  `(request-target)` and `host`).
function _M.new(qseal, opts)
  opts = opts or {}
  local info = check_identity(qseal, "sign.jws")
  local alg = opts.alg
  if not alg then
    if info.key_type == "EC" then
      alg = info.key_bits == 384 and "ES384" or info.key_bits == 521 and "ES512" or "ES256"
    else
      alg = opts.padding == "pss" and "PS256" or "RS256"
    end
  end
  local a = JWS_ALGS[alg]
  if not a then error("sign.jws: unsupported alg " .. tostring(alg), 2) end
  if a[3] ~= info.key_type or (a[4] and a[4] ~= info.key_bits) then
    error("sign.jws: alg " .. alg .. " does not fit a " .. info.key_type .. " " .. info.key_bits .. " key", 2)
  end
  local dig = opts.digest or DIGEST_OF_HASH[a[1]]
  if not DIGESTS[dig] then error("sign.jws: unsupported digest " .. tostring(dig), 2) end
  local x5c = { b64encode(qseal:cert_der()) }
  for _, der in ipairs(qseal:chain_der()) do
    local ci = core.cert_info(der)
    if ci and ci.subject ~= ci.issuer then x5c[#x5c + 1] = b64encode(der) end   -- no root
  end
  return setmetatable({
    identity = qseal, alg = alg, digest = dig, x5c = x5c,
    subject = info.subject, response = opts.response and true or false,
    sign_opts = { hash = a[1], padding = a[2], ec_format = a[2] == nil and "raw" or nil },
    now = opts.now or os_time,
  }, jws_mt)
end

local function sorted_psu_headers(headers)
  local out = {}
  for k in pairs(headers) do
    if type(k) == "string" then
      local l = str_lower(k)
      if str_sub(l, 1, 4) == "psu-" then out[#out + 1] = l end
    end
  end
  tsort(out)
  return out
end

-- the value of a signed "header" for a request or response
local function jws_value(msg, name, is_response)
  if name == "(request-target)" then
    if is_response then return nil end
    local target = target_of(msg.url)
    return target and str_lower(msg.method or "GET") .. " " .. target
  elseif name == "(response-status)" then
    return is_response and msg.status ~= nil and tostring(msg.status) or nil
  elseif name == "host" then
    return header_value(msg.headers, "host") or (not is_response and common.host_of(msg.url)) or nil
  end
  return header_value(msg.headers, name)
end

--- Signs a request (or a response with `opts.response`) in place.
-- @tparam table msg `{ method, url, headers, body }` or `{ status, headers, body }`
-- @treturn table|nil msg
-- @treturn string error
function jws_mt:sign(msg)
  check_req(msg)
  local headers = msg.headers
  if not header_value(headers, "x-request-id") then
    return nil, "sign.jws: the message has no X-Request-ID header"
  end
  header_set(headers, "Digest", digest_value(self.digest, msg.body))
  if not self.response then
    -- the rule covers Content-Length whenever the request sends one, and
    -- both transports send it for a body and for a bodiless POST/PUT/PATCH
    -- (as 0): set it here, before signing, with the value they will send
    local m = msg.method or "GET"
    local cl = msg.body and #msg.body or ((m == "POST" or m == "PUT" or m == "PATCH") and 0 or nil)
    if cl then header_set(headers, "Content-Length", tostring(cl)) end
  end
  local pars
  if self.response then
    pars = { "(response-status)", "x-request-id" }
  else
    pars = { "(request-target)", "host", "x-request-id" }
  end
  if header_value(headers, "content-type") then pars[#pars + 1] = "content-type" end
  if header_value(headers, "content-length") then pars[#pars + 1] = "content-length" end
  pars[#pars + 1] = "digest"
  if not self.response then
    for _, h in ipairs(sorted_psu_headers(headers)) do pars[#pars + 1] = h end
  end
  local lines = {}
  for i, h in ipairs(pars) do
    local v = jws_value(msg, h, self.response)
    if v == nil then return nil, "sign.jws: no value for " .. h end
    lines[i] = h .. ": " .. v
  end
  local protected = assert(json.encode({
    alg = self.alg,
    b64 = false,
    crit = json.array({ "sigT", "sigD", "b64" }),
    sigT = os_date("!%Y-%m-%dT%H:%M:%SZ", self.now()),
    sigD = { pars = json.array(pars), mId = JWS_MID },
    x5c = json.array(self.x5c),
  }))
  local head = b64url_encode(protected)
  local sig, err = self.identity:sign(head .. "." .. tconcat(lines, "\n"), self.sign_opts)
  if not sig then return nil, err end
  header_set(headers, "x-jws-signature", head .. ".." .. b64url_encode(sig))
  return msg
end

_M.ALGS = JWS_ALGS
_M.value = jws_value
_M.sorted_psu_headers = sorted_psu_headers

return _M
