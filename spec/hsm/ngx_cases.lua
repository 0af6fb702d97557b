-- Worker side of spec/hsm/openresty_spec.lua: HSM identities inside nginx
-- workers. The pattern that works: each worker opens its token identities
-- itself, lazily on first use (after fork), with the PIN from the
-- environment (`env XS2A_HSM_PIN;` in nginx.conf), and keeps them per worker.
local cjson = require "cjson.safe"
local xs2a = require "xs2a"

local M = {}

local PSU = { psu_ip = "198.51.100.7" }

-- worker-local: opened after fork, in this worker, on first use
local mine = {}
local function hsm(args, label)
  if not mine[label] then
    mine[label] = assert(xs2a.identity{ cert = args.pki .. "/" .. label .. ".pem",
      key = "pkcs11:token=" .. args.token .. ";object=" .. label .. ";type=private",
      pin_env = "XS2A_HSM_PIN", module = args.module })
  end
  return mine[label]
end

local files = {}
local function file_identity(args, name)
  files[name] = files[name] or assert(xs2a.identity{ cert = args.pki .. "/" .. name .. ".pem",
    key = args.pki .. "/" .. name .. ".key" })
  return files[name]
end

local clients = {}
local function client(args, qwac_name, fresh)
  local key = qwac_name
  if clients[key] and not fresh then return clients[key] end
  local qwac = qwac_name == "hsm" and hsm(args, "qwac") or file_identity(args, qwac_name)
  local c = assert(xs2a.client{
    profile = "paysera-berlin", base_url = args.base_url, ca_file = args.pki .. "/ca.pem",
    qwac = qwac, qseal = hsm(args, "qseal"), redirect_uri = "https://tpp.example/callback",
    store = assert(xs2a.store.shdict("xs2a")),
  })
  clients[key] = c
  return c
end

local function start_flow(c, resource, key)
  local flow = resource:authorise{}
  local step, ferr = flow:next()
  if not step then error("flow:next: " .. tostring(ferr)) end
  assert(c.store:set("test:flow:" .. key, assert(cjson.encode(flow:save())), 600))
  return step
end

local function finish_flow(c, key, callback)
  local saved = cjson.decode(c.store:get("test:flow:" .. key) or "null")
  assert(type(saved) == "table", "no saved flow in the shared dict")
  local flow = assert(xs2a.resume(c, saved))
  local step, err = flow:next{ callback = callback }
  if not step then error("flow:next(callback): " .. tostring(err)) end
  return step
end

--- Facts of this worker's token identities.
function M.info(args)
  local q = hsm(args, "qseal")
  local info = q:info()
  return { key_store = info.key_store, token = info.token, pid = ngx.worker.pid(), tostring = tostring(q) }
end

--- A consent with the token's QWAC (mTLS) and QSealC (signatures): start.
function M.consent_start(args)
  local c = client(args, "hsm")
  local consent = assert(c:create_consent({ access = { allPsd2 = "allAccounts" }, recurringIndicator = true,
    validUntil = os.date("!%Y-%m-%d", ngx.time() + 30 * 86400), frequencyPerDay = 4,
    combinedServiceIndicator = false }, PSU))
  local step = start_flow(c, consent, args.key)
  return { url = step.url, consent_id = consent.id, pid = ngx.worker.pid() }
end

--- ... finish (in whichever worker), read accounts, start a payment.
function M.consent_finish(args)
  local c = client(args, "hsm", true)
  local step = finish_flow(c, args.key, args.callback)
  local accounts = assert(c:consent(args.consent_id):accounts(PSU))
  return { status = step.status, accounts = #accounts, pid = ngx.worker.pid() }
end

function M.payment_start(args)
  local c = client(args, "hsm")
  local p = assert(c:initiate_payment("sepa-credit-transfers", {
    debtorAccount = { iban = args.debtor, currency = args.currency },
    instructedAmount = { currency = args.currency, amount = "1.00" },
    creditorAccount = { iban = args.creditor }, creditorName = "Bob",
    remittanceInformationUnstructured = "lua-xs2a HSM nginx spec" }, PSU))
  local step = start_flow(c, p, args.key)
  return { url = step.url, payment_id = p.id, pid = ngx.worker.pid() }
end

function M.payment_finish(args)
  local c = client(args, "hsm", true)
  local step = finish_flow(c, args.key, args.callback)
  return { status = step.status, pid = ngx.worker.pid() }
end

--- Two identities (the token's QWAC of TPP001, a file QWAC of TPP002) with
-- the same pool settings, one after the other in this worker: each request
-- must reach the bank with its own certificate.
function M.two_identities(args)
  local a, b = client(args, "hsm"), client(args, "qwac-ai")
  local out = {}
  local function status(c, name)
    local s, err = c:consent(args.consent_id):status()
    out[#out + 1] = { who = name, status = s, err = not s and tostring(err) or nil,
      http = not s and type(err) == "table" and err.status or nil }
  end
  status(a, "hsm")
  status(b, "file")
  status(a, "hsm")
  status(b, "file")
  return out
end

--- An identity the master opened in init_by_lua, used in a worker.
function M.inherited()
  local id = rawget(_G, "XS2A_HSM_MASTER_IDENTITY")
  if not id then return { loaded = false } end
  local s, err, code = id:sign("in a worker")
  return { loaded = true, ok = s ~= nil, err = err, code = code }
end

return M
