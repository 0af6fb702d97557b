--- Sandbox configuration: defaults, the startup file (--config FILE.json)
-- and changes made through POST /_sandbox/config, kept as JSON in
-- `lua_shared_dict sandbox_config` so every worker sees the same values.
local util = require "sandbox.util"

local _M = {}

--- The built-in defaults (see sandbox/CONTRACT.md and sandbox/README.md).
local function defaults()
  return {
    rate = { per_second = 10, per_hour = 1000, concurrent = 20 },
    error_format = "paysera",
    -- refresh_ttl (seconds): unset, a refresh token lives max_consent_days
    token_ttl = 3600, code_ttl = 300,
    sca = { approach = "oauth", multilevel = 1, decoupled_delay = 0, auth_timeout = 900,
      -- the readings of Paysera's pages (docs/paysera.md): TPP-Redirect-Preferred
      -- is not honoured (OAuth only), the consent's SCA waits one day, answers
      -- carry _links.scaOAuth, the status field is spelled scaStatus
      honour_preferred = false, consent_auth_timeout = 86400, oauth_link = true, status_field = "scaStatus" },
    page_size = 50,
    signing_baskets = false,
    clock_offset = 0,
    -- more readings (docs/paysera.md has one line per switch)
    oauth_metadata = "variant",     -- "variant" | "root" | "both": where the AS metadata is served
    token_error_status = 401,       -- 401 | 403: the status of TOKEN_* and CONSENT_EXPIRED errors
    frequency_rule = "resource",    -- "resource" | "consent": how frequencyPerDay is counted
    consent_over_max = "cap",       -- "cap" | "refuse": validUntil beyond max_consent_days
    multiple_consents = "replace",  -- "replace" | "keep": a new valid consent ends the PSU's older ones
    funds_confirmation = false,     -- PIIS: "coming soon" at Paysera
    variants = {
      berlin = { signing = { scheme = "berlin", required_for = util.array{ "PIS" } },
        link_form = "host", max_consent_days = 180 },
      georgia = { signing = { scheme = "jws", required_for = util.array{ "PIS" }, sign_responses = true },
        link_form = "absolute", max_consent_days = 90 },
    },
    signing = { sigt_past = 300, sigt_future = 30, mac_window = 300 },
    mac = { id = "tpp-mac-id", key = "sandbox-mac-key-0123456789abcdef" },
  }
end
_M.defaults = defaults

local function dict()
  return ngx.shared.sandbox_config
end

-- worker-local cache of the decoded config, keyed by the dict's version
local cache, cache_version

local function load()
  local d = dict()
  local version = d:get("version") or 0
  if cache and cache_version == version then return cache end
  local s = d:get("config")
  local cfg = s and util.json_decode(s) or defaults()
  cache, cache_version = cfg, version
  return cfg
end

local function save(cfg)
  local s = assert(util.json_encode(cfg))
  local d = dict()
  assert(d:set("config", s))
  d:incr("version", 1, 0)
  cache = nil
end

local function is_seq(t)
  return type(t) == "table" and (t[1] ~= nil or getmetatable(t) == util.array_mt)
end

--- Deep merge of `src` into `dst` (in place): tables merge, lists and other
-- values replace, JSON null removes the key.
local function merge_into(dst, src)
  for k, v in pairs(src) do
    if v == util.null then
      dst[k] = nil
    elseif type(v) == "table" and not is_seq(v) and type(dst[k]) == "table" and not is_seq(dst[k]) then
      merge_into(dst[k], v)
    elseif type(v) == "table" and next(v) == nil and is_seq(dst[k]) then
      dst[k] = util.array{}
    else
      dst[k] = util.copy(v)
    end
  end
  return dst
end
_M.merge_into = merge_into

--- Called once in init_by_lua: the startup configuration is the defaults
-- merged with the config file's table.
function _M.init(file_cfg)
  local startup = defaults()
  if type(file_cfg) == "table" then merge_into(startup, file_cfg) end
  local s = assert(util.json_encode(startup))
  assert(dict():set("startup", s))
  save(startup)
end

--- The whole configuration (a copy).
function _M.get()
  return util.copy(load())
end

--- The effective configuration of one variant: the top level (without
-- `variants`) merged with `variants[variant]`.
function _M.for_variant(variant)
  local cfg = util.copy(load())
  local v = cfg.variants and cfg.variants[variant]
  cfg.variants = nil
  if type(v) == "table" then merge_into(cfg, v) end
  cfg.variant = variant
  return cfg
end

--- Merges `tbl` into the configuration.
-- @return the full new configuration
function _M.merge(tbl)
  local cfg = util.copy(load())
  merge_into(cfg, tbl)
  save(cfg)
  return util.copy(cfg)
end

--- Back to the startup configuration.
function _M.reset()
  local s = dict():get("startup")
  local cfg = s and util.json_decode(s) or defaults()
  save(cfg)
  return cfg
end

return _M
