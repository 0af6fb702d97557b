--- Spec support: a private redis-server for the Redis store specs.
--
--   local redis = require "support.redis"
--   local srv = redis.start{ password = "s3cret" }   -- random free port
--   srv.port, srv.host, srv.password
--   srv:stop()                  -- kills exactly that process and waits
--   srv:restart()               -- stop, then start again on the same port
--
-- The server runs in the foreground of a background shell job (no
-- daemonizing, no persistence: --save "" --appendonly no) in a temporary
-- directory. Ports are picked at random in 20000-60000 like
-- support/sandbox.lua does, and another is tried when the port is taken.
-- Every server this process started is stopped at process exit (os.exit
-- wrapper and a __gc sentinel), and a shell watchdog stops it if the process
-- dies. Works under Lua 5.4 and LuaJIT (needs LuaSocket for the PING check).
local M = {}

local REDIS = os.getenv("XS2A_REDIS_SERVER") or "redis-server"

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", [['\'']]) .. "'"
end

local function run(cmd)
  local p = assert(io.popen("{ " .. cmd .. "; } 2>&1; echo \"__rc=$?\"", "r"))
  local out = p:read("*a")
  p:close()
  local code = tonumber(out:match("__rc=(%d+)%s*$"))
  out = out:gsub("__rc=%d+%s*$", "")
  return code == 0, out, code
end

local function read_all(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function my_pid()
  local f = io.open("/proc/self/stat", "r")
  if not f then return nil end
  local line = f:read("*l")
  f:close()
  return line and line:match("^(%d+)")
end

--- True while process `pid` exists and is not a zombie.
local function alive(pid)
  local f = io.open("/proc/" .. tostring(pid) .. "/stat", "r")
  if not f then return false end
  local line = f:read("*l") or ""
  f:close()
  local state = line:match("^%d+ %b() (%a)")
  return state ~= nil and state ~= "Z" and state ~= "X"
end
M.alive = alive

local seeded = false
local function random_port()
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

local socket = require "socket"

local function sleep(s)
  socket.sleep(s)
end

-- One PING over a fresh connection: "+PONG", "-NOAUTH ..." or nil, err.
local function ping(port, password)
  local c = socket.tcp()
  c:settimeout(1)
  local ok, err = c:connect("127.0.0.1", port)
  if not ok then c:close(); return nil, err end
  local cmd = "*1\r\n$4\r\nPING\r\n"
  if password then
    cmd = "*2\r\n$4\r\nAUTH\r\n$" .. #password .. "\r\n" .. password .. "\r\n" .. cmd
  end
  c:send(cmd)
  local line, rerr = c:receive("*l")
  if line and password then line, rerr = c:receive("*l") end
  c:close()
  return line, rerr
end
M.ping = ping

local live = {}       -- servers started by this process
M.live = live

local Server = {}
Server.__index = Server

local function launch(opts, port)
  local ok, dir = run("mktemp -d /tmp/xs2a-redis-XXXXXX")
  assert(ok, "mktemp failed: " .. tostring(dir))
  dir = dir:gsub("%s+$", "")
  local args = { REDIS, "--port", tostring(port), "--bind", "127.0.0.1", "--save", "''",
    "--appendonly", "no", "--daemonize", "no", "--dir", shell_quote(dir),
    "--logfile", shell_quote(dir .. "/redis.log"), "--databases", "16" }
  if opts.password then
    -- given on the command line: fine for a throwaway test server
    args[#args + 1] = "--requirepass " .. shell_quote(opts.password)
  end
  local ok2, out = run(table.concat(args, " ") .. " >/dev/null 2>&1 </dev/null & echo \"pid=$!\"")
  local pid = tonumber(out:match("pid=(%d+)"))
  assert(ok2 and pid, "could not start redis-server: " .. tostring(out))
  local f = assert(io.open(dir .. "/redis.pid", "w"))
  f:write(pid, "\n")
  f:close()
  -- wait until it listens (or died: the port was taken)
  local deadline = socket.gettime() + 10
  while socket.gettime() < deadline do
    if not alive(pid) then
      local log = read_all(dir .. "/redis.log") or ""
      run("rm -rf " .. shell_quote(dir))
      return nil, log
    end
    local log = read_all(dir .. "/redis.log") or ""
    if log:find("Ready to accept connections", 1, true) then
      local answer = ping(port, opts.password)
      if answer == "+PONG" then return pid, dir end
    end
    sleep(0.02)
  end
  os.execute("kill -KILL " .. pid .. " 2>/dev/null")
  local log = read_all(dir .. "/redis.log") or ""
  run("rm -rf " .. shell_quote(dir))
  error("redis-server did not answer PING on port " .. port .. ":\n" .. log, 3)
end

-- A shell that kills the server if this Lua process dies first (while the
-- pid file we wrote still exists, i.e. stop() was not called).
local function watchdog(pid, dir)
  local lpid = my_pid()
  if not lpid then return end
  local pidfile = shell_quote(dir .. "/redis.pid")
  local wd = string.format(
    "while kill -0 %s 2>/dev/null && [ -f %s ] && " ..
    "[ \"$(awk '{ print $3 }' /proc/%s/stat 2>/dev/null)\" != Z ]; do sleep 1; done; " ..
    "if [ -f %s ]; then kill -KILL %d 2>/dev/null; rm -rf %s; fi",
    lpid, pidfile, lpid, pidfile, pid, shell_quote(dir))
  os.execute("if command -v setsid >/dev/null 2>&1; then setsid sh -c " .. shell_quote(wd)
    .. " >/dev/null 2>&1 </dev/null & else nohup sh -c " .. shell_quote(wd) .. " >/dev/null 2>&1 </dev/null & fi")
end

local function start_on(srv, fixed_port)
  local last
  for _ = 1, 10 do
    local port = fixed_port or random_port()
    local pid, dir = launch(srv, port)
    if pid then
      srv.port, srv.pid, srv.dir = port, pid, dir
      live[srv] = true
      watchdog(pid, dir)
      return srv
    end
    last = dir
    if fixed_port or not tostring(last):find("in use", 1, true) then break end
  end
  error("redis-server did not start: " .. tostring(last), 3)
end

--- Starts a private redis-server.
-- @param opts { password = string (requirepass), port = n (default random) }
-- @return server (raises on failure)
function M.start(opts)
  opts = opts or {}
  local srv = setmetatable({ host = "127.0.0.1", password = opts.password }, Server)
  return start_on(srv, opts.port)
end

--- Kills exactly this server (SIGTERM, then SIGKILL after 5 s) and waits
-- until it is gone; removes its directory.
function Server:stop()
  if not live[self] then return end
  live[self] = nil
  local pid = self.pid
  os.remove(self.dir .. "/redis.pid")   -- ends the watchdog
  os.execute("kill -TERM " .. pid .. " 2>/dev/null")
  local deadline = socket.gettime() + 5
  while alive(pid) and socket.gettime() < deadline do sleep(0.02) end
  if alive(pid) then
    os.execute("kill -KILL " .. pid .. " 2>/dev/null")
    while alive(pid) do sleep(0.02) end
  end
  run("rm -rf " .. shell_quote(self.dir))
end

--- True while the server process is alive.
function Server:running()
  return live[self] == true and alive(self.pid)
end

--- Starts the server again on the same port (after stop(), or stops it first).
function Server:restart()
  self:stop()
  return start_on(self, self.port)
end

--- Stops every server this process started.
function M.stop_all()
  for srv in pairs(live) do pcall(Server.stop, srv) end
end

if not M._exit_wrapped then
  local real_exit = os.exit
  os.exit = function(...)      -- luacheck: ignore 122
    M.stop_all()
    return real_exit(...)
  end
  M._exit_wrapped = true
end

do
  local sentinel
  if newproxy then             -- luacheck: ignore 113
    sentinel = newproxy(true)  -- luacheck: ignore 113
    getmetatable(sentinel).__gc = function() M.stop_all() end
  else
    sentinel = setmetatable({}, { __gc = function() M.stop_all() end })
  end
  package.loaded["support.redis.__sentinel"] = sentinel
end

return M
