--- Consents, accounts, payments, funds confirmation and signing baskets.
--
-- Resources are plain tables with methods. The last status seen is in the
-- field `last_status` (`status` is the method that asks the bank). Each one that can be authorised
-- exposes what `xs2a.flow` needs: `kind`, `id`, `links` (the `_links` of the
-- creation or cancellation response), `service`, `scope`, `token_key`,
-- `authorisations_path`, `psu`, `final` and `success` (sets of statuses),
-- `current_status()` and `ref()`; `client:resource_from_ref(ref)` rebuilds one.
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
--
-- Payment (`client:initiate_payment(product, body, opts)`,
-- `client:payment(service, product, id)`): `opts.service` is
-- `"payments"` (default), `"periodic-payments"` or `"bulk-payments"`;
-- `payment:get()`, `payment:status()` -> transactionStatus, body;
-- `payment:cancel()` -> `{ status = 204|202|200, cancellation_required = bool,
-- links, transaction_status }`; `payment:authorise(opts)`,
-- `payment:authorise_cancellation(opts)` -> flow.
--
-- Basket (`client:create_signing_basket(body, opts)`, `client:signing_basket(id)`;
-- profiles with `signing_baskets` only, else `nil, err` SERVICE_UNSUPPORTED):
-- `basket:get()`, `basket:status()` -> transactionStatus, body;
-- `basket:delete()` -> true; `basket:authorise(opts)` -> flow (scope
-- `PIS:<basketId>`, ends at ACTC or ACSC).
-- @module xs2a.resources
local util = require "xs2a.util"
local errors = require "xs2a.errors"
local json = require "xs2a.json"

local type, tostring, pairs, ipairs, setmetatable, next = type, tostring, pairs, ipairs, setmetatable, next

local _M = {}

local PAYMENT_SERVICES = { payments = true, ["periodic-payments"] = true, ["bulk-payments"] = true }

local CONSENT_FINAL = util.set({ "valid", "rejected", "revokedByPsu", "expired", "terminatedByTpp" })
local CONSENT_SUCCESS = util.set({ "valid" })
local PAYMENT_FINAL = util.set({ "RJCT", "CANC", "ACSC", "ACCC" })
local PAYMENT_SUCCESS = util.set({ "ACSC", "ACCC" })
-- future-dated, periodic and batch payments stop at an accepted status
local PAYMENT_SUCCESS_DEFERRED = util.set({ "ACSC", "ACCC", "ACTC", "ACCP", "ACWC", "ACFC", "ACSP" })
local CANCEL_FINAL = util.set({ "CANC", "RJCT", "ACSC", "ACCC" })
local CANCEL_SUCCESS = util.set({ "CANC" })
local BASKET_FINAL = util.set({ "RJCT", "CANC", "ACTC", "ACSC" })
local BASKET_SUCCESS = util.set({ "ACTC", "ACSC" })

_M.CONSENT_FINAL, _M.CONSENT_SUCCESS = CONSENT_FINAL, CONSENT_SUCCESS
_M.PAYMENT_FINAL, _M.PAYMENT_SUCCESS = PAYMENT_FINAL, PAYMENT_SUCCESS

local function psu_of(client, opts)
  return require("xs2a.client").psu_from(opts)
    or (client and nil)
end

local function merge_query(a, b)
  if not b then return a end
  local out = {}
  for k, v in pairs(a or {}) do out[k] = v end
  for k, v in pairs(b) do out[k] = v end
  return out
end

local function approach_of(res)
  local a = res.headers and res.headers["aspsp-sca-approach"]
  return a and tostring(a):lower() or nil
end

local function body_table(res, what)
  if type(res.json) ~= "table" then
    return nil, errors.protocol(what .. ": response has no JSON object", { status = res.status,
      request_id = res.request_id }, "BAD_RESPONSE")
  end
  return res.json
end

-- `b[key]` must be a JSON array of objects: the list, or nil and a protocol error
local function body_list(res, b, key, what)
  local t = b[key]
  -- an empty `{}` counts as an empty list (what many JSON encoders write)
  local ok = type(t) == "table" and (json.is_array(t) or next(t) == nil)
  if ok then
    for _, v in ipairs(t) do
      if type(v) ~= "table" then ok = false break end
    end
  end
  if not ok then
    return nil, errors.protocol(what .. ": " .. key .. " is not a list of objects", { status = res.status,
      request_id = res.request_id }, "BAD_RESPONSE")
  end
  return t
end

-- `b[key]` (or the body itself when the bank sends it unwrapped) as an object
local function body_object(res, b, key, what)
  local t = b[key]
  if t == nil then t = b end
  if type(t) ~= "table" or json.is_array(t) then
    return nil, errors.protocol(what .. ": " .. key .. " is not an object", { status = res.status,
      request_id = res.request_id }, "BAD_RESPONSE")
  end
  return t
end

-- extra headers of a creating call: `opts.headers` and the TPP-*-Preferred ones
local function tpp_headers(opts)
  local headers = {}
  for k, v in pairs(opts.headers or {}) do headers[k] = v end
  if opts.redirect_preferred ~= nil then headers["TPP-Redirect-Preferred"] = tostring(opts.redirect_preferred) end
  if opts.decoupled_preferred ~= nil then
    headers["TPP-Decoupled-Preferred"] = tostring(opts.decoupled_preferred)
  end
  if opts.explicit ~= nil then headers["TPP-Explicit-Authorisation-Preferred"] = tostring(opts.explicit) end
  return headers
end

local function need_string(v, what)
  if type(v) ~= "string" or v == "" then
    error(what .. " must be a non-empty string", 3)
  end
end

local function start_flow(client, resource, opts)
  local ok, flow = pcall(require, "xs2a.flow")
  if not ok then
    return nil, errors.config("SCA flows are not available: " .. tostring(flow), "FLOW_UNAVAILABLE")
  end
  return flow.start(client, resource, opts)
end

------------------------------------------------------------------------------
-- Consent

local Consent = {}
Consent.__index = Consent
Consent.__name = "xs2a.Consent"
Consent.__tostring = function(c) return "xs2a.Consent (" .. tostring(c.last_status or "?") .. ")" end
_M.Consent = Consent

local function new_consent(client, id, fields)
  fields = fields or {}
  local c = setmetatable({
    client = client,
    kind = "consent",
    service = "AIS",
    id = id,
    last_status = fields.status,
    links = fields.links or {},
    data = fields.data,
    approach = fields.approach,
    psu = fields.psu,
    messages = fields.messages,
    scope = "AIS:" .. id,
    token_key = "consent:" .. id,
    path = util.path("v1", "consents", id),
    final = CONSENT_FINAL,
    success = CONSENT_SUCCESS,
  }, Consent)
  c.authorisations_path = c.path .. "/authorisations"
  return c
end

--- Creates a consent (`POST /v1/consents`).
-- @param body the consent body (`access`, `recurringIndicator`, `validUntil`,
--   `frequencyPerDay`, `combinedServiceIndicator`), spec field names verbatim
-- @param opts `{ psu_ip = ..., psu = {...}, redirect_preferred = bool,
--   explicit = bool, headers = {...} }`; the PSU's IP address is mandatory
-- @return Consent or nil, err
local function create_consent(client, body, opts)
  if type(body) ~= "table" then error("create_consent: body must be a table", 2) end
  opts = opts or {}
  local psu = psu_of(client, opts)
  if not (psu and psu.ip) then
    return nil, errors.config("create_consent: the PSU's IP address (psu_ip) is mandatory", "PSU_IP_REQUIRED")
  end
  local fpd = tonumber(body.frequencyPerDay)
  local maxf = client.profile.max_frequency_per_day
  if fpd and maxf and fpd > maxf then
    return nil, errors.config("frequencyPerDay " .. fpd .. " exceeds the bank's maximum " .. maxf,
      "FREQUENCY_INVALID")
  end
  local headers = tpp_headers(opts)
  local res, err = client:request{
    method = "POST", path = "/v1/consents", body = body, service = "AIS", psu = psu,
    headers = headers, redirect = true, idempotent = false,
  }
  if not res then return nil, err end
  local b, berr = body_table(res, "create_consent")
  if not b then return nil, berr end
  if type(b.consentId) ~= "string" or b.consentId == "" then
    return nil, errors.protocol("create_consent: no consentId in the response", { status = res.status,
      request_id = res.request_id, outcome = "unknown" }, "BAD_RESPONSE")
  end
  if fpd then client.store:set("xs2a:consent:" .. b.consentId .. ":fpd", tostring(math.floor(fpd)), 400 * 86400) end
  return new_consent(client, b.consentId, {
    status = b.consentStatus, links = b._links, data = b, approach = approach_of(res), psu = psu,
    messages = errors.messages_from(b),
  })
end

--- A consent object for a known id (no request is made).
local function consent(client, id, opts)
  need_string(id, "consent id")
  opts = opts or {}
  return new_consent(client, id, { psu = psu_of(client, opts), links = opts.links, status = opts.status })
end

-- an AIS request for this consent
function Consent:_get(path, query, opts, extra)
  opts = opts or {}
  local req = {
    method = "GET", path = path, query = path and merge_query(query, opts.query) or nil, service = "AIS",
    consent_id = self.id, token = self.token_key, psu = psu_of(self.client, opts),
  }
  for k, v in pairs(extra or {}) do req[k] = v end
  return self.client:request(req)
end

--- `GET /v1/consents/{id}`: the consent's data.
-- @return body or nil, err
function Consent:get()
  local res, err = self.client:request{ method = "GET", path = self.path, service = "AIS", token = self.token_key }
  if not res then return nil, err end
  local b, berr = body_table(res, "consent:get")
  if not b then return nil, berr end
  self.data = b
  if type(b.consentStatus) == "string" then self.last_status = b.consentStatus end
  return b
end

--- `GET /v1/consents/{id}/status`.
-- @return consentStatus, body | nil, err
function Consent:status()
  local res, err = self.client:request{ method = "GET", path = self.path .. "/status", service = "AIS",
    token = self.token_key }
  if not res then return nil, err end
  local b, berr = body_table(res, "consent:status")
  if not b then return nil, berr end
  if type(b.consentStatus) ~= "string" then
    return nil, errors.protocol("consent:status: no consentStatus", { request_id = res.request_id })
  end
  self.last_status = b.consentStatus
  return b.consentStatus, b
end
Consent.current_status = Consent.status

--- `DELETE /v1/consents/{id}` (the consent becomes terminatedByTpp).
-- @return true or nil, err
function Consent:delete()
  local res, err = self.client:request{ method = "DELETE", path = self.path, service = "AIS",
    token = self.token_key, idempotent = true }
  if not res then return nil, err end
  self.last_status = "terminatedByTpp"
  return true
end

--- Starts the SCA flow of this consent (see `xs2a.flow`).
function Consent:authorise(opts)
  return start_flow(self.client, self, opts)
end

--- JSON-safe table from which `client:resource_from_ref` rebuilds the consent.
function Consent:ref()
  return { kind = "consent", id = self.id, psu = util.copy(self.psu), links = util.copy(self.links),
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
  local res, err = self:_get(util.path("v1", "accounts", account_id),
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
  local res, err = self:_get(util.path("v1", "accounts", account_id, "balances"), nil, opts)
  if not res then return nil, err end
  local b, berr = body_table(res, "balances")
  if not b then return nil, berr end
  local list, lerr = body_list(res, b, "balances", "balances")
  if not list then return nil, lerr end
  return list, b
end

local BOOKING = { "booked", "pending", "information" }

-- Iterator over a paged transaction list. `container` is the body key
-- ("transactions" or "cardTransactions").
local function paged(self, path, query, opts, container)
  opts = opts or {}
  local max_pages = opts.max_pages or 1000
  local queue, qi = {}, 1
  local next_href
  local started, finished, pages = false, false, 0
  local seen = {}
  local function fetch()
    local res, err
    if not started then
      started = true
      res, err = self:_get(path, query, opts)
    else
      if seen[next_href] then
        return nil, errors.protocol("pagination loops back to a page already read", nil, "PAGINATION_LOOP")
      end
      seen[next_href] = true
      res, err = self:_get(nil, nil, opts, { url = next_href, path = false, follow = true })
    end
    if not res then return nil, err end
    pages = pages + 1
    local b = res.json
    if type(b) ~= "table" then
      return nil, errors.protocol(container .. ": response has no JSON object", { request_id = res.request_id })
    end
    local t = b[container]
    queue, qi = {}, 1
    next_href = nil
    if t ~= nil and (type(t) ~= "table" or json.is_array(t)) then
      return nil, errors.protocol(container .. ": not an object", { status = res.status,
        request_id = res.request_id }, "BAD_RESPONSE")
    end
    if type(t) == "table" then
      for _, status in ipairs(BOOKING) do
        if t[status] ~= nil then
          local list, lerr = body_list(res, t, status, container)
          if not list then return nil, lerr end
          for _, tx in ipairs(list) do
            if type(tx) == "table" then
              tx._status = status
              queue[#queue + 1] = tx
            end
          end
        end
      end
      local links = type(t._links) == "table" and t._links or nil
      local nxt = links and links.next
      if nxt == nil and type(b._links) == "table" then nxt = b._links.next end
      if type(nxt) == "table" then nxt = nxt.href end
      if type(nxt) == "string" and nxt ~= "" then next_href = nxt end
    end
    if pages >= max_pages then next_href = nil end
    return true
  end
  return function()
    while true do
      if finished then return nil end
      if qi <= #queue then
        local tx = queue[qi]
        qi = qi + 1
        return tx
      end
      if started and not next_href then
        finished = true
        return nil
      end
      local ok, err = fetch()
      if not ok then
        finished = true
        return false, err
      end
    end
  end
end

--- Iterator over the transactions of an account (see the module description).
-- @param account_id the account's resourceId
-- @param query e.g. `{ bookingStatus = "booked", dateFrom = "2026-01-01" }` (bookingStatus defaults to "booked")
-- @param opts `{ psu_ip = ..., max_pages = 1000 }`
function Consent:transactions(account_id, query, opts)
  need_string(account_id, "account id")
  query = merge_query({ bookingStatus = "booked" }, query)
  return paged(self, util.path("v1", "accounts", account_id, "transactions"), query, opts, "transactions")
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
  local res, err = self:_get(util.path("v1", "accounts", account_id, "transactions", tx_id), nil, opts)
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
  local res, err = self:_get(util.path("v1", "card-accounts", id), nil, opts)
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
  local res, err = self:_get(util.path("v1", "card-accounts", id, "balances"), nil, opts)
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
  return paged(self, util.path("v1", "card-accounts", id, "transactions"), query, opts, "cardTransactions")
end

------------------------------------------------------------------------------
-- Payment

local Payment = {}
Payment.__index = Payment
Payment.__name = "xs2a.Payment"
Payment.__tostring = function(p)
  return "xs2a.Payment (" .. p.payment_service .. "/" .. p.product .. ", " .. tostring(p.last_status or "?") .. ")"
end
_M.Payment = Payment

local function deferred(service, data)
  if service == "periodic-payments" then return true end
  if type(data) ~= "table" then return false end
  if data.batchBookingPreferred == true then return true end
  local d = data.requestedExecutionDate
  if type(d) == "string" and d > os.date("!%Y-%m-%d") then return true end
  return false
end

local function new_payment(client, service, product, id, fields)
  fields = fields or {}
  local p = setmetatable({
    client = client,
    kind = "payment",
    service = "PIS",
    payment_service = service,
    product = product,
    id = id,
    last_status = fields.status,
    links = fields.links or {},
    data = fields.data,
    request = fields.request,
    approach = fields.approach,
    psu = fields.psu,
    messages = fields.messages,
    scope = "PIS:" .. id,
    token_key = "payment:" .. id,
    path = util.path("v1", service, product, id),
    final = PAYMENT_FINAL,
    success = fields.deferred and PAYMENT_SUCCESS_DEFERRED or PAYMENT_SUCCESS,
    deferred = fields.deferred or false,
  }, Payment)
  p.authorisations_path = p.path .. "/authorisations"
  if p.deferred then
    p.final = util.merge(PAYMENT_FINAL, PAYMENT_SUCCESS_DEFERRED)
  end
  return p
end

--- Initiates a payment (`POST /v1/{payment-service}/{payment-product}`).
-- Never repeated automatically: when the answer is lost the error has
-- `outcome = "unknown"` and the X-Request-ID that was sent.
-- @param product e.g. "sepa-credit-transfers" (Berlin) or "domestic" (Georgia)
-- @param body the payment body (spec field names)
-- @param opts `{ service = "payments"|"periodic-payments"|"bulk-payments",
--   psu_ip = ..., psu = {...}, consent_id = ..., headers = {...},
--   redirect_preferred = bool, explicit = bool }`
-- @return Payment or nil, err
local function initiate_payment(client, product, body, opts)
  need_string(product, "payment product")
  if type(body) ~= "table" then error("initiate_payment: body must be a table", 2) end
  opts = opts or {}
  local service = opts.service or "payments"
  if not PAYMENT_SERVICES[service] then
    error("initiate_payment: service must be payments, periodic-payments or bulk-payments", 2)
  end
  local psu = psu_of(client, opts)
  if not (psu and psu.ip) then
    return nil, errors.config("initiate_payment: the PSU's IP address (psu_ip) is mandatory", "PSU_IP_REQUIRED")
  end
  local headers = tpp_headers(opts)
  local res, err = client:request{
    method = "POST", path = util.path("v1", service, product), body = body, service = "PIS", psu = psu,
    consent_id = opts.consent_id, headers = headers, redirect = true, idempotent = false,
  }
  if not res then return nil, err end
  local b = res.json
  if type(b) ~= "table" or type(b.paymentId) ~= "string" or b.paymentId == "" then
    return nil, errors.protocol("initiate_payment: no paymentId in the " .. res.status .. " response",
      { status = res.status, request_id = res.request_id, outcome = "unknown" }, "BAD_RESPONSE")
  end
  return new_payment(client, service, product, b.paymentId, {
    status = b.transactionStatus, links = b._links, data = b, request = body, approach = approach_of(res),
    psu = psu, messages = errors.messages_from(b), deferred = deferred(service, body),
  })
end

--- A payment object for a known id (no request is made).
local function payment(client, service, product, id, opts)
  if not PAYMENT_SERVICES[service] then error("payment: unknown payment service " .. tostring(service), 2) end
  need_string(product, "payment product")
  need_string(id, "payment id")
  opts = opts or {}
  return new_payment(client, service, product, id, { psu = psu_of(client, opts), links = opts.links,
    status = opts.status, deferred = opts.deferred or service == "periodic-payments" })
end

--- `GET /v1/{service}/{product}/{id}`.
-- @return body or nil, err
function Payment:get()
  local res, err = self.client:request{ method = "GET", path = self.path, service = "PIS", token = self.token_key }
  if not res then return nil, err end
  local b, berr = body_table(res, "payment:get")
  if not b then return nil, berr end
  self.data = b
  if type(b.transactionStatus) == "string" then self.last_status = b.transactionStatus end
  return b
end

--- `GET /v1/{service}/{product}/{id}/status`.
-- @return transactionStatus, body | nil, err
function Payment:status()
  local res, err = self.client:request{ method = "GET", path = self.path .. "/status", service = "PIS",
    token = self.token_key }
  if not res then return nil, err end
  local b, berr = body_table(res, "payment:status")
  if not b then return nil, berr end
  if type(b.transactionStatus) ~= "string" then
    return nil, errors.protocol("payment:status: no transactionStatus", { request_id = res.request_id })
  end
  self.last_status = b.transactionStatus
  return b.transactionStatus, b
end
Payment.current_status = Payment.status

--- Starts the SCA flow of this payment.
function Payment:authorise(opts)
  return start_flow(self.client, self, opts)
end

--- `DELETE /v1/{service}/{product}/{id}`.
-- @return `{ status = 204|202|200, cancellation_required = bool, links,
--   transaction_status, body }` or nil, err. With `cancellation_required`,
--   call `payment:authorise_cancellation()`.
function Payment:cancel(opts)
  opts = opts or {}
  local res, err = self.client:request{
    method = "DELETE", path = self.path, service = "PIS", token = self.token_key,
    psu = psu_of(self.client, opts) or self.psu, redirect = true, idempotent = false,
  }
  if not res then return nil, err end
  local b = type(res.json) == "table" and res.json or {}
  local out = {
    status = res.status,
    cancellation_required = res.status == 202,
    links = b._links or {},
    transaction_status = b.transactionStatus,
    body = b,
  }
  if res.status == 204 then self.last_status = "CANC" out.transaction_status = out.transaction_status or "CANC" end
  if out.cancellation_required then self.cancel_links = out.links end
  return out
end

local Cancellation = {}
Cancellation.__index = Cancellation
Cancellation.__name = "xs2a.Cancellation"
_M.Cancellation = Cancellation

local function new_cancellation(pay, links)
  return setmetatable({
    client = pay.client,
    kind = "cancellation",
    service = "PIS",
    payment = pay,
    id = pay.id,
    links = links or {},
    psu = pay.psu,
    scope = pay.scope,
    token_key = pay.token_key,
    authorisations_path = pay.path .. "/cancellation-authorisations",
    final = CANCEL_FINAL,
    success = CANCEL_SUCCESS,
  }, Cancellation)
end

--- The payment's status (the cancellation flow polls it).
-- @return transactionStatus, body | nil, err
function Cancellation:current_status() return self.payment:status() end
--- JSON-safe reference for `client:resource_from_ref`.
-- @return table
function Cancellation:ref()
  local r = self.payment:ref()
  r.kind = "cancellation"
  r.cancel_links = util.copy(self.links)
  return r
end

--- Starts the SCA flow of the cancellation (after `cancel()` answered 202).
function Payment:authorise_cancellation(opts)
  return start_flow(self.client, new_cancellation(self, self.cancel_links), opts)
end

--- JSON-safe reference for `client:resource_from_ref` (no token, no body).
-- @return table
function Payment:ref()
  return { kind = "payment", id = self.id, payment_service = self.payment_service, product = self.product,
    psu = util.copy(self.psu), links = util.copy(self.links), status = self.last_status, deferred = self.deferred }
end

------------------------------------------------------------------------------
-- Signing baskets

local Basket = {}
Basket.__index = Basket
Basket.__name = "xs2a.Basket"
_M.Basket = Basket

local function need_baskets(client)
  if not client.profile.signing_baskets then
    return nil, errors.config("profile " .. client.profile.name .. " has no signing baskets", "SERVICE_UNSUPPORTED")
  end
  return true
end

local function new_basket(client, id, fields)
  fields = fields or {}
  local b = setmetatable({
    client = client, kind = "basket", service = "PIS", id = id,
    last_status = fields.status, links = fields.links or {}, data = fields.data, psu = fields.psu,
    approach = fields.approach, messages = fields.messages,
    scope = "PIS:" .. id, token_key = "basket:" .. id,
    path = util.path("v1", "signing-baskets", id),
    final = BASKET_FINAL, success = BASKET_SUCCESS,
  }, Basket)
  b.authorisations_path = b.path .. "/authorisations"
  return b
end

Basket.__tostring = function(b) return "xs2a.Basket (" .. tostring(b.last_status or "?") .. ")" end

--- `POST /v1/signing-baskets` (only for profiles with signing baskets).
-- Never repeated automatically (like a payment initiation).
-- @param body `{ paymentIds = {...}, consentIds = {...} }`
-- @param opts the PSU options (`psu_ip` mandatory), `headers`, `redirect_preferred`,
--   `decoupled_preferred`, `explicit`
-- @return Basket or nil, err
local function create_signing_basket(client, body, opts)
  local ok, berr = need_baskets(client)
  if not ok then return nil, berr end
  if type(body) ~= "table" then error("create_signing_basket: body must be a table", 2) end
  opts = opts or {}
  local psu = psu_of(client, opts)
  if not (psu and psu.ip) then
    return nil, errors.config("create_signing_basket: the PSU's IP address (psu_ip) is mandatory",
      "PSU_IP_REQUIRED")
  end
  local res, err = client:request{ method = "POST", path = "/v1/signing-baskets", body = body, service = "PIS",
    psu = psu, headers = tpp_headers(opts), redirect = true, idempotent = false }
  if not res then return nil, err end
  local b = res.json
  if type(b) ~= "table" or type(b.basketId) ~= "string" or b.basketId == "" then
    return nil, errors.protocol("create_signing_basket: no basketId in the " .. res.status .. " response",
      { status = res.status, request_id = res.request_id, outcome = "unknown" }, "BAD_RESPONSE")
  end
  return new_basket(client, b.basketId, { status = b.transactionStatus, links = b._links, data = b, psu = psu,
    approach = approach_of(res), messages = errors.messages_from(b) })
end

--- `GET /v1/signing-baskets/{id}`.
-- @return body (`payments`, `consents`, `transactionStatus`) or nil, err
function Basket:get()
  local res, err = self.client:request{ method = "GET", path = self.path, service = "PIS", token = self.token_key }
  if not res then return nil, err end
  local b, berr = body_table(res, "basket:get")
  if not b then return nil, berr end
  self.data = b
  if type(b.transactionStatus) == "string" then self.last_status = b.transactionStatus end
  return b
end

--- `GET /v1/signing-baskets/{id}/status`.
-- @return transactionStatus, body | nil, err
function Basket:status()
  local res, err = self.client:request{ method = "GET", path = self.path .. "/status", service = "PIS",
    token = self.token_key }
  if not res then return nil, err end
  local b, berr = body_table(res, "basket:status")
  if not b then return nil, berr end
  if type(b.transactionStatus) ~= "string" then
    return nil, errors.protocol("basket:status: no transactionStatus", { status = res.status,
      request_id = res.request_id }, "BAD_RESPONSE")
  end
  self.last_status = b.transactionStatus
  return b.transactionStatus, b
end
Basket.current_status = Basket.status

--- `DELETE /v1/signing-baskets/{id}` (the bank allows it while nothing is authorised).
-- @return true or nil, err
function Basket:delete()
  local res, err = self.client:request{ method = "DELETE", path = self.path, service = "PIS",
    token = self.token_key, idempotent = true }
  if not res then return nil, err end
  self.last_status = "CANC"
  return true
end

--- Starts the SCA flow of the basket: one authorisation for every payment
-- and consent in it. The flow ends at `ACTC` or `ACSC`.
-- @param opts flow options (see `xs2a.flow`)
-- @return Flow
function Basket:authorise(opts) return start_flow(self.client, self, opts) end

--- JSON-safe reference for `client:resource_from_ref`.
-- @return table
function Basket:ref()
  return { kind = "basket", id = self.id, psu = util.copy(self.psu), links = util.copy(self.links),
    status = self.last_status }
end

------------------------------------------------------------------------------
-- Funds confirmation

--- `POST /v1/funds-confirmations` (PIIS; needs the PSP_IC role).
-- @param body `{ account = {...}, instructedAmount = {...}, cardNumber, payee }`
-- @param opts `{ consent_id = ..., token = store key }`
-- @return fundsAvailable (boolean), body | nil, err
local function confirm_funds(client, body, opts)
  if type(body) ~= "table" then error("confirm_funds: body must be a table", 2) end
  opts = opts or {}
  if not client.profile.funds_confirmation then
    return nil, errors.config("profile " .. client.profile.name .. " has no funds confirmation",
      "SERVICE_UNSUPPORTED")
  end
  local res, err = client:request{ method = "POST", path = "/v1/funds-confirmations", body = body,
    service = "PIIS", consent_id = opts.consent_id, token = opts.token, idempotent = true }
  if not res then return nil, err end
  local b = res.json
  if type(b) ~= "table" or type(b.fundsAvailable) ~= "boolean" then
    return nil, errors.protocol("confirm_funds: no fundsAvailable", { request_id = res.request_id })
  end
  return b.fundsAvailable, b
end

------------------------------------------------------------------------------
-- rebuilding from a ref

local function resource_from_ref(client, ref)
  if type(ref) ~= "table" or type(ref.id) ~= "string" then
    return nil, errors.config("not a resource reference", "REF_INVALID")
  end
  local ok, r = pcall(function()
    if ref.kind == "consent" then
      return new_consent(client, ref.id, { psu = ref.psu, links = ref.links, status = ref.status })
    elseif ref.kind == "payment" or ref.kind == "cancellation" then
      local p = payment(client, ref.payment_service, ref.product, ref.id, { psu = ref.psu, links = ref.links,
        status = ref.status, deferred = ref.deferred })
      p.psu = ref.psu
      if ref.kind == "cancellation" then return new_cancellation(p, ref.cancel_links) end
      return p
    elseif ref.kind == "basket" then
      return new_basket(client, ref.id, { psu = ref.psu, links = ref.links, status = ref.status })
    end
    error("unknown resource kind " .. tostring(ref.kind), 0)
  end)
  if not ok then return nil, errors.config("bad resource reference: " .. tostring(r), "REF_INVALID") end
  return r
end

--- Adds the resource methods to the client class.
function _M.install(Client)
  Client.create_consent = create_consent
  Client.consent = consent
  Client.initiate_payment = initiate_payment
  Client.payment = payment
  Client.confirm_funds = confirm_funds
  Client.create_signing_basket = create_signing_basket
  Client.signing_basket = function(client, id, opts)
    local ok, berr = need_baskets(client)
    if not ok then return nil, berr end
    need_string(id, "basket id")
    return new_basket(client, id, { psu = psu_of(client, opts or {}) })
  end
  Client.resource_from_ref = resource_from_ref
end

return _M
