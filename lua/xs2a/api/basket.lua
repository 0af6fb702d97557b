--- Signing baskets (`client:create_signing_basket(body, opts)`,
-- `client:signing_basket(id)`; profiles with `signing_baskets` only, else
-- `nil, err` SERVICE_UNSUPPORTED): `basket:get()`, `basket:status()` ->
-- transactionStatus, body; `basket:delete()` -> true; `basket:authorise(opts)`
-- -> flow (scope `PIS:<basketId>`, ends at ACTC or ACSC).
-- @module xs2a.api.basket
local errors = require "xs2a.errors"
local url = require "xs2a.net.url"
local tables = require "xs2a.tables"
local resource = require "xs2a.api.resource"
local authorisation = require "xs2a.api.authorisation"

local type, tostring = type, tostring
local request, psu_from, tpp_headers, need_string, approach_of, start_flow = resource.request, resource.psu_from,
  resource.tpp_headers, resource.need_string, resource.approach_of, require("xs2a.sca.flow").start

local _M = {}

local BASKET_FINAL = tables.set({ "RJCT", "CANC", "ACTC", "ACSC" })
local BASKET_SUCCESS = tables.set({ "ACTC", "ACSC" })

local DESC = { what = "basket", status_field = "transactionStatus", deleted = "CANC" }

-- the array fields of a basket body
local SHAPE = { paymentIds = "array", consentIds = "array" }

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
  return resource.new(Basket, client, id, { desc = DESC, kind = "basket", service = "PIS",
    path = url.path("v1", "signing-baskets", id), final = BASKET_FINAL, success = BASKET_SUCCESS }, fields)
end

Basket.__tostring = function(b) return "xs2a.Basket (" .. tostring(b.last_status or "?") .. ")" end

--- `POST /v1/signing-baskets` (only for profiles with signing baskets).
-- Never repeated automatically (like a payment initiation).
-- (`client:create_signing_basket(body, opts)` calls it.)
-- @param client the client
-- @param body `{ paymentIds = {...}, consentIds = {...} }`
-- @param opts the PSU options (`psu_ip` mandatory), `headers`, `redirect_preferred`,
--   `decoupled_preferred`, `explicit`
-- @return Basket or nil, err
function _M.create(client, body, opts)
  local ok, berr = need_baskets(client)
  if not ok then return nil, berr end
  if type(body) ~= "table" then error("create_signing_basket: body must be a table", 2) end
  opts = opts or {}
  local psu = psu_from(opts)
  if not (psu and psu.ip) then
    return nil, errors.config("create_signing_basket: the PSU's IP address (psu_ip) is mandatory",
      "PSU_IP_REQUIRED")
  end
  local res, err = request(client, { method = "POST", path = "/v1/signing-baskets", body = body, shape = SHAPE,
    service = "PIS", psu = psu, headers = tpp_headers(opts), redirect = true, idempotent = false })
  if not res then return nil, err end
  local b = res.json
  if type(b) ~= "table" or type(b.basketId) ~= "string" or b.basketId == "" or not resource.id_ok(b.basketId) then
    return nil, errors.protocol("create_signing_basket: no basketId in the " .. res.status .. " response",
      { status = res.status, request_id = res.request_id, outcome = "unknown" }, "BAD_RESPONSE")
  end
  return new_basket(client, b.basketId, { status = b.transactionStatus, links = b._links, data = b, psu = psu,
    approach = approach_of(res), messages = errors.messages_from(b) })
end

--- `GET /v1/signing-baskets/{id}`.
-- @return body (`payments`, `consents`, `transactionStatus`) or nil, err
Basket.get = resource.get

--- `GET /v1/signing-baskets/{id}/status`.
-- @return transactionStatus, body | nil, err
Basket.status = resource.status
Basket.current_status = resource.status

--- `DELETE /v1/signing-baskets/{id}` (the bank allows it while nothing is authorised).
-- @return true or nil, err
Basket.delete = resource.delete

--- Starts the SCA flow of the basket: one authorisation for every payment
-- and consent in it. The flow ends at `ACTC` or `ACSC`.
-- @param opts flow options (see `xs2a.flow`)
-- @return Flow
function Basket:authorise(opts) return start_flow(self.client, self, opts) end

--- JSON-safe reference for `client:resource_from_ref`.
-- @return table
function Basket:ref()
  return { kind = "basket", id = self.id, psu = tables.copy(self.psu), links = tables.copy(self.links),
    status = self.last_status }
end

-- The authorisation API of the basket (`xs2a.api.authorisation`):
-- `authorisations()`, `authorisation(id)`, `start_authorisation(opts)`.
authorisation.methods_for(Basket)

--- A basket object for a known id (no request is made), like
-- `client:consent(id, opts)`: `opts.links` (the `_links` of an earlier
-- answer, e.g. `scaOAuth`), `opts.status`, the PSU options.
function _M.new(client, id, opts)
  local ok, berr = need_baskets(client)
  if not ok then return nil, berr end
  need_string(id, "basket id")
  local idok, iderr = resource.check_id(id, "basket id")
  if not idok then return nil, iderr end
  opts = opts or {}
  return new_basket(client, id, { psu = psu_from(opts), links = opts.links, status = opts.status })
end

_M.from_fields = new_basket

return _M
