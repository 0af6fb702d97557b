--- Payments: initiation (single, periodic, bulk), status, cancellation.
--
-- Payment (`client:initiate_payment(product, body, opts)`,
-- `client:payment(service, product, id)`): `opts.service` is
-- `"payments"` (default), `"periodic-payments"` or `"bulk-payments"`;
-- `payment:get()`, `payment:status()` -> transactionStatus, body;
-- `payment:cancel()` -> `{ status = 204|202|200, cancellation_required = bool,
-- links, transaction_status }`; `payment:authorise(opts)`,
-- `payment:authorise_cancellation(opts)` -> flow.
-- @module xs2a.api.payment
local errors = require "xs2a.errors"
local url = require "xs2a.net.url"
local tables = require "xs2a.tables"
local statuses = require "xs2a.status"
local resource = require "xs2a.api.resource"
local authorisation = require "xs2a.api.authorisation"

local type, tostring, setmetatable = type, tostring, setmetatable
local request, psu_from, tpp_headers, need_string, approach_of, start_flow = resource.request, resource.psu_from,
  resource.tpp_headers, resource.need_string, resource.approach_of, require("xs2a.sca.flow").start

local _M = {}

local PAYMENT_SERVICES = { payments = true, ["periodic-payments"] = true, ["bulk-payments"] = true }
local PAYMENT_FINAL = statuses.PAYMENT_FINAL
local PAYMENT_SUCCESS = tables.set({ "ACSC", "ACCC" })
-- future-dated, periodic and batch payments stop at an accepted status
local PAYMENT_SUCCESS_DEFERRED = tables.set({ "ACSC", "ACCC", "ACTC", "ACCP", "ACWC", "ACFC", "ACSP" })
local CANCEL_FINAL = tables.set({ "CANC", "RJCT", "ACSC", "ACCC" })
local CANCEL_SUCCESS = tables.set({ "CANC" })
_M.FINAL, _M.SUCCESS = PAYMENT_FINAL, PAYMENT_SUCCESS

local DESC = { what = "payment", status_field = "transactionStatus" }

-- the array fields of payment bodies (so that an empty `{}` is sent as `[]`)
local PAYMENT_SHAPE = { remittanceInformationUnstructuredArray = "array",
  remittanceInformationStructuredArray = "array", monthsOfExecution = "array" }
local SHAPES = {
  payments = PAYMENT_SHAPE,
  ["periodic-payments"] = PAYMENT_SHAPE,
  ["bulk-payments"] = { payments = { array = true, item = PAYMENT_SHAPE } },
}
_M.SHAPES = SHAPES

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
  local p = resource.new(Payment, client, id, { desc = DESC, kind = "payment", service = "PIS",
    path = url.path("v1", service, product, id), final = PAYMENT_FINAL,
    success = fields.deferred and PAYMENT_SUCCESS_DEFERRED or PAYMENT_SUCCESS },
    fields, { payment_service = service, product = product, request = fields.request,
      deferred = fields.deferred or false })
  if p.deferred then
    p.final = tables.merge(PAYMENT_FINAL, PAYMENT_SUCCESS_DEFERRED)
  end
  return p
end

--- Initiates a payment (`POST /v1/{payment-service}/{payment-product}`).
-- Never repeated automatically: when the answer is lost the error has
-- `outcome = "unknown"` and the X-Request-ID that was sent.
-- `client:initiate_payment(product, body, opts)` calls it.
-- @param client the client
-- @param product e.g. "sepa-credit-transfers" (Berlin) or "domestic" (Georgia)
-- @param body the payment body (spec field names)
-- @param opts `{ service = "payments"|"periodic-payments"|"bulk-payments",
--   psu_ip = ..., psu = {...}, consent_id = ..., headers = {...},
--   redirect_preferred = bool, explicit = bool }`
-- @return Payment or nil, err
function _M.initiate(client, product, body, opts)
  need_string(product, "payment product")
  if type(body) ~= "table" then error("initiate_payment: body must be a table", 2) end
  opts = opts or {}
  local service = opts.service or "payments"
  if not PAYMENT_SERVICES[service] then
    error("initiate_payment: service must be payments, periodic-payments or bulk-payments", 2)
  end
  local psu = psu_from(opts)
  if not (psu and psu.ip) then
    return nil, errors.config("initiate_payment: the PSU's IP address (psu_ip) is mandatory", "PSU_IP_REQUIRED")
  end
  local headers = tpp_headers(opts)
  local res, err = request(client, {
    method = "POST", path = url.path("v1", service, product), body = body, shape = SHAPES[service], service = "PIS",
    psu = psu,
    consent_id = opts.consent_id, headers = headers, redirect = true, idempotent = false,
  })
  if not res then return nil, err end
  local b = res.json
  if type(b) ~= "table" or type(b.paymentId) ~= "string" or b.paymentId == "" or not resource.id_ok(b.paymentId) then
    return nil, errors.protocol("initiate_payment: no paymentId in the " .. res.status .. " response",
      { status = res.status, request_id = res.request_id, outcome = "unknown" }, "BAD_RESPONSE")
  end
  return new_payment(client, service, product, b.paymentId, {
    status = b.transactionStatus, links = b._links, data = b, request = body, approach = approach_of(res),
    psu = psu, messages = errors.messages_from(b), deferred = deferred(service, body),
  })
end

--- A payment object for a known id (no request is made).
function _M.new(client, service, product, id, opts)
  if not PAYMENT_SERVICES[service] then error("payment: unknown payment service " .. tostring(service), 2) end
  need_string(product, "payment product")
  need_string(id, "payment id")
  local idok, iderr = resource.check_id(id, "payment id")
  if not idok then return nil, iderr end
  opts = opts or {}
  return new_payment(client, service, product, id, { psu = psu_from(opts), links = opts.links,
    status = opts.status, deferred = opts.deferred or service == "periodic-payments" })
end

--- `GET /v1/{service}/{product}/{id}`.
-- @return body or nil, err
Payment.get = resource.get

--- `GET /v1/{service}/{product}/{id}/status`.
-- @return transactionStatus, body | nil, err
Payment.status = resource.status
Payment.current_status = resource.status

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
  local res, err = request(self.client, {
    method = "DELETE", path = self.path, service = "PIS", token = self.token_key,
    psu = psu_from(opts) or self.psu, redirect = true, idempotent = false,
  })
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
  r.cancel_links = tables.copy(self.links)
  return r
end

-- The authorisation API of payments and of their cancellations
-- (`xs2a.api.authorisation`): `authorisations()`, `authorisation(id)`,
-- `start_authorisation(opts)`; on a cancellation they address
-- `.../cancellation-authorisations`.
authorisation.methods_for(Payment)
authorisation.methods_for(Cancellation)

--- The payment's cancellation as a resource of its own, for the
-- authorisation API (`payment:cancellation():start_authorisation(opts)`).
-- @return Cancellation
function Payment:cancellation()
  return new_cancellation(self, self.cancel_links)
end

--- Starts the SCA flow of the cancellation (after `cancel()` answered 202).
function Payment:authorise_cancellation(opts)
  return start_flow(self.client, new_cancellation(self, self.cancel_links), opts)
end

--- JSON-safe reference for `client:resource_from_ref` (no token, no body).
-- @return table
function Payment:ref()
  return { kind = "payment", id = self.id, payment_service = self.payment_service, product = self.product,
    psu = tables.copy(self.psu), links = tables.copy(self.links), status = self.last_status, deferred = self.deferred }
end

_M.new_cancellation = new_cancellation

return _M
