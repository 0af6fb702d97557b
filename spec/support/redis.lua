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

local proc = require "support.proc"
local shell_quote, run, read_all, alive = proc.quote, proc.run, proc.read_all, proc.alive
M.alive = alive

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

local function start_on(srv, fixed_port)
  local last
  for _ = 1, 10 do
    local port = fixed_port or proc.random_port()
    local pid, dir = launch(srv, port)
    if pid then
      srv.port, srv.pid, srv.dir = port, pid, dir
      live[srv] = true
      -- kills the server if this Lua process dies first (stop() removes the pid file)
      proc.watchdog(dir .. "/redis.pid", string.format("kill -KILL %d 2>/dev/null; rm -rf %s", pid,
        shell_quote(dir)))
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

proc.at_exit(M.stop_all)

return M
