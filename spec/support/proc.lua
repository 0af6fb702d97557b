--- Spec support: the process plumbing of the helpers that start servers
-- for specs (support.sandbox, support.redis, support.tlsserver and the
-- OpenResty harness): shell quoting and running, pids, random ports, a
-- watchdog that outlives a dying test process, and stop-at-exit hooks.
-- Works under Lua 5.4 and LuaJIT.
local M = {}

--- `s` as one single-quoted shell word.
function M.quote(s)
  return "'" .. tostring(s):gsub("'", [['\'']]) .. "'"
end

--- Runs a shell command (LuaJIT's popen close does not report the exit
-- status, so the command echoes it).
-- @return ok, output (stdout and stderr), exit code
function M.run(cmd)
  local p = assert(io.popen("{ " .. cmd .. "; } 2>&1; echo \"__rc=$?\"", "r"))
  local out = p:read("*a")
  p:close()
  local code = tonumber(out:match("__rc=(%d+)%s*$"))
  out = out:gsub("__rc=%d+%s*$", "")
  return code == 0, out, code
end

--- The standard output of a shell command (bytes as they come).
function M.output(cmd)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("*a")
  p:close()
  return out
end

--- The whole file at `path`, or nil.
function M.read_all(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

--- This process's pid (a string), or nil without /proc.
function M.my_pid()
  local f = io.open("/proc/self/stat", "r")
  if not f then return nil end
  local line = f:read("*l")
  f:close()
  return line and line:match("^(%d+)")
end

--- True while process `pid` exists and is not a zombie.
function M.alive(pid)
  local f = io.open("/proc/" .. tostring(pid) .. "/stat", "r")
  if not f then return false end
  local line = f:read("*l") or ""
  f:close()
  local state = line:match("^%d+ %b() (%a)")
  return state ~= nil and state ~= "Z" and state ~= "X"
end

local seeded = false
--- A random port in 20000-60000, from a generator seeded once per process
-- from /dev/urandom, so parallel test processes do not pick alike. The
-- caller tries another when the port turns out to be taken.
function M.random_port()
  if not seeded then
    local f = io.open("/dev/urandom", "rb")
    local s = f and f:read(4) or ""
    if f then f:close() end
    local n = os.time()
    for i = 1, #s do n = n * 256 + s:byte(i) end
    math.randomseed(n % 2147483647)
    seeded = true
  end
  return math.random(20000, 60000)
end

--- Starts a detached shell (its own session, so a signal to our process
-- group spares it) that waits until this Lua process is gone, then runs
-- `cleanup` (a shell command) if `pidfile` still exists. Removing
-- `pidfile` (a clean stop) ends the watchdog without cleanup.
function M.watchdog(pidfile, cleanup)
  local lpid = M.my_pid()
  if not lpid then return end
  local pf = M.quote(pidfile)
  -- (a dead parent may linger as a zombie, which kill -0 still finds)
  local wd = string.format(
    "while kill -0 %s 2>/dev/null && [ -f %s ] && " ..
    "[ \"$(awk '{ print $3 }' /proc/%s/stat 2>/dev/null)\" != Z ]; do sleep 1; done; " ..
    "if [ -f %s ]; then %s; fi",
    lpid, pf, lpid, pf, cleanup)
  os.execute("if command -v setsid >/dev/null 2>&1; then setsid sh -c " .. M.quote(wd)
    .. " >/dev/null 2>&1 </dev/null & else nohup sh -c " .. M.quote(wd) .. " >/dev/null 2>&1 </dev/null & fi")
end

-- stop-at-exit hooks: run by an os.exit wrapper (busted calls os.exit) and
-- by a sentinel collected when the Lua state closes (a script's normal end)
local hooks = {}

local function run_hooks()
  for _, fn in ipairs(hooks) do pcall(fn) end
end

--- Registers `fn` to run when the process exits.
function M.at_exit(fn)
  hooks[#hooks + 1] = fn
end

if not package.loaded["support.proc.__sentinel"] then
  local real_exit = os.exit
  os.exit = function(...)      -- luacheck: ignore 122
    run_hooks()
    return real_exit(...)
  end
  local sentinel
  if newproxy then             -- luacheck: ignore 113
    sentinel = newproxy(true)  -- luacheck: ignore 113
    getmetatable(sentinel).__gc = run_hooks
  else
    sentinel = setmetatable({}, { __gc = run_hooks })
  end
  package.loaded["support.proc.__sentinel"] = sentinel
end

return M
