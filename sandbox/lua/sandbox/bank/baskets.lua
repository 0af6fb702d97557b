--- Signing baskets (Berlin Group): several payments and consents of one TPP
-- authorised by the PSU in one SCA. Served only while the configuration has
-- `signing_baskets = true`; otherwise every method on /v1/signing-baskets...
-- answers 405 SERVICE_INVALID, as Paysera does. Rules in sandbox/BANK.md.
--
-- A basket is stored under "basket:<id>":
--   { id, variant, org_id, request_id, payment_ids, consent_ids, status, created,
--     approach, required, redirect_uri, nok_uri, auths, approvals, psu, authorised }
-- Its payments and consents carry `basket = <id>` while the basket holds them.
local common = require "sandbox.bank.common"
local sca = require "sandbox.bank.sca"
local util = common.util

local type = type

local _M = {}

local MAX_ITEMS = 100
local SETTLED = { ACSC = true, ACCC = true }

local function payments() return require("sandbox.bank.payments") end
local function consents() return require("sandbox.bank.consents") end

local function base_path(id) return "/v1/signing-baskets/" .. id end

local function enabled(ctx)
  return ctx.cfg ~= nil and ctx.cfg.signing_baskets == true
end

---------------------------------------------------------------------------
-- items

-- the storage key of an item
local function item_key(kind, id)
  return (kind == "consent" and "consent:" or "payment:") .. id
end

local function item_waits(kind, x)
  if kind == "consent" then return x.status == "received" end
  return x.status == "RCVD"
end

-- the basket lets go of its items (deleted or rejected basket)
local function release(b)
  for _, list in ipairs({ { "payment", b.payment_ids }, { "consent", b.consent_ids } }) do
    for _, id in ipairs(list[2] or {}) do
      common.update(item_key(list[1], id), function(x)
        if not x or x.basket ~= b.id then return nil end
        x.basket = nil
        return x
      end)
    end
  end
end

-- claims every item for basket `bid` under the state lock; all or nothing
-- @return true, or nil and the id that could not be claimed
local function claim(bid, items)
  local done = {}
  for _, it in ipairs(items) do
    local ok = common.update(item_key(it.kind, it.id), function(x)
      if not x or x.basket or not item_waits(it.kind, x) then return nil end
      x.basket = bid
      return x
    end)
    if not ok then
      release({ id = bid, payment_ids = util.copy(done.payment or {}), consent_ids = util.copy(done.consent or {}) })
      return nil, it.id
    end
    done[it.kind] = done[it.kind] or {}
    done[it.kind][#done[it.kind] + 1] = it.id
  end
  return true
end

---------------------------------------------------------------------------
-- body checks

local function id_list(v, name)
  if v == nil then return {} end
  if type(v) ~= "table" or (next(v) ~= nil and not util.is_array(v)) then
    return nil, name .. " must be an array of resource ids"
  end
  for i, id in ipairs(v) do
    if type(id) ~= "string" or id == "" or #id > 100 then
      return nil, name .. "[" .. i .. "] must be a resource id"
    end
  end
  return v
end

-- the items a create request names, checked against this TPP's resources
-- @return list of { kind, id, res }, or nil and an error response
local function check_items(ctx, b)
  local pids, e1 = id_list(b.paymentIds, "paymentIds")
  if not pids then return nil, { common.err(ctx, 400, "FORMAT_ERROR", e1) } end
  local cids, e2 = id_list(b.consentIds, "consentIds")
  if not cids then return nil, { common.err(ctx, 400, "FORMAT_ERROR", e2) } end
  if #pids + #cids == 0 then
    return nil, { common.err(ctx, 400, "FORMAT_ERROR", "paymentIds and/or consentIds must name at least one resource") }
  end
  if #pids + #cids > MAX_ITEMS then
    return nil, { common.err(ctx, 400, "FORMAT_ERROR", "at most " .. MAX_ITEMS .. " resources in a basket") }
  end
  local items, seen = {}, {}
  for _, list in ipairs({ { "payment", pids }, { "consent", cids } }) do
    local kind = list[1]
    for _, id in ipairs(list[2]) do
      if seen[id] then
        return nil, { common.err(ctx, 400, "REFERENCE_MIX_INVALID", kind .. " " .. id .. " is named twice") }
      end
      seen[id] = true
      local res
      if kind == "payment" then res = payments().owned(ctx, id) else res = consents().load(ctx, id) end
      if not res then
        return nil, { common.err(ctx, 400, "REFERENCE_MIX_INVALID", kind .. " " .. id .. " is not known for this TPP") }
      end
      if res.basket then
        return nil, { common.err(ctx, 409, "REFERENCE_STATUS_INVALID",
          kind .. " " .. id .. " is already in signing basket " .. res.basket) }
      end
      if not item_waits(kind, res) then
        return nil, { common.err(ctx, 409, "REFERENCE_STATUS_INVALID", kind .. " " .. id .. " is "
          .. tostring(res.status) .. ", not " .. (kind == "consent" and "received" or "RCVD")) }
      end
      items[#items + 1] = { kind = kind, id = id, res = res }
    end
  end
  return items
end

---------------------------------------------------------------------------
-- loading

--- A basket by id without the TPP check (OAuth pages check the client id).
function _M.raw(id)
  local b = type(id) == "string" and common.get("basket:" .. id)
  if not b then return nil end
  if sca.tick_resource(b) then b = common.get("basket:" .. id) end
  return b
end

local function load(ctx, id)
  local b = _M.raw(id)
  if not b or b.variant ~= ctx.variant or not ctx.tpp or b.org_id ~= ctx.tpp.org_id then return nil end
  return b
end

local function consent_line(c)
  local what = {}
  local a = c.access or {}
  if a.allPsd2 then what[#what + 1] = "all your accounts: details, balances and transactions" end
  if a.availableAccountsWithBalance then what[#what + 1] = "the list of your accounts with balances" end
  if a.availableAccounts then what[#what + 1] = "the list of your accounts" end
  for _, k in ipairs({ "accounts", "balances", "transactions" }) do
    for _, ref in ipairs(a[k] or {}) do
      what[#what + 1] = k .. " of " .. tostring(ref.iban or ref.maskedPan or ref.bban or ref.pan or ref.msisdn)
    end
  end
  return "Account access until " .. tostring(c.validUntil) .. ": " .. table.concat(what, "; ")
end

--- Lines for the PSU's pages: what the basket holds.
function _M.describe(b)
  local np, nc = #(b.payment_ids or {}), #(b.consent_ids or {})
  local lines = { "Signing basket of " .. np .. (np == 1 and " payment" or " payments") .. " and " .. nc
    .. (nc == 1 and " consent" or " consents") .. ", approved together:" }
  for _, id in ipairs(b.payment_ids or {}) do
    local p = common.get("payment:" .. id)
    if p then lines[#lines + 1] = payments().describe(p) end
  end
  for _, id in ipairs(b.consent_ids or {}) do
    local c = common.get("consent:" .. id)
    if c then lines[#lines + 1] = consent_line(c) end
  end
  return lines
end

---------------------------------------------------------------------------
-- hooks called by sca

function _M.awaiting(b)
  return b.status == "RCVD" or b.status == "PATC"
end

--- The first PSU must be allowed to authorise every item.
function _M.owner_check(b, _, psu)
  for _, id in ipairs(b.payment_ids or {}) do
    local p = common.get("payment:" .. id)
    if not p then return false, "a payment of this basket no longer exists" end
    local ok, why = payments().owner_check(p, "payment", psu)
    if not ok then return false, why end
  end
  for _, id in ipairs(b.consent_ids or {}) do
    local c = common.get("consent:" .. id)
    if not c then return false, "a consent of this basket no longer exists" end
    local ok, why = consents().owner_check(c, "consent", psu)
    if not ok then return false, why end
  end
  return true
end

local function set_fields(id, fields, from)
  return common.update("basket:" .. id, function(x)
    if not x or (from and not from[x.status]) then return nil end
    for k, v in pairs(fields) do x[k] = v end
    return x
  end)
end

local OPEN = { RCVD = true, PATC = true }

function _M.on_authorised(auth, outcome)
  if outcome == "failed" then
    local b = set_fields(auth.rid, { status = "RJCT" }, OPEN)
    if b then
      release(b)
      sca.close_all(b, { "auths" })
    end
    return
  end
  if outcome == "partial" then
    set_fields(auth.rid, { status = "PATC" }, OPEN)
    return
  end
  -- the whole basket is authorised: every item as by its own last authorisation
  local b = set_fields(auth.rid, { status = "ACTC", authorised = common.now() }, OPEN)
  if not b then return end
  local psus = b.approvals or {}
  local all_settled = #(b.payment_ids or {}) > 0
  for _, id in ipairs(b.payment_ids or {}) do
    local p = payments().authorise_in_basket(id, util.copy(psus))
    if not (p and SETTLED[p.status]) then all_settled = false end
  end
  for _, id in ipairs(b.consent_ids or {}) do
    consents().authorise_in_basket(id, util.copy(psus))
  end
  set_fields(b.id, { status = all_settled and "ACSC" or "ACTC", psu = psus[1] })
end

---------------------------------------------------------------------------
-- handlers

local function view_links(ctx, b)
  return { self = common.link(ctx, base_path(b.id)), status = common.link(ctx, base_path(b.id) .. "/status") }
end

-- POST /v1/signing-baskets
local function create(ctx)
  local body, berr = common.body(ctx)
  if not body then return common.unpack(berr) end
  local items, ierr = check_items(ctx, body)
  if not items then return common.unpack(ierr) end
  local setup, serr = sca.setup(ctx)
  if not setup then return common.unpack(serr) end
  local approach, uri, nok, required = setup.approach, setup.uri, setup.nok, setup.required
  local b = {
    id = util.uuid(), variant = ctx.variant, org_id = ctx.tpp.org_id, request_id = ctx.request_id,
    payment_ids = {}, consent_ids = {}, status = "RCVD", created = common.now(), approach = approach,
    required = required, redirect_uri = uri, nok_uri = nok, auths = {}, approvals = {},
  }
  for _, it in ipairs(items) do
    local list = it.kind == "consent" and b.consent_ids or b.payment_ids
    list[#list + 1] = it.id
  end
  local ok, lost = claim(b.id, items)
  if not ok then
    return common.err(ctx, 409, "REFERENCE_STATUS_INVALID", lost .. " changed meanwhile or is in another basket")
  end
  -- what was started on the items themselves is superseded by the basket
  for _, it in ipairs(items) do sca.close_all(it.res, { "auths" }) end
  common.set("basket:" .. b.id, b)
  local path = base_path(b.id)
  local links, extra = sca.on_create(ctx, b, "basket", path)
  for k, v in pairs(view_links(ctx, b)) do links[k] = v end
  local out = { transactionStatus = "RCVD", basketId = b.id, _links = links }
  for k, v in pairs(extra) do out[k] = v end
  return 201, out, {
    ["Location"] = common.abs(ctx, path),
    ["ASPSP-SCA-Approach"] = sca.APPROACH_HEADER[approach],
  }
end

local function with_basket(fn)
  return function(ctx)
    local b = load(ctx, ctx.params[1])
    if not b then return common.err(ctx, 403, "RESOURCE_UNKNOWN", "signing basket not found for this TPP") end
    return fn(ctx, b)
  end
end

local get = with_basket(function(ctx, b)
  return 200, {
    payments = util.array(util.copy(b.payment_ids or {})),
    consents = util.array(util.copy(b.consent_ids or {})),
    transactionStatus = b.status,
    _links = view_links(ctx, b),
  }
end)

local status = with_basket(function(_, b)
  return 200, { transactionStatus = b.status }
end)

-- DELETE: only while no authorisation has been applied (RCVD)
local delete = with_basket(function(ctx, b)
  if b.status ~= "RCVD" then
    return common.err(ctx, 409, "STATUS_INVALID", "the signing basket is " .. b.status .. " and cannot be deleted")
  end
  local done = set_fields(b.id, { status = "CANC" }, { RCVD = true })
  if not done then return common.err(ctx, 409, "STATUS_INVALID", "the signing basket changed meanwhile") end
  release(done)
  sca.close_all(done, { "auths" })
  return 204
end)

local start_auth = with_basket(function(ctx, b) return sca.start(ctx, b, "basket", base_path(b.id)) end)
local list_auth = with_basket(function(ctx, b) return sca.list(ctx, b, "basket") end)
local get_auth = with_basket(function(ctx, b) return sca.get(ctx, b, "basket", ctx.params[2], base_path(b.id)) end)
local update_auth = with_basket(function(ctx, b)
  return sca.update(ctx, b, "basket", ctx.params[2], base_path(b.id))
end)

-- anything else under /v1/signing-baskets
local function not_offered(ctx)
  if enabled(ctx) then
    return common.err(ctx, 405, "SERVICE_INVALID", "method " .. tostring(ctx.method) .. " is not supported here")
  end
  return common.err(ctx, 405, "SERVICE_INVALID", "signing baskets are not offered")
end

local ID = "([^/]+)"
local ROOT = "^/v1/signing%-baskets"

_M.routes = {}
local function add(method, suffix, handler, extra)
  local r = { method = method, pattern = ROOT .. suffix .. "$", handler = handler, auth = "mtls", service = "PIS",
    enabled = enabled }
  for k, v in pairs(extra or {}) do r[k] = v end
  _M.routes[#_M.routes + 1] = r
end
add("POST", "", create, { psu_ip = true })
add("GET", "/" .. ID, get)
add("DELETE", "/" .. ID, delete)
add("GET", "/" .. ID .. "/status", status)
add("POST", "/" .. ID .. "/authorisations", start_auth)
add("GET", "/" .. ID .. "/authorisations", list_auth)
add("GET", "/" .. ID .. "/authorisations/" .. ID, get_auth)
add("PUT", "/" .. ID .. "/authorisations/" .. ID, update_auth)
_M.routes[#_M.routes + 1] = { method = "*", pattern = ROOT .. "$", handler = not_offered, auth = "mtls" }
_M.routes[#_M.routes + 1] = { method = "*", pattern = ROOT .. "/.+$", handler = not_offered, auth = "mtls" }

sca.register("basket", { awaiting = _M.awaiting, owner_check = _M.owner_check, on_authorised = _M.on_authorised })

return _M
