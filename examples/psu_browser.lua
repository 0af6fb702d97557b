--- A tiny stand-in for the PSU's web browser, for examples and demos.
--
-- It fetches the bank's authorisation page, fills in the HTML form the way a
-- person would (username, password, then the Approve or Deny button) and
-- submits it, following redirects, until the bank sends the browser back to
-- the TPP's redirect URI. It has no client certificate: it talks to the bank
-- exactly like a browser, over `xs2a.transport` with only the CA to trust.
--
--     local browser = require("psu_browser").new{ ca_file = "build/pki/ca.pem" }
--     local callback = assert(browser:authorize(step.url, {
--       username = "alice", password = "alice-pass", decision = "approve",
--       redirect_uri = "https://tpp.example/callback" }))
local _M = {}
local Browser = {}
Browser.__index = Browser

local ENTITIES = { amp = "&", lt = "<", gt = ">", quot = '"', apos = "'" }

local function unescape_html(s)
  s = s:gsub("&#[xX](%x+);", function(h) return utf8 and utf8.char(tonumber(h, 16)) or string.char(tonumber(h, 16)) end)
  s = s:gsub("&#(%d+);", function(d) return utf8 and utf8.char(tonumber(d)) or string.char(tonumber(d)) end)
  return (s:gsub("&(%a+);", function(n) return ENTITIES[n] or ("&" .. n .. ";") end))
end

local function attrs(tag)
  local out = {}
  for name, _, value in tag:gmatch("([%w_:-]+)%s*=%s*([\"'])(.-)%2") do
    out[name:lower()] = unescape_html(value)
  end
  for name, value in tag:gmatch("([%w_:-]+)%s*=%s*([^\"'%s>]+)") do
    if out[name:lower()] == nil then out[name:lower()] = unescape_html(value) end
  end
  -- boolean attributes (checked, selected)
  for name in tag:gmatch("%s([%w_-]+)%f[%s/>]") do
    if out[name:lower()] == nil then out[name:lower()] = true end
  end
  return out
end

local function urlencode(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

local function resolve(base, href)
  if href == nil or href == "" then return base end
  if href:match("^%a[%w+.-]*://") then return href end
  local origin = base:match("^(%a[%w+.-]*://[^/]+)")
  if href:sub(1, 1) == "/" then return origin .. href end
  if href:sub(1, 1) == "?" then return (base:match("^([^?#]*)")) .. href end
  local dir = base:match("^([^?#]*/)") or (origin .. "/")
  return dir .. href
end

--- Parses the forms of an HTML page.
-- @return list of { action, method, fields = { {name, value, type} ... }, buttons = { ... } }
function _M.forms(html)
  local out = {}
  for ftag, inner in html:gmatch("<[Ff][Oo][Rr][Mm](.-)>(.-)</[Ff][Oo][Rr][Mm]>") do
    local fa = attrs(ftag)
    local form = { action = fa.action, method = (fa.method or "GET"):upper(), fields = {}, buttons = {} }
    for itag in inner:gmatch("<[Ii][Nn][Pp][Uu][Tt](.-)/?>") do
      local a = attrs(itag)
      local t = (type(a.type) == "string" and a.type or "text"):lower()
      if t == "submit" then
        form.buttons[#form.buttons + 1] = { name = a.name, value = a.value or "" }
      elseif a.name and ((t ~= "checkbox" and t ~= "radio") or a.checked) then
        form.fields[#form.fields + 1] = { name = a.name, value = type(a.value) == "string" and a.value or "", type = t }
      end
    end
    for btag, label in inner:gmatch("<[Bb][Uu][Tt][Tt][Oo][Nn](.-)>(.-)</[Bb][Uu][Tt][Tt][Oo][Nn]>") do
      local a = attrs(btag)
      local t = (type(a.type) == "string" and a.type or "submit"):lower()
      if t == "submit" then
        form.buttons[#form.buttons + 1] = { name = a.name, value = a.value or "", label = label }
      end
    end
    out[#out + 1] = form
  end
  return out
end

--- Creates a browser.
-- @tparam table opts `{ ca_file = path, transport = t (optional) }`
function _M.new(opts)
  opts = opts or {}
  local t = opts.transport
  if not t then
    local err
    t, err = require("xs2a.transport").new{ ca_file = opts.ca_file, timeout = 15000, connect_timeout = 5000 }
    if not t then return nil, "browser: " .. tostring(err) end
  end
  return setmetatable({ t = t, cookies = {}, trace = opts.trace }, Browser)
end

function Browser:_send(method, url, body)
  local headers = { ["User-Agent"] = "lua-xs2a-example-browser/1", Accept = "text/html" }
  local jar = {}
  for k, v in pairs(self.cookies) do jar[#jar + 1] = k .. "=" .. v end
  if #jar > 0 then headers.Cookie = table.concat(jar, "; ") end
  if body then headers["Content-Type"] = "application/x-www-form-urlencoded" end
  local res, err = self.t:request{ method = method, url = url, headers = headers, body = body }
  if not res then return nil, "browser: " .. method .. " failed: " .. tostring(err and err.message or err) end
  local sc = res.headers and res.headers["set-cookie"]
  if sc then
    for name, value in sc:gmatch("%f[%w_%-]([%w_%-]+)=([^;,]*)") do
      local l = name:lower()
      if l ~= "path" and l ~= "expires" and l ~= "max-age" and l ~= "domain" and l ~= "samesite" then
        self.cookies[name] = value
      end
    end
  end
  if self.trace then self.trace(method, url, res.status) end
  return res
end

local function pick_button(buttons, decision)
  local want = decision == "deny" and { "deny", "reject", "decline", "cancel" }
    or { "approve", "allow", "accept", "confirm", "authori", "log", "continue", "next", "submit" }
  for _, w in ipairs(want) do
    for _, b in ipairs(buttons) do
      local text = ((b.value or "") .. " " .. (b.name or "") .. " " .. (b.label or "")):lower()
      if text:find(w, 1, true) then return b end
    end
  end
  if decision ~= "deny" and #buttons == 1 then return buttons[1] end
end

--- Plays the PSU from `url` until the bank redirects to `redirect_uri`.
-- @tparam string url the authorisation (or SCA redirect) URL
-- @tparam table psu `{ username, password, decision = "approve"|"deny", redirect_uri }`
-- @return the callback URL (with code/state, or error), or nil, err
function Browser:authorize(url, psu)
  local stop = psu.redirect_uri
  local method, body = "GET", nil
  for _ = 1, 10 do
    if stop and url:sub(1, #stop) == stop then return url end
    local res, err = self:_send(method, url, body)
    if not res then return nil, err end
    if res.status >= 300 and res.status < 400 and res.headers.location then
      url = resolve(url, res.headers.location)
      method, body = "GET", nil
    elseif res.status == 200 then
      local forms = _M.forms(res.body or "")
      local form = forms[1]
      if not form then return nil, "browser: no form on the page at " .. url:match("^[^?]*") end
      local parts = {}
      for _, f in ipairs(form.fields) do
        local v = f.value
        local n = f.name:lower()
        if f.type == "password" then
          v = psu.password or ""
        elseif (f.type == "text" or f.type == "email") and (n:find("user") or n:find("login") or n:find("psu")) then
          v = psu.username or ""
        end
        parts[#parts + 1] = urlencode(f.name) .. "=" .. urlencode(v)
      end
      local button = pick_button(form.buttons, psu.decision)
      if not button then return nil, "browser: no button for decision " .. tostring(psu.decision) end
      if button.name then parts[#parts + 1] = urlencode(button.name) .. "=" .. urlencode(button.value or "") end
      local action = resolve(url, form.action)
      if form.method == "POST" then
        method, url, body = "POST", action, table.concat(parts, "&")
      else
        method, body = "GET", nil
        url = action .. (action:find("?", 1, true) and "&" or "?") .. table.concat(parts, "&")
      end
    else
      local text = (res.body or ""):gsub("<[^>]*>", " "):gsub("%s+", " "):sub(1, 200)
      return nil, "browser: HTTP " .. tostring(res.status) .. ": " .. text
    end
  end
  return nil, "browser: too many pages"
end

function Browser:close()
  if self.t and self.t.close then self.t:close() end
end

return _M
