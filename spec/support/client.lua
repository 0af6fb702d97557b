--- Spec support: clients wired to a sandbox bank.
--
--   local support = require "support.client"
--   local client = support.new_client("berlin")                -- shared sandbox
--   local client = support.new_client("georgia", { limits = false }, sb)
--   local client, events = support.new_client("berlin", { capture_log = true })
--
-- `variant` is "berlin" or "georgia" (profiles paysera-berlin / paysera-georgia).
-- `overrides` is merged over the client options (qwac/qseal may be given as
-- PKI base names, e.g. qwac = "qwac-ai"; qseal = false leaves it out).
-- With `capture_log = true` the second result is a list of every logged
-- event `{ level, event, fields }`.
local helper = require "helper"
local sandbox = require "support.sandbox"

local M = {}

local identities = {}

--- A cached identity for a PKI base name ("qwac", "qseal", "qwac-ai"...).
function M.identity(name)
  if not identities[name] then
    local identity = require "xs2a.identity"
    identities[name] = assert(identity.new{ cert = helper.pki(name .. ".pem"), key = helper.pki(name .. ".key") })
  end
  return identities[name]
end

local shared_store
--- The process-wide memory store used by default.
function M.shared_store()
  shared_store = shared_store or require("xs2a.store").memory()
  return shared_store
end

M.PROFILES = { berlin = "paysera-berlin", georgia = "paysera-georgia" }

--- Profile overrides that list every SCA approach: the Paysera profiles
-- list OAuth only and the client refuses another approach, so specs that
-- switch the sandbox to embedded, decoupled or redirect say so explicitly.
M.ANY_APPROACH = { sca = { approaches = { "oauth", "redirect", "decoupled", "embedded" } } }

--- Builds a client for `sb` (default: the shared sandbox).
function M.new_client(variant, overrides, sb)
  sb = sb or sandbox.shared()
  overrides = overrides or {}
  local opts = {
    profile = M.PROFILES[variant or "berlin"] or variant,
    base_url = sb.base_url,
    ca_file = sb.pki .. "/ca.pem",
    response_cert = sb.pki .. "/aspsp-seal.pem",
    qwac = M.identity("qwac"),
    qseal = M.identity("qseal"),
    redirect_uri = "https://tpp.example/callback",
    -- one store for every spec client of this process: they share the
    -- sandbox's per-TPP rate budget, so they share the limiter state too
    store = M.shared_store(),
  }
  local events
  for k, v in pairs(overrides) do
    if k ~= "capture_log" then opts[k] = v end
  end
  if type(opts.qwac) == "string" then opts.qwac = M.identity(opts.qwac) end
  if type(opts.qseal) == "string" then opts.qseal = M.identity(opts.qseal) end
  if opts.qseal == false then opts.qseal = nil end
  if overrides.capture_log then
    events = {}
    local user_log = overrides.log
    opts.log = function(level, event, fields)
      events[#events + 1] = { level = level, event = event, fields = fields }
      if user_log then user_log(level, event, fields) end
    end
  end
  local client, err = require("xs2a").client(opts)
  assert(client, tostring(err))
  return client, events
end

--- A recurring allPsd2 consent body valid for 30 days (a fresh table each call).
function M.consent_body()
  return {
    access = { allPsd2 = "allAccounts" },
    recurringIndicator = true,
    validUntil = os.date("!%Y-%m-%d", os.time() + 30 * 86400),
    frequencyPerDay = 4,
    combinedServiceIndicator = false,
  }
end

--- Drives the SCA flow of `resource` (consent, payment, cancellation) through
-- the sandbox's OAuth/redirect page as the PSU's browser would.
-- @param resource the object with `authorise` (or `authorise_cancellation` when `opts.cancellation`)
-- @param opts `{ username = "alice", password = "alice-pass", decision = "approve"|"deny", cancellation = bool,
--   choose = { values the PSU ticks on the page } }`
-- @return the final step (`{ kind = "done", status = ... }`) or nil, err
function M.authorise(resource, opts)
  opts = opts or {}
  local psu = require "support.psu"
  local flow, ferr
  if opts.cancellation then flow, ferr = resource:authorise_cancellation(opts.flow) else
    flow, ferr = resource:authorise(opts.flow) end
  if not flow then return nil, ferr end
  local step, err = flow:next()
  for _ = 1, 10 do
    if not step then return nil, err end
    if step.kind == "done" then return step end
    if step.kind ~= "redirect" then return nil, "unexpected step " .. tostring(step.kind) end
    local location, page = psu.authorize(step.url, { username = opts.username or "alice",
      password = opts.password or "alice-pass", decision = opts.decision or "approve", choose = opts.choose })
    if not location then return nil, "PSU page failed: " .. tostring(page and (page.error or page.status)) end
    step, err = flow:next{ callback = location }
  end
  return nil, "flow did not finish"
end

--- The sandbox's base URL and PKI for a spec that builds its own options.
function M.sandbox(sb)
  return sb or sandbox.shared()
end

return M
