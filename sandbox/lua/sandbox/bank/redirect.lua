--- The redirect SCA approach's page: `<root>/sca/<authorisationId>`. The PSU
-- logs in and approves or denies; the page sends the browser back to the
-- TPP-Redirect-URI with the TPP's `state` and a `confirmationCode` (or
-- `error=access_denied`, to TPP-Nok-Redirect-URI when one was given).
local common = require "sandbox.bank.common"
local sca = require "sandbox.bank.sca"
local pages = require "sandbox.bank.pages"
local util = common.util

local type = type

local _M = {}

local first = common.first

local function load(ctx)
  local auth = sca.tick(sca.load(ctx.params[1]))
  if not auth or auth.variant ~= ctx.variant or auth.approach ~= "redirect" then
    return nil, { pages.message(404, "Unknown request", "This authorisation does not exist.") }
  end
  if auth.status ~= "received" then
    return nil, { pages.message(409, "Nothing to do", "This authorisation is already " .. auth.status .. ".") }
  end
  local res = common.get(sca.res_key(auth.kind, auth.rid))
  if not res or not sca.awaiting(res, auth.kind) then
    return nil, { pages.message(409, "Nothing to do", "This request no longer waits for your approval.") }
  end
  return auth, res
end

local function lines(res, auth)
  if auth.kind == "consent" then
    local out = { "Give " .. tostring(res.org_id) .. " read access to your accounts until " .. res.validUntil .. "." }
    for _, k in ipairs({ "accounts", "balances", "transactions" }) do
      for _, ref in ipairs(res.access[k] or {}) do
        out[#out + 1] = "Access to " .. k .. " of " .. (ref.iban or ref.maskedPan or ref.bban or "?")
      end
    end
    if res.access.allPsd2 then out[#out + 1] = "All your payment accounts: details, balances and transactions." end
    return out
  end
  if auth.kind == "basket" then return require("sandbox.bank.baskets").describe(res) end
  local d = require("sandbox.bank.payments").describe(res)
  return { auth.kind == "cancellation" and "Cancel: " .. d or d }
end

local function form(ctx, auth, res, state, err, username)
  return pages.authorise_form({
    title = auth.kind == "consent" and "Give account access"
      or auth.kind == "basket" and "Confirm signing basket" or "Confirm payment",
    lines = lines(res, auth), action = ctx.root .. "/sca/" .. auth.id,
    hidden = { state = state or "" }, error = err, username = username, choice = sca.choices(res, auth.kind),
  })
end

local function page_get(ctx)
  local auth, res = load(ctx)
  if not auth then return common.unpack(res) end
  return form(ctx, auth, res, first((ctx.args or {}).state))
end

local function back(uri, params)
  return pages.redirect(common.add_query(uri, params))
end

local function page_post(ctx)
  local auth, res = load(ctx)
  if not auth then return common.unpack(res) end
  local params = ctx.form or common.form(ctx.body)
  local state = first(params.state)
  if state == "" then state = nil end
  local decision = first(params.decision)
  if decision == "deny" then
    sca.finish(auth.id, false)
    return back(auth.nok_uri or auth.redirect_uri, { error = "access_denied", state = state })
  end
  if decision ~= "approve" then return pages.message(400, "Invalid request", "decision must be approve or deny") end
  local username = first(params.username)
  if not common.psu_login(username, first(params.password)) then
    return form(ctx, auth, res, state, "User name or password is wrong.", type(username) == "string" and username)
  end
  local ok, why = sca.pick(res, auth.kind, username, params[(sca.choices(res, auth.kind) or {}).name or ""])
  if ok then ok, why = sca.psu_allowed(res, auth.kind, username) end
  if not ok then return form(ctx, auth, res, state, "You cannot approve this: " .. why .. ".", username) end
  local code = util.random_token(24)
  sca.unconfirmed(auth.id, username, { confirmation = code })
  return back(auth.redirect_uri, { state = state, confirmationCode = code })
end

_M.routes = {
  { method = "GET", pattern = "^/sca/([%w%-]+)$", handler = page_get, auth = "none" },
  { method = "POST", pattern = "^/sca/([%w%-]+)$", handler = page_post, auth = "none" },
}

return _M
