--- The one error type of lua-xs2a.
--
-- Every runtime failure of the client (an HTTP error from the bank in either
-- body format, a transport failure, a malformed answer, a failed SCA, a
-- local limit, a configuration problem) is an `xs2a.Error` table:
--
-- * `kind`: `"http"` (the bank answered with an error status), `"transport"`
--   (no usable answer: timeout, TLS, connection), `"protocol"` (an answer we
--   cannot use: malformed JSON, bad response signature, unexpected status),
--   `"sca"` (authorisation denied/failed), `"limit"` (refused locally before
--   the bank would have said 429), `"config"` (client configuration),
--   `"store"` (the token store failed, e.g. Redis down: `STORE_UNAVAILABLE`);
-- * `status`: HTTP status or nil; `code`: the bank's message code
--   (`"TOKEN_EXPIRED"`) or our own (`"timeout"`, `"ACCESS_EXCEEDED"`...);
-- * `messages`: list of `{ category, code, text, path }` (both body formats);
-- * `text`: one human sentence; `request_id`: the X-Request-ID we sent;
-- * `retry_after`: seconds (from `Retry-After`, delta or HTTP-date);
-- * `retryable`: true when repeating the same request later may succeed
--   (the client only repeats requests that are safe to repeat);
-- * `outcome`: `"unknown"` when a request that is not safe to repeat (a
--   payment POST) may have reached the bank but its answer was lost: check
--   with the bank before trying again; otherwise nil;
-- * `method`, `path` of the request; `links` (`_links` of an error body);
-- * `cause`: the error behind this one, when there is one (the refused token
--   refresh behind a 401 `TOKEN_EXPIRED`, the refused OTP behind a failed
--   SCA); `tostring` appends it after `; cause: `.
--
-- `tostring(err)` is one line, for example
-- `xs2a: 401 TOKEN_EXPIRED: The access token has expired (GET /v1/accounts, X-Request-ID 9c1...)`.
-- Texts never contain tokens, PSU ids or full IBANs.
-- @module xs2a.errors
local redact = require "xs2a.redact"
local date = require "xs2a.net.date"
local json = require "xs2a.codec.json"

local type, tostring, tonumber, setmetatable, getmetatable, ipairs = type, tostring, tonumber, setmetatable,
  getmetatable, ipairs
local str_gsub, str_sub, str_match, str_lower, str_find = string.gsub, string.sub, string.match, string.lower,
  string.find

local _M = {}

local Error = {}
Error.__index = Error
Error.__name = "xs2a.Error"
_M.Error = Error

local function clean(s, max)
  if s == nil then return nil end
  s = tostring(s)
  s = str_gsub(s, "[%c]+", " ")
  s = redact.mask_text(s)
  if max and #s > max then s = str_sub(s, 1, max) .. "..." end
  return s
end

local function describe(e, depth)
  local parts = { "xs2a:" }
  if e.kind == "http" then
    parts[#parts + 1] = tostring(e.status)
  elseif e.kind ~= nil then
    parts[#parts + 1] = e.kind
  end
  local head = table.concat(parts, " ")
  if e.code then head = head .. " " .. tostring(e.code) end
  local line = head .. ": " .. (e.text or "error")
  local ctx = {}
  if e.method and e.path then ctx[#ctx + 1] = e.method .. " " .. e.path end
  if e.outcome then ctx[#ctx + 1] = "outcome " .. e.outcome end
  if e.retry_after then ctx[#ctx + 1] = "retry after " .. tostring(e.retry_after) .. " s" end
  if e.request_id then ctx[#ctx + 1] = "X-Request-ID " .. e.request_id end
  if #ctx > 0 then line = line .. " (" .. table.concat(ctx, ", ") .. ")" end
  local cause = e.cause
  if cause ~= nil and depth < 3 then
    local text
    if getmetatable(cause) == Error then
      text = str_gsub(describe(cause, depth + 1), "^xs2a: ", "")
    elseif type(cause) ~= "table" then
      text = clean(cause, 300)
    end
    if text then line = line .. "; cause: " .. text end
  end
  return line
end

Error.__tostring = function(e) return describe(e, 1) end

--- True when `v` is an xs2a error.
function _M.is_error(v)
  return type(v) == "table" and getmetatable(v) == Error
end

--- True when `err` is an xs2a error whose code, or one of whose messages'
-- codes, equals `code`.
function _M.is(err, code)
  if not _M.is_error(err) then return false end
  if err.code == code then return true end
  for _, m in ipairs(err.messages or {}) do
    if m.code == code then return true end
  end
  return false
end

--- Creates an error. `fields.text` is cleaned (one line, IBANs masked).
-- Also callable as `errors.new{ kind = ..., code = ..., message = ... }`
-- (`message` is an alias of `text`; both are set on the result).
-- @param kind "http"|"transport"|"protocol"|"sca"|"limit"|"config"|"store" (or another
--   word a module needs, such as "auth")
-- @param fields table of the fields described above
function _M.new(kind, fields)
  if type(kind) == "table" and fields == nil then
    -- errors.new{ kind = ..., code = ..., message = ... } (single-table form)
    fields = kind
    kind = fields.kind or "protocol"
  end
  local e = {}
  for k, v in pairs(fields or {}) do e[k] = v end
  e.kind = kind
  e.text = clean(e.text or e.message, 500) or kind
  e.message = e.text
  e.path = e.path and redact.mask_text(e.path)
  e.messages = e.messages or {}
  -- never sent twice: an error whose outcome is unknown is never retryable,
  -- whoever builds it
  if e.retryable == nil or e.outcome == "unknown" then e.retryable = false end
  return setmetatable(e, Error)
end

--- An error from a table of fields: `kind`, `code`, `message` (the text)
-- and any other Error field.
function _M.make(fields)
  local f = {}
  for k, v in pairs(fields) do f[k] = v end
  local kind = f.kind
  f.kind, f.text, f.message = nil, f.text or f.message, nil
  return _M.new(kind, f)
end

--- A configuration error (raised at client construction as `nil, err`).
function _M.config(text, code)
  return _M.new("config", { text = text, code = code or "CONFIG_INVALID" })
end

--- Parses a Retry-After value: delta-seconds or an HTTP-date.
-- @return seconds (>= 0) or nil
function _M.parse_retry_after(v, now)
  if type(v) ~= "string" then
    if type(v) == "number" then return v >= 0 and v or 0 end
    return nil
  end
  v = str_match(v, "^%s*(.-)%s*$")
  if str_find(v, "^%d+$") then return tonumber(v) end
  if str_find(v, "^%d+%.%d+$") then return tonumber(v) end
  local t = date.parse_http(v)
  if not t then return nil end
  local d = t - (now or os.time())
  return d > 0 and d or 0
end

local RETRYABLE_STATUS = { [408] = true, [429] = true, [502] = true, [503] = true, [504] = true }
_M.RETRYABLE_STATUS = RETRYABLE_STATUS

-- Transport failures worth another attempt.
local TRANSPORT_RETRYABLE = { timeout = true, connect = true, resolve = true, send = true, recv = true,
  closed = true, protocol = true, other = true }

local function messages_from(body)
  local msgs = {}
  if type(body) ~= "table" then return msgs end
  if type(body.tppMessages) == "table" then
    for _, m in ipairs(body.tppMessages) do
      if type(m) == "table" then
        msgs[#msgs + 1] = {
          category = type(m.category) == "string" and m.category or "ERROR",
          code = type(m.code) == "string" and m.code or nil,
          text = type(m.text) == "string" and clean(m.text, 500) or nil,
          path = type(m.path) == "string" and m.path or nil,
        }
      end
    end
  end
  if type(body.code) == "string" or type(body.title) == "string" or type(body.detail) == "string" then
    msgs[#msgs + 1] = {
      category = "ERROR",
      code = type(body.code) == "string" and body.code or nil,
      text = clean(type(body.detail) == "string" and body.detail
        or type(body.title) == "string" and body.title or nil, 500),
      title = type(body.title) == "string" and body.title or nil,
      type = type(body.type) == "string" and body.type or nil,
    }
    if type(body.additionalErrors) == "table" then
      for _, m in ipairs(body.additionalErrors) do
        if type(m) == "table" then
          msgs[#msgs + 1] = {
            category = "ERROR",
            code = type(m.code) == "string" and m.code or nil,
            text = clean(type(m.detail) == "string" and m.detail or type(m.title) == "string" and m.title
              or nil, 500),
          }
        end
      end
    end
  end
  -- OAuth token endpoint errors (RFC 6749 5.2)
  if #msgs == 0 and type(body.error) == "string" then
    msgs[#msgs + 1] = { category = "ERROR", code = body.error,
      text = type(body.error_description) == "string" and clean(body.error_description, 500) or nil }
  end
  return msgs
end
--- The messages of an error body, whichever format the bank used:
-- Berlin Group `tppMessages`, RFC 7807 (`additionalErrors`) or an OAuth error.
-- @tparam table body the decoded body
-- @treturn table list of `{ category, code, text, path }` (empty when none)
-- @function messages_from
_M.messages_from = messages_from

--- Builds an error from an HTTP response with an error status.
-- @param res `{ status, headers (lowercase), body, json }` (`json` optional: decoded body)
-- @param ctx `{ method, path, request_id }`
function _M.from_response(res, ctx)
  ctx = ctx or {}
  local headers = res.headers or {}
  local body = res.json
  local ctype = str_lower(tostring(headers["content-type"] or ""))
  if body == nil and type(res.body) == "string" and str_find(res.body, "^%s*[{%[]") then
    body = json.decode(res.body)
  end
  local msgs = messages_from(body)
  local first
  for _, m in ipairs(msgs) do
    if m.category ~= "WARNING" then first = m break end
  end
  first = first or msgs[1]
  local text
  if first then
    text = first.text or first.title
  elseif type(res.body) == "string" and res.body ~= "" then
    local snippet = str_gsub(res.body, "<[^>]*>", " ")
    snippet = str_gsub(snippet, "%s+", " ")
    text = "non-JSON error body (" .. (ctype ~= "" and ctype or "no content type") .. "): " .. clean(snippet, 120)
  else
    text = "HTTP " .. tostring(res.status) .. " with an empty body"
  end
  local status = tonumber(res.status)
  return _M.new("http", {
    status = status,
    code = first and first.code or nil,
    messages = msgs,
    text = text,
    links = type(body) == "table" and type(body._links) == "table" and body._links or nil,
    request_id = ctx.request_id or headers["x-request-id"],
    retry_after = _M.parse_retry_after(headers["retry-after"]),
    retryable = RETRYABLE_STATUS[status] or false,
    method = ctx.method, path = ctx.path,
  })
end

--- Builds an error from a transport failure `{ code, message, sent }`.
-- @param terr the transport's error value (a table, or a string message)
-- @param ctx `{ method, path, request_id, idempotent }`: `outcome` becomes
--   `"unknown"` when the request is not idempotent and may have been sent.
function _M.from_transport(terr, ctx)
  ctx = ctx or {}
  if type(terr) ~= "table" then terr = { code = "other", message = tostring(terr) } end
  local code = terr.code or "other"
  -- whether the request left is the transport's fact; when it does not say,
  -- the request may have reached the bank
  local sent = terr.sent ~= false
  local unknown = sent and not ctx.idempotent
  return _M.new("transport", {
    code = code,
    text = terr.message or code,
    sent = sent,
    request_id = ctx.request_id,
    -- a request that may have acted at the bank and is not safe to repeat is
    -- outcome "unknown", the caller must ask the bank first; `new` makes every
    -- such error not retryable (the one place that rule is kept)
    retryable = TRANSPORT_RETRYABLE[code] or false,
    outcome = unknown and "unknown" or nil,
    method = ctx.method, path = ctx.path,
  })
end

--- A response we cannot use (malformed, unverifiable, unexpected).
function _M.protocol(text, ctx, code)
  ctx = ctx or {}
  return _M.new("protocol", {
    code = code or "BAD_RESPONSE", text = text, status = ctx.status,
    request_id = ctx.request_id, method = ctx.method, path = ctx.path,
    outcome = ctx.outcome,
  })
end

return _M
