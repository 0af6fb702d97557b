-- Shared by the bank_*_spec.lua files (loaded with dofile; busted does not
-- run it): a TPP that talks to one variant of a sandbox with the curl CLI,
-- and the OAuth dance with the PSU's browser (support.psu).
local psu = require "support.psu"

local H = {}

local seeded = false
local function uuid()
  if not seeded then
    local f = io.open("/dev/urandom", "rb")
    local s = f:read(6)
    f:close()
    local n = 0
    for i = 1, #s do n = n * 256 + s:byte(i) end
    math.randomseed(n % 2147483647)
    seeded = true
  end
  local function hex(n)
    local t = {}
    for i = 1, n do t[i] = string.format("%x", math.random(0, 15)) end
    return table.concat(t)
  end
  return hex(8) .. "-" .. hex(4) .. "-4" .. hex(3) .. "-" .. ({ "8", "9", "a", "b" })[math.random(1, 4)]
    .. hex(3) .. "-" .. hex(12)
end
H.uuid = uuid

local Tpp = {}
Tpp.__index = Tpp

--- A TPP on `variant` of sandbox `sb`.
function H.tpp(sb, variant, cert)
  return setmetatable({ sb = sb, variant = variant, root = sb.roots[variant], cert = cert or "qwac",
    path_root = variant == "berlin" and "/xs2a/berlin/1.3" or "/xs2a/georgia/0.8" }, Tpp)
end

--- An API call. opts: { body, headers = {}, psu_ip = false (omit PSU-IP-Address), cert, url }
function Tpp:call(method, path, opts)
  opts = opts or {}
  local headers = { ["X-Request-ID"] = uuid() }
  if opts.psu_ip ~= false then headers["PSU-IP-Address"] = "192.0.2.10" end
  for k, v in pairs(opts.headers or {}) do headers[k] = v end
  for k, v in pairs(headers) do if v == false then headers[k] = nil end end
  local url = opts.url or (self.root .. path)
  if url:sub(1, 1) == "/" then url = self.sb.base_url .. url end
  local cert = opts.cert
  if cert == nil then cert = self.cert end
  return self.sb:request{ method = method, url = url, headers = headers, body = opts.body, cert = cert }
end

--- Accounts of this variant from the control API, by tag or resourceId.
function Tpp:accounts()
  local status, body = self.sb:control("GET", "/accounts")
  assert(status == 200, "GET /_sandbox/accounts failed")
  local out = {}
  for _, a in ipairs(body.accounts) do
    if a.variant == self.variant then out[#out + 1] = a end
  end
  return out, body
end

--- An account matching `pred` (tag, resourceId or function); `cached` uses the
-- first listing (IBANs and ids never change; balances do).
function Tpp:account(pred, cached)
  local list
  if cached then
    self._cache = self._cache or self:accounts()
    list = self._cache
  else
    list = self:accounts()
  end
  for _, a in ipairs(list) do
    if (type(pred) == "string" and (a.resourceId == pred or a.tag == pred))
        or (type(pred) == "function" and pred(a)) then
      return a
    end
  end
  error("no such account: " .. tostring(pred))
end

function Tpp:main(cached) return self:account("main", cached) end
function Tpp:owner(name, cached)
  return self:account(function(a) return a.owner == name and a.kind == "account" and a.tag ~= "multicurrency" end,
    cached)
end

function Tpp:metadata()
  if not self._md then
    self._md = self:call("GET", "/.well-known/oauth-authorization-server", { cert = false }).json
  end
  return self._md
end

--- A consent body (allPsd2 unless `access` is given).
function H.consent_body(access, over)
  local b = {
    access = access or { allPsd2 = "allAccounts" },
    recurringIndicator = true,
    validUntil = os.date("!%Y-%m-%d", os.time() + 30 * 86400),
    frequencyPerDay = 4,
    combinedServiceIndicator = false,
  }
  for k, v in pairs(over or {}) do b[k] = v end
  return b
end

function Tpp:create_consent(body, headers)
  return self:call("POST", "/v1/consents", { body = body or H.consent_body(), headers = headers })
end

--- A single payment body.
function Tpp:payment_body(amount, creditor_iban, over)
  local ccy = self.variant == "berlin" and "EUR" or "GEL"
  local b = {
    debtorAccount = { iban = self:main(true).iban },
    instructedAmount = { currency = ccy, amount = amount or "10.00" },
    creditorAccount = { iban = creditor_iban or self:owner("bob", true).iban },
    creditorName = "Bob Example",
    remittanceInformationUnstructured = "spec payment",
  }
  for k, v in pairs(over or {}) do b[k] = v end
  return b
end

function Tpp:product()
  return self.variant == "berlin" and "sepa-credit-transfers" or "domestic"
end

--- Builds an authorization request URL from the AS metadata.
-- @return url, verifier, state, metadata
function Tpp:authorization_url(scope, opts)
  opts = opts or {}
  local md = self:metadata()
  local verifier, challenge = psu.pkce()
  local state = opts.state or uuid()
  local q = {
    response_type = "code", client_id = opts.client_id or "PSDLT-BOL-TPP001", scope = scope,
    redirect_uri = opts.redirect_uri or "https://tpp.example/cb", state = state,
    code_challenge = opts.code_challenge or challenge, code_challenge_method = opts.method or "S256",
  }
  local parts = {}
  for k, v in pairs(q) do parts[#parts + 1] = psu.urlencode(k) .. "=" .. psu.urlencode(v) end
  table.sort(parts)
  return md.authorization_endpoint .. "?" .. table.concat(parts, "&"), verifier, state, md
end

--- POSTs a form to the token endpoint (mTLS).
function Tpp:token(form, opts)
  opts = opts or {}
  local md = self:metadata()
  local parts = {}
  for k, v in pairs(form) do parts[#parts + 1] = psu.urlencode(k) .. "=" .. psu.urlencode(v) end
  table.sort(parts)
  return self.sb:request{ method = "POST", url = md.token_endpoint, body = table.concat(parts, "&"),
    headers = { ["Content-Type"] = "application/x-www-form-urlencoded" },
    cert = opts.cert == nil and self.cert or opts.cert }
end

--- The whole OAuth code flow for `scope` as `user`; returns the token response.
function Tpp:oauth(scope, user, opts)
  opts = opts or {}
  local url, verifier, state = self:authorization_url(scope, opts)
  local location, page = psu.authorize(url, { username = user or "alice", password = (user or "alice") .. "-pass",
    decision = opts.decision or "approve", choose = opts.choose })
  assert(location, "authorization page did not redirect: " .. tostring(page and page.error or page and page.html))
  local q = psu.query(location)
  assert(q.state == state, "state not echoed")
  assert(q.code, "no code in " .. location)
  local res = self:token({ grant_type = "authorization_code", code = q.code, code_verifier = verifier,
    redirect_uri = opts.redirect_uri or "https://tpp.example/cb", client_id = "PSDLT-BOL-TPP001" })
  assert(res.status == 200, "token endpoint: " .. tostring(res.status) .. " " .. tostring(res.body))
  return res.json
end

--- A valid allPsd2 consent (OAuth approach) and its access token.
function Tpp:valid_consent(body, user)
  local res = self:create_consent(body)
  assert(res.status == 201, "consent: " .. tostring(res.status) .. " " .. tostring(res.body))
  local id = res.json.consentId
  local tok = self:oauth("AIS:" .. id, user)
  return id, tok
end

--- AIS call with Consent-ID and the bearer token.
function Tpp:ais(path, consent_id, token, opts)
  opts = opts or {}
  local headers = { ["Consent-ID"] = consent_id }
  if token then headers["Authorization"] = "Bearer " .. token end
  for k, v in pairs(opts.headers or {}) do headers[k] = v end
  return self:call("GET", path, { headers = headers, psu_ip = opts.psu_ip, cert = opts.cert, url = opts.url })
end

--- Sets the configuration for bank specs: no request signing (the platform
-- specs prove signatures), plus `extra`.
function H.configure(sb, extra)
  local cfg = {
    variants = { berlin = { signing = { required_for = {} } }, georgia = { signing = { required_for = {} } } },
    rate = { per_second = 1000, per_hour = 100000, concurrent = 50 },
  }
  for k, v in pairs(extra or {}) do cfg[k] = v end
  return sb:config(cfg)
end

--- Back to the defaults the bank specs run with.
function H.restore(sb)
  return H.configure(sb, { sca = { approach = "oauth", multilevel = 1, decoupled_delay = 0, auth_timeout = 900,
      consent_auth_timeout = 86400, honour_preferred = false, oauth_link = true, status_field = "scaStatus" },
    token_ttl = 3600, refresh_ttl = 7776000, code_ttl = 300, page_size = 50, signing_baskets = false,
    funds_confirmation = false, oauth_metadata = "variant", token_error_status = 401, frequency_rule = "resource",
    consent_over_max = "cap", multiple_consents = "keep" })
end

H.psu = psu
--- A setup function for a describe block: puts the shared sandbox in the
-- bank specs' configuration and hands it and both variants' TPPs to
-- `assign(sb, berlin, georgia)`.
function H.setup_bank(assign)
  return function()
    local sb = require("support.sandbox").shared()
    H.restore(sb)
    assign(sb, H.tpp(sb, "berlin"), H.tpp(sb, "georgia"))
  end
end

return H
