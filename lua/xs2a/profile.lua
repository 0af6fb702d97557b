--- ASPSP profiles: data that describe a bank's API.
--
-- A profile is a plain table:
--
-- * `name`, `base_url` (production origin), `root` (variant root path);
-- * `products`: payment products (list), `services`: payment services;
-- * `signing`: `{ scheme = "berlin"|"jws"|"mac"|false, services = {"PIS"},
--   dialect = { ... options passed to the signer ... } }`;
-- * `verify_responses`: the bank's signed responses (Georgian JWS): `"if_present"`
--   (verify a present signature, accept an unsigned answer and log that once per
--   client), `"required"` (`true`), or `"off"` (`false`);
-- * `oauth_metadata`: where to look for the OAuth metadata when an answer
--   carries no `scaOAuth` link: paths under `base_url`, tried in order;
-- * `frequency_rule`: how `frequencyPerDay` is counted, `"resource"` (per
--   endpoint and account, follow-up pages free) or `"consent"` (every call);
-- * `max_consent_days` and `consent_over_max` (`"cap"`: shorten validUntil with
--   a log line, `"refuse"`: a config error) before a consent is sent;
-- * `sca`: `{ approaches = {...}, preferred = "oauth" }`;
-- * `limits`: `{ per_second, per_hour, concurrent }`;
-- * `error_format`: `"paysera"` (RFC 7807 style) or `"tppMessages"` (both are parsed anyway);
-- * `max_frequency_per_day`, `card_accounts`, `signing_baskets`, `funds_confirmation`.
--
-- `profile.get(name_or_table, overrides)` returns a validated copy.
-- @module xs2a.profile
local tables = require "xs2a.tables"
local url = require "xs2a.net.url"

local _M = {}

local PAYMENT_SERVICES = { "payments", "periodic-payments", "bulk-payments" }

local profiles = {}

profiles["paysera-berlin"] = {
  name = "paysera-berlin",
  variant = "berlin",
  base_url = "https://open-banking-api.paysera.com",
  root = "/xs2a/berlin/1.3",
  -- Paysera lists "domestic RON transfers" without a product name; ours is a guess (docs/paysera.md)
  products = { "sepa-credit-transfers", "instant-sepa-credit-transfers", "target-2-payments", "ron-credit-transfers" },
  services = PAYMENT_SERVICES,
  signing = {
    scheme = "berlin",
    services = { "PIS" },
    dialect = { digest = "SHA-256", keyid_serial_case = "upper", algorithm = nil, date = false },
  },
  verify_responses = "off",
  sca = { approaches = { "oauth" }, preferred = "oauth" },
  oauth_metadata = { "/xs2a/berlin/1.3/.well-known/oauth-authorization-server",
    "/.well-known/oauth-authorization-server" },
  limits = { per_second = 10, per_hour = 1000, concurrent = 20 },
  error_format = "paysera",
  max_frequency_per_day = 4,
  frequency_rule = "resource",
  max_consent_days = 180,
  consent_over_max = "cap",
  card_accounts = true,
  signing_baskets = false,
  funds_confirmation = false,   -- "coming soon" (Paysera's getting-started page)
}

profiles["paysera-georgia"] = {
  name = "paysera-georgia",
  variant = "georgia",
  base_url = "https://open-banking-api.paysera.com",
  root = "/xs2a/georgia/0.8",
  products = { "aspsp", "domestic", "foreign" },
  services = PAYMENT_SERVICES,
  signing = {
    scheme = "jws",
    services = { "PIS" },
    dialect = { alg = nil },
  },
  -- no Paysera page says Georgian answers are signed: verify when they are
  verify_responses = "if_present",
  sca = { approaches = { "oauth" }, preferred = "oauth" },
  oauth_metadata = { "/xs2a/georgia/0.8/.well-known/oauth-authorization-server",
    "/.well-known/oauth-authorization-server" },
  limits = { per_second = 10, per_hour = 1000, concurrent = 20 },
  error_format = "paysera",
  max_frequency_per_day = 4,
  frequency_rule = "resource",
  max_consent_days = 90,
  consent_over_max = "cap",
  card_accounts = false,
  signing_baskets = false,
  funds_confirmation = false,
}

profiles["berlin-group"] = {
  name = "berlin-group",
  variant = "berlin",
  base_url = nil, -- must be given
  root = "",
  products = { "sepa-credit-transfers", "instant-sepa-credit-transfers", "target-2-payments",
    "cross-border-credit-transfers" },
  services = PAYMENT_SERVICES,
  signing = { scheme = false, services = {}, dialect = {} },
  verify_responses = "off",
  sca = { approaches = { "oauth", "redirect", "decoupled", "embedded" }, preferred = nil },
  oauth_metadata = { "/.well-known/oauth-authorization-server" },
  frequency_rule = "resource",
  consent_over_max = "cap",
  limits = { per_second = 10, per_hour = 1000, concurrent = 20 },
  error_format = "tppMessages",
  max_frequency_per_day = nil,
  card_accounts = true,
  signing_baskets = true,
  funds_confirmation = true,
}

local SCHEMES = { berlin = true, jws = true, mac = true }
-- verify_responses: true and false are kept as "required" and "off"
local VERIFY = { [true] = "required", [false] = "off", required = "required", off = "off", if_present = "if_present" }
local FREQUENCY_RULES = { resource = true, consent = true }
local OVER_MAX = { cap = true, refuse = true }
local APPROACHES = { oauth = true, redirect = true, decoupled = true, embedded = true }
local SERVICES = { AIS = true, PIS = true, PIIS = true }

local function fail(name, msg)
  return nil, require("xs2a.errors").config("profile " .. tostring(name) .. ": " .. msg, "PROFILE_INVALID")
end

--- Validates a profile table in place.
-- @return profile or nil, err (kind "config")
function _M.validate(p)
  local name = p.name or "(unnamed)"
  if p.base_url ~= nil then
    local u = url.parse(p.base_url)
    if not u then return fail(name, "base_url must be an absolute http(s) URL") end
  end
  if type(p.root) ~= "string" or (p.root ~= "" and not p.root:find("^/[^?#]*[^/]$")) then
    return fail(name, "root must be a path like /xs2a/berlin/1.3 (no trailing slash) or empty")
  end
  if type(p.products) ~= "table" or #p.products == 0 then return fail(name, "products must be a list") end
  if type(p.services) ~= "table" then return fail(name, "services must be a list") end
  local s = p.signing
  if s == nil or s == false then
    p.signing = { scheme = false, services = {}, dialect = {} }
    s = p.signing
  end
  if type(s) ~= "table" then return fail(name, "signing must be a table") end
  if s.scheme and not SCHEMES[s.scheme] then return fail(name, "unknown signing scheme " .. tostring(s.scheme)) end
  s.services = s.services or {}
  s.dialect = s.dialect or {}
  for _, svc in ipairs(s.services) do
    if not SERVICES[svc] then return fail(name, "unknown signed service " .. tostring(svc)) end
  end
  if type(p.sca) ~= "table" or type(p.sca.approaches) ~= "table" then
    return fail(name, "sca.approaches must be a list")
  end
  for _, a in ipairs(p.sca.approaches) do
    if not APPROACHES[a] then return fail(name, "unknown SCA approach " .. tostring(a)) end
  end
  if p.limits ~= false then
    if type(p.limits) ~= "table" then return fail(name, "limits must be a table or false") end
    for _, k in ipairs({ "per_second", "per_hour", "concurrent" }) do
      local v = p.limits[k]
      if v ~= nil and v ~= false and (type(v) ~= "number" or v <= 0) then
        return fail(name, "limits." .. k .. " must be a positive number or false")
      end
    end
  end
  if p.verify_responses == nil then p.verify_responses = "off" end
  if VERIFY[p.verify_responses] == nil then
    return fail(name, 'verify_responses must be "if_present", "required" or "off"')
  end
  p.verify_responses = VERIFY[p.verify_responses]
  if p.oauth_metadata ~= nil then
    if type(p.oauth_metadata) ~= "table" then return fail(name, "oauth_metadata must be a list of paths") end
    for _, m in ipairs(p.oauth_metadata) do
      if type(m) ~= "string" or not m:find("^/[^?#]*$") then
        return fail(name, "oauth_metadata entries must be paths like /.well-known/oauth-authorization-server")
      end
    end
  end
  p.frequency_rule = p.frequency_rule or "resource"
  if not FREQUENCY_RULES[p.frequency_rule] then return fail(name, 'frequency_rule must be "resource" or "consent"') end
  p.consent_over_max = p.consent_over_max or "cap"
  if not OVER_MAX[p.consent_over_max] then return fail(name, 'consent_over_max must be "cap" or "refuse"') end
  if p.max_consent_days ~= nil and (type(p.max_consent_days) ~= "number" or p.max_consent_days < 1
      or p.max_consent_days ~= math.floor(p.max_consent_days)) then
    return fail(name, "max_consent_days must be a positive integer")
  end
  p.signing_set = tables.set(s.services)
  p.product_set = tables.set(p.products)
  p.service_set = tables.set(p.services)
  return p
end

--- Returns a validated copy of a named profile (or of a table based on
-- one: `{ base = "paysera-berlin", ... }`), with `overrides` merged on top.
-- @param spec profile name or table
-- @param overrides optional table merged into the result
-- @return profile or nil, err
function _M.get(spec, overrides)
  local p
  if type(spec) == "string" then
    if not profiles[spec] then return fail(spec, "unknown profile (known: paysera-berlin, paysera-georgia, "
      .. "berlin-group)") end
    p = tables.copy(profiles[spec])
  elseif type(spec) == "table" then
    if spec.base and not profiles[spec.base] then return fail(spec.base, "unknown base profile") end
    p = spec.base and tables.merge(profiles[spec.base], spec) or tables.copy(spec)
    p.base = nil
  else
    return fail(tostring(spec), "profile must be a name or a table")
  end
  if overrides then p = tables.merge(p, overrides) end
  return _M.validate(p)
end

--- Names of the built-in profiles.
function _M.names()
  local out = {}
  for k in pairs(profiles) do out[#out + 1] = k end
  table.sort(out)
  return out
end

--- Registers a profile under `p.name` (validated).
function _M.register(p)
  local ok, err = _M.validate(tables.copy(p))
  if not ok then return nil, err end
  profiles[p.name] = tables.copy(p)
  return true
end

_M.profiles = profiles

return _M
