-- A sampling profiler for Lua code (debug.sethook count hook): every
-- `every` VM instructions it charges the running function (and its callers,
-- for the inclusive view). Used to profile the pipeline for the notes of
-- issue 10; not part of any test.
--
--   local prof = require "luaprof"
--   prof.install()                 -- before requiring what is profiled
--   prof.start(1000); work(); prof.stop(); prof.report(25)
-- luacheck: globals coroutine
local M = {}
local self_count, incl_count, total = {}, {}, 0

local function name_of(info)
  local src = info.short_src:gsub("^.*/lua/", "")
  return string.format("%s:%d %s", src, info.linedefined or 0, info.name or "?")
end

local function hook_body()
  total = total + 1
  local seen = {}
  -- levels: 1 hook_body, 2 pcall, 3 hook, 4 the interrupted function
  local first = true
  for level = 4, 60 do
    local info = debug.getinfo(level, "Sn")
    if not info then break end
    if info.what ~= "C" then
      local key = name_of(info)
      if first then
        self_count[key] = (self_count[key] or 0) + 1
        first = false
      end
      if not seen[key] then
        seen[key] = true
        incl_count[key] = (incl_count[key] or 0) + 1
      end
    end
  end
end

local last_error
local function hook()
  local ok, err = pcall(hook_body)
  if not ok then last_error = err end
end

-- hooks belong to one coroutine: new coroutines get the hook as well
local co_create, co_wrap = coroutine.create, coroutine.wrap
local every_n

local function create(f)
  local co = co_create(f)
  if every_n then debug.sethook(co, hook, "", every_n) end
  return co
end

--- Makes coroutines created from now on profiled as well: call it before
-- requiring the code to profile (modules keep coroutine.create in locals).
function M.install()
  coroutine.create = create
  coroutine.wrap = function(f)
    local co = create(f)
    return function(...)
      local r = table.pack(coroutine.resume(co, ...))
      if not r[1] then error(r[2], 0) end
      return table.unpack(r, 2, r.n)
    end
  end
end

function M.start(every)
  self_count, incl_count, total = {}, {}, 0
  every_n = every or 1000
  debug.sethook(hook, "", every_n)
end

function M.stop()
  debug.sethook()
  every_n = nil
end

function M.uninstall()
  coroutine.create, coroutine.wrap = co_create, co_wrap
end

local function top(t, n)
  local list = {}
  for k, v in pairs(t) do list[#list + 1] = { k, v } end
  table.sort(list, function(a, b) return a[2] > b[2] end)
  local out = {}
  for i = 1, math.min(n, #list) do
    out[i] = string.format("%5.1f%%  %s", 100 * list[i][2] / math.max(total, 1), list[i][1])
  end
  return out
end

function M.report(n)
  print("-- " .. total .. " samples")
  if last_error then print("-- the profiler's hook failed: " .. tostring(last_error)) end
  print("-- self (Lua functions; C functions are charged to their Lua caller)")
  for _, l in ipairs(top(self_count, n or 20)) do print(l) end
  print("-- inclusive")
  for _, l in ipairs(top(incl_count, n or 20)) do print(l) end
end

return M
