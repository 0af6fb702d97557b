--- Helpers shared by the bank's modules: storage keys, amounts, dates,
-- links, PSU credentials and request checks.
local util = require "sandbox.util"
local state = require "sandbox.state"

local floor, format, tonumber, type = math.floor, string.format, tonumber, type

local _M = {}

_M.util = util

--- The sandbox's PSUs. Test-only credentials, documented in sandbox/BANK.md.
_M.PSUS = {
  alice = { password = "alice-pass", name = "Alice Example" },
  bob = { password = "bob-pass", name = "Bob Example" },
  carol = { password = "carol-pass", name = "Carol Example" },
}

--- The fixed one-time password of the embedded approach.
_M.OTP = "123456"

--- Checks a PSU's login. Never logs or echoes the password.
-- @return true, or false
function _M.psu_login(username, password)
  local psu = type(username) == "string" and _M.PSUS[username]
  if not psu or type(password) ~= "string" then return false end
  return require("sandbox.crypto").equal(psu.password, password)
end

---------------------------------------------------------------------------
-- storage (JSON values in the shared dict, through sandbox.state)

function _M.get(key) return state.get(key) end
function _M.set(key, value) return state.set(key, value) end

--- Read-modify-write under the state lock; `fn(old) -> new`. Returns the
-- value `fn` produced (nil leaves the key unchanged).
function _M.update(key, fn)
  local result
  state.update(key, function(old)
    local new = fn(old)
    result = new
    if new == nil then return old end
    return new
  end)
  return result
end

function _M.incr(key, n) return state.incr(key, n or 1) end

--- The first value of a form or query parameter (repeated parameters come
-- as a list, a bare `name` as true, which reads as "").
function _M.first(v)
  if type(v) == "table" then v = v[1] end
  if v == true then return "" end
  return v
end

---------------------------------------------------------------------------
-- time

-- The bank's business clock: real time plus the configuration's
-- `clock_offset` (seconds, default 0). Consent lifetimes and validUntil,
-- tokens, codes, authorisation timeouts and execution dates all read it, so
-- a spec can move the bank a day ahead without waiting. The platform
-- (certificates, signature timestamps, rate windows) keeps real time.
function _M.now()
  local ok, cfg = pcall(require("sandbox.config").get)
  local offset = ok and type(cfg) == "table" and tonumber(cfg.clock_offset) or 0
  return util.now() + offset
end
function _M.today() return util.iso_date(_M.now()) end
_M.iso_date = util.iso_date
_M.iso_datetime = util.iso_datetime
_M.parse_date = util.parse_date

--- True when `s` is "YYYY-MM-DD" naming a real day.
function _M.is_date(s)
  return util.parse_date(s) ~= nil
end

---------------------------------------------------------------------------
-- amounts: kept as integers of thousandths, so "0.10" + "0.20" is exact

--- Parses a BG amount string (`-?[0-9]{1,14}(\.[0-9]{1,3})?`). The sandbox
-- keeps amounts exact in doubles, so it takes at most 12 integer digits.
-- @return integer thousandths, or nil
function _M.parse_amount(s)
  if type(s) ~= "string" then return nil end
  local sign, int, frac = s:match("^(%-?)(%d+)%.?(%d*)$")
  if not sign or #frac > 3 then return nil end
  int = int:gsub("^0+(%d)", "%1")
  if #int > 12 then return nil end
  if frac == "" and s:sub(-1) == "." then return nil end
  local v = tonumber(int) * 1000 + tonumber((frac .. "000"):sub(1, 3))
  if sign == "-" then v = -v end
  return v
end

--- Formats thousandths as a BG amount with two (or three) decimals.
function _M.format_amount(v)
  local neg = v < 0
  if neg then v = -v end
  local int, frac = floor(v / 1000), v % 1000
  local s
  if frac % 10 == 0 then
    s = format("%d.%02d", int, frac / 10)
  else
    s = format("%d.%03d", int, frac)
  end
  return neg and "-" .. s or s
end

function _M.money(milli, currency)
  return { amount = _M.format_amount(milli), currency = currency }
end

---------------------------------------------------------------------------
-- IBANs and the variant's account identifiers

_M.iban_valid = util.iban_valid

function _M.norm_iban(s)
  if type(s) ~= "string" then return nil end
  return (s:gsub(" ", ""):upper())
end

---------------------------------------------------------------------------
-- links: the form is the variant's `link_form` setting. "host": relative to
-- the host, starting with the variant root (Berlin's default); "absolute":
-- full URLs (Georgia's default); "variant": relative to the variant root,
-- "/v1/..." as in the examples of Paysera's Georgia pages.

function _M.href(ctx, path)
  local form = ctx.cfg and ctx.cfg.link_form
  if form == "variant" then return path end
  if form == "absolute" or (form == nil and ctx.variant == "georgia") then
    return ctx.base_url .. ctx.root .. path
  end
  return ctx.root .. path
end

function _M.link(ctx, path)
  return { href = _M.href(ctx, path) }
end

--- An absolute URL (Location headers, browser pages).
function _M.abs(ctx, path)
  return ctx.base_url .. ctx.root .. path
end

--- Encodes a table of query parameters in a stable (sorted) order.
function _M.query(params)
  local keys = {}
  for k in pairs(params) do keys[#keys + 1] = k end
  table.sort(keys)
  local out = {}
  for _, k in ipairs(keys) do
    out[#out + 1] = util.escape(k) .. "=" .. util.escape(tostring(params[k]))
  end
  return table.concat(out, "&")
end

--- Appends query parameters to a URL that may already carry a query.
function _M.add_query(url, params)
  local q = _M.query(params)
  if q == "" then return url end
  local sep = url:find("?", 1, true) and "&" or "?"
  return url .. sep .. q
end

--- Decodes an application/x-www-form-urlencoded body.
function _M.form(body)
  local out = {}
  if type(body) ~= "string" then return out end
  for pair in body:gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    k = util.unescape((k:gsub("%+", " ")))
    v = util.unescape((v:gsub("%+", " ")))
    if out[k] == nil then out[k] = v end
  end
  return out
end

---------------------------------------------------------------------------
-- errors and request helpers

-- the codes Paysera's Georgia page lists under 403 and the Berlin Group
-- guide under 401 (setting `token_error_status`)
local TOKEN_CODES = { TOKEN_UNKNOWN = true, TOKEN_INVALID = true, TOKEN_EXPIRED = true, CONSENT_EXPIRED = true }

function _M.err(ctx, status, code, detail)
  if status == 401 and TOKEN_CODES[code] and ctx and ctx.cfg and tonumber(ctx.cfg.token_error_status) == 403 then
    status = 403
  end
  return require("sandbox.http").err(ctx, status, code, detail)
end

--- A request header (names are lower case in ctx.headers); first value of a list.
function _M.header(ctx, name)
  local v = ctx.headers and ctx.headers[name]
  if type(v) == "table" then v = v[1] end
  if v == "" then return nil end
  return v
end

--- Boolean request header: true, false, or nil when absent; "bad" when not a boolean.
function _M.bool_header(ctx, name)
  local v = _M.header(ctx, name)
  if v == nil then return nil end
  v = v:lower()
  if v == "true" then return true elseif v == "false" then return false end
  return "bad"
end

--- The JSON body as a table, or nil plus an error response.
-- @param optional when true an empty body gives {}
function _M.body(ctx, optional)
  if ctx.json_error then
    return nil, { _M.err(ctx, 400, "FORMAT_ERROR", "request body is not valid JSON") }
  end
  local b = ctx.json
  if b == nil and (ctx.body == nil or ctx.body == "") then
    if optional then return {} end
    return nil, { _M.err(ctx, 400, "FORMAT_ERROR", "request body missing") }
  end
  if type(b) ~= "table" or util.is_array(b) then
    return nil, { _M.err(ctx, 400, "FORMAT_ERROR", "request body must be a JSON object") }
  end
  return b
end

_M.unpack = table.unpack or unpack   -- luacheck: ignore 143

return _M
