--- Request signature verification (Berlin Group cavage signatures, the
-- Georgian detached JWS, Paysera MAC) and signing of Georgian responses.
-- Written against the specifications, independently of the client's C core,
-- on top of libcrypto through FFI (sandbox.crypto). See
-- ../shared/docs/xs2a-reference.md section 4.
local crypto = require "sandbox.crypto"
local der = require "sandbox.der"
local util = require "sandbox.util"
local checks = require "sandbox.checks"
local b64 = require "ngx.base64"

local ngx = ngx
local lower, upper, sub = string.lower, string.upper, string.sub
local concat = table.concat

local _M = {}

local SERVICE_ROLE = { AIS = "PSP_AI", PIS = "PSP_PI", PIIS = "PSP_IC" }
local ETSI_MID = "http://uri.etsi.org/19182/HttpHeaders"

local function invalid(detail)
  return 401, "SIGNATURE_INVALID", detail
end

local function missing(detail)
  return 401, "SIGNATURE_MISSING", detail
end

--- Checks the Digest header against the body. `allowed` limits the
-- algorithms (default SHA-256 and SHA-512).
-- @return nil when it matches, else status, code, detail
local function check_digest(ctx, allowed)
  local dh = ctx.headers["digest"]
  if not dh or dh == "" then return missing("header Digest is missing") end
  allowed = allowed or { ["SHA-256"] = "sha256", ["SHA-512"] = "sha512" }
  local seen = false
  for item in dh:gmatch("[^,]+") do
    local alg, value = item:match("^%s*([%w%-]+)=(%S+)%s*$")
    if alg then
      local h = allowed[upper(alg)]
      if h then
        seen = true
        local want = ngx.encode_base64(crypto.digest(h, ctx.body or ""))
        if value ~= want then return invalid("Digest does not match the body") end
      end
    end
  end
  if not seen then return invalid("Digest uses no supported algorithm") end
  return nil
end
_M.check_digest = check_digest

-- Splits a DN string into a sorted list of "TYPE=value" (percent-decoded,
-- case-folded, whitespace-trimmed), for an order-independent comparison.
local SHORT = { COMMONNAME = "CN", ORGANIZATIONNAME = "O", COUNTRYNAME = "C", ["2.5.4.97"] = "ORGANIZATIONIDENTIFIER" }
local function dn_key(dn)
  dn = util.unescape(dn)
  local parts = {}
  local cur = {}
  local i = 1
  while i <= #dn do
    local c = sub(dn, i, i)
    if c == "\\" and i < #dn then
      cur[#cur + 1] = sub(dn, i + 1, i + 1)
      i = i + 2
    else
      if c == "," or c == "+" or c == "/" then
        parts[#parts + 1] = concat(cur)
        cur = {}
      else
        cur[#cur + 1] = c
      end
      i = i + 1
    end
  end
  parts[#parts + 1] = concat(cur)
  local out = {}
  for _, p in ipairs(parts) do
    local t, v = p:match("^%s*([^=]-)%s*=%s*(.-)%s*$")
    if t then
      t = upper(t)
      out[#out + 1] = (SHORT[t] or t) .. "=" .. lower(v)
    end
  end
  table.sort(out)
  return concat(out, "\n")
end
_M.dn_key = dn_key

local function name_key(rdns)
  local out = {}
  for _, r in ipairs(rdns) do
    local t = upper(r.short or r.oid)
    out[#out + 1] = (SHORT[t] or t) .. "=" .. lower(r.value or "")
  end
  table.sort(out)
  return concat(out, "\n")
end

-- Parses a signer certificate and checks it: chains to the test CA (the
-- PEM text `ca_pem` the platform hands in), valid now, carries the role the
-- service needs, belongs to the QWAC's TPP.
-- The configuration's revocation and block lists apply to it as to the QWAC.
-- @return info, pkey, key kind; or nil, detail[, status, code] (status and
--   code when a list names it)
local function signer_cert(ctx, route, der_bytes, ca_pem)
  local info, err = der.parse_cert(der_bytes)
  if not info then return nil, "the signing certificate cannot be read (" .. err .. ")" end
  local x, xerr = crypto.x509_from_der(der_bytes)
  if not x then return nil, "the signing certificate cannot be read (" .. xerr .. ")" end
  local ok, reason = crypto.verify_chain(x, ca_pem or "")
  if not ok then return nil, "the signing certificate is not valid: " .. tostring(reason) end
  local lstatus, lcode, ldetail = checks.listed_certificate(ctx.cfg or {}, info.serial,
    checks.fingerprint(der_bytes), "signing certificate")
  if lstatus then return nil, ldetail, lstatus, lcode end
  local need = SERVICE_ROLE[route.service]
  if need and not info.roles[need] then
    return nil, "the signing certificate lacks the role " .. need
  end
  if ctx.tpp and ctx.tpp.org_id and info.org_id ~= ctx.tpp.org_id then
    return nil, "the signing certificate belongs to another organization than the QWAC"
  end
  local pkey, kind = crypto.public_key(x)
  if not pkey then return nil, "the signing certificate has no usable key" end
  return info, pkey, kind
end

-- name="value" pairs of a Signature / Authorization header (values quoted;
-- unquoted tokens accepted too).
local function params(s)
  local out = {}
  local pos = 1
  while pos <= #s do
    local k, v, nxt = s:match('^[%s,]*([%w_%-]+)%s*=%s*"([^"]*)"()', pos)
    if not k then
      k, v, nxt = s:match('^[%s,]*([%w_%-]+)%s*=%s*([^,%s"]*)()', pos)
    end
    if not k then break end
    out[lower(k)] = v
    pos = nxt
  end
  return out
end
_M.params = params

local function b64decode_loose(s)
  if type(s) ~= "string" then return nil end
  s = s:gsub("%-%-%-%-%-[^%-]+%-%-%-%-%-", ""):gsub("%s", "")
  if s == "" then return nil end
  return ngx.decode_base64(s)
end

-- algorithm name -> key kind ("rsa" | "ec" | nil = any), hash, padding
local BERLIN_ALGS = {
  ["rsa-sha256"] = { "rsa", "sha256", "pkcs1" },
  ["rsa-sha512"] = { "rsa", "sha512", "pkcs1" },
  ["rsa-pss-sha256"] = { "rsa", "sha256", "pss" },
  ["rsa-pss-sha512"] = { "rsa", "sha512", "pss" },
  ["rsassa-pss-sha256"] = { "rsa", "sha256", "pss" },
  ["rsassa-pss-sha512"] = { "rsa", "sha512", "pss" },
  ["ecdsa-sha256"] = { "ec", "sha256" },
  ["ecdsa-sha512"] = { "ec", "sha512" },
  ["sha256withrsa"] = { "rsa", "sha256", "pkcs1" },
  ["sha512withrsa"] = { "rsa", "sha512", "pkcs1" },
  ["sha256withecdsa"] = { "ec", "sha256" },
  ["sha512withecdsa"] = { "ec", "sha512" },
  ["hs2019"] = { nil, nil, nil },
}

local function verify_with(pkey, kind, data, sig, hash, padding)
  if kind == "ec" then
    if crypto.verify(pkey, data, sig, { hash = hash }) then return true end
    local d = der.ecdsa_raw_to_der(sig)        -- tolerate raw r||s
    return d ~= nil and crypto.verify(pkey, data, d, { hash = hash }) == true
  end
  return crypto.verify(pkey, data, sig, { hash = hash, padding = padding }) == true
end

-- "name: value" of one signed header (lower-case name) for a signing
-- string, the pseudo-header (request-target) included; nil when not sent.
local function signed_line(ctx, h, n)
  local v
  if n == "(request-target)" then
    v = lower(ctx.method) .. " " .. ctx.request_uri
  else
    v = h[n]
  end
  if v == nil then return nil end
  return n .. ": " .. v
end

local function verify_berlin(ctx, route, ca_pem)
  local h = ctx.headers
  local sig_h, cert_h = h["signature"], h["tpp-signature-certificate"]
  if not sig_h or sig_h == "" then return missing("header Signature is missing") end
  if not h["digest"] or h["digest"] == "" then return missing("header Digest is missing") end
  if not cert_h or cert_h == "" then return missing("header TPP-Signature-Certificate is missing") end
  local status, code, detail = check_digest(ctx)
  if status then return status, code, detail end

  local p = params(sig_h)
  if not p.keyid or not p.signature or not p.headers then
    return invalid("Signature needs keyId, headers and signature")
  end
  local names = {}
  local listed = {}
  for n in p.headers:gmatch("%S+") do
    n = lower(n)
    names[#names + 1] = n
    listed[n] = true
  end
  if not listed["digest"] then return invalid("the signed headers must include digest") end
  if not listed["x-request-id"] then return invalid("the signed headers must include x-request-id") end
  for _, n in ipairs{ "psu-id", "psu-corporate-id", "tpp-redirect-uri" } do
    if h[n] ~= nil and not listed[n] then return invalid("the signed headers must include " .. n) end
  end
  local lines = {}
  for i, n in ipairs(names) do
    local line = signed_line(ctx, h, n)
    if not line then return invalid("signed header " .. n .. " is not in the request") end
    lines[i] = line
  end
  local signing_string = concat(lines, "\n")

  local cert_der = b64decode_loose(cert_h)
  if not cert_der then return invalid("TPP-Signature-Certificate is not base64") end
  local info, pkey, kind, lcode = signer_cert(ctx, route, cert_der, ca_pem)
  if not info then
    if kind then return kind, lcode, pkey end
    return invalid(pkey)
  end

  -- keyId: SN=<hex serial>,CA=<issuer DN>; a bare serial is accepted too
  local keyid = p.keyid
  local sn, ca = keyid:match("^%s*SN=([^,]*),%s*CA=(.*)$")
  if not sn then sn = keyid:match("^%s*SN=(.*)$") or keyid end
  local want_sn = upper(sn):gsub("^%s+", ""):gsub("%s+$", ""):gsub("^0+", "")
  if want_sn == "" then want_sn = "0" end
  if want_sn ~= info.serial then return invalid("keyId serial does not match the certificate") end
  if ca and dn_key(ca) ~= name_key(info.issuer) then
    return invalid("keyId CA does not match the certificate issuer")
  end

  local alg = lower(p.algorithm or "")
  local spec = BERLIN_ALGS[alg]
  if alg ~= "" and not spec then return invalid("unsupported algorithm " .. alg) end
  local sig = ngx.decode_base64(p.signature)
  if not sig then return invalid("signature is not base64") end
  local key_kind = (kind == "rsa-pss") and "rsa" or kind
  if spec and spec[1] and spec[1] ~= key_kind then
    return invalid("algorithm " .. alg .. " does not fit the certificate key")
  end
  local ok
  if spec and spec[2] then
    ok = verify_with(pkey, key_kind, signing_string, sig, spec[2], spec[3])
  else
    -- hs2019 or no algorithm: what the key allows
    if key_kind == "rsa" then
      ok = verify_with(pkey, "rsa", signing_string, sig, "sha512", "pss")
        or verify_with(pkey, "rsa", signing_string, sig, "sha256", "pss")
        or verify_with(pkey, "rsa", signing_string, sig, "sha256", "pkcs1")
        or verify_with(pkey, "rsa", signing_string, sig, "sha512", "pkcs1")
    else
      ok = verify_with(pkey, key_kind, signing_string, sig, "sha256")
        or verify_with(pkey, key_kind, signing_string, sig, "sha512")
    end
  end
  if not ok then return invalid("signature does not verify") end
  ctx.signer = { org_id = info.org_id, serial = info.serial, scheme = "berlin" }
  return nil
end

local JWS_ALGS = {
  RS256 = { "rsa", "sha256", "pkcs1" }, RS384 = { "rsa", "sha384", "pkcs1" }, RS512 = { "rsa", "sha512", "pkcs1" },
  PS256 = { "rsa", "sha256", "pss" }, PS384 = { "rsa", "sha384", "pss" }, PS512 = { "rsa", "sha512", "pss" },
  ES256 = { "ec", "sha256", nil, 32 }, ES384 = { "ec", "sha384", nil, 48 }, ES512 = { "ec", "sha512", nil, 66 },
}
local KNOWN_CRIT = { b64 = true, sigT = true, sigD = true }
-- headers the Georgian JWS rule covers when the request sends them (the
-- psu-* headers are checked apart)
local JWS_COVERED = { "host", "content-type", "content-length" }

local function parse_sigt(s)
  if type(s) ~= "string" then return nil end
  local date, hh, mm, ss = s:match("^(%d%d%d%d%-%d%d%-%d%d)T(%d%d):(%d%d):(%d%d)")
  if not date then return nil end
  local rest = s:sub(20):gsub("^%.%d+", "")
  if rest ~= "Z" and rest ~= "+00:00" then return nil end
  local day = util.parse_date(date)
  if not day then return nil end
  return day + tonumber(hh) * 3600 + tonumber(mm) * 60 + tonumber(ss)
end
_M.parse_sigt = parse_sigt

local function verify_jws(ctx, route, ca_pem)
  local h = ctx.headers
  local js = h["x-jws-signature"]
  if not js or js == "" then return missing("header x-jws-signature is missing") end
  local ph, sig_b64 = js:match("^([%w_%-]+)%.%.([%w_%-]+)$")
  if not ph then return invalid("x-jws-signature must be a detached JWS (header..signature)") end
  local header_json = b64.decode_base64url(ph)
  local hdr = header_json and util.json_decode(header_json)
  if type(hdr) ~= "table" then return invalid("the JWS protected header is not JSON") end
  local spec = JWS_ALGS[hdr.alg]
  if not spec then return invalid("unsupported JWS alg " .. tostring(hdr.alg)) end
  if hdr.b64 ~= false then return invalid("the JWS must use b64=false") end
  if type(hdr.crit) ~= "table" then return invalid("the JWS crit list is missing") end
  local crit = {}
  for _, c in ipairs(hdr.crit) do
    if not KNOWN_CRIT[c] then return invalid("unknown crit entry " .. tostring(c)) end
    crit[c] = true
  end
  if not crit.b64 then return invalid("crit must list b64") end
  local t = parse_sigt(hdr.sigT)
  if not t then return invalid("sigT is missing or malformed") end
  local sc = ctx.cfg.signing or {}
  local now = ngx.time()
  if now - t > (tonumber(sc.sigt_past) or 300) or t - now > (tonumber(sc.sigt_future) or 30) then
    return invalid("sigT is outside the accepted time window")
  end
  local sigd = hdr.sigD
  if type(sigd) ~= "table" or type(sigd.pars) ~= "table" then return invalid("sigD.pars is missing") end
  if sigd.mId ~= nil and sigd.mId ~= ETSI_MID then return invalid("sigD.mId must be " .. ETSI_MID) end
  local listed, lines = {}, {}
  for i, n in ipairs(sigd.pars) do
    if type(n) ~= "string" then return invalid("sigD.pars must hold header names") end
    n = lower(n)
    listed[n] = true
    local line = signed_line(ctx, h, n)
    if not line then return invalid("signed header " .. n .. " is not in the request") end
    lines[i] = line
  end
  for _, need in ipairs{ "(request-target)", "x-request-id", "digest" } do
    if not listed[need] then return invalid("sigD.pars must include " .. need) end
  end
  -- strict rule (xs2a-reference 4.2): every header of the covered set that
  -- the request carries is signed; an unsigned Content-Length could be
  -- changed on the way without breaking the signature
  for _, name in ipairs(sc.jws_strict == false and {} or JWS_COVERED) do
    if h[name] ~= nil and not listed[name] then
      return invalid("sigD.pars must include " .. name .. " (the request sends it)")
    end
  end
  for name in pairs(h) do
    if sub(name, 1, 4) == "psu-" and not listed[name] then
      return invalid("sigD.pars must include " .. name)
    end
  end
  local status, code, detail = check_digest(ctx,
    { ["SHA-256"] = "sha256", ["SHA-384"] = "sha384", ["SHA-512"] = "sha512" })
  if status then return status, code, detail end

  if type(hdr.x5c) ~= "table" or type(hdr.x5c[1]) ~= "string" then return invalid("x5c is missing") end
  local cert_der = ngx.decode_base64(hdr.x5c[1]) or b64.decode_base64url(hdr.x5c[1])
  if not cert_der then return invalid("x5c[0] is not base64") end
  local info, pkey, kind, lcode = signer_cert(ctx, route, cert_der, ca_pem)
  if not info then
    if kind then return kind, lcode, pkey end
    return invalid(pkey)
  end
  local key_kind = (kind == "rsa-pss") and "rsa" or kind
  if spec[1] ~= key_kind then return invalid("alg " .. hdr.alg .. " does not fit the certificate key") end
  local sig = b64.decode_base64url(sig_b64)
  if not sig then return invalid("the JWS signature is not base64url") end
  if spec[1] == "ec" then
    if #sig ~= 2 * spec[4] then return invalid("an " .. hdr.alg .. " signature must be raw r||s") end
    sig = der.ecdsa_raw_to_der(sig)
  end
  local input = ph .. "." .. concat(lines, "\n")
  if not crypto.verify(pkey, input, sig, { hash = spec[2], padding = spec[3] }) then
    return invalid("signature does not verify")
  end
  ctx.signer = { org_id = info.org_id, serial = info.serial, scheme = "jws" }
  return nil
end

local function verify_mac(ctx)
  local auth = ctx.headers["authorization"]
  if not auth or not auth:match("^%s*MAC%s") then return missing("Authorization: MAC is missing") end
  local p = params(auth:gsub("^%s*MAC%s+", ""))
  if not (p.id and p.ts and p.nonce and p.mac) then return invalid("MAC needs id, ts, nonce and mac") end
  local mc = ctx.cfg.mac or {}
  if type(mc.key) ~= "string" or p.id ~= mc.id then return invalid("unknown MAC id") end
  local ts = tonumber(p.ts)
  local window = tonumber((ctx.cfg.signing or {}).mac_window) or 300
  if not ts or math.abs(ngx.time() - ts) > window then return invalid("MAC ts is outside the accepted window") end
  if p.nonce == "" or p.nonce:find('[^\32-\126]') or p.nonce:find('["\\]') then
    return invalid("MAC nonce has invalid characters")
  end
  local ext = p.ext or ""
  local body = ctx.body or ""
  local body_hash
  for k, v in ext:gmatch("([^&=]+)=([^&]*)") do
    if k == "body_hash" then body_hash = util.unescape(v) end
  end
  if body ~= "" or body_hash then
    if not body_hash then return invalid("MAC ext must carry body_hash for a request with a body") end
    if body_hash ~= ngx.encode_base64(crypto.sha256(body)) then
      return invalid("MAC body_hash does not match the body")
    end
  end
  local host_h = ctx.headers["host"] or ("127.0.0.1:" .. ctx.port)
  local host, port = host_h:match("^%[?([^%]]-)%]?:(%d+)$")
  if not host then host, port = host_h, "443" end
  local normalized = concat({ p.ts, p.nonce, upper(ctx.method), ctx.request_uri, lower(host), port, ext }, "\n") .. "\n"
  local want = ngx.encode_base64(crypto.hmac("sha256", mc.key, normalized))
  if not crypto.equal(want, p.mac) then return invalid("MAC does not verify") end
  local fresh = ngx.shared.sandbox_limits:add("mac:n:" .. p.id .. ":" .. p.nonce, true, window * 2 + 1)
  if not fresh then return invalid("MAC nonce was already used") end
  ctx.signer = { mac_id = p.id, scheme = "mac" }
  return nil
end

--- Verifies the request signature with the variant's scheme.
-- @param settings the platform's start settings (only `ca_pem`, the trust
--   anchor for signing certificates, is read)
-- @return nil when valid, else status, code, detail
function _M.verify(ctx, route, settings)
  local scheme = (ctx.cfg.signing or {}).scheme or "none"
  local ca_pem = settings and settings.ca_pem
  if scheme == "berlin" then return verify_berlin(ctx, route, ca_pem) end
  if scheme == "jws" then return verify_jws(ctx, route, ca_pem) end
  if scheme == "mac" then return verify_mac(ctx, route) end
  if scheme == "none" then return nil end
  return 500, "INTERNAL_SERVER_ERROR", "unknown signing scheme " .. tostring(scheme)
end

-- the bank's seal, loaded once per worker
local seal

local function load_seal(settings)
  if seal then return seal end
  if not settings.seal_key_pem or not settings.seal_pem then return nil, "no aspsp-seal in the PKI" end
  local key, err = crypto.private_key_from_pem(settings.seal_key_pem)
  if not key then return nil, err end
  local cert_der = der.pem_to_der(settings.seal_pem, ngx.decode_base64)
  if not cert_der then return nil, "aspsp-seal.pem is not a certificate" end
  seal = { key = key, kind = crypto.key_kind(key), x5c = ngx.encode_base64(cert_der) }
  return seal
end

-- DER ECDSA signature to raw r||s of n bytes each
local function ecdsa_der_to_raw(sig, n)
  local _, a, b = der.tlv(sig, 1, #sig)
  local _, ra, rb, nxt = der.tlv(sig, a, b)
  local _, sa, sb = der.tlv(sig, nxt, b)
  local function fix(x)
    x = x:gsub("^%z+", "")
    return string.rep("\0", n - #x) .. x
  end
  return fix(sub(sig, ra, rb)) .. fix(sub(sig, sa, sb))
end

--- Adds Digest and x-jws-signature to a rendered response (in place), signed
-- with the bank's seal: (response-status), x-request-id, content-type,
-- content-length (those present), digest.
function _M.sign_response(_, status, headers, body, settings)
  local s, err = load_seal(settings)
  if not s then error(err) end
  local digest = "SHA-256=" .. ngx.encode_base64(crypto.sha256(body or ""))
  headers["Digest"] = digest
  local lines, pars = { "(response-status): " .. status }, { "(response-status)" }
  local function add(name)
    for k, v in pairs(headers) do
      if lower(k) == name then
        pars[#pars + 1] = name
        lines[#lines + 1] = name .. ": " .. v
        return
      end
    end
  end
  if status ~= 204 and status ~= 304 then headers["Content-Length"] = tostring(#(body or "")) end
  add("x-request-id")
  add("content-type")
  add("content-length")
  add("digest")
  local alg = s.kind == "ec" and "ES256" or "RS256"
  local protected = {
    alg = alg, b64 = false, x5c = util.array{ s.x5c },
    crit = util.array{ "sigT", "sigD", "b64" },
    sigT = util.iso_datetime(ngx.time()),
    sigD = { pars = util.array(pars), mId = ETSI_MID },
  }
  local ph = b64.encode_base64url(assert(util.json_encode(protected)))
  local sig = crypto.sign(s.key, ph .. "." .. concat(lines, "\n"), { hash = "sha256", padding = "pkcs1" })
  if not sig then error("signing failed") end
  if s.kind == "ec" then sig = ecdsa_der_to_raw(sig, 32) end
  headers["x-jws-signature"] = ph .. ".." .. b64.encode_base64url(sig)
end

return _M
