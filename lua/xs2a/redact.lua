--- Redaction of what reaches logs and error messages: secret headers,
-- secret body fields, account numbers.
-- @module xs2a.redact
local url = require "xs2a.net.url"
local json = require "xs2a.codec.json"

local type, pairs, ipairs, tostring, getmetatable, setmetatable = type, pairs, ipairs, tostring, getmetatable,
  setmetatable
local str_gsub, str_find, str_sub, str_lower, str_match, str_rep =
  string.gsub, string.find, string.sub, string.lower, string.match, string.rep
local tbl_concat = table.concat

local _M = {}

local REDACTED = "[redacted]"
_M.REDACTED = REDACTED

-- Header names (lowercase) whose value is never logged.
local SECRET_HEADERS = {
  ["authorization"] = true, ["proxy-authorization"] = true, ["cookie"] = true, ["set-cookie"] = true,
  ["signature"] = true, ["tpp-signature-certificate"] = true, ["x-jws-signature"] = true,
  ["psu-id"] = true, ["psu-corporate-id"] = true, ["consent-id"] = true,
  ["psu-device-id"] = true, ["psu-geo-location"] = true,
}
_M.SECRET_HEADERS = SECRET_HEADERS

--- Masks an IBAN-like string: keeps the country code and the last 4 characters.
-- `LT601010012345678901` -> `LT**************8901`.
function _M.mask_iban(s)
  s = tostring(s)
  if #s <= 8 then return str_sub(s, 1, 2) .. "****" end
  return str_sub(s, 1, 2) .. str_rep("*", #s - 6) .. str_sub(s, -4)
end
local mask_iban = _M.mask_iban

local function mask_iban_match(m)
  if #m >= 15 and #m <= 34 then return mask_iban(m) end
  return m
end

local function mask_card_match(m)
  if #m <= 19 then return str_sub(m, 1, 2) .. str_rep("*", #m - 6) .. str_sub(m, -4) end
  return m
end

--- Masks IBANs (two letters, two digits, 11..30 alphanumerics) and card
-- numbers (13..19 digits) inside free text.
function _M.mask_text(s)
  if type(s) ~= "string" then return s end
  s = str_gsub(s, "(%f[%w]%u%u%d%d%w+)", mask_iban_match)
  s = str_gsub(s, "%f[%d]%d%d%d%d%d%d%d%d%d%d%d%d%d+%f[%D]", mask_card_match)
  return s
end
local mask_text = _M.mask_text

--- Returns a copy of `headers` with secret values masked. `Authorization`
-- keeps its scheme (`Bearer [redacted]`). `extra` is an optional list of
-- more header names to mask.
function _M.headers(headers, extra)
  if type(headers) ~= "table" then return headers end
  local more
  if extra then
    more = {}
    for _, n in ipairs(extra) do more[str_lower(n)] = true end
  end
  local out = {}
  for k, v in pairs(headers) do
    local name = type(k) == "string" and str_lower(k) or k
    if SECRET_HEADERS[name] or (more and more[name]) then
      local scheme = (name == "authorization" or name == "proxy-authorization")
        and type(v) == "string" and str_match(v, "^(%a+)%s") or nil
      out[k] = scheme and (scheme .. " " .. REDACTED) or REDACTED
    elseif type(v) == "string" then
      out[k] = mask_text(v)
    else
      out[k] = v
    end
  end
  return out
end

-- Body keys whose values are secrets (masked whole, whatever their type).
local SECRET_KEYS = {
  access_token = true, refresh_token = true, id_token = true, code = false, code_verifier = true,
  client_secret = true, password = true, encryptedPassword = true, additionalPassword = true,
  additionalEncryptedPassword = true, psuData = true, scaAuthenticationData = true,
  confirmationCode = true, mac_key = true, key = false, passphrase = true,
}
-- Keys whose string values are account numbers.
local ACCOUNT_KEYS = { iban = true, bban = true, pan = true, maskedPan = false, msisdn = true }

local function redact_value(v, key, depth, in_oauth)
  local tv = type(v)
  if key and (SECRET_KEYS[key] or (key == "code" and in_oauth)) then
    return REDACTED
  end
  if tv == "table" then
    if depth > 50 then return "[too deep]" end
    local out = {}
    local oauth = in_oauth or v.grant_type ~= nil or v.access_token ~= nil or v.code_verifier ~= nil
    for k, x in pairs(v) do
      out[k] = redact_value(x, k, depth + 1, oauth)
    end
    return setmetatable(out, getmetatable(v))
  elseif tv == "string" then
    if key and ACCOUNT_KEYS[key] then return mask_iban(v) end
    return mask_text(v)
  end
  return v
end

--- Returns a redacted copy of a body: a table (deep copy) or a string
-- (JSON or form-encoded; other text has IBANs masked). Tokens, OAuth codes
-- and verifiers, PSU passwords (`psuData`), OTPs (`scaAuthenticationData`),
-- confirmation codes are replaced by `[redacted]`; IBANs keep their country
-- and last 4 characters.
function _M.body(body)
  if type(body) == "table" then
    return redact_value(body, nil, 0, false)
  elseif type(body) ~= "string" or body == "" then
    return body
  end
  local first = str_match(body, "^%s*(.)")
  if first == "{" or first == "[" then
    local t = json.decode(body)
    if t ~= nil then
      local s = json.encode(redact_value(t, nil, 0, false))
      if s then return s end
    end
    -- not JSON after all: fall through to text masking of a JSON-ish string
    return mask_text((str_gsub(body, '("[%w_]*[Tt]oken"%s*:%s*")[^"]*', "%1" .. REDACTED)))
  end
  if str_find(body, "^[%w%%._~+-]+=[^%s]*$") then
    -- application/x-www-form-urlencoded
    local parts = {}
    local oauth = str_find(body, "grant_type=", 1, true) or str_find(body, "code_verifier=", 1, true)
    for _, kv in ipairs(url.query_pairs(body)) do
      local k, v = kv[1], kv[2]
      if SECRET_KEYS[k] or (k == "code" and oauth) then v = REDACTED else v = mask_text(v) end
      parts[#parts + 1] = url.escape(k) .. "=" .. url.escape(v)
    end
    return tbl_concat(parts, "&")
  end
  return mask_text(body)
end

------------------------------------------------------------------------------
-- Secret values: what a request carried (token, codes, verifiers, passwords)
-- is scrubbed wherever the bank might echo it, whatever the field name.

local MIN_SECRET = 4 -- shorter values would scrub ordinary text

-- adds the secret values of a decoded body (or a form table) to `out`
local function collect(v, key, out, depth, in_oauth)
  if depth > 20 then return end
  local tv = type(v)
  if tv == "string" then
    if key and (SECRET_KEYS[key] or (key == "code" and in_oauth)) and #v >= MIN_SECRET then out[#out + 1] = v end
  elseif tv == "table" then
    local oauth = in_oauth or v.grant_type ~= nil or v.code_verifier ~= nil
    local whole = key and SECRET_KEYS[key]
    for k, x in pairs(v) do
      local tx = type(x)
      if tx == "string" then
        -- what collect(x, k, ...) would do for a string one level down
        if (whole or SECRET_KEYS[k] or (k == "code" and oauth)) and #x >= MIN_SECRET and (whole or depth < 20) then
          out[#out + 1] = x
        end
      elseif tx == "table" then
        collect(x, k, out, depth + 1, oauth)
      end
    end
  end
end

--- Adds the secret values found in `body` (a table: JSON body or form) to
-- the list `out` (created when nil) and returns it.
function _M.collect_secrets(body, out)
  local list = out or {}
  collect(body, nil, list, 0, false)
  if list[1] == nil then return out end
  return list
end

--- Adds one secret value to the list `out` (created when nil).
function _M.add_secret(out, v)
  out = out or {}
  if type(v) == "string" and #v >= MIN_SECRET then out[#out + 1] = v end
  return out
end

--- `s` with every occurrence of a value of `secrets` replaced.
function _M.scrub(s, secrets)
  if type(s) ~= "string" or not secrets then return s end
  for i = 1, #secrets do
    local v = secrets[i]
    local a, b = str_find(s, v, 1, true)
    while a do
      s = str_sub(s, 1, a - 1) .. REDACTED .. str_sub(s, b + 1)
      a, b = str_find(s, v, a + #REDACTED, true)
    end
  end
  return s
end
local scrub = _M.scrub

local function scrub_in(t, secrets, fn, depth)
  for k, v in pairs(t) do
    if type(v) == "string" then
      if secrets then v = scrub(v, secrets) end
      if fn then v = fn(v) end
      t[k] = v
    elseif type(v) == "table" and depth < 20 then
      scrub_in(v, secrets, fn, depth + 1)
    end
  end
  return t
end

--- Scrubs every string inside `t` (keys kept) in place: the values of the
-- list `secrets`, and whatever `fn(s) -> s` scrubs (a signer's own key).
-- @return t
function _M.scrub_table(t, secrets, fn)
  if secrets and secrets[1] == nil then secrets = nil end
  if (not secrets and not fn) or type(t) ~= "table" then return t end
  return scrub_in(t, secrets, fn, 0)
end

return _M
