--- Signature verification: Berlin Group signed requests (the bank's side,
-- for tests and the sandbox) and Georgian detached JWS on responses.
-- @module xs2a.sign.verify
local core = require "xs2a.core"
local json = require "xs2a.codec.json"
local headers_mod = require "xs2a.net.headers"
local date = require "xs2a.net.date"
local common = require "xs2a.sign.common"
local berlin = require "xs2a.sign.berlin"
local jws_mod = require "xs2a.sign.jws"

local type, ipairs, error = type, ipairs, error
local str_lower, str_gsub, str_match, str_gmatch = string.lower, string.gsub, string.match, string.gmatch
local tconcat = table.concat
local os_time = os.time
local b64decode, b64url_decode = core.b64decode, core.b64url_decode
local header_value = headers_mod.value
local check_digest, target_of = common.check_digest, common.target_of
local ALGORITHMS, CONDITIONAL = berlin.ALGORITHMS, berlin.CONDITIONAL
local JWS_ALGS, JWS_MID = jws_mod.ALGS, jws_mod.MID
local jws_value, sorted_psu_headers = jws_mod.value, jws_mod.sorted_psu_headers
local parse_sigt = date.parse_iso

local _M = {}

local function parse_signature_header(v)
  local p = {}
  for k, val in str_gmatch(v, '([%w]+)%s*=%s*"([^"]*)"') do p[k] = val end
  return p
end
--- Parses a Berlin Group `Signature` header into its parameters.
-- @tparam string v the header value (`keyId="...",algorithm="...",headers="...",signature="..."`)
-- @treturn table `{ keyId =, algorithm =, headers =, signature = }` (what is present)
-- @function parse_signature_header
_M.parse_signature_header = parse_signature_header

local function normalise_serial(s)
  return (str_gsub(str_lower(s or ""), "^0+(.)", "%1"))
end

-- True when cert_der chains (X509_verify_cert, dates checked, through the
-- untrusted `chain`) to an anchor of `trusted` (PEM/DER of a CA or of the very
-- signer certificate, or a list), and carries the pinned organisation
-- identifier when `org_id` is given. No anchor: false (fail closed).
local function trusted_by(cert_der, trusted, chain, org_id)
  if trusted == nil or (type(trusted) == "table" and trusted[1] == nil) then
    return false, "no trust anchor configured"
  end
  local ok, why = core.cert_verify(cert_der, { anchors = trusted, chain = chain, organization_identifier = org_id })
  if ok then return true end
  return false, (str_gsub(why or "", "^cert_verify: ", ""))
end

--- Verifies a Berlin Group signed request (the bank's side; for tests and
-- the sandbox).
-- @tparam table req `{ method, url, headers, body }`
-- @tparam table opts `cert` (trusted certificate or CA, PEM/DER, or a list;
--  required: without it nothing verifies); `organization_identifier` (pin the
--  signer); `algorithm` / `padding` overrides for labels such as "hs2019".
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
  local trusted, twhy = trusted_by(cert, opts.cert, nil, opts.organization_identifier)
  if not trusted then return false, "signing certificate is not trusted: " .. twhy end
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
      local target = target_of(req.url)
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
  local ph_text = b64url_decode(head)
  local ph = ph_text and json.decode(ph_text)
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
  if opts.organization_identifier and info.organization_identifier ~= opts.organization_identifier then
    return false, "signer organization identifier does not match"
  end
  local chain = {}
  for i = 2, #ph.x5c do
    local c = type(ph.x5c[i]) == "string" and b64decode(ph.x5c[i])
    if not c then return false, "x5c[" .. i .. "] is not base64" end
    chain[#chain + 1] = c
  end
  local trusted, twhy = trusted_by(cert, opts.cert, chain, opts.organization_identifier)
  if not trusted then return false, "signing certificate is not trusted: " .. twhy end
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

return _M
