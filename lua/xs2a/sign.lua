--- Request signing: the Berlin Group application-layer signature (cavage
-- HTTP Signatures with a QSealC), the Georgian detached JWS
-- (`x-jws-signature`) and Paysera's MAC access authentication.
--
--     local sign = require "xs2a.sign"
--     local signer = sign.berlin(qseal)          -- qseal: an xs2a.identity
--     signer:sign{ method = "POST", url = url, headers = headers, body = body }
--     -- headers now carry Digest, Signature and TPP-Signature-Certificate
--
-- A signer keeps the identity handle and the facts derived from its
-- certificate (base64 DER, keyId); it never keeps a request body, and the MAC
-- key lives in a closure that `tostring` and table walks cannot reach.
-- @module xs2a.sign
local core = require "xs2a.core"
local cjson = require "cjson.safe"

local _M = {}

local type, pairs, ipairs, tostring, tonumber, error, setmetatable =
  type, pairs, ipairs, tostring, tonumber, error, setmetatable
local str_lower, str_upper, str_format, str_gsub, str_match, str_sub, str_byte, str_gmatch =
  string.lower, string.upper, string.format, string.gsub, string.match, string.sub,
  string.byte, string.gmatch
local tconcat, tsort = table.concat, table.sort
local os_time, os_date = os.time, os.date
local b64encode, b64decode = core.b64encode, core.b64decode
local b64url_encode, b64url_decode = core.b64url_encode, core.b64url_decode
local digest, ct_equal = core.digest, core.ct_equal

local JWS_MID = "http://uri.etsi.org/19182/HttpHeaders"

-- ------------------------------------------------------------------
-- helpers

-- value and actual key of a header, looked up without regard to case
local function header_get(headers, name)
  if headers == nil then return nil end
  local v = headers[name]
  if v ~= nil then return v, name end
  local lname = str_lower(name)
  for k, val in pairs(headers) do
    if type(k) == "string" and str_lower(k) == lname then return val, k end
  end
  return nil
end

local function header_value(headers, name)
  local v = header_get(headers, name)
  if type(v) == "table" then v = tconcat(v, ", ") end
  if v ~= nil then v = tostring(v) end
  return v
end

-- sets name = value, dropping any other spelling of the same header
local function header_set(headers, name, value)
  local lname = str_lower(name)
  for k in pairs(headers) do
    if type(k) == "string" and k ~= name and str_lower(k) == lname then headers[k] = nil end
  end
  headers[name] = value
end

-- scheme, host (lowercase), explicit port or nil, request target (path?query)
local function parse_url(url)
  if type(url) ~= "string" then return nil end
  local scheme, rest = str_match(url, "^(%a[%w+.%-]*)://(.*)$")
  if not scheme then return nil end
  local authority, target = str_match(rest, "^([^/?#]*)(.*)$")
  target = str_gsub(target, "#.*$", "")
  if target == "" then
    target = "/"
  elseif str_sub(target, 1, 1) == "?" then
    target = "/" .. target
  end
  authority = str_gsub(authority, "^.*@", "")
  local host, port
  if str_sub(authority, 1, 1) == "[" then
    host, port = str_match(authority, "^(%[[^%]]*%]):?(%d*)$")
  else
    host, port = str_match(authority, "^([^:]*):?(%d*)$")
  end
  if not host or host == "" then return nil end
  return str_lower(scheme), str_lower(host), tonumber(port), target
end
_M.parse_url = parse_url

local DEFAULT_PORT = { https = 443, http = 80 }

local function host_header(url)
  local scheme, host, port = parse_url(url)
  if not scheme then return nil end
  if port and port ~= DEFAULT_PORT[scheme] then return host .. ":" .. port end
  return host
end

local DAYS = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" }
local MONTHS = { "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" }

--- RFC 7231 IMF-fixdate of epoch seconds (locale independent).
function _M.http_date(t)
  local d = os_date("!*t", t)
  return str_format("%s, %02d %s %04d %02d:%02d:%02d GMT", DAYS[d.wday], d.day,
    MONTHS[d.month], d.year, d.hour, d.min, d.sec)
end

local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = m > 2 and m - 3 or m + 9
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

-- "2024-05-01T10:00:00Z" (fraction and +hh:mm allowed) -> epoch seconds
local function parse_sigt(s)
  if type(s) ~= "string" then return nil end
  local y, mo, d, h, mi, sec, rest =
    str_match(s, "^(%d%d%d%d)-(%d%d)-(%d%d)T(%d%d):(%d%d):(%d%d)%.?%d*(.*)$")
  if not y then return nil end
  local off = 0
  if rest ~= "Z" then
    local sign, oh, om = str_match(rest, "^([+-])(%d%d):?(%d%d)$")
    if not sign then return nil end
    off = (tonumber(oh) * 3600 + tonumber(om) * 60) * (sign == "+" and 1 or -1)
  end
  y, mo, d, h, mi, sec = tonumber(y), tonumber(mo), tonumber(d), tonumber(h), tonumber(mi), tonumber(sec)
  if mo < 1 or mo > 12 or d < 1 or d > 31 or h > 23 or mi > 59 or sec > 60 then return nil end
  return days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - off
end
_M.parse_sigt = parse_sigt

local DIGESTS = { ["SHA-256"] = "sha256", ["SHA-384"] = "sha384", ["SHA-512"] = "sha512" }

local function digest_value(alg, body)
  return alg .. "=" .. b64encode(digest(DIGESTS[alg], body or ""))
end

-- checks a Digest header value against the body; true | false, reason
local function check_digest(value, body)
  if type(value) ~= "string" then return false, "digest header missing" end
  local alg, b64 = str_match(value, "^%s*([%w%-]+)=(%S+)%s*$")
  local name = alg and DIGESTS[str_upper(alg)]
  if not name then return false, "digest algorithm not supported" end
  local want = b64decode(b64)
  if not want then return false, "digest is not base64" end
  if not ct_equal(want, digest(name, body or "")) then
    return false, "digest does not match the body"
  end
  return true
end
_M.check_digest = check_digest

local function check_identity(id, who)
  if type(id) ~= "userdata" then error(who .. ": an xs2a identity (QSealC) is needed", 3) end
  local ok, info = pcall(id.info, id)
  if not ok then error(who .. ": the identity is closed", 3) end
  return info
end

local function check_req(req)
  if type(req) ~= "table" then error("sign: request must be a table", 3) end
  if req.headers == nil then req.headers = {} end
  if type(req.headers) ~= "table" then error("sign: request headers must be a table", 3) end
  if req.body ~= nil and type(req.body) ~= "string" then
    error("sign: request body must be a string", 3)
  end
end

local function urlencode(s)
  return (str_gsub(s, "[^%w%-%._~]", function(c) return str_format("%%%02X", str_byte(c)) end))
end

-- minimal JSON writer for the JWS protected header (strings, booleans,
-- arrays of strings, nested objects), keys in the given order
local function json_string(s)
  return '"' .. str_gsub(s, '[%c"\\]', function(c)
    if c == '"' then return '\\"' elseif c == "\\" then return "\\\\" end
    return str_format("\\u%04x", str_byte(c))
  end) .. '"'
end

local function json_value(v)
  local t = type(v)
  if t == "string" then return json_string(v) end
  if t == "boolean" or t == "number" then return tostring(v) end
  if t == "table" and v[1] ~= nil or (t == "table" and v.__array) then
    local out = {}
    for i, x in ipairs(v) do out[i] = json_value(x) end
    return "[" .. tconcat(out, ",") .. "]"
  end
  if t == "table" then
    local out = {}
    for i, kv in ipairs(v.__order) do out[i] = json_string(kv) .. ":" .. json_value(v[kv]) end
    return "{" .. tconcat(out, ",") .. "}"
  end
  error("sign: cannot encode " .. t)
end

-- ------------------------------------------------------------------
-- Berlin Group (cavage) signature

-- algorithm label -> hash, padding
local ALGORITHMS = {
  ["rsa-sha256"] = { "sha256", "pkcs1" }, ["rsa-sha512"] = { "sha512", "pkcs1" },
  ["rsa-pss-sha256"] = { "sha256", "pss" }, ["rsa-pss-sha512"] = { "sha512", "pss" },
  ["ecdsa-sha256"] = { "sha256" }, ["ecdsa-sha512"] = { "sha512" },
  ["sha256withrsa"] = { "sha256", "pkcs1" }, ["sha512withrsa"] = { "sha512", "pkcs1" },
  ["sha256withecdsa"] = { "sha256" }, ["sha512withecdsa"] = { "sha512" },
}

local berlin_mt = {}
berlin_mt.__index = berlin_mt
berlin_mt.__tostring = function(self)
  return "xs2a.sign.berlin (" .. self.key_id .. ", " .. self.algorithm .. ")"
end

local CONDITIONAL = { "psu-id", "psu-corporate-id", "tpp-redirect-uri" }

--- A Berlin Group signer (IG 1.3.8 §4.2 / §12).
-- @param qseal an identity (QSealC with its key)
-- @tparam[opt] table opts
--  `digest` ("SHA-256" default, "SHA-512"),
--  `hash` ("sha256"/"sha512", default follows `digest`),
--  `padding` ("pkcs1" default, "pss"; RSA only),
--  `headers` (extra signed header names appended in order, e.g. `{"date", "(request-target)"}`;
--   "date" adds a Date header when the request has none),
--  `keyid_serial_case` ("upper" default, "lower"),
--  `algorithm` (label override, e.g. "SHA256withRSA"),
--  `now` (function returning epoch seconds, for Date).
-- @return signer with `signer:sign(req)`
function _M.berlin(qseal, opts)
  opts = opts or {}
  local info = check_identity(qseal, "sign.berlin")
  local dig = opts.digest or "SHA-256"
  if not DIGESTS[dig] or dig == "SHA-384" then
    error("sign.berlin: digest must be 'SHA-256' or 'SHA-512'", 2)
  end
  local hash = opts.hash or DIGESTS[dig]
  if hash ~= "sha256" and hash ~= "sha512" then
    error("sign.berlin: hash must be 'sha256' or 'sha512'", 2)
  end
  local ec = info.key_type == "EC"
  local padding = opts.padding or "pkcs1"
  if padding ~= "pkcs1" and padding ~= "pss" then
    error("sign.berlin: padding must be 'pkcs1' or 'pss'", 2)
  end
  if ec and opts.padding == "pss" then error("sign.berlin: padding 'pss' needs an RSA key", 2) end
  local label = opts.algorithm or (ec and "ecdsa-" .. hash)
    or (padding == "pss" and "rsa-pss-" .. hash) or "rsa-" .. hash
  local serial = info.serial
  local case = opts.keyid_serial_case or "upper"
  if case == "lower" then serial = str_lower(serial)
  elseif case ~= "upper" then error("sign.berlin: keyid_serial_case must be 'upper' or 'lower'", 2) end
  local extra = {}
  for i, h in ipairs(opts.headers or {}) do
    if type(h) ~= "string" then error("sign.berlin: header names must be strings", 2) end
    extra[i] = str_lower(h)
  end
  if opts.now ~= nil and type(opts.now) ~= "function" then
    error("sign.berlin: now must be a function", 2)
  end
  return setmetatable({
    identity = qseal,
    digest = dig,
    algorithm = label,
    key_id = "SN=" .. serial .. ",CA=" .. str_gsub(info.issuer, " ", "%%20"),
    certificate = b64encode(qseal:cert_der()),
    sign_opts = { hash = hash, padding = not ec and padding or nil, ec_format = ec and "der" or nil },
    extra = extra,
    now = opts.now or os_time,
  }, berlin_mt)
end

--- Signs a request in place.
-- @tparam table req `{ method, url, headers, body }`
-- @treturn table|nil req
-- @treturn string error (missing X-Request-ID, signing failure)
function berlin_mt:sign(req)
  check_req(req)
  local headers = req.headers
  if not header_value(headers, "x-request-id") then
    return nil, "sign.berlin: the request has no X-Request-ID header"
  end
  header_set(headers, "Digest", digest_value(self.digest, req.body))
  local names = { "digest", "x-request-id" }
  for _, h in ipairs(CONDITIONAL) do
    if header_value(headers, h) then names[#names + 1] = h end
  end
  local lines = {}
  for _, h in ipairs(self.extra) do
    if h == "date" and not header_value(headers, "date") then
      header_set(headers, "Date", _M.http_date(self.now()))
    end
    local dup = false
    for _, n in ipairs(names) do if n == h then dup = true end end
    if not dup then names[#names + 1] = h end
  end
  for i, h in ipairs(names) do
    local v
    if h == "(request-target)" then
      local _, _, _, target = parse_url(req.url)
      if not target then return nil, "sign.berlin: request url is not absolute" end
      v = str_lower(req.method or "GET") .. " " .. target
    else
      v = header_value(headers, h)
      if v == nil then return nil, "sign.berlin: header " .. h .. " to sign is missing" end
    end
    lines[i] = h .. ": " .. v
  end
  local sig, err = self.identity:sign(tconcat(lines, "\n"), self.sign_opts)
  if not sig then return nil, err end
  header_set(headers, "Signature", str_format('keyId="%s",algorithm="%s",headers="%s",signature="%s"',
    self.key_id, self.algorithm, tconcat(names, " "), b64encode(sig)))
  header_set(headers, "TPP-Signature-Certificate", self.certificate)
  return req
end

local function parse_signature_header(v)
  local p = {}
  for k, val in str_gmatch(v, '([%w]+)%s*=%s*"([^"]*)"') do p[k] = val end
  return p
end
_M.parse_signature_header = parse_signature_header

local function normalise_serial(s)
  return (str_gsub(str_lower(s or ""), "^0+(.)", "%1"))
end

-- trusted = PEM/DER of a certificate; true when cert_der is it or was issued by it
local function trusted_by(cert_der, trusted)
  if trusted == nil then return true end
  local list = type(trusted) == "table" and trusted or { trusted }
  for _, t in ipairs(list) do
    local info = core.cert_info(t)
    if info then
      local mine = core.cert_info(cert_der)
      if mine and mine.fingerprint == info.fingerprint then return true end
      if core.cert_issued_by and core.cert_issued_by(cert_der, t) then return true end
    end
  end
  return false
end

--- Verifies a Berlin Group signed request (the bank's side; for tests and
-- the sandbox).
-- @tparam table req `{ method, url, headers, body }`
-- @tparam[opt] table opts `cert` (trusted certificate or CA, PEM/DER, or a
--  list); `algorithm` / `padding` overrides for labels such as "hs2019".
-- @treturn boolean ok
-- @treturn string reason when not ok
function _M.verify_berlin(req, opts)
  opts = opts or {}
  local headers = req.headers or {}
  local sh = header_value(headers, "signature")
  if not sh then return false, "no Signature header" end
  local p = parse_signature_header(sh)
  if not (p.keyId and p.headers and p.signature) then return false, "Signature header is incomplete" end
  local ok, why = check_digest(header_value(headers, "digest"), req.body)
  if not ok then return false, why end
  local cert_b64 = header_value(headers, "tpp-signature-certificate")
  if not cert_b64 then return false, "no TPP-Signature-Certificate header" end
  local cert = b64decode((str_gsub(cert_b64, "%s", "")))
  local info = cert and core.cert_info(cert)
  if not info then return false, "TPP-Signature-Certificate is not a certificate" end
  if not trusted_by(cert, opts.cert) then return false, "signing certificate is not trusted" end
  local sn, ca = str_match(p.keyId, "^SN=([^,]*),CA=(.*)$")
  if not sn or normalise_serial(sn) ~= normalise_serial(info.serial) then
    return false, "keyId does not name the certificate's serial"
  end
  if str_gsub(ca, "%%20", " ") ~= info.issuer then
    return false, "keyId does not name the certificate's issuer"
  end
  local names, seen = {}, {}
  for h in str_gmatch(p.headers, "%S+") do
    names[#names + 1] = str_lower(h)
    seen[str_lower(h)] = true
  end
  if not (seen["digest"] and seen["x-request-id"]) then
    return false, "digest and x-request-id must be signed"
  end
  for _, h in ipairs(CONDITIONAL) do
    if header_value(headers, h) and not seen[h] then return false, h .. " is present but not signed" end
  end
  local lines = {}
  for i, h in ipairs(names) do
    local v
    if h == "(request-target)" then
      local _, _, _, target = parse_url(req.url)
      v = target and str_lower(req.method or "GET") .. " " .. target
    else
      v = header_value(headers, h)
    end
    if v == nil then return false, "signed header " .. h .. " is missing" end
    lines[i] = h .. ": " .. v
  end
  local alg = ALGORITHMS[str_lower(opts.algorithm or p.algorithm or "")]
  if not alg then return false, "unsupported algorithm" end
  local ec = info.key_type == "EC"
  local sig = b64decode(p.signature)
  if not sig then return false, "signature is not base64" end
  if ec ~= (alg[2] == nil) then return false, "algorithm does not match the certificate key" end
  return core.verify(cert, tconcat(lines, "\n"), sig,
    { hash = alg[1], padding = opts.padding or alg[2], ec_format = ec and "der" or nil })
end

-- ------------------------------------------------------------------
-- Georgian JWS (detached, b64=false)

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
function _M.jws(qseal, opts)
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
    local _, _, _, target = parse_url(msg.url)
    return target and str_lower(msg.method or "GET") .. " " .. target
  elseif name == "(response-status)" then
    return is_response and msg.status ~= nil and tostring(msg.status) or nil
  elseif name == "host" then
    return header_value(msg.headers, "host") or (not is_response and host_header(msg.url)) or nil
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
  local protected = json_value({
    __order = { "alg", "b64", "crit", "sigT", "sigD", "x5c" },
    alg = self.alg,
    b64 = false,
    crit = { "sigT", "sigD", "b64" },
    sigT = os_date("!%Y-%m-%dT%H:%M:%SZ", self.now()),
    sigD = { __order = { "pars", "mId" }, pars = pars, mId = JWS_MID },
    x5c = self.x5c,
  })
  local head = b64url_encode(protected)
  local sig, err = self.identity:sign(head .. "." .. tconcat(lines, "\n"), self.sign_opts)
  if not sig then return nil, err end
  header_set(headers, "x-jws-signature", head .. ".." .. b64url_encode(sig))
  return msg
end

--- Verifies a detached JWS on a response (or, with `opts.request`, a request).
-- @tparam table msg `{ status, headers, body }` (response) or `{ method, url, headers, body }`
-- @tparam table opts `cert` (trusted signer certificate or its CA, PEM/DER, or
--  a list; required), `now` (epoch seconds function), `max_age` (seconds sigT
--  may lie in the past, default 60), `max_future` (default 2), `request`
--  (true for a request), `x_request_id` (expected value), `organization_identifier`
--  (expected signer org id).
-- @treturn boolean ok
-- @treturn string|table reason when not ok; the protected header when ok
function _M.verify_jws(msg, opts)
  opts = opts or {}
  if type(msg) ~= "table" then error("sign.verify_jws: message must be a table", 2) end
  if opts.cert == nil then error("sign.verify_jws: opts.cert (trusted certificate) is required", 2) end
  local is_response = not opts.request
  local headers = msg.headers or {}
  local jws = header_value(headers, "x-jws-signature")
  if not jws then return false, "no x-jws-signature header" end
  local head, payload, sig64 = str_match(jws, "^%s*([%w_%-]+)%.([^.]*)%.([%w_%-]+)%s*$")
  if not head then return false, "x-jws-signature is not a compact JWS" end
  if payload ~= "" then return false, "JWS payload is not detached" end
  local json = b64url_decode(head)
  local ph = json and cjson.decode(json)
  if type(ph) ~= "table" then return false, "protected header is not JSON" end
  local a = JWS_ALGS[ph.alg]
  if not a then return false, "unsupported alg" end
  if ph.b64 ~= false then return false, "b64 must be false" end
  if type(ph.crit) ~= "table" then return false, "crit missing" end
  local crit = {}
  for _, c in ipairs(ph.crit) do
    if c ~= "sigT" and c ~= "sigD" and c ~= "b64" then return false, "unknown crit entry" end
    crit[c] = true
  end
  if not (crit.sigT and crit.sigD and crit.b64) then return false, "crit must list sigT, sigD and b64" end
  local sigd = ph.sigD
  if type(sigd) ~= "table" or type(sigd.pars) ~= "table" then return false, "sigD.pars missing" end
  if sigd.mId ~= JWS_MID then return false, "unsupported sigD.mId" end
  local t = parse_sigt(ph.sigT)
  if not t then return false, "sigT is not a UTC time" end
  local now = (opts.now or os_time)()
  if t > now + (opts.max_future or 2) then return false, "sigT is in the future" end
  if t < now - (opts.max_age or 60) then return false, "sigT is too old" end
  -- what must be signed
  local seen = {}
  for _, h in ipairs(sigd.pars) do
    if type(h) ~= "string" then return false, "sigD.pars must be strings" end
    seen[str_lower(h)] = true
  end
  local must = is_response and { "(response-status)", "x-request-id", "digest" }
    or { "(request-target)", "host", "x-request-id", "digest" }
  for _, h in ipairs(must) do
    if not seen[h] then return false, h .. " is not signed" end
  end
  for _, h in ipairs({ "content-type", "content-length" }) do
    if header_value(headers, h) and not seen[h] then return false, h .. " is present but not signed" end
  end
  if not is_response then
    for _, h in ipairs(sorted_psu_headers(headers)) do
      if not seen[h] then return false, h .. " is present but not signed" end
    end
  end
  local ok, why = check_digest(header_value(headers, "digest"), msg.body)
  if not ok then return false, why end
  if opts.x_request_id and header_value(headers, "x-request-id") ~= opts.x_request_id then
    return false, "x-request-id does not match the request"
  end
  -- signer certificate
  if type(ph.x5c) ~= "table" or type(ph.x5c[1]) ~= "string" then return false, "x5c missing" end
  local cert = b64decode(ph.x5c[1])
  local info = cert and core.cert_info(cert)
  if not info then return false, "x5c[1] is not a certificate" end
  if info.expired then return false, "signing certificate has expired" end
  if a[3] ~= info.key_type then return false, "alg does not match the certificate key" end
  if not trusted_by(cert, opts.cert) then return false, "signing certificate is not trusted" end
  if opts.organization_identifier and info.organization_identifier ~= opts.organization_identifier then
    return false, "signer organization identifier does not match"
  end
  local lines = {}
  for i, h in ipairs(sigd.pars) do
    local v = jws_value(msg, str_lower(h), is_response)
    if v == nil then return false, "signed header " .. h .. " is missing" end
    lines[i] = str_lower(h) .. ": " .. v
  end
  local raw = b64url_decode(sig64)
  if not raw then return false, "signature is not base64url" end
  local vok, vwhy = core.verify(cert, head .. "." .. tconcat(lines, "\n"), raw,
    { hash = a[1], padding = a[2], ec_format = a[2] == nil and "raw" or nil })
  if not vok then return false, vwhy end
  return true, ph
end

-- ------------------------------------------------------------------
-- Paysera MAC access authentication

local NONCE_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

local function random_nonce()
  local bytes = core.random(32)
  local out = {}
  for i = 1, 32 do
    -- 62 symbols: rejection-free mapping would bias; 256 % 62 bias is tiny
    -- but avoidable, so draw again for the top values
    local b = str_byte(bytes, i)
    while b >= 248 do b = str_byte(core.random(1)) end
    local j = b % 62 + 1
    out[i] = str_sub(NONCE_CHARS, j, j)
  end
  return tconcat(out)
end

local mac_mt = {}
mac_mt.__index = mac_mt
mac_mt.__tostring = function(self) return "xs2a.sign.mac (id=" .. self.id .. ")" end
mac_mt.__metatable = false

--- Paysera MAC signer (OAuth 2.0 MAC Tokens draft, hmac-sha-256).
-- @tparam table opts `id` (MAC id / client id), `key` (MAC key, secret),
--  `now` (function -> epoch seconds), `nonce` (function -> nonce string),
--  `ext` (table of extra ext parameters, encoded after body_hash).
-- @return signer with `signer:sign(req)` adding `Authorization`
function _M.mac(opts)
  if type(opts) ~= "table" then error("sign.mac: options table needed", 2) end
  if type(opts.id) ~= "string" or opts.id == "" then error("sign.mac: id must be a non-empty string", 2) end
  if type(opts.key) ~= "string" or opts.key == "" then error("sign.mac: key must be a non-empty string", 2) end
  local key = opts.key                       -- only this closure sees it
  local now, nonce_fn = opts.now or os_time, opts.nonce or random_nonce
  local extra = {}
  if opts.ext then
    for k, v in pairs(opts.ext) do extra[#extra + 1] = { tostring(k), tostring(v) } end
    tsort(extra, function(x, y) return x[1] < y[1] end)
  end
  local id = opts.id
  local function mac(normalized)
    return b64encode(core.hmac("sha256", key, normalized))
  end
  local self = { id = id }
  function self.sign(_, req)
    check_req(req)
    local scheme, host, port, target = parse_url(req.url)
    if not scheme then return nil, "sign.mac: request url is not absolute" end
    port = port or DEFAULT_PORT[scheme] or 443
    local ext = {}
    if req.body and req.body ~= "" then
      ext[1] = "body_hash=" .. urlencode(b64encode(digest("sha256", req.body)))
    end
    for _, kv in ipairs(extra) do ext[#ext + 1] = urlencode(kv[1]) .. "=" .. urlencode(kv[2]) end
    ext = tconcat(ext, "&")
    local ts = str_format("%d", now())
    local nonce = tostring(nonce_fn())
    if str_match(nonce, '["\\%c]') or nonce == "" then return nil, "sign.mac: invalid nonce" end
    local normalized = ts .. "\n" .. nonce .. "\n" .. str_upper(req.method or "GET") .. "\n" ..
      target .. "\n" .. host .. "\n" .. port .. "\n" .. ext .. "\n"
    local value = str_format('MAC id="%s", ts="%s", nonce="%s", mac="%s"', id, ts, nonce, mac(normalized))
    if ext ~= "" then value = value .. ', ext="' .. ext .. '"' end
    header_set(req.headers, "Authorization", value)
    return req
  end
  return setmetatable(self, mac_mt)
end

_M.header_get = header_value
_M.header_set = header_set

return _M
