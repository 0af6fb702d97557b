--- Funds confirmation (PIIS).
-- @module xs2a.api.funds
local errors = require "xs2a.errors"
local resource = require "xs2a.api.resource"

local type, error = type, error
local request = resource.request

local _M = {}

--- `POST /v1/funds-confirmations` (PIIS; needs the PSP_IC role);
-- `client:confirm_funds(body, opts)` calls it.
-- @param client the client
-- @param body `{ account = {...}, instructedAmount = {...}, cardNumber, payee }`
-- @param opts `{ consent_id = ..., token = store key }`
-- @return fundsAvailable (boolean), body | nil, err
function _M.confirm(client, body, opts)
  if type(body) ~= "table" then error("confirm_funds: body must be a table", 2) end
  opts = opts or {}
  if not client.profile.funds_confirmation then
    return nil, errors.config("profile " .. client.profile.name .. " has no funds confirmation (Paysera: "
      .. "\"coming soon\"; set the profile's funds_confirmation = true once the bank offers it)", "SERVICE_UNSUPPORTED")
  end
  local res, err = request(client, { method = "POST", path = "/v1/funds-confirmations", body = body,
    service = "PIIS", consent_id = opts.consent_id, token = opts.token, idempotent = true })
  if not res then return nil, err end
  local b = res.json
  if type(b) ~= "table" or type(b.fundsAvailable) ~= "boolean" then
    return nil, errors.protocol("confirm_funds: no fundsAvailable", { request_id = res.request_id })
  end
  return b.fundsAvailable, b
end

return _M
