-- Runs inside the test nginx worker (LuaJIT): the handler of /t/<mod>/<fn>.
-- Calls require(mod)[fn](args) with the decoded JSON body and answers
-- {"ok":true,"result":...} or {"ok":false,"err":"..."}.
local cjson = require "cjson.safe"

local M = {}

local function message_of(e)
  if type(e) == "table" then
    -- luassert failures carry a message field
    local m = e.message or e.msg
    if m then return tostring(m) end
    local ok, s = pcall(cjson.encode, e)
    return ok and s or tostring(e)
  end
  return tostring(e)
end

function M.handle(mod, fn)
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if not body then
    local file = ngx.req.get_body_file()
    if file then
      local f = io.open(file, "rb")
      body = f:read("*a")
      f:close()
    end
  end
  local args = {}
  if body and body ~= "" then
    args = cjson.decode(body)
    if type(args) ~= "table" then
      ngx.status = 400
      ngx.say("bad JSON")
      return
    end
  end
  local trace
  local ok, result = xpcall(function()
    local m = require(mod)
    local f = m[fn]
    if type(f) ~= "function" then error("no function " .. fn .. " in " .. mod) end
    return f(args)
  end, function(e)
    trace = debug.traceback("", 2)
    return e
  end)
  local answer
  if ok then
    answer = { ok = true, result = result }
  else
    answer = { ok = false, err = message_of(result) }
    ngx.log(ngx.ERR, "case ", mod, ".", fn, " failed: ", answer.err, trace)
  end
  local out = cjson.encode(answer)
  if not out then
    out = cjson.encode({ ok = false, err = "result is not JSON-encodable" })
  end
  ngx.header["Content-Type"] = "application/json"
  ngx.say(out)
end

return M
