--- The authorisation sub-resources of consents, payments, payment
-- cancellations and signing baskets, as a public API (Berlin Group 1.3
-- "start authorisation", "get authorisation sub-resources", "get SCA
-- status", "update PSU data"). Flows (`resource:authorise()`) use the same
-- calls; this module lets a TPP drive every step itself.
--
-- On a consent, payment, cancellation (`payment:cancellation()`) or basket:
--
-- * `resource:authorisations()` -> list of authorisation ids, body
--   (`GET .../authorisations`);
-- * `resource:authorisation(id)` -> an `Authorisation` (no request made);
-- * `resource:start_authorisation(opts)` -> `Authorisation`, result
--   (`POST .../authorisations`). Sends `TPP-Redirect-URI` and
--   `TPP-Nok-Redirect-URI` (the client's `redirect_uri`, `nok_redirect_uri`,
--   or `opts.redirect_uri`, `opts.nok_redirect_uri`), `TPP-Redirect-Preferred`
--   / `TPP-Decoupled-Preferred` from `opts.redirect_preferred` /
--   `opts.decoupled_preferred`, the PSU headers from `opts.psu` (or
--   `psu_id`, `psu_ip`...), and `psuData` when `opts.password` is given
--   (start with PSU authentication, embedded approach).
--
-- On an `Authorisation` (each update is `PUT .../authorisations/{id}`):
--
-- * `auth:status()` -> scaStatus, body;
-- * `auth:identify(opts)` -> result: update PSU identification (body `{}`,
--   the PSU in the headers: `opts.psu_id` or `opts.psu`);
-- * `auth:authenticate(password, opts)` -> result: update PSU
--   authentication (`psuData.password`; `opts.psu_id` names the PSU);
-- * `auth:select_method(method_id, opts)` -> result: select the SCA method
--   (`authenticationMethodId`);
-- * `auth:authorise_transaction(sca_data, opts)` -> result: transaction
--   authorisation (`scaAuthenticationData`, the OTP);
-- * `auth:confirm(code, opts)` -> result: authorisation confirmation
--   (`confirmationCode`, redirect approach).
--
-- A result is a table: `authorisation_id`, `sca_status`, `next` (what the
-- bank asks for now: `"identify"`, `"authenticate"`, `"select_method"`,
-- `"authorise_transaction"`, `"redirect"`, `"oauth"`, `"confirm"`, `"wait"`,
-- `"done"`, `"failed"`), `approach`, `psu_message`, `sca_methods` (list),
-- `chosen_method`, `challenge`, `redirect_url`, `links`, `body`. Every
-- failure is an `xs2a.Error` (`nil, err`); PSU passwords and OTPs never
-- appear in it.
-- @module xs2a.api.authorisation
local errors = require "xs2a.errors"
local json = require "xs2a.codec.json"
local url = require "xs2a.net.url"
local resource = require "xs2a.api.resource"

local type, tostring, ipairs, setmetatable = type, tostring, ipairs, setmetatable
local request, psu_from, body_table, approach_of = resource.request, resource.psu_from, resource.body_table,
  resource.approach_of

local _M = {}

local FINAL_OK = { finalised = true, exempted = true }
local FINAL_BAD = { failed = true }

-- link name -> what the bank asks for next (the first present wins)
local NEXT_BY_LINK = {
  { "updatePsuIdentification", "identify" },
  { "startAuthorisationWithPsuIdentification", "identify" },
  { "updatePsuAuthentication", "authenticate" },
  { "updateEncryptedPsuAuthentication", "authenticate" },
  { "updateAdditionalPsuAuthentication", "authenticate" },
  { "startAuthorisationWithPsuAuthentication", "authenticate" },
  { "selectAuthenticationMethod", "select_method" },
  { "startAuthorisationWithAuthenticationMethodSelection", "select_method" },
  { "authoriseTransaction", "authorise_transaction" },
  { "startAuthorisationWithTransactionAuthorisation", "authorise_transaction" },
  { "scaRedirect", "redirect" },
  { "scaOAuth", "oauth" },
  { "confirmation", "confirm" },
}

local function href(links, name)
  local l = type(links) == "table" and links[name]
  if type(l) == "table" then l = l.href end
  return type(l) == "string" and l or nil
end

-- the authorisation id from a body, else from the last path segment of a link
local function id_from(b)
  if type(b.authorisationId) == "string" and b.authorisationId ~= "" then return b.authorisationId end
  for _, name in ipairs({ "scaStatus", "self" }) do
    local h = href(b._links, name)
    local id = h and h:match("/authorisations/([^/?#]+)")
    if id then return url.unescape(id) end
  end
  return nil
end

--- The typed result of a start or update call.
-- @return result table, or nil and a protocol error
local function result_of(res, what)
  local b, berr = body_table(res, what)
  if not b then return nil, berr end
  local st = b.scaStatus
  if st ~= nil and type(st) ~= "string" then
    return nil, errors.protocol(what .. ": scaStatus is not a string", { status = res.status,
      request_id = res.request_id }, "BAD_RESPONSE")
  end
  local links = type(b._links) == "table" and b._links or {}
  local nxt
  if FINAL_OK[st] then nxt = "done" elseif FINAL_BAD[st] then nxt = "failed" end
  if not nxt then
    for _, pair in ipairs(NEXT_BY_LINK) do
      if href(links, pair[1]) then nxt = pair[2] break end
    end
  end
  nxt = nxt or "wait"
  local methods = b.scaMethods
  if type(methods) ~= "table" then methods = nil end
  return {
    authorisation_id = id_from(b),
    sca_status = st,
    next = nxt,
    approach = approach_of(res),
    psu_message = type(b.psuMessage) == "string" and b.psuMessage or nil,
    sca_methods = methods,
    chosen_method = type(b.chosenScaMethod) == "table" and b.chosenScaMethod or nil,
    challenge = type(b.challengeData) == "table" and b.challengeData or nil,
    redirect_url = href(links, "scaRedirect"),
    links = links,
    body = b,
  }
end
_M.result_of = result_of

local Authorisation = {}
Authorisation.__index = Authorisation
Authorisation.__name = "xs2a.Authorisation"
Authorisation.__tostring = function(a)
  return "xs2a.Authorisation (" .. tostring(a.resource.kind) .. ", " .. tostring(a.last_status or "?") .. ")"
end
_M.Authorisation = Authorisation

-- an Authorisation of `res`, or nil and a config error for an id that is
-- not a path segment of its own ("." and "..": never sent)
local function new_auth(res, id)
  if type(id) ~= "string" or id == "" then
    return nil, errors.config("authorisation id must be a non-empty string", "BAD_ARGUMENT")
  end
  local ok, err = resource.check_id(id, "authorisation id")
  if not ok then return nil, err end
  return setmetatable({ resource = res, client = res.client, id = id,
    path = res.authorisations_path .. "/" .. url.escape(id) }, Authorisation)
end

-- the PSU headers of a call: opts.psu / psu_* keys, else the resource's PSU
local function psu_of(res, opts)
  return psu_from(opts) or res.psu
end

-- one request on an authorisation (sub-)resource of `res`
local function call(res, req, opts)
  req.service = res.service
  req.psu = psu_of(res, opts or {})
  return request(res.client, req)
end

-- The headers of a start (`POST .../authorisations` or a bank's
-- `startAuthorisationWith...` link); TPP-Redirect-URI comes from the
-- pipeline (`redirect = true`, `redirect_uri`).
local function start_headers(opts)
  local headers = resource.preferred_headers(opts, {})
  if opts.nok_redirect_uri ~= nil then headers["TPP-Nok-Redirect-URI"] = tostring(opts.nok_redirect_uri) end
  return headers
end

-- the body of each PSU-data step (the value is the PSU's input)
local BODY = {
  identify = function() return {} end,
  authenticate = function(v) return { psuData = { password = v } } end,
  select_method = function(v) return { authenticationMethodId = v } end,
  authorise_transaction = function(v) return { scaAuthenticationData = v } end,
  confirm = function(v) return { confirmationCode = v } end,
}

--- The one builder of the authorisation requests (this API's methods and
-- the flows of `xs2a.sca.flow` both send through it).
-- @param res the consent, payment, cancellation or basket
-- @param method `"POST"` (a start: redirect headers), `"PUT"` (an update) or `"GET"` (the SCA status)
-- @param target `{ path = ... }` (a path of ours) or `{ url = ... }` (a link of the bank)
-- @param step a key of the PSU-data bodies (`"identify"`, `"authenticate"`, `"select_method"`,
--   `"authorise_transaction"`, `"confirm"`), `"start"` (body `{}`) or nil (GET)
-- @param value the PSU's input for `step` (password, method id, OTP, code)
-- @param opts `psu`/`psu_*`, and on a start `redirect_uri`, `nok_redirect_uri`, `*_preferred`
-- @return the pipeline's response | nil, err
function _M.send(res, method, target, step, value, opts)
  opts = opts or {}
  local req = { method = method, path = target.path, url = target.url, idempotent = method == "GET" }
  if method ~= "GET" then
    local build = BODY[step]
    req.body = build and build(value) or {}
  end
  if method == "POST" then
    req.headers = start_headers(opts)
    req.redirect = true
    req.redirect_uri = opts.redirect_uri
  end
  return call(res, req, opts)
end
local send = _M.send

--- `GET <resource>/authorisations`: the ids of the resource's authorisations.
-- @return list of ids, body | nil, err
function _M.list(res)
  local r, err = call(res, { method = "GET", path = res.authorisations_path })
  if not r then return nil, err end
  local b, berr = body_table(r, res.kind .. ":authorisations")
  if not b then return nil, berr end
  local ids = b.authorisationIds
  if ids == nil then ids = json.array({}) end
  local ok = type(ids) == "table"
  if ok then
    for _, v in ipairs(ids) do if type(v) ~= "string" then ok = false break end end
  end
  if not ok then
    return nil, errors.protocol(res.kind .. ":authorisations: authorisationIds is not a list of strings",
      { status = r.status, request_id = r.request_id }, "BAD_RESPONSE")
  end
  return ids, b
end

--- An `Authorisation` of `res` for a known id (no request).
-- @return Authorisation | nil, err (kind `config`: an empty id, `.` or `..`)
function _M.get(res, id)
  return new_auth(res, id)
end

--- `POST <resource>/authorisations`: starts an authorisation explicitly.
-- @param res the consent, payment, cancellation or basket
-- @param opts see the module description
-- @return Authorisation, result | nil, err
function _M.start(res, opts)
  opts = opts or {}
  if opts.password ~= nil and type(opts.password) ~= "string" then
    return nil, errors.config("start_authorisation: password must be a string", "BAD_ARGUMENT")
  end
  local step = opts.password ~= nil and "authenticate" or "start"
  local r, err = send(res, "POST", { path = res.authorisations_path }, step, opts.password, opts)
  if not r then return nil, err end
  local out, rerr = result_of(r, res.kind .. ":start_authorisation")
  if not out then return nil, rerr end
  if not out.authorisation_id then
    return nil, errors.protocol(res.kind .. ":start_authorisation: no authorisationId in the response",
      { status = r.status, request_id = r.request_id }, "BAD_RESPONSE")
  end
  local a, aerr = new_auth(res, out.authorisation_id)
  if not a then
    return nil, errors.protocol(res.kind .. ":start_authorisation: unusable authorisationId", { status = r.status,
      request_id = r.request_id, cause = aerr }, "BAD_RESPONSE")
  end
  a.last_status = out.sca_status
  return a, out
end

--- `GET .../authorisations/{id}`: the SCA status.
-- @return scaStatus, body | nil, err
function Authorisation:status()
  local r, err = send(self.resource, "GET", { path = self.path })
  if not r then return nil, err end
  local b, berr = body_table(r, "authorisation:status")
  if not b then return nil, berr end
  if type(b.scaStatus) ~= "string" then
    return nil, errors.protocol("authorisation:status: no scaStatus", { status = r.status,
      request_id = r.request_id }, "BAD_RESPONSE")
  end
  self.last_status = b.scaStatus
  return b.scaStatus, b
end

-- PUT .../authorisations/{id}: the PSU-data step `what` with `value`
local function update(self, what, value, opts)
  local r, err = send(self.resource, "PUT", { path = self.path }, what, value, opts)
  if not r then return nil, err end
  local out, rerr = result_of(r, "authorisation:" .. what)
  if not out then return nil, rerr end
  out.authorisation_id = out.authorisation_id or self.id
  self.last_status = out.sca_status or self.last_status
  return out
end

local function need_arg(v, what)
  if type(v) ~= "string" or v == "" then
    return errors.config("authorisation: " .. what .. " must be a non-empty string", "BAD_ARGUMENT")
  end
end

--- Update PSU identification: body `{}`, the PSU named in the headers.
-- @param opts `{ psu_id = ..., psu = {...} }`
function Authorisation:identify(opts)
  opts = opts or {}
  local psu = psu_of(self.resource, opts)
  if not (psu and psu.id) then
    return nil, errors.config("authorisation:identify: psu_id is required", "BAD_ARGUMENT")
  end
  return update(self, "identify", nil, opts)
end

--- Update PSU authentication (`psuData.password`).
function Authorisation:authenticate(password, opts)
  local e = need_arg(password, "password")
  if e then return nil, e end
  return update(self, "authenticate", password, opts)
end

--- Select the SCA method (`authenticationMethodId`).
function Authorisation:select_method(method_id, opts)
  local e = need_arg(method_id, "method id")
  if e then return nil, e end
  return update(self, "select_method", method_id, opts)
end

--- Transaction authorisation (`scaAuthenticationData`, e.g. the OTP).
function Authorisation:authorise_transaction(sca_data, opts)
  local e = need_arg(sca_data, "SCA authentication data")
  if e then return nil, e end
  return update(self, "authorise_transaction", sca_data, opts)
end

--- Authorisation confirmation (`confirmationCode`, redirect approach).
function Authorisation:confirm(code, opts)
  local e = need_arg(code, "confirmation code")
  if e then return nil, e end
  return update(self, "confirm", code, opts)
end

--- Adds the resource-level methods to a resource class (`Consent`,
-- `Payment`, cancellation, `Basket`): `authorisations`, `authorisation`,
-- `start_authorisation`. Called by each resource module for its own class.
function _M.methods_for(class)
  class.authorisations = _M.list
  class.authorisation = _M.get
  class.start_authorisation = _M.start
  return class
end

return _M
