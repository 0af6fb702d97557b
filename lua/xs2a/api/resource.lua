--- What the resource modules share: the PSU options, body checks, the
-- creating calls' extra headers, and the generic `get`/`status`/`delete`
-- of a resource described by its descriptor.
--
-- A descriptor (`Resource.desc`) says `what` (the name in errors),
-- `status_field` (`consentStatus`, `transactionStatus`) and `deleted` (the
-- status after a DELETE).
-- @module xs2a.api.resource
local errors = require "xs2a.errors"
local json = require "xs2a.codec.json"
local pipeline = require "xs2a.pipeline"

local type, tostring, pairs, ipairs, next, error, setmetatable = type, tostring, pairs, ipairs, next, error,
  setmetatable

local _M = {}

local request = pipeline.request
_M.request = request

-- flat PSU option -> key of the `psu` table (`psu_ip` -> `ip`...)
local PSU_OPTS = {}
for k in pairs(pipeline.PSU_HEADERS) do PSU_OPTS["psu_" .. k] = k end

--- PSU options, from `psu = {...}` and flat `psu_ip`, `psu_id`... keys.
-- @return table or nil
function _M.psu_from(opts)
  if type(opts) ~= "table" then return nil end
  local psu
  if type(opts.psu) == "table" then
    psu = {}
    for k, v in pairs(opts.psu) do psu[k] = v end
  end
  for opt, k in pairs(PSU_OPTS) do
    local v = opts[opt]
    if v ~= nil then
      psu = psu or {}
      psu[k] = v
    end
  end
  return psu
end

--- A copy of query `a` with the keys of `b` on top.
function _M.merge_query(a, b)
  if not b then return a end
  local out = {}
  for k, v in pairs(a or {}) do out[k] = v end
  for k, v in pairs(b) do out[k] = v end
  return out
end

--- The SCA approach the bank announced (`ASPSP-SCA-Approach`), lowercase.
function _M.approach_of(res)
  local a = res.headers and res.headers["aspsp-sca-approach"]
  return a and tostring(a):lower() or nil
end

--- The body as a JSON object, or nil and a protocol error.
function _M.body_table(res, what)
  if type(res.json) ~= "table" then
    return nil, errors.protocol(what .. ": response has no JSON object", { status = res.status,
      request_id = res.request_id }, "BAD_RESPONSE")
  end
  return res.json
end

--- `b[key]` must be a JSON array of objects: the list, or nil and a protocol error.
function _M.body_list(res, b, key, what)
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

--- `b[key]` (or the body itself when the bank sends it unwrapped) as an object.
function _M.body_object(res, b, key, what)
  local t = b[key]
  if t == nil then t = b end
  if type(t) ~= "table" or json.is_array(t) then
    return nil, errors.protocol(what .. ": " .. key .. " is not an object", { status = res.status,
      request_id = res.request_id }, "BAD_RESPONSE")
  end
  return t
end

--- Adds TPP-Redirect-Preferred / TPP-Decoupled-Preferred (from
-- `opts.redirect_preferred`, `opts.decoupled_preferred`) to `headers`.
function _M.preferred_headers(opts, headers)
  if opts.redirect_preferred ~= nil then headers["TPP-Redirect-Preferred"] = tostring(opts.redirect_preferred) end
  if opts.decoupled_preferred ~= nil then
    headers["TPP-Decoupled-Preferred"] = tostring(opts.decoupled_preferred)
  end
  return headers
end

--- Extra headers of a creating call: `opts.headers` and the TPP-*-Preferred ones.
function _M.tpp_headers(opts)
  local headers = {}
  for k, v in pairs(opts.headers or {}) do headers[k] = v end
  _M.preferred_headers(opts, headers)
  if opts.explicit ~= nil then headers["TPP-Explicit-Authorisation-Preferred"] = tostring(opts.explicit) end
  return headers
end

--- Raises (a programming error) unless `v` is a non-empty string.
function _M.need_string(v, what)
  if type(v) ~= "string" or v == "" then
    error(what .. " must be a non-empty string", 3)
  end
end

--- True unless `id` is a dot segment (`.` or `..`): such an id would name
-- another resource once a server or proxy normalises the path.
function _M.id_ok(id)
  return id ~= "." and id ~= ".."
end

--- Checks an id given by the caller: nil, err (kind config) for a dot segment.
function _M.check_id(id, what)
  if not _M.id_ok(id) then
    return nil, errors.config(what .. " must not be . or ..", "ID_INVALID")
  end
  return true
end

--- A resource object of `class` (a consent, payment or basket) with the
-- fields every resource keeps: what the bank said (`fields`: `status`,
-- `links`, `data`, `approach`, `psu`, `messages`) and where it lives.
-- @param class the metatable (`Consent`, `Payment`, `Basket`)
-- @param client the client
-- @param id the resource id
-- @param spec `{ desc, kind, service, path, final, success }`
-- @param fields what the bank said (may be nil)
-- @param own the class's own fields (the table becomes the object; may be nil)
-- @return the object
function _M.new(class, client, id, spec, fields, own)
  fields = fields or {}
  local o = own or {}
  o.desc, o.client, o.kind, o.service, o.id = spec.desc, client, spec.kind, spec.service, id
  o.last_status, o.links, o.data = fields.status, fields.links or {}, fields.data
  o.approach, o.psu, o.messages = fields.approach, fields.psu, fields.messages
  o.scope, o.token_key = spec.service .. ":" .. id, spec.kind .. ":" .. id
  o.path, o.authorisations_path = spec.path, spec.path .. "/authorisations"
  o.final, o.success = spec.final, spec.success
  return setmetatable(o, class)
end

-- ----------------------------------------------------------------------------
-- generic methods from the descriptor

--- `GET <path>`: the resource's data (kept in `self.data`).
-- @return body or nil, err
function _M.get(self)
  local desc = self.desc
  local res, err = request(self.client, { method = "GET", path = self.path, service = self.service,
    token = self.token_key })
  if not res then return nil, err end
  local b, berr = _M.body_table(res, desc.what .. ":get")
  if not b then return nil, berr end
  self.data = b
  local st = b[desc.status_field]
  if type(st) == "string" then self.last_status = st end
  return b
end

--- `GET <path>/status`.
-- @return the status, body | nil, err
function _M.status(self)
  local desc = self.desc
  local res, err = request(self.client, { method = "GET", path = self.path .. "/status", service = self.service,
    token = self.token_key })
  if not res then return nil, err end
  local b, berr = _M.body_table(res, desc.what .. ":status")
  if not b then return nil, berr end
  local st = b[desc.status_field]
  if type(st) ~= "string" then
    return nil, errors.protocol(desc.what .. ":status: no " .. desc.status_field, { status = res.status,
      request_id = res.request_id }, "BAD_RESPONSE")
  end
  self.last_status = st
  return st, b
end

--- `DELETE <path>`.
-- @return true or nil, err
function _M.delete(self)
  local res, err = request(self.client, { method = "DELETE", path = self.path, service = self.service,
    token = self.token_key, idempotent = true })
  if not res then return nil, err end
  self.last_status = self.desc.deleted
  return true
end

return _M
