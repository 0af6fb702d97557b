--- Spec support: plays the PSU's browser on the sandbox's HTML pages (the
-- OAuth authorization page and the redirect approach's page) with the curl
-- CLI: no client certificate, the test CA, no redirects followed.
--
--   local psu = require "support.psu"
--   local location, page = psu.authorize(url, { username = "alice", password = "alice-pass",
--                                               decision = "approve" })
--   -- location: the Location of the final 302 (callback with code/state or error)
--   -- page: { status, html, headers, error } of the last page when there was no 302
--
-- Works under Lua 5.4 and LuaJIT.
local M = {}

local proc = require "support.proc"
local quote, read_all = proc.quote, proc.read_all

local function ca_file(opts)
  if opts and opts.cacert then return opts.cacert end
  local h = package.loaded.helper
  if type(h) == "table" and h.pki then return h.pki("ca.pem") end
  return (os.getenv("XS2A_PKI") or "build/pki") .. "/ca.pem"
end

local function unescape_html(s)
  s = s:gsub("&#(%d+);", function(n) return string.char(tonumber(n)) end)
  s = s:gsub("&quot;", '"'):gsub("&lt;", "<"):gsub("&gt;", ">"):gsub("&#39;", "'")
  return (s:gsub("&amp;", "&"))
end
M.unescape_html = unescape_html

--- Percent-encodes a form value (application/x-www-form-urlencoded).
function M.urlencode(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

--- Decodes the query string of a URL into a table (first value wins).
function M.query(url)
  local out = {}
  local q = tostring(url or ""):match("%?([^#]*)") or ""
  for pair in q:gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    local function dec(x)
      return (x:gsub("%+", " "):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
    end
    k, v = dec(k), dec(v)
    if out[k] == nil then out[k] = v end
  end
  return out
end

--- One browser request. Returns { status, headers (lower-case), html, location }.
function M.fetch(method, url, form, opts)
  local tmp = os.tmpname()
  local args = {
    "curl", "-s", "-S", "--max-time", "20", "-X", method,
    "--cacert", quote(ca_file(opts)),
    "-D", quote(tmp .. ".h"), "-o", quote(tmp .. ".b"), "-w", quote("%{http_code}"),
  }
  if form then
    local parts = {}
    local keys = {}
    for k in pairs(form) do keys[#keys + 1] = k end
    table.sort(keys)
    for _, k in ipairs(keys) do
      -- a list is a repeated field (checkboxes)
      for _, v in ipairs(type(form[k]) == "table" and form[k] or { form[k] }) do
        parts[#parts + 1] = M.urlencode(k) .. "=" .. M.urlencode(v)
      end
    end
    local f = assert(io.open(tmp .. ".in", "wb"))
    f:write(table.concat(parts, "&"))
    f:close()
    args[#args + 1] = "-H 'Content-Type: application/x-www-form-urlencoded' --data-binary @" .. quote(tmp .. ".in")
  end
  args[#args + 1] = quote(url)
  local p = assert(io.popen(table.concat(args, " ") .. " 2>/dev/null", "r"))
  local code = p:read("*a")
  p:close()
  local res = { status = tonumber(code), headers = {} }
  for line in (read_all(tmp .. ".h") or ""):gmatch("[^\r\n]+") do
    local k, v = line:match("^([^:]+):%s*(.-)%s*$")
    if k and not line:match("^HTTP/") then res.headers[k:lower()] = v end
  end
  res.html = read_all(tmp .. ".b") or ""
  res.location = res.headers["location"]
  for _, suffix in ipairs({ "", ".h", ".b", ".in" }) do os.remove(tmp .. suffix) end
  if res.status == 0 then res.status = nil end
  return res
end

--- Parses the first form of a page.
-- @return { action, method, fields = { name = value } (hidden inputs), buttons = { {name, value} } } or nil
function M.parse_form(html)
  local attrs, inner = html:match("<form(.-)>(.-)</form>")
  if not attrs then return nil end
  local form = {
    action = unescape_html(attrs:match('action="([^"]*)"') or ""),
    method = (attrs:match('method="([^"]*)"') or "get"):upper(),
    fields = {}, inputs = {}, buttons = {},
    choices = {},   -- checkbox and radio groups: name -> { values }
  }
  for tag in inner:gmatch("<input(.-)>") do
    local name = tag:match('name="([^"]*)"')
    local typ = tag:match('type="([^"]*)"') or "text"
    if name then
      name = unescape_html(name)
      form.inputs[name] = typ
      if typ == "hidden" then form.fields[name] = unescape_html(tag:match('value="([^"]*)"') or "") end
      if typ == "checkbox" or typ == "radio" then
        form.choices[name] = form.choices[name] or {}
        table.insert(form.choices[name], unescape_html(tag:match('value="([^"]*)"') or ""))
      end
    end
  end
  for tag in inner:gmatch("<button(.-)>") do
    form.buttons[#form.buttons + 1] = { tag:match('name="([^"]*)"'), tag:match('value="([^"]*)"') }
  end
  return form
end

--- Resolves a form action against the page URL.
function M.resolve(page_url, action)
  if action == "" then return page_url end
  if action:match("^https?://") then return action end
  local origin = page_url:match("^(https?://[^/]+)")
  if action:sub(1, 1) == "/" then return origin .. action end
  local dir = page_url:match("^(.*/)") or (origin .. "/")
  return dir .. action
end

--- Extracts the error message shown on a page (class="error"), if any.
function M.page_error(html)
  local e = html and html:match('<p class="error"[^>]*>(.-)</p>')
  return e and unescape_html(e) or nil
end

--- Opens an authorisation page, logs in and decides.
-- @param url the page (OAuth authorization request URL or the scaRedirect href)
-- @param opts { username, password, decision = "approve"|"deny" (default approve), cacert,
--   choose = { values } to tick in the page's checkbox/radio group (the accounts
--   of a bank-offered consent, the debtor account of a payment without one) }
-- @return location of the 302 (or nil), and the last page { status, html, headers, error }
function M.authorize(url, opts)
  opts = opts or {}
  local page = M.fetch("GET", url, nil, opts)
  if page.status == 302 then return page.location, page end
  if page.status ~= 200 then
    page.error = M.page_error(page.html)
    return nil, page
  end
  local form = M.parse_form(page.html)
  if not form then return nil, page end
  local data = {}
  for k, v in pairs(form.fields) do data[k] = v end
  if form.inputs.username then data.username = opts.username or "" end
  if form.inputs.password then data.password = opts.password or "" end
  data.decision = opts.decision or "approve"
  if opts.choose then
    for name in pairs(form.choices) do data[name] = opts.choose end
  end
  local res = M.fetch(form.method, M.resolve(url, form.action), data, opts)
  if res.status == 302 then return res.location, res end
  res.error = M.page_error(res.html)
  return nil, res
end

--- A PKCE pair: verifier (43 URL-safe characters) and its S256 challenge,
-- computed with the openssl CLI.
function M.pkce()
  local f = assert(io.open("/dev/urandom", "rb"))
  local raw = f:read(32)
  f:close()
  local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
  local v = {}
  for i = 1, 43 do
    local b = raw:byte((i - 1) % 32 + 1) + i * 7
    local c = b % 64 + 1
    v[i] = alphabet:sub(c, c)
  end
  local verifier = table.concat(v)
  local p = assert(io.popen("printf %s " .. quote(verifier)
    .. " | openssl dgst -sha256 -binary | base64 | tr '+/' '-_' | tr -d '=\\n'", "r"))
  local challenge = p:read("*a")
  p:close()
  return verifier, challenge
end

return M
