--- Fault injection (only when the sandbox runs with --faults): a queue in
-- lua_shared_dict sandbox_limits filled by POST /_sandbox/faults, and the
-- request header `X-Sandbox-Fault: kind=delay; seconds=2`.
local util = require "sandbox.util"
local http = require "sandbox.http"

local _M = {}

local KINDS = { delay = true, drop = true, truncate = true, malformed = true, oversize = true, status = true }
local KEY = "faults"

local function dict()
  return ngx.shared.sandbox_limits
end

local function with_lock(fn)
  local d = dict()
  for _ = 1, 2000 do
    if d:add("faults:lock", true, 2) then
      local ok, a, b = pcall(fn)
      d:delete("faults:lock")
      if not ok then error(a, 0) end
      return a, b
    end
    ngx.sleep(0.001)
  end
  return fn()
end

local function load()
  local s = dict():get(KEY)
  return s and util.json_decode(s) or {}
end

local function save(list)
  if #list == 0 then
    dict():delete(KEY)
  else
    dict():set(KEY, util.json_encode(util.array(list)))
  end
end

local function validate(f)
  if type(f) ~= "table" then return nil, "a fault is a JSON object" end
  if not KINDS[f.kind] then
    return nil, "kind must be one of delay, drop, truncate, malformed, oversize, status"
  end
  if f.seconds ~= nil and (type(f.seconds) ~= "number" or f.seconds < 0 or f.seconds > 120) then
    return nil, "seconds must be a number from 0 to 120"
  end
  if f.status ~= nil and (type(f.status) ~= "number" or f.status < 400 or f.status > 599) then
    return nil, "status must be an HTTP error status"
  end
  if f.retry_after ~= nil and type(f.retry_after) ~= "number" then
    return nil, "retry_after must be a number"
  end
  if f.path ~= nil then
    if type(f.path) ~= "string" then return nil, "path must be a Lua pattern" end
    local ok = pcall(string.find, "", f.path)
    if not ok then return nil, "path is not a valid Lua pattern" end
  end
  if f.method ~= nil and type(f.method) ~= "string" then return nil, "method must be a string" end
  if f.count ~= nil and (type(f.count) ~= "number" or f.count < 1) then
    return nil, "count must be a positive number"
  end
  if f.bytes ~= nil and (type(f.bytes) ~= "number" or f.bytes < 1 or f.bytes > 512 * 1024 * 1024) then
    return nil, "bytes must be a positive number"
  end
  return true
end

--- Queues a fault. Fields: kind, seconds, status, retry_after, method, path
-- (Lua pattern on the full path), count (default 1), bytes (oversize).
-- @return true, or nil, message
function _M.queue(f)
  local ok, err = validate(f)
  if not ok then return nil, err end
  f.count = math.floor(f.count or 1)
  if f.method then f.method = f.method:upper() end
  with_lock(function()
    local list = load()
    list[#list + 1] = f
    save(list)
  end)
  return true
end

--- The queued faults.
function _M.list()
  return load()
end

--- Empties the queue.
function _M.clear()
  dict():delete(KEY)
end

local function parse_header(v)
  local f = {}
  for part in v:gmatch("[^;]+") do
    local k, val = part:match("^%s*([%w_]+)%s*=%s*(.-)%s*$")
    if k then
      k = k:lower()
      f[k] = tonumber(val) or val
    end
  end
  return f
end

--- The fault for this request, if any: the X-Sandbox-Fault header first,
-- then the first queued fault whose method and path match (its count drops).
function _M.take(ctx)
  local hv = ctx.headers["x-sandbox-fault"]
  if hv and hv ~= "" then
    local f = parse_header(hv)
    if validate(f) then return f end
    ngx.log(ngx.WARN, "sandbox: ignoring malformed X-Sandbox-Fault header")
  end
  if not dict():get(KEY) then return nil end
  local full = ngx.var.uri
  return with_lock(function()
    local list = load()
    for i, f in ipairs(list) do
      if (not f.method or f.method == ctx.method) and (not f.path or full:find(f.path)) then
        f.count = (f.count or 1) - 1
        if f.count <= 0 then table.remove(list, i) end
        save(list)
        return f
      end
    end
    return nil
  end)
end

--- status: the given status (default 503) with Retry-After; the handler does not run.
function _M.status(ctx, f)
  local status = tonumber(f.status) or 503
  local code = ({ [429] = "ACCESS_EXCEEDED", [503] = "SERVICE_UNAVAILABLE" })[status] or "INTERNAL_SERVER_ERROR"
  local headers = { ["Retry-After"] = tostring(math.floor(tonumber(f.retry_after) or 1)) }
  local s, b, h = http.err(ctx, status, code, "injected fault", headers)
  return http.write(http.render(ctx, s, b, h))
end

--- oversize: a huge valid JSON body (default 20 MB) streamed in chunks.
function _M.oversize(ctx, f)
  local total = math.floor(tonumber(f.bytes) or 20 * 1024 * 1024)
  ngx.status = 200
  ngx.header["Content-Type"] = "application/json"
  if ctx.request_id then ngx.header["X-Request-ID"] = ctx.request_id end
  local head, tail = '{"padding":"', '"}'
  local pad = total - #head - #tail
  if pad < 0 then pad = 0 end
  ngx.header["Content-Length"] = #head + pad + #tail
  ngx.print(head)
  local chunk = string.rep("x", 64 * 1024)
  while pad > 0 do
    local n = math.min(pad, #chunk)
    ngx.print(n == #chunk and chunk or chunk:sub(1, n))
    local ok = ngx.flush(true)
    if not ok then return ngx.exit(444) end   -- the client went away
    pad = pad - n
  end
  ngx.print(tail)
  return ngx.exit(ngx.HTTP_OK)
end

--- Applies a fault to a rendered answer (the handler has already run, so
-- state changes have happened).
function _M.apply(_, f, status, headers, body)
  if f.kind == "drop" then
    return ngx.exit(444)          -- close without any response
  elseif f.kind == "truncate" then
    ngx.status = status
    for k, v in pairs(headers) do ngx.header[k] = v end
    if #body < 2 then body = body .. string.rep(" ", 2 - #body) end
    ngx.header["Content-Length"] = #body
    ngx.print(body:sub(1, math.floor(#body / 2)))
    ngx.flush(true)
    return ngx.exit(ngx.ERROR)    -- close mid-body
  elseif f.kind == "malformed" then
    headers["Content-Type"] = "application/json"
    local bad = '{"transactionStatus": "RCVD", "_links": {"self": '
    return http.write(200, headers, bad)
  end
  return http.write(status, headers, body)
end

_M.KINDS = KINDS
_M.parse_header = parse_header
return _M
