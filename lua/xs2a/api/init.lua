--- The resources of the API, as the client offers them: creating calls,
-- objects for known ids, and rebuilding a resource from `resource:ref()`.
-- (The authorisation sub-resources will live in `xs2a.api.authorisation`.)
-- @module xs2a.api
local errors = require "xs2a.errors"
local consent = require "xs2a.api.consent"
local payment = require "xs2a.api.payment"
local basket = require "xs2a.api.basket"
local funds = require "xs2a.api.funds"

local type, tostring, pcall, error = type, tostring, pcall, error

local _M = {}

_M.consent, _M.payment, _M.basket, _M.funds = consent, payment, basket, funds

--- The methods the client class offers (`client:create_consent(...)`...).
_M.methods = {
  create_consent = consent.create,
  consent = consent.new,
  initiate_payment = payment.initiate,
  payment = payment.new,
  confirm_funds = funds.confirm,
  create_signing_basket = basket.create,
  signing_basket = basket.new,
}

--- Rebuilds a consent, payment, cancellation or basket from `resource:ref()`
-- (`client:resource_from_ref(ref)` calls it).
-- @param client the client
-- @tparam table ref the reference (`{ kind, id, ... }`, JSON-safe)
-- @return the resource, or nil and err (kind `config`, code `REF_INVALID`)
function _M.resource_from_ref(client, ref)
  if type(ref) ~= "table" or type(ref.id) ~= "string" then
    return nil, errors.config("not a resource reference", "REF_INVALID")
  end
  if ref.id == "." or ref.id == ".." then return nil, errors.config("bad resource reference: id", "REF_INVALID") end
  local ok, r = pcall(function()
    if ref.kind == "consent" then
      return consent.from_fields(client, ref.id, { psu = ref.psu, links = ref.links, status = ref.status })
    elseif ref.kind == "payment" or ref.kind == "cancellation" then
      local p = assert(payment.new(client, ref.payment_service, ref.product, ref.id, { psu = ref.psu,
        links = ref.links, status = ref.status, deferred = ref.deferred }))
      p.psu = ref.psu
      if ref.kind == "cancellation" then return payment.new_cancellation(p, ref.cancel_links) end
      return p
    elseif ref.kind == "basket" then
      return basket.from_fields(client, ref.id, { psu = ref.psu, links = ref.links, status = ref.status })
    end
    error("unknown resource kind " .. tostring(ref.kind), 0)
  end)
  if not ok then return nil, errors.config("bad resource reference: " .. tostring(r), "REF_INVALID") end
  return r
end

_M.methods.resource_from_ref = _M.resource_from_ref

return _M
