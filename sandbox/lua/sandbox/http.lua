--- Responses: error bodies in the configured format, JSON encoding, the
-- X-Request-ID echo, and writing the answer out.
local util = require "sandbox.util"

local _M = {}

local TITLES = {
  [400] = "Bad Request", [401] = "Unauthorized", [403] = "Forbidden", [404] = "Not Found",
  [405] = "Method Not Allowed", [406] = "Not Acceptable", [408] = "Request Timeout",
  [409] = "Conflict", [413] = "Payload Too Large", [415] = "Unsupported Media Type",
  [429] = "Too Many Requests", [500] = "Internal Server Error", [501] = "Not Implemented",
  [502] = "Bad Gateway", [503] = "Service Unavailable", [504] = "Gateway Timeout",
}
_M.TITLES = TITLES

local function error_format(ctx)
  if ctx and ctx.cfg and ctx.cfg.error_format then return ctx.cfg.error_format end
  local ok, cfg = pcall(function() return require("sandbox.config").get() end)
  return ok and cfg.error_format or "paysera"
end

--- An error answer in the configured format.
-- `error_format = "paysera"`: application/problem+json {type,title,detail,code};
-- `"tppMessages"`: application/json {"tppMessages":[{category,code,text}]}.
-- @param ctx request context (may be nil: the top-level format applies)
-- @param status HTTP status
-- @param code message code, e.g. "FORMAT_ERROR"
-- @param detail human-readable text
-- @param headers extra response headers (optional)
-- @return status, body (string), headers
function _M.err(ctx, status, code, detail, headers)
  local h = {}
  for k, v in pairs(headers or {}) do h[k] = v end
  local body
  detail = detail or TITLES[status] or "error"
  if error_format(ctx) == "tppMessages" then
    h["Content-Type"] = "application/json"
    body = util.json_encode{ tppMessages = util.array{ { category = "ERROR", code = code, text = detail } } }
  else
    h["Content-Type"] = "application/problem+json"
    body = util.json_encode{
      type = "https://psd2.sandbox.invalid/problems/" .. code:lower():gsub("_", "-"),
      title = TITLES[status] or "Error",
      detail = detail,
      code = code,
    }
  end
  return status, body, h
end

local function clean_header_value(v)
  if type(v) ~= "string" then return nil end
  v = v:gsub("[%c]", "")
  if #v > 200 then v = v:sub(1, 200) end
  return v
end

--- Turns a handler's answer into status, headers and body text.
-- A table body is JSON-encoded (Content-Type application/json unless set).
-- @return status, headers (table), body (string)
function _M.render(ctx, status, body, headers)
  local h = {}
  for k, v in pairs(headers or {}) do h[k] = v end
  local has_ct = false
  for k in pairs(h) do if k:lower() == "content-type" then has_ct = true end end
  if type(body) == "table" then
    local s, err = util.json_encode(body)
    if not s then
      status, s, h = _M.err(ctx, 500, "INTERNAL_SERVER_ERROR", "cannot encode the answer")
      ngx.log(ngx.ERR, "sandbox: ", err)
    elseif not has_ct then
      h["Content-Type"] = "application/json"
    end
    body = s
  elseif body == nil then
    body = ""
  else
    body = tostring(body)
  end
  local rid = ctx and clean_header_value(ctx.request_id)
  if rid and rid ~= "" then h["X-Request-ID"] = rid end
  return status or 200, h, body
end

--- Writes a rendered answer and finishes the request.
function _M.write(status, headers, body)
  ngx.status = status
  for k, v in pairs(headers) do ngx.header[k] = v end
  if status ~= 204 and status ~= 304 then
    ngx.header["Content-Length"] = #body
    if body ~= "" then ngx.print(body) end
  end
  return ngx.exit(ngx.HTTP_OK)
end

return _M
