--- Example TPP web app for OpenResty: connect a bank account through the
-- bank's OAuth page, show accounts, balances and recent transactions, and
-- pay. Every call to the bank goes through lua-xs2a's ngx transport (cosockets:
-- the worker never blocks) and keeps tokens and saved SCA flows in a
-- lua_shared_dict, so any worker can continue what another one started.
--
-- nginx.conf (see examples/openresty/nginx.conf.in):
--   init_by_lua_block { require("tpp.app").init{ base_url = ..., qwac_cert = ..., ... } }
--   location / { content_by_lua_block { require("tpp.app").handle() } }
local xs2a = require "xs2a"
local cjson = require "cjson.safe"
local status_words = xs2a.status

local M = {}

local SESSION_COOKIE = "tpp_session"
local SESSION_TTL = 1800
local PRODUCT = "sepa-credit-transfers"

local cfg            -- from init()
local qwac, qseal    -- identities, loaded in the master (init_by_lua)
local client         -- one per worker, made on first use

------------------------------------------------------------------------------
-- setup

--- Called from init_by_lua: reads the certificates and keys while nginx
-- still runs as root. The workers inherit the loaded identities.
function M.init(c)
  cfg = c
  qwac = assert(xs2a.identity{ cert = c.qwac_cert, key = c.qwac_key })
  qseal = assert(xs2a.identity{ cert = c.qseal_cert, key = c.qseal_key })
end

local function get_client()
  if client then return client end
  local store = assert(xs2a.store.shdict("xs2a"))
  local c, err = xs2a.client{
    profile = cfg.profile or "paysera-berlin",
    base_url = cfg.base_url,
    qwac = qwac, qseal = qseal,
    ca_file = cfg.ca_file,          -- same file as lua_ssl_trusted_certificate
    redirect_uri = cfg.redirect_uri,
    store = store,
    log = function(level, event, fields)
      -- fields arrive redacted (no tokens, keys, PSU ids or full IBANs)
      if level == "error" or level == "warn" then
        ngx.log(ngx.WARN, "xs2a ", event, " ", cjson.encode(fields) or "")
      end
    end,
  }
  if not c then return nil, err end
  client = c
  return client
end

------------------------------------------------------------------------------
-- HTML

local ESC = { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;" }
local function h(v)
  if v == nil or v == cjson.null then return "" end
  return (tostring(v):gsub("[&<>\"']", ESC))
end

local STYLE = [[
body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0}
td,th{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left}
td.amount{text-align:right;font-variant-numeric:tabular-nums}
.error{background:#fee;border:1px solid #c33;padding:.5rem 1rem}
.ok{background:#efe;border:1px solid #3a3;padding:.5rem 1rem}
form.pay label{display:block;margin:.3rem 0}
button{font-size:1rem;padding:.4rem 1rem}
]]

local function page(title, body)
  return table.concat({
    "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
    "<title>", h(title), " - Example TPP</title><style>", STYLE, "</style></head><body>",
    "<h1>", h(title), "</h1>", body,
    "<p><small>Example TPP app for lua-xs2a. Bank: ", h(cfg.base_url), "</small></p>",
    "</body></html>\n",
  })
end

local function send(status, html)
  ngx.status = status
  ngx.header["Content-Type"] = "text/html; charset=utf-8"
  ngx.header["Cache-Control"] = "no-store"
  ngx.header["X-Frame-Options"] = "DENY"
  ngx.header["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' "
    .. (cfg.base_url or "")
  ngx.print(html)
end

local function error_page(what, err)
  ngx.log(ngx.WARN, "tpp: ", what, ": ", tostring(err))
  return send(502, page("Something went wrong",
    "<p class=\"error\" id=\"error\">" .. h(what) .. ": " .. h(tostring(err)) .. "</p>"
    .. "<p><a href=\"/\">Back</a></p>"))
end

local function redirect(url)
  ngx.status = 303
  ngx.header["Location"] = url
  ngx.header["Cache-Control"] = "no-store"
end

------------------------------------------------------------------------------
-- sessions: a random id in an HttpOnly, SameSite=Lax, Secure cookie; the
-- data in the tpp_sessions shared dict

local function random_hex(n)
  return require("xs2a.crypto").hex(require("xs2a.crypto").random(n))
end

local function load_session()
  local sid = ngx.var["cookie_" .. SESSION_COOKIE]
  if sid and sid:match("^%x+$") and #sid == 64 then
    local raw = ngx.shared.tpp_sessions:get("s:" .. sid)
    local data = raw and cjson.decode(raw)
    if type(data) == "table" then return sid, data end
  end
  return nil
end

local function save_session(sid, data)
  local ok, err = ngx.shared.tpp_sessions:set("s:" .. sid, cjson.encode(data), SESSION_TTL)
  if not ok then error("cannot save the session: " .. tostring(err)) end
end

local function session()
  local sid, data = load_session()
  if sid then return sid, data end
  sid = random_hex(32)
  data = { csrf = random_hex(16) }
  save_session(sid, data)
  ngx.header["Set-Cookie"] = SESSION_COOKIE .. "=" .. sid
    .. "; Path=/; HttpOnly; Secure; SameSite=Lax; Max-Age=" .. SESSION_TTL
  return sid, data
end

local function form()
  ngx.req.read_body()
  local args = ngx.req.get_post_args(20)
  return args or {}
end

local function check_csrf(data, args)
  local token = args.csrf
  return type(token) == "string" and type(data.csrf) == "string"
    and require("xs2a.crypto").ct_equal(token, data.csrf)
end

local function psu_opts()
  return { psu_ip = ngx.var.remote_addr, psu = { ip = ngx.var.remote_addr,
    user_agent = ngx.var.http_user_agent } }
end

------------------------------------------------------------------------------
-- pages

local function render_accounts(c, data)
  local consent = c:consent(data.consent_id)
  local accounts, err = consent:accounts(psu_opts())
  if not accounts then return nil, err end
  local out = { "<h2>Accounts</h2><table id=\"accounts\"><tr><th>Account</th><th>IBAN</th>",
    "<th>Currency</th><th class=\"amount\">Balance</th></tr>" }
  local ibans = {}
  for _, a in ipairs(accounts) do
    local balances = consent:balances(a.resourceId, psu_opts()) or {}
    local b = balances[1]
    local amount = b and b.balanceAmount and (b.balanceAmount.amount .. " " .. b.balanceAmount.currency) or "?"
    out[#out + 1] = "<tr class=\"account\"><td>" .. h(a.name or a.product or a.resourceId) .. "</td><td>"
      .. h(a.iban) .. "</td><td>" .. h(a.currency) .. "</td><td class=\"amount balance\">" .. h(amount)
      .. "</td></tr>"
    if a.iban and (a.currency == "EUR" or a.currency == nil) then
      ibans[#ibans + 1] = { iban = a.iban, name = a.name or a.product, currency = a.currency or "EUR" }
    end
  end
  out[#out + 1] = "</table>"

  local first = accounts[1]
  if first then
    out[#out + 1] = "<h2>Recent transactions of " .. h(first.iban or first.resourceId) .. "</h2>"
    out[#out + 1] = "<table id=\"transactions\"><tr><th>Date</th><th>Details</th><th class=\"amount\">Amount</th></tr>"
    local n = 0
    for tx, terr in consent:transactions(first.resourceId, { bookingStatus = "booked",
        dateFrom = os.date("!%Y-01-01") }, psu_opts()) do
      if not tx then
        out[#out + 1] = "<tr><td colspan=\"3\" class=\"error\">" .. h(tostring(terr)) .. "</td></tr>"
        break
      end
      local amt = tx.transactionAmount or {}
      out[#out + 1] = "<tr class=\"transaction\"><td>" .. h(tx.bookingDate or tx.valueDate) .. "</td><td>"
        .. h(tx.remittanceInformationUnstructured or tx.creditorName or tx.debtorName) .. "</td><td class=\"amount\">"
        .. h(amt.amount) .. " " .. h(amt.currency) .. "</td></tr>"
      n = n + 1
      if n >= 10 then break end
    end
    out[#out + 1] = "</table>"
  end
  return table.concat(out), ibans
end

local function pay_form(data, ibans)
  local opts = {}
  for _, a in ipairs(ibans) do
    -- what a person recognises: the account's name and currency, then the IBAN
    opts[#opts + 1] = "<option value=\"" .. h(a.iban) .. "\">" .. h((a.name or "Account") .. " (" .. a.currency
      .. ") " .. a.iban) .. "</option>"
  end
  return table.concat({
    "<h2>Pay</h2><form class=\"pay\" id=\"pay\" method=\"post\" action=\"/pay\">",
    "<input type=\"hidden\" name=\"csrf\" value=\"", h(data.csrf), "\">",
    "<label>From <select name=\"debtor\">", table.concat(opts), "</select></label>",
    "<label>To (name) <input name=\"creditor_name\" value=\"Example Shop\" maxlength=\"70\"></label>",
    "<label>To (IBAN) <input name=\"creditor_iban\" value=\"LT601010012345678901\" maxlength=\"34\"></label>",
    "<label>Amount (EUR) <input name=\"amount\" value=\"12.34\" maxlength=\"12\"></label>",
    "<label>Reference <input name=\"remittance\" value=\"Order 1001\" maxlength=\"140\"></label>",
    "<button type=\"submit\" id=\"pay-button\">Pay</button></form>",
  })
end

local function home()
  local _, data = session()
  if not data.consent_id then
    return send(200, page("Your bank accounts", table.concat({
      "<p>Connect a bank account to see balances and transactions here.</p>",
      "<form method=\"post\" action=\"/connect\"><input type=\"hidden\" name=\"csrf\" value=\"", h(data.csrf), "\">",
      "<button type=\"submit\" id=\"connect\">Connect account</button></form>",
    })))
  end
  local c, cerr = get_client()
  if not c then return error_page("client setup failed", cerr) end
  local html, ibans = render_accounts(c, data)
  if not html then return error_page("reading the accounts failed", ibans) end
  local notice = ""
  if data.payment and data.payment.status then
    notice = "<p class=\"ok\">Last payment: <span id=\"payment-status\">" .. h(data.payment.status)
      .. "</span>: <span id=\"payment-meaning\">" .. h(status_words.payment(data.payment.status)) .. "</span></p>"
  end
  return send(200, page("Your bank accounts", "<p class=\"ok\" id=\"connected\">Account connected (consent "
    .. h(data.consent_status or "valid") .. ").</p>" .. notice .. html .. pay_form(data, ibans)))
end

local function start_sca(sid, data, resource, kind)
  local flow = resource:authorise{}
  local step, err = flow:next()
  if not step then return error_page("starting the authorisation failed", err) end
  if step.kind ~= "redirect" then
    return error_page("unexpected SCA step", step.kind)
  end
  data.flow = flow:save()
  data.flow_kind = kind
  save_session(sid, data)
  return redirect(step.url)
end

local function connect()
  local sid, data = session()
  if ngx.req.get_method() ~= "POST" then return redirect("/") end
  if not check_csrf(data, form()) then return send(403, page("Forbidden", "<p>Bad form token.</p>")) end
  local c, cerr = get_client()
  if not c then return error_page("client setup failed", cerr) end
  local consent, err = c:create_consent({
    access = { allPsd2 = "allAccounts" },
    recurringIndicator = true,
    validUntil = os.date("!%Y-%m-%d", ngx.time() + 90 * 86400),
    frequencyPerDay = 4,
    combinedServiceIndicator = false,
  }, psu_opts())
  if not consent then return error_page("creating the consent failed", err) end
  data.pending_consent = consent.id
  return start_sca(sid, data, consent, "consent")
end

local function callback()
  local sid, data = load_session()
  if not sid or type(data.flow) ~= "table" then
    return send(400, page("No authorisation in progress",
      "<p class=\"error\">This browser has no authorisation waiting. <a href=\"/\">Start again</a>.</p>"))
  end
  local c, cerr = get_client()
  if not c then return error_page("client setup failed", cerr) end
  local flow, ferr = xs2a.resume(c, data.flow)
  if not flow then return error_page("resuming the authorisation failed", ferr) end
  local url = cfg.redirect_uri .. (ngx.var.is_args or "") .. (ngx.var.args or "")
  local step, err = flow:next{ callback = url }
  local kind = data.flow_kind
  data.flow, data.flow_kind = nil, nil
  if not step then
    save_session(sid, data)
    return error_page(kind == "payment" and "the payment was not authorised" or "the consent was not authorised",
      err)
  end
  if step.kind ~= "done" then
    save_session(sid, data)
    return error_page("unexpected SCA step", step.kind)
  end
  if kind == "consent" then
    data.consent_id = data.pending_consent
    data.consent_status = step.status
    data.pending_consent = nil
    save_session(sid, data)
    return redirect("/")
  end
  data.payment = data.payment or {}
  data.payment.status = step.status
  save_session(sid, data)
  return redirect("/payment")
end

local function pay()
  local sid, data = session()
  if ngx.req.get_method() ~= "POST" then return redirect("/") end
  local args = form()
  if not check_csrf(data, args) then return send(403, page("Forbidden", "<p>Bad form token.</p>")) end
  if not data.consent_id then return redirect("/") end
  local function field(name, max)
    local v = args[name]
    if type(v) ~= "string" or v == "" or #v > max then return nil end
    return v
  end
  local debtor, cname, ciban = field("debtor", 34), field("creditor_name", 70), field("creditor_iban", 34)
  local amount, remittance = field("amount", 12), field("remittance", 140)
  if not (debtor and cname and ciban and amount and amount:match("^%d+%.?%d?%d?$")) then
    return send(400, page("Check the payment",
      "<p class=\"error\">Please fill in every field; the amount like 12.34.</p><p><a href=\"/\">Back</a></p>"))
  end
  local c, cerr = get_client()
  if not c then return error_page("client setup failed", cerr) end
  local payment, err = c:initiate_payment(PRODUCT, {
    instructedAmount = { currency = "EUR", amount = amount },
    debtorAccount = { iban = debtor },
    creditorName = cname,
    creditorAccount = { iban = (ciban:gsub("%s", "")) },
    remittanceInformationUnstructured = remittance,
  }, psu_opts())
  if not payment then return error_page("initiating the payment failed", err) end
  data.payment = { id = payment.id, product = PRODUCT, amount = amount, creditor = cname }
  return start_sca(sid, data, payment, "payment")
end

local function payment_page()
  local _, data = session()
  local p = data.payment
  if not p or not p.id then return redirect("/") end
  local c, cerr = get_client()
  if not c then return error_page("client setup failed", cerr) end
  local payment = c:payment("payments", p.product, p.id)
  local status, body = payment:status()   -- the status and the bank's body, or nil and err
  if not status then return error_page("reading the payment status failed", body) end
  local reason
  if status == "RJCT" and type(body) == "table" then
    local m = (body.tppMessages or {})[1]
    reason = m and (m.text or m.code) or body.statusReasonInformation
  end
  p.status = status
  local sid = load_session()
  if sid then save_session(sid, data) end
  return send(200, page("Payment", table.concat({
    "<p class=\"ok\">Payment of ", h(p.amount), " EUR to ", h(p.creditor), ": status ",
    "<strong id=\"payment-status\">", h(status), "</strong>, <span id=\"payment-meaning\">",
    h(status_words.payment(status, reason)), "</span>.</p>",
    "<p><a href=\"/\" id=\"back\">Back to the accounts</a></p>",
  })))
end

local ROUTES = {
  ["/"] = home,
  ["/connect"] = connect,
  ["/callback"] = callback,
  ["/pay"] = pay,
  ["/payment"] = payment_page,
  ["/healthz"] = function()
    ngx.header["Content-Type"] = "text/plain"
    ngx.say("ok")
  end,
}

--- content_by_lua handler.
function M.handle()
  local route = ROUTES[ngx.var.uri]
  if not route then return send(404, page("Not found", "<p><a href=\"/\">Home</a></p>")) end
  local ok, err = xpcall(route, debug.traceback)
  if not ok then
    ngx.log(ngx.ERR, "tpp: ", err)
    return send(500, page("Internal error", "<p class=\"error\">The app failed; see the error log.</p>"))
  end
end

return M
