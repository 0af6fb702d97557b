--- The control API under /_sandbox/ (plain HTTPS, no client certificate,
-- loopback only): ping, reset, config, faults, decoupled decisions, dumps,
-- and booking of pending entries.
local util = require "sandbox.util"
local http = require "sandbox.http"
local config = require "sandbox.config"

local _M = {}

local function answer(status, body, headers)
  local h = headers or {}
  if type(body) == "table" then
    body = util.json_encode(body)
    h["Content-Type"] = h["Content-Type"] or "application/json"
  end
  return http.write(status, h, body or "")
end

local function fail(status, detail)
  return answer(status, { error = detail })
end

local function read_json()
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if not body then
    local file = ngx.req.get_body_file()
    if file then
      local f = io.open(file, "rb")
      if f then body = f:read("*a"); f:close() end
    end
  end
  if not body or body:match("^%s*$") then return {} end
  local v, err = util.json_decode(body)
  if type(v) ~= "table" then return nil, err or "expected a JSON object" end
  return v
end

local function app()
  return require "sandbox.app"
end

local handlers = {}

handlers["GET /ping"] = function(settings)
  return answer(200, { ok = true, port = settings.port, faults = settings.faults })
end

handlers["POST /reset"] = function()
  local body, err = read_json()
  if not body then return fail(400, err) end
  ngx.shared.sandbox_state:flush_all()
  ngx.shared.sandbox_limits:flush_all()
  if not body.keep_config then config.reset() end
  app().reseed()
  return answer(200, { reset = true })
end

handlers["GET /config"] = function()
  return answer(200, config.get())
end

handlers["POST /config"] = function()
  local body, err = read_json()
  if not body then return fail(400, err) end
  return answer(200, config.merge(body))
end

handlers["GET /faults"] = function(settings)
  if not settings.faults then return fail(403, "faults are disabled (start with --faults)") end
  return answer(200, { faults = util.array(require("sandbox.faults").list()) })
end

handlers["POST /faults"] = function(settings)
  if not settings.faults then return fail(403, "faults are disabled (start with --faults)") end
  local body, err = read_json()
  if not body then return fail(400, err) end
  local ok, ferr = require("sandbox.faults").queue(body)
  if not ok then return fail(400, ferr) end
  return answer(201, { queued = true })
end

handlers["DELETE /faults"] = function(settings)
  if not settings.faults then return fail(403, "faults are disabled (start with --faults)") end
  require("sandbox.faults").clear()
  return answer(200, { cleared = true })
end

local function dump(fn_name)
  return function()
    app().ensure_seeded()
    local seed = app().bank_module("seed")
    if not (seed and seed[fn_name]) then return fail(501, "the bank does not provide " .. fn_name) end
    local ok, res = pcall(seed[fn_name])
    if not ok then
      ngx.log(ngx.ERR, "sandbox: ", fn_name, " failed: ", res)
      return fail(500, fn_name .. " failed")
    end
    return answer(200, res)
  end
end

handlers["GET /accounts"] = dump("dump_accounts")
handlers["GET /payments"] = dump("dump_payments")

-- POST /_sandbox/book-pending {"variant": "berlin", "account": "<accountId>"}:
-- the bank books the account's pending entries today (same transactionId and
-- entryReference), releasing their holds: what a statement reader sees when
-- a card reservation settles.
handlers["POST /book-pending"] = function()
  local body, err = read_json()
  if not body then return fail(400, err) end
  if type(body.variant) ~= "string" or type(body.account) ~= "string" then
    return fail(400, "variant and account are required")
  end
  app().ensure_seeded()
  local common = require "sandbox.bank.common"
  local pkey = "txp:" .. body.variant .. ":" .. body.account
  local moved = common.get(pkey) or {}
  if #moved == 0 then return answer(200, { booked = 0 }) end
  common.set(pkey, {})
  local total = 0
  local today = common.today()
  for _, tx in ipairs(moved) do
    tx.bookingDate, tx.valueDate = today, today
    tx._links, tx.bookingStatus = nil, nil
    total = total + math.floor(tonumber(tx.transactionAmount.amount) * 1000 + 0.5)
  end
  common.update("accounts:" .. body.variant, function(list)
    for _, a in ipairs(list or {}) do
      if a.id == body.account then
        a.balance = a.balance + total
        a.hold = (a.hold or 0) - total
      end
    end
    return list
  end)
  common.update("tx:" .. body.variant .. ":" .. body.account, function(list)
    list = list or {}
    for i = #moved, 1, -1 do table.insert(list, 1, moved[i]) end
    return list
  end)
  return answer(200, { booked = #moved })
end

local function decoupled(auth_id)
  local body, err = read_json()
  if not body then return fail(400, err) end
  if body.decision ~= "approve" and body.decision ~= "deny" then
    return fail(400, 'decision must be "approve" or "deny"')
  end
  app().ensure_seeded()
  local sca = app().bank_module("sca")
  if not (sca and sca.decoupled_decision) then return fail(501, "the bank does not provide decoupled_decision") end
  local ok, status, res = pcall(sca.decoupled_decision, util.unescape(auth_id), body.decision)
  if not ok then
    ngx.log(ngx.ERR, "sandbox: decoupled_decision failed: ", status)
    return fail(500, "decoupled_decision failed")
  end
  return answer(tonumber(status) or 200, res)
end

--- Handles a request under /_sandbox/.
function _M.handle(settings)
  local addr = ngx.var.remote_addr
  if addr ~= "127.0.0.1" and addr ~= "::1" then
    return fail(403, "the control API answers on loopback only")
  end
  local method = ngx.req.get_method()
  local path = ngx.var.uri:sub(#"/_sandbox" + 1)
  local h = handlers[method .. " " .. path]
  if h then return h(settings) end
  local auth_id = path:match("^/decoupled/([^/]+)$")
  if auth_id then
    if method ~= "POST" then return fail(405, "use POST") end
    return decoupled(auth_id)
  end
  return fail(404, "no such control endpoint")
end

return _M
