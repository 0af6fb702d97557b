--- The Berlin Group application-layer signature (draft-cavage HTTP
-- Signatures as profiled by the NextGenPSD2 Implementation Guidelines) with a
-- QSealC: `Digest`, `Signature`, `TPP-Signature-Certificate`.
--
--     local signer = require("xs2a.sign.berlin").new(qseal)
--     local req, err = signer:sign{ method = "POST", url = url, headers = headers, body = body }
--
-- A signer keeps the identity handle and the facts derived from its
-- certificate (base64 DER, keyId); it never keeps a request body.
-- @module xs2a.sign.berlin
local core = require "xs2a.core"
local headers_mod = require "xs2a.net.headers"
local date = require "xs2a.net.date"
local common = require "xs2a.sign.common"

local type, ipairs, pairs, tostring, setmetatable = type, ipairs, pairs, tostring, setmetatable
local str_lower, str_format, str_gsub = string.lower, string.format, string.gsub
local tconcat = table.concat
local os_time = os.time
local b64encode = core.b64encode
local header_value, header_set = headers_mod.value, headers_mod.set
local DIGESTS, digest_value, check_identity, check_req, target_of =
  common.DIGESTS, common.digest_value, common.check_identity, common.check_req, common.target_of

local _M = {}

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
function _M.new(qseal, opts)
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
  local key_id = "SN=" .. serial .. ",CA=" .. str_gsub(info.issuer, " ", "%%20")
  -- the fixed header list (no extra headers) is signed by the C core in one
  -- call; these flags tell it the digest, the hash and the padding
  local fast = #extra == 0 and ((dig == "SHA-512" and 1 or 0) + (hash == "sha512" and 2 or 0)
    + (not ec and padding == "pss" and 4 or 0)) or nil
  return setmetatable({
    identity = qseal,
    digest = dig,
    algorithm = label,
    key_id = key_id,
    sig_prefix = str_format('keyId="%s",algorithm="%s",headers="', key_id, label),
    certificate = b64encode(qseal:cert_der()),
    sign_opts = { hash = hash, padding = not ec and padding or nil, ec_format = ec and "der" or nil },
    extra = extra,
    fast = fast,
    now = opts.now or os_time,
  }, berlin_mt)
end

-- The signer looks headers up through one index made per request, in a
-- single pass over the table: lowercase name -> the key it is stored under,
-- or false when the name is there in two spellings (then the general,
-- scanning helpers of net.headers decide, as everywhere else).
local function index_of(headers)
  local idx = {}
  for k in pairs(headers) do
    if type(k) == "string" then
      local l = str_lower(k)
      if idx[l] == nil then idx[l] = k else idx[l] = false end
    end
  end
  return idx
end

local function get(headers, idx, l)
  local k = idx[l]
  if k == nil then return nil end
  if k == false then return header_value(headers, l) end
  local v = headers[k]
  if type(v) == "table" then return tconcat(v, ", ") end
  return tostring(v)
end

local function set(headers, idx, name, l, value)
  local k = idx[l]
  if k == false then
    header_set(headers, name, value)
  else
    if k ~= nil and k ~= name then headers[k] = nil end
    headers[name] = value
  end
  idx[l] = name
end

--- Signs a request in place.
-- @tparam table req `{ method, url, headers, body }`
-- @treturn table|nil req
-- @treturn string error (missing X-Request-ID, signing failure)
function berlin_mt:sign(req)
  check_req(req)
  local headers = req.headers
  local fast = self.fast
  if fast then
    -- true: signed; false: a header table the general path below must read
    -- (a metatable, a signed name in two spellings, a value that is not a
    -- string, no X-Request-ID); nil, err: signing failed
    local ok, err = self.identity:_sign_berlin(headers, req.body, fast, self.sig_prefix, self.certificate)
    if ok then return req end
    if ok == nil then return nil, err end
  end
  local idx = index_of(headers)
  if not get(headers, idx, "x-request-id") then
    return nil, "sign.berlin: the request has no X-Request-ID header"
  end
  set(headers, idx, "Digest", "digest", digest_value(self.digest, req.body))
  local names = { "digest", "x-request-id" }
  for i = 1, #CONDITIONAL do
    local h = CONDITIONAL[i]
    if idx[h] ~= nil and get(headers, idx, h) then names[#names + 1] = h end
  end
  local extra = self.extra
  for i = 1, #extra do
    local h = extra[i]
    if h == "date" and not get(headers, idx, "date") then
      set(headers, idx, "Date", "date", date.http(self.now()))
    end
    local dup = false
    for _, n in ipairs(names) do if n == h then dup = true end end
    if not dup then names[#names + 1] = h end
  end
  local lines = {}
  for i = 1, #names do
    local h = names[i]
    local v
    if h == "(request-target)" then
      local target = target_of(req.url)
      if not target then return nil, "sign.berlin: request url is not absolute" end
      v = str_lower(req.method or "GET") .. " " .. target
    else
      v = get(headers, idx, h)
      if v == nil then return nil, "sign.berlin: header " .. h .. " to sign is missing" end
    end
    lines[i] = h .. ": " .. v
  end
  local sig, err = self.identity:sign(tconcat(lines, "\n"), self.sign_opts)
  if not sig then return nil, err end
  set(headers, idx, "Signature", "signature", self.sig_prefix .. tconcat(names, " ") .. '",signature="'
    .. b64encode(sig) .. '"')
  set(headers, idx, "TPP-Signature-Certificate", "tpp-signature-certificate", self.certificate)
  return req
end

_M.ALGORITHMS = ALGORITHMS
_M.CONDITIONAL = CONDITIONAL

return _M
