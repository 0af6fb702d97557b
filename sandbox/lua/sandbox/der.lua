--- A small DER reader for X.509 certificates: enough to read the serial,
-- the issuer and subject names, the validity, the organizationIdentifier and
-- the PSD2 QCStatement (ETSI TS 119 495). Every read is bounds-checked; any
-- malformed input gives `nil, message`, never an error.
local byte, sub, format, concat = string.byte, string.sub, string.format, table.concat
local floor = math.floor

local _M = {}

local OID_ORG_ID = "2.5.4.97"
local OID_QC_STATEMENTS = "1.3.6.1.5.5.7.1.3"
local OID_PSD2 = "0.4.0.19495.2"

local ROLE_OIDS = {
  ["0.4.0.19495.1.1"] = "PSP_AS",
  ["0.4.0.19495.1.2"] = "PSP_PI",
  ["0.4.0.19495.1.3"] = "PSP_AI",
  ["0.4.0.19495.1.4"] = "PSP_IC",
}

local NAME_OIDS = {
  ["2.5.4.3"] = "CN", ["2.5.4.6"] = "C", ["2.5.4.7"] = "L", ["2.5.4.8"] = "ST",
  ["2.5.4.10"] = "O", ["2.5.4.11"] = "OU", ["2.5.4.97"] = "organizationIdentifier",
  ["2.5.4.5"] = "serialNumber", ["1.2.840.113549.1.9.1"] = "emailAddress",
  ["0.9.2342.19200300.100.1.25"] = "DC", ["0.9.2342.19200300.100.1.1"] = "UID",
  ["2.5.4.9"] = "street",
}
_M.NAME_OIDS = NAME_OIDS

local function fail(msg)
  error({ der = msg }, 0)
end

-- Reads one TLV at `pos` (1-based) that must end at or before `limit`.
-- Returns tag, first content index, last content index, next position.
local function tlv(s, pos, limit)
  if pos + 1 > limit then fail("truncated element") end
  local tag = byte(s, pos)
  if tag % 32 == 31 then fail("multi-byte tags are not supported") end
  local l = byte(s, pos + 1)
  local p = pos + 2
  local len
  if l < 0x80 then
    len = l
  elseif l == 0x80 then
    fail("indefinite length is not DER")
  else
    local n = l - 0x80
    if n > 4 then fail("length too long") end
    if p + n - 1 > limit then fail("truncated length") end
    if byte(s, p) == 0 then fail("length not in its shortest form") end
    len = 0
    for i = 0, n - 1 do len = len * 256 + byte(s, p + i) end
    if len < 0x80 then fail("length not in its shortest form") end
    p = p + n
  end
  local last = p + len - 1
  if last > limit then fail("element longer than its container") end
  return tag, p, last, last + 1
end
_M.tlv = tlv

local function expect(s, pos, limit, want, what)
  local tag, a, b, nxt = tlv(s, pos, limit)
  if tag ~= want then fail(format("%s: expected tag 0x%02x, got 0x%02x", what, want, tag)) end
  return a, b, nxt
end

local function oid(s, a, b)
  if b < a then fail("empty OID") end
  local parts = {}
  local v, i = 0, a
  local started = false
  while i <= b do
    local c = byte(s, i)
    v = v * 128 + c % 128
    if v > 2^52 then fail("OID arc too large") end
    started = true
    if c < 128 then
      parts[#parts + 1] = v
      v, started = 0, false
    end
    i = i + 1
  end
  if started then fail("truncated OID") end
  local x = parts[1]
  local out
  if x < 40 then out = { "0", format("%d", x) }
  elseif x < 80 then out = { "1", format("%d", x - 40) }
  else out = { "2", format("%d", x - 80) } end
  for k = 2, #parts do out[#out + 1] = format("%d", parts[k]) end
  return concat(out, ".")
end

-- Directory string types we can read as text.
local STRING_TAGS = { [0x0c] = true, [0x13] = true, [0x16] = true, [0x14] = true, [0x1a] = true }

local function bmp_to_utf8(s)
  local out = {}
  for i = 1, #s - 1, 2 do
    local cp = byte(s, i) * 256 + byte(s, i + 1)
    if cp < 0x80 then out[#out + 1] = string.char(cp)
    elseif cp < 0x800 then out[#out + 1] = string.char(0xC0 + floor(cp / 64), 0x80 + cp % 64)
    else
      out[#out + 1] = string.char(0xE0 + floor(cp / 4096), 0x80 + floor(cp / 64) % 64, 0x80 + cp % 64)
    end
  end
  return concat(out)
end

local function text(s, a, b, tag)
  if tag == 0x1e then return bmp_to_utf8(sub(s, a, b)) end
  if not STRING_TAGS[tag] then fail(format("not a string (tag 0x%02x)", tag)) end
  return sub(s, a, b)
end

-- Name ::= SEQUENCE OF RelativeDistinguishedName (SET OF AttributeTypeAndValue)
local function name(s, a, b)
  local rdns = {}
  local pos = a
  while pos <= b do
    local sa, sb, nxt = expect(s, pos, b, 0x31, "RDN")
    local p = sa
    while p <= sb do
      local ta, tb, n2 = expect(s, p, sb, 0x30, "attribute")
      local oa, ob, p3 = expect(s, ta, tb, 0x06, "attribute type")
      local vtag, va, vb = tlv(s, p3, tb)
      local ok, value = pcall(text, s, va, vb, vtag)
      local o = oid(s, oa, ob)
      rdns[#rdns + 1] = { oid = o, short = NAME_OIDS[o], value = ok and value or nil,
        raw = sub(s, va, vb), tag = vtag }
      p = n2
    end
    pos = nxt
  end
  return rdns
end

local function time(s, a, b, tag)
  local t = sub(s, a, b)
  local y, rest
  if tag == 0x17 then           -- UTCTime YYMMDDHHMMSSZ
    local yy = tonumber(t:sub(1, 2))
    if not yy then fail("bad UTCTime") end
    y = yy < 50 and 2000 + yy or 1900 + yy
    rest = t:sub(3)
  elseif tag == 0x18 then       -- GeneralizedTime YYYYMMDDHHMMSSZ
    y = tonumber(t:sub(1, 4))
    rest = t:sub(5)
  else
    fail("bad time tag")
  end
  local mo, d, h, mi, se = rest:match("^(%d%d)(%d%d)(%d%d)(%d%d)(%d%d)Z$")
  if not (y and mo) then fail("bad time") end
  mo, d, h, mi, se = tonumber(mo), tonumber(d), tonumber(h), tonumber(mi), tonumber(se)
  local yy = mo <= 2 and y - 1 or y
  local era = floor(yy / 400)
  local yoe = yy - era * 400
  local doy = floor((153 * ((mo + 9) % 12) + 2) / 5) + d - 1
  local days = era * 146097 + yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy - 719468
  return days * 86400 + h * 3600 + mi * 60 + se
end

local function hex(s)
  return (s:gsub(".", function(c) return format("%02X", byte(c)) end))
end
_M.hex = hex

-- PSD2 statement: SEQUENCE { rolesOfPSP SEQUENCE OF SEQUENCE { OID, UTF8String },
--                           nCAName UTF8String, nCAId UTF8String }
-- ETSI TS 119 495 defines a role by its OID; roleOfPspName is a label only and is
-- never believed: a name that disagrees with its OID changes nothing. Unknown
-- OIDs are skipped, a repeated role counts once; anything malformed fails.
local function psd2_statement(s, a, b, out)
  local sa, sb = expect(s, a, b, 0x30, "PSD2 QcType")
  local ra, rb, p = expect(s, sa, sb, 0x30, "rolesOfPSP")
  local q = ra
  while q <= rb do
    local ea, eb, nq = expect(s, q, rb, 0x30, "roleOfPSP")
    local oa, ob, p2 = expect(s, ea, eb, 0x06, "roleOfPspOid")
    local role = ROLE_OIDS[oid(s, oa, ob)]
    if p2 <= eb then
      local ntag, na, nb, p3 = tlv(s, p2, eb)
      text(s, na, nb, ntag)                     -- must be a string, but says nothing
      if p3 <= eb then fail("roleOfPSP: trailing data") end
    end
    if role and not out.roles[role] then
      out.roles[role] = true
      out.role_list[#out.role_list + 1] = role
    end
    q = nq
  end
  local ntag, na, nb, p3 = tlv(s, p, sb)
  out.nca_name = text(s, na, nb, ntag)
  local itag, ia, ib = tlv(s, p3, sb)
  out.nca_id = text(s, ia, ib, itag)
end

local function qc_statements(s, a, b, out)
  local sa, sb = expect(s, a, b, 0x30, "QCStatements")
  local p = sa
  while p <= sb do
    local ea, eb, nxt = expect(s, p, sb, 0x30, "QCStatement")
    local oa, ob, p2 = expect(s, ea, eb, 0x06, "statementId")
    if oid(s, oa, ob) == OID_PSD2 then
      if out.psd2 then fail("two PSD2 statements") end
      psd2_statement(s, p2, eb, out)
      out.psd2 = true
    end
    p = nxt
  end
end

local function parse(der)
  local n = #der
  local ca, cb = expect(der, 1, n, 0x30, "Certificate")
  local ta, tb = expect(der, ca, cb, 0x30, "TBSCertificate")
  local p = ta
  local tag, a, b, nxt = tlv(der, p, tb)
  local out = { roles = {}, role_list = {} }
  if tag == 0xa0 then            -- [0] version
    p = nxt
    tag, a, b, nxt = tlv(der, p, tb)
  end
  if tag ~= 0x02 then fail("serial: expected INTEGER") end
  local serial = sub(der, a, b)
  out.serial_der = serial
  local shex = hex(serial):gsub("^0+", "")
  out.serial = shex == "" and "0" or shex
  p = nxt
  nxt = select(3, expect(der, p, tb, 0x30, "signature algorithm"))
  p = nxt
  a, b, nxt = expect(der, p, tb, 0x30, "issuer")
  out.issuer = name(der, a, b)
  out.issuer_der = sub(der, p, b)
  p = nxt
  a, b, nxt = expect(der, p, tb, 0x30, "validity")
  do
    local t1, a1, b1, n1 = tlv(der, a, b)
    out.not_before = time(der, a1, b1, t1)
    local t2, a2, b2 = tlv(der, n1, b)
    out.not_after = time(der, a2, b2, t2)
  end
  p = nxt
  a, b, nxt = expect(der, p, tb, 0x30, "subject")
  out.subject = name(der, a, b)
  p = nxt
  nxt = select(3, expect(der, p, tb, 0x30, "subjectPublicKeyInfo"))
  p = nxt
  while p <= tb do
    tag, a, b, nxt = tlv(der, p, tb)
    if tag == 0xa3 then          -- [3] extensions
      local ea, eb = expect(der, a, b, 0x30, "Extensions")
      local q = ea
      while q <= eb do
        local xa, xb, nq = expect(der, q, eb, 0x30, "Extension")
        local oa, ob, q2 = expect(der, xa, xb, 0x06, "extnID")
        local ext_oid = oid(der, oa, ob)
        local vt, va, vb, q3 = tlv(der, q2, xb)
        if vt == 0x01 then vt, va, vb = tlv(der, q3, xb) end   -- critical
        if vt ~= 0x04 then fail("extnValue: expected OCTET STRING") end
        if ext_oid == OID_QC_STATEMENTS then qc_statements(der, va, vb, out) end
        q = nq
      end
    end
    p = nxt
  end
  for _, rdn in ipairs(out.subject) do
    if rdn.oid == OID_ORG_ID then out.org_id = rdn.value end
  end
  return out
end

--- Parses a DER certificate.
-- @return table { serial (upper-case hex, no leading zeros), issuer, subject
--   (lists of { oid, short, value }), not_before, not_after (unix times),
--   org_id, roles (set), role_list, nca_name, nca_id, psd2 }, or nil, message
function _M.parse_cert(der)
  if type(der) ~= "string" or #der < 2 then return nil, "certificate: empty" end
  local ok, res = pcall(parse, der)
  if ok then return res end
  if type(res) == "table" and res.der then return nil, "certificate: " .. res.der end
  return nil, "certificate: malformed (" .. tostring(res) .. ")"
end

--- A name list as a one-line string in RFC 2253 order (most specific first).
function _M.name_string(rdns)
  local parts = {}
  for i = #rdns, 1, -1 do
    local r = rdns[i]
    parts[#parts + 1] = (r.short or r.oid) .. "=" .. (r.value or "#" .. hex(r.raw))
  end
  return concat(parts, ",")
end

--- PEM (first certificate) to DER; nil when there is no PEM block.
function _M.pem_to_der(pem, decode_base64)
  local body = pem:match("%-%-%-%-%-BEGIN CERTIFICATE%-%-%-%-%-(.-)%-%-%-%-%-END CERTIFICATE%-%-%-%-%-")
  if not body then return nil end
  return decode_base64((body:gsub("%s", "")))
end

--- Encodes a raw r||s ECDSA signature as DER (SEQUENCE of two INTEGERs).
-- @return DER string, or nil when the length is odd or zero
function _M.ecdsa_raw_to_der(raw)
  local n = #raw
  if n == 0 or n % 2 ~= 0 or n > 264 then return nil end
  local function int(x)
    x = x:gsub("^%z+", "")
    if x == "" then x = "\0" end
    if byte(x, 1) >= 0x80 then x = "\0" .. x end
    return "\2" .. string.char(#x) .. x
  end
  local body = int(sub(raw, 1, n / 2)) .. int(sub(raw, n / 2 + 1))
  if #body < 128 then return "\48" .. string.char(#body) .. body end
  return "\48\129" .. string.char(#body) .. body
end

return _M
