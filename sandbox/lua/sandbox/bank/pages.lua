--- The PSU's browser pages: plain HTML forms (no JavaScript) with a login,
-- a description of what is being authorised, and Approve / Deny buttons.
local _M = {}

local ENTITIES = { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;" }

--- Escapes text for HTML element content and attribute values.
function _M.escape(s)
  return (tostring(s or ""):gsub("[&<>\"']", ENTITIES))
end
local esc = _M.escape

local HEADERS = {
  ["Content-Type"] = "text/html; charset=utf-8",
  ["Cache-Control"] = "no-store",
  ["X-Frame-Options"] = "DENY",
  ["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'",
}

local function headers()
  local h = {}
  for k, v in pairs(HEADERS) do h[k] = v end
  return h
end

local STYLE = [[
body{font-family:sans-serif;max-width:34em;margin:2em auto;color:#222}
h1{font-size:1.3em}.what{background:#f4f6f8;padding:.8em;border-radius:4px}
.error{color:#a00;font-weight:bold}label{display:block;margin:.6em 0}
button{margin-right:1em;padding:.4em 1.2em}]]

local function page(title, inner)
  return table.concat({
    "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
    "<title>", esc(title), "</title><style>", STYLE, "</style></head>\n<body>\n",
    "<h1>", esc(title), "</h1>\n", inner, "\n</body></html>\n",
  })
end

--- The login and consent form.
-- @param opts { title, bank, lines = { "what is authorised", ... }, action, hidden = { name = value },
--   error = message|nil, username = prefill|nil, choice = what the PSU picks|nil (see sca.choices) }
-- @return status 200, html, headers
function _M.authorise_form(opts)
  local out = {}
  out[#out + 1] = "<p>" .. esc(opts.bank or "Paysera sandbox bank") .. " asks you to confirm:</p>"
  out[#out + 1] = "<div class=\"what\"><ul>"
  for _, l in ipairs(opts.lines or {}) do out[#out + 1] = "<li>" .. esc(l) .. "</li>" end
  out[#out + 1] = "</ul></div>"
  if opts.error then out[#out + 1] = "<p class=\"error\" role=\"alert\">" .. esc(opts.error) .. "</p>" end
  out[#out + 1] = "<form method=\"post\" action=\"" .. esc(opts.action) .. "\">"
  local names = {}
  for k in pairs(opts.hidden or {}) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do
    out[#out + 1] = "<input type=\"hidden\" name=\"" .. esc(k) .. "\" value=\"" .. esc(opts.hidden[k]) .. "\">"
  end
  local choice = opts.choice
  if choice then
    out[#out + 1] = "<fieldset><legend>" .. esc(choice.prompt or "Choose:") .. "</legend>"
    local typ = choice.multiple and "checkbox" or "radio"
    for _, o in ipairs(choice.options) do
      out[#out + 1] = "<label><input type=\"" .. typ .. "\" name=\"" .. esc(choice.name) .. "\" value=\""
        .. esc(o.value) .. "\"> " .. esc(o.label) .. "</label>"
    end
    out[#out + 1] = "</fieldset>"
  end
  out[#out + 1] = "<label>User name <input type=\"text\" name=\"username\" autocomplete=\"username\" value=\""
    .. esc(opts.username or "") .. "\"></label>"
  out[#out + 1] = "<label>Password <input type=\"password\" name=\"password\""
    .. " autocomplete=\"current-password\"></label>"
  out[#out + 1] = "<p><button type=\"submit\" name=\"decision\" value=\"approve\">Approve</button>"
  out[#out + 1] = "<button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></p>"
  out[#out + 1] = "</form>"
  return 200, page(opts.title or "Authorise", table.concat(out, "\n")), headers()
end

--- A page that only shows a message (no form), with an HTTP status.
function _M.message(status, title, text)
  return status, page(title, "<p class=\"error\">" .. esc(text) .. "</p>"), headers()
end

--- A 302 to `url`.
function _M.redirect(url)
  return 302, "", { ["Location"] = url, ["Cache-Control"] = "no-store" }
end

return _M
