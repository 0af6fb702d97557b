--- Consents and what they give access to: accounts, balances, transactions
-- (pages followed by `xs2a.api.paging`), card accounts.
--
-- Consent (`client:create_consent(body, opts)`, `client:consent(id)`):
--
-- * `consent:get()` -> body (also kept in `consent.data`), `consent:status()`
--   -> consentStatus, body; `consent:delete()` -> true;
-- * `consent:accounts(opts)` -> a LIST of account tables (`opts.with_balance`);
--   `consent:account(id, opts)` -> account; `consent:balances(id)` -> list, body;
-- * `consent:transactions(account_id, query, opts)` -> an iterator for a
--   generic `for`: `for tx, err in consent:transactions(id, { bookingStatus = "both",
--   dateFrom = "2026-01-01" }) do ... end`. Each `tx` is the bank's transaction
--   table with `_status` = "booked"|"pending"|"information" added. Pages are
--   fetched as the loop goes, following `_links.next` (relative or absolute).
--   When a page fails the loop gets `false, err` once and then ends.
--   `consent:transaction_list(...)` -> list, or nil, err (all pages).
-- * `consent:transaction(account_id, tx_id)` -> the details table;
-- * `consent:card_accounts()`, `card_account(id)`, `card_balances(id)`,
--   `card_transactions(id, query, opts)` (an iterator, as above);
-- * `consent:authorise(opts)` -> flow.
--
-- AIS reads send `Consent-ID` and the bearer token stored under `"consent:<id>"`.
-- Options of reads: `opts.psu` (or `psu_ip`...) when the PSU is present (not
-- counted against frequencyPerDay), `opts.query` (extra query parameters).
-- @module xs2a.api.consent
local errors = require "xs2a.errors"
local json = require "xs2a.codec.json"
local url = require "xs2a.net.url"
local tables = require "xs2a.tables"
local resource = require "xs2a.api.resource"
local paging = require "xs2a.api.paging"
local authorisation = require "xs2a.api.authorisation"
local date = require "xs2a.net.date"

local type, tostring, tonumber, pairs, select = type, tostring, tonumber, pairs, select
local str_find = string.find
local request, psu_from, body_table, body_list, body_object, tpp_headers, need_string, approach_of, start_flow,
  merge_query = resource.request, resource.psu_from, resource.body_table, resource.body_list, resource.body_object,
  resource.tpp_headers, resource.need_string, resource.approach_of, require("xs2a.sca.flow").start, resource.merge_query

local _M = {}

local CONSENT_FINAL = tables.set({ "valid", "rejected", "revokedByPsu", "expired", "terminatedByTpp" })
local CONSENT_SUCCESS = tables.set({ "valid" })
_M.FINAL, _M.SUCCESS = CONSENT_FINAL, CONSENT_SUCCESS

local DESC = { what = "consent", status_field = "consentStatus", deleted = "terminatedByTpp" }

-- the array fields of a consent body (so that an empty `{}` is sent as `[]`)
local ACCESS_SHAPE = { accounts = "array", balances = "array", transactions = "array", restrictedTo = "array",
  additionalInformation = { ownerName = "array", trustedBeneficiaries = "array" } }
_M.SHAPE = { access = ACCESS_SHAPE }

local Consent = {}
Consent.__index = Consent
Consent.__name = "xs2a.Consent"
Consent.__tostring = function(c) return "xs2a.Consent (" .. tostring(c.last_status or "?") .. ")" end
_M.Consent = Consent

local function new_consent(client, id, fields)
  return resource.new(Consent, client, id, { desc = DESC, kind = "consent", service = "AIS",
    path = url.path("v1", "consents", id), final = CONSENT_FINAL, success = CONSENT_SUCCESS }, fields)
end

--- Creates a consent (`POST /v1/consents`); `client:create_consent(body, opts)` calls it.
-- @param client the client
-- @param body the consent body (`access`, `recurringIndicator`, `validUntil`,
--   `frequencyPerDay`, `combinedServiceIndicator`), spec field names verbatim
-- @param opts `{ psu_ip = ..., psu = {...}, redirect_preferred = bool,
--   explicit = bool, headers = {...} }`; the PSU's IP address is mandatory
-- @return Consent or nil, err
function _M.create(client, body, opts)
  if type(body) ~= "table" then error("create_consent: body must be a table", 2) end
  opts = opts or {}
  local psu = psu_from(opts)
  if not (psu and psu.ip) then
    return nil, errors.config("create_consent: the PSU's IP address (psu_ip) is mandatory", "PSU_IP_REQUIRED")
  end
  local fpd = tonumber(body.frequencyPerDay)
  local maxf = client.profile.max_frequency_per_day
  if fpd and maxf and fpd > maxf then
    return nil, errors.config("frequencyPerDay " .. fpd .. " exceeds the bank's maximum " .. maxf,
      "FREQUENCY_INVALID")
  end
  -- the bank's longest consent (docs/paysera.md, reading 6): a later
  -- validUntil (9999-12-31 asks for the longest) is capped with a log line,
  -- or refused under consent_over_max = "refuse", before anything is sent
  local maxd = client.profile.max_consent_days
  local vu = body.validUntil
  if maxd and type(vu) == "string" and str_find(vu, "^%d%d%d%d%-%d%d%-%d%d$") then
    local last = os.date("!%Y-%m-%d", math.floor(date.now()) + maxd * 86400)
    if vu > last then
      if client.profile.consent_over_max == "refuse" then
        return nil, errors.config("create_consent: validUntil " .. vu .. " lies beyond the bank's longest consent of "
          .. maxd .. " days (" .. last .. "); shorten it, or set the profile's consent_over_max = \"cap\"",
          "CONSENT_TOO_LONG")
      end
      local capped = {}
      for k, v in pairs(body) do capped[k] = v end
      capped.validUntil = last
      client:log("info", "consent_capped", { asked = vu, valid_until = last, max_consent_days = maxd })
      body = capped
    end
  end
  local headers = tpp_headers(opts)
  local res, err = request(client, {
    method = "POST", path = "/v1/consents", body = body, shape = _M.SHAPE, service = "AIS", psu = psu,
    headers = headers, redirect = true, idempotent = false,
  })
  if not res then return nil, err end
  local b, berr = body_table(res, "create_consent")
  if not b then return nil, berr end
  if type(b.consentId) ~= "string" or b.consentId == "" or not resource.id_ok(b.consentId) then
    return nil, errors.protocol("create_consent: no consentId in the response", { status = res.status,
      request_id = res.request_id, outcome = "unknown" }, "BAD_RESPONSE")
  end
  if fpd then client.store:set("xs2a:consent:" .. b.consentId .. ":fpd", tostring(math.floor(fpd)), 400 * 86400) end
  -- the consent's last day: its tokens are kept no longer (xs2a.sca.tokens)
  if type(body.validUntil) == "string" and str_find(body.validUntil, "^%d%d%d%d%-%d%d%-%d%d$") then
    client.store:set("xs2a:consent:" .. b.consentId .. ":until", body.validUntil, 400 * 86400)
  end
  return new_consent(client, b.consentId, {
    status = b.consentStatus, links = b._links, data = b, approach = approach_of(res), psu = psu,
    messages = errors.messages_from(b),
  })
end

--- A consent object for a known id (no request is made).
function _M.new(client, id, opts)
  need_string(id, "consent id")
  local idok, iderr = resource.check_id(id, "consent id")
  if not idok then return nil, iderr end
  opts = opts or {}
  return new_consent(client, id, { psu = psu_from(opts), links = opts.links, status = opts.status })
end

-- an AIS request for this consent
function Consent:_get(path, query, opts, extra)
  opts = opts or {}
  local req = {
    method = "GET", path = path, query = path and merge_query(query, opts.query) or nil, service = "AIS",
    consent_id = self.id, token = self.token_key, psu = psu_from(opts),
  }
  for k, v in pairs(extra or {}) do req[k] = v end
  return request(self.client, req)
end

--- `GET /v1/consents/{id}`: the consent's data.
-- @return body or nil, err
Consent.get = resource.get

--- `GET /v1/consents/{id}/status`.
-- @return consentStatus, body | nil, err
Consent.status = resource.status
Consent.current_status = resource.status

--- `DELETE /v1/consents/{id}` (the consent becomes terminatedByTpp).
-- @return true or nil, err
Consent.delete = resource.delete

-- The authorisation API of the consent (`xs2a.api.authorisation`):
-- `authorisations()`, `authorisation(id)`, `start_authorisation(opts)`.
authorisation.methods_for(Consent)

--- Starts the SCA flow of this consent (see `xs2a.flow`).
function Consent:authorise(opts)
  return start_flow(self.client, self, opts)
end

--- JSON-safe table from which `client:resource_from_ref` rebuilds the consent.
function Consent:ref()
  return { kind = "consent", id = self.id, psu = tables.copy(self.psu), links = tables.copy(self.links),
    status = self.last_status }
end

--- `GET /v1/accounts`: the accounts this consent gives access to.
-- @param opts `{ with_balance = bool, psu_ip = ... }`
-- @return list of account tables (`resourceId`, `iban`, `currency`, ...) or nil, err
function Consent:accounts(opts)
  opts = opts or {}
  local res, err = self:_get("/v1/accounts", opts.with_balance and { withBalance = "true" } or nil, opts)
  if not res then return nil, err end
  local b, berr = body_table(res, "accounts")
  if not b then return nil, berr end
  local list, lerr = body_list(res, b, "accounts", "accounts")
  if not list then return nil, lerr end
  return list, b
end

--- `GET /v1/accounts/{id}`.
-- @return account table or nil, err
function Consent:account(account_id, opts)
  need_string(account_id, "account id")
  opts = opts or {}
  local res, err = self:_get(url.path("v1", "accounts", account_id),
    opts.with_balance and { withBalance = "true" } or nil, opts)
  if not res then return nil, err end
  local b, berr = body_table(res, "account")
  if not b then return nil, berr end
  local a, aerr = body_object(res, b, "account", "account")
  if not a then return nil, aerr end
  return a, b
end

--- `GET /v1/accounts/{id}/balances`.
-- @return list of balances, body | nil, err
function Consent:balances(account_id, opts)
  need_string(account_id, "account id")
  local res, err = self:_get(url.path("v1", "accounts", account_id, "balances"), nil, opts)
  if not res then return nil, err end
  local b, berr = body_table(res, "balances")
  if not b then return nil, berr end
  local list, lerr = body_list(res, b, "balances", "balances")
  if not list then return nil, lerr end
  return list, b
end

--- Iterator over the transactions of an account (see the module description).
-- @param account_id the account's resourceId
-- @param query e.g. `{ bookingStatus = "booked", dateFrom = "2026-01-01" }` (bookingStatus defaults to "booked")
-- @param opts `{ psu_ip = ..., max_pages = 1000 }`
function Consent:transactions(account_id, query, opts)
  need_string(account_id, "account id")
  query = merge_query({ bookingStatus = "booked" }, query)
  return paging.iterate(self, url.path("v1", "accounts", account_id, "transactions"), query, opts, "transactions")
end

local function collect(iter)
  local list = {}
  for tx, err in iter do
    if tx == false then return nil, err end
    list[#list + 1] = tx
  end
  return list
end

--- All transactions (every page) as a list.
-- @return list or nil, err
function Consent:transaction_list(account_id, query, opts)
  return collect(self:transactions(account_id, query, opts))
end

--- `GET /v1/accounts/{id}/transactions/{transactionId}`.
-- @return the transaction details table or nil, err
function Consent:transaction(account_id, tx_id, opts)
  need_string(account_id, "account id")
  need_string(tx_id, "transaction id")
  local res, err = self:_get(url.path("v1", "accounts", account_id, "transactions", tx_id), nil, opts)
  if not res then return nil, err end
  local b, berr = body_table(res, "transaction")
  if not b then return nil, berr end
  local tx = b.transactionsDetails or b.transactionDetails
  if type(tx) ~= "table" or json.is_array(tx) then
    return nil, errors.protocol("transaction: no transactionsDetails", { request_id = res.request_id })
  end
  return tx, b
end

local function need_cards(self)
  if not self.client.profile.card_accounts then
    return nil, errors.config("profile " .. self.client.profile.name .. " has no card accounts",
      "SERVICE_UNSUPPORTED")
  end
  return true
end

--- `GET /v1/card-accounts`.
-- @return list of card accounts or nil, err
function Consent:card_accounts(opts)
  local ok, cerr = need_cards(self)
  if not ok then return nil, cerr end
  local res, err = self:_get("/v1/card-accounts", nil, opts)
  if not res then return nil, err end
  local b, berr = body_table(res, "card_accounts")
  if not b then return nil, berr end
  local list, lerr = body_list(res, b, "cardAccounts", "card_accounts")
  if not list then return nil, lerr end
  return list, b
end

--- `GET /v1/card-accounts/{id}`.
function Consent:card_account(id, opts)
  need_string(id, "card account id")
  local ok, cerr = need_cards(self)
  if not ok then return nil, cerr end
  local res, err = self:_get(url.path("v1", "card-accounts", id), nil, opts)
  if not res then return nil, err end
  local b, berr = body_table(res, "card_account")
  if not b then return nil, berr end
  local a, aerr = body_object(res, b, "cardAccount", "card_account")
  if not a then return nil, aerr end
  return a, b
end

--- `GET /v1/card-accounts/{id}/balances`.
-- @return list of balances, body | nil, err
function Consent:card_balances(id, opts)
  need_string(id, "card account id")
  local ok, cerr = need_cards(self)
  if not ok then return nil, cerr end
  local res, err = self:_get(url.path("v1", "card-accounts", id, "balances"), nil, opts)
  if not res then return nil, err end
  local b, berr = body_table(res, "card_balances")
  if not b then return nil, berr end
  if b.balances == nil then return json.array(), b end
  local list, lerr = body_list(res, b, "balances", "card_balances")
  if not list then return nil, lerr end
  return list, b
end

--- Iterator over card transactions (as `transactions`).
function Consent:card_transactions(id, query, opts)
  need_string(id, "card account id")
  if not self.client.profile.card_accounts then
    local done = false
    return function()
      if done then return nil end
      done = true
      return false, select(2, need_cards(self))
    end
  end
  query = merge_query({ bookingStatus = "booked" }, query)
  return paging.iterate(self, url.path("v1", "card-accounts", id, "transactions"), query, opts, "cardTransactions")
end

_M.from_fields = new_consent

return _M
