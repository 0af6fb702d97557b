-- Starts a real nginx (Debian nginx + lua-nginx-module) whose workers run
-- lua-xs2a, for the OpenResty specs. Runs on the busted side (Lua 5.4).
--
--   local harness = require "openresty.harness"
--   local ng = harness.start{ workers = 1 }
--   local r = ng:call("openresty.cases", "transport_case", { name = "...", env = {...} })
--   -- r = { ok = bool, err = message|nil, result = value|nil }
--   ng:stop()
--
-- A request to /t/<module>/<function> on the test nginx runs
-- require(<module>)[<function>](args) inside the worker, args being the
-- JSON body of the request (see spec/openresty/worker.lua).
local cjson = require "cjson"

local harness = {}

local NGINX = os.getenv("XS2A_NGINX") or "/usr/sbin/nginx"
local MODULES = os.getenv("XS2A_NGINX_MODULES") or "/usr/share/nginx/modules"

local proc = require "support.proc"
local sh_quote = proc.quote
harness.sh_quote = sh_quote

local function run(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local out = p:read("a")
  local ok, _, code = p:close()
  return ok, out, code
end
harness.run = run

local read = proc.read_all
harness.read = read

local function write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

local function root()
  local ok, helper = pcall(require, "helper")
  if ok and helper.root then return helper.root end
  local p = io.popen("pwd")
  local d = p:read("l")
  p:close()
  return d
end

local function pki_dir()
  local ok, helper = pcall(require, "helper")
  if ok and helper.pki_dir then return helper.pki_dir end
  return root() .. "/build/pki"
end
harness.pki_dir = pki_dir

local random_port = proc.random_port
harness.random_port = random_port

local function sleep(s)
  os.execute("sleep " .. s)
end
harness.sleep = sleep

local CONF = [[
# written by spec/openresty/harness.lua
@USER@
worker_processes @WORKERS@;
master_process on;
daemon on;
pid @PREFIX@/logs/nginx.pid;
@MAIN@
error_log @PREFIX@/logs/error.log @LOGLEVEL@;
load_module @MODULES@/ndk_http_module.so;
load_module @MODULES@/ngx_http_lua_module.so;

events { worker_connections 512; }

http {
  access_log @PREFIX@/logs/access.log;
  client_body_temp_path @PREFIX@/tmp/body;
  proxy_temp_path @PREFIX@/tmp/proxy;
  fastcgi_temp_path @PREFIX@/tmp/fastcgi;
  uwsgi_temp_path @PREFIX@/tmp/uwsgi;
  scgi_temp_path @PREFIX@/tmp/scgi;
  client_max_body_size 10m;
  client_body_buffer_size 1m;

  lua_package_path "@ROOT@/lua/?.lua;@ROOT@/lua/?/init.lua;@ROOT@/spec/?.lua;;";
  lua_package_cpath "@ROOT@/build/luajit/?.so;;";
  lua_ssl_trusted_certificate @PKI@/ca.pem;
  lua_ssl_verify_depth 4;
  lua_socket_log_errors off;
  lua_shared_dict xs2a 10m;
  lua_shared_dict xs2a_test 1m;
@HTTP@
  init_by_lua_block {
    require "resty.core"
@INIT@
  }
  init_worker_by_lua_block {
@INIT_WORKER@
  }

  server {
    listen 127.0.0.1:@PORT@ @REUSEPORT@;
    location = /ping { return 200 "pong\n"; }
    location ~ ^/t/([A-Za-z0-9_.]+)/([A-Za-z0-9_]+)$ {
      set $t_mod $1;
      set $t_fn $2;
      content_by_lua_block {
        require("openresty.worker").handle(ngx.var.t_mod, ngx.var.t_fn)
      }
    }
@SERVER@
  }
}
]]

local Ng = {}
Ng.__index = Ng

--- Starts nginx. opts: workers (1), main, http, server, init, init_worker
-- (text pasted into the config; main: the main context, e.g. env
-- directives), loglevel ("warn").
function harness.start(opts)
  opts = opts or {}
  local ok, prefix = run("mktemp -d /tmp/xs2a-openresty.XXXXXX")
  assert(ok, "mktemp failed")
  prefix = prefix:gsub("%s+$", "")
  for _, d in ipairs({ "conf", "logs", "tmp" }) do
    assert(os.execute("mkdir -p " .. sh_quote(prefix .. "/" .. d)))
  end
  local user = "# not root: nginx keeps the current user"
  local idp = io.popen("id -u")
  if idp:read("l") == "0" then user = "user root root;" end
  idp:close()

  local last
  for _ = 1, 8 do
    local port = opts.port or random_port()
    local vars = {
      USER = user, WORKERS = tostring(opts.workers or 1), PREFIX = prefix,
      LOGLEVEL = opts.loglevel or "warn", MODULES = MODULES, ROOT = root(),
      PKI = opts.pki or pki_dir(), PORT = tostring(port), HTTP = opts.http or "",
      REUSEPORT = (opts.workers or 1) > 1 and "reuseport" or "",
      INIT = opts.init or "", INIT_WORKER = opts.init_worker or "", SERVER = opts.server or "",
      MAIN = opts.main or "",
    }
    local conf = CONF:gsub("@([A-Z_]+)@", function(k) return vars[k] end)
    write(prefix .. "/conf/nginx.conf", conf)
    local started, out = run("timeout 20 " .. NGINX .. " -p " .. sh_quote(prefix) .. " -e "
      .. sh_quote(prefix .. "/logs/error.log") .. " -c " .. sh_quote(prefix .. "/conf/nginx.conf"))
    if started then
      local ng = setmetatable({ prefix = prefix, port = port,
        base_url = "http://127.0.0.1:" .. port }, Ng)
      ng:watchdog()
      for _ = 1, 100 do
        local st = ng:http("GET", "/ping")
        if st == 200 then return ng end
        sleep(0.05)
      end
      ng:stop()
      error("test nginx does not answer on port " .. port .. ":\n" .. (read(prefix .. "/logs/error.log") or ""))
    end
    last = out
    if not (out:find("in use", 1, true) or out:find("bind", 1, true)) or opts.port then break end
  end
  local log = read(prefix .. "/logs/error.log") or ""
  os.execute("rm -rf " .. sh_quote(prefix))
  error("test nginx did not start: " .. tostring(last) .. "\n" .. log)
end

-- A background shell that stops this nginx (by its pid file) if the busted
-- process dies without calling stop().
function Ng:watchdog()
  local pidfile = sh_quote(self.prefix .. "/logs/nginx.pid")
  proc.watchdog(self.prefix .. "/logs/nginx.pid", ("kill -QUIT \"$(cat %s)\" 2>/dev/null; sleep 2; rm -rf %s")
    :format(pidfile, sh_quote(self.prefix)))
end

--- Plain HTTP request to the test nginx with the curl CLI.
-- Returns status, body, headers text.
function Ng:http(method, path, body, extra)
  local args = { "curl", "-sS", "-o", "-", "-m", tostring((extra and extra.timeout) or 60),
    "-X", method, "-w", sh_quote("\n%{http_code}") }
  local tmp
  if body then
    tmp = os.tmpname()
    write(tmp, body)
    args[#args + 1] = "--data-binary @" .. sh_quote(tmp)
    args[#args + 1] = "-H 'Content-Type: application/json'"
  end
  args[#args + 1] = sh_quote(self.base_url .. path)
  local p = io.popen(table.concat(args, " ") .. " 2>/dev/null")
  local out = p:read("a")
  p:close()
  if tmp then os.remove(tmp) end
  local resp, status = out:match("^(.*)\n(%d%d%d)$")
  return tonumber(status), resp
end

--- Runs require(mod)[fn](args) inside a worker; returns the decoded answer
-- { ok = bool, err = message, result = value }.
function Ng:call(mod, fn, args, timeout)
  local status, body = self:http("POST", "/t/" .. mod .. "/" .. fn,
    cjson.encode(args or {}), { timeout = timeout or 60 })
  if status ~= 200 then
    return { ok = false, err = "worker answered HTTP " .. tostring(status) .. ": "
      .. tostring(body) .. "\n" .. self:errors() }
  end
  local okj, decoded = pcall(cjson.decode, body)
  if not okj or type(decoded) ~= "table" then
    return { ok = false, err = "worker answer is not JSON: " .. tostring(body) }
  end
  return decoded
end

--- Runs `n` calls of require(mod)[fn](args) at once (curl processes in the
-- background, so they reach the workers together); returns the `n` decoded
-- answers (as Ng:call) in launch order.
function Ng:call_all(mod, fn, args, n, timeout)
  local cmds, outs, tmps = {}, {}, {}
  for i = 1, n do
    outs[i] = os.tmpname()
    local cmd, tmp = self:call_cmd(mod, fn, args, outs[i], timeout)
    cmds[i], tmps[i] = cmd .. " &", tmp
  end
  assert(os.execute("(" .. table.concat(cmds, " ") .. " wait)"))
  local answers = {}
  for i = 1, n do
    local body = read(outs[i])
    os.remove(outs[i]); os.remove(tmps[i])
    local okj, decoded = pcall(cjson.decode, body or "")
    answers[i] = (okj and type(decoded) == "table") and decoded
      or { ok = false, err = "no usable answer from the worker: " .. tostring(body) }
  end
  return answers
end

--- Tallies the answers of a lock race (cases answering `{ got, pid }`).
-- @return holders (how many got the lock), workers (distinct pids) | nil, err
function harness.lock_race(answers)
  local holders, pids, workers = 0, {}, 0
  for _, r in ipairs(answers) do
    if not r.ok then return nil, r.err end
    if r.result.got then holders = holders + 1 end
    if not pids[r.result.pid] then pids[r.result.pid], workers = true, workers + 1 end
  end
  return holders, workers
end

--- Command line (for io.popen / background use) that POSTs a call.
function Ng:call_cmd(mod, fn, args, out_file, timeout)
  local tmp = os.tmpname()
  write(tmp, cjson.encode(args or {}))
  return table.concat({ "curl", "-sS", "-m", tostring(timeout or 60), "-X POST",
    "-H 'Content-Type: application/json'", "--data-binary @" .. sh_quote(tmp),
    "-o", sh_quote(out_file), sh_quote(self.base_url .. "/t/" .. mod .. "/" .. fn) }, " "), tmp
end

--- The [error]/[alert]/[crit]/[emerg] lines of the error log (for messages).
function Ng:errors()
  local log = read(self.prefix .. "/logs/error.log") or ""
  local lines = {}
  for line in log:gmatch("[^\n]+") do
    if line:find("%[error%]") or line:find("%[alert%]") or line:find("%[crit%]")
        or line:find("%[emerg%]") then
      lines[#lines + 1] = line
    end
  end
  return table.concat(lines, "\n")
end

function Ng:pid()
  local s = read(self.prefix .. "/logs/nginx.pid")
  return s and tonumber(s:match("%d+"))
end

--- Stops exactly this nginx (pid file), waits for it, removes the prefix
-- (kept when XS2A_KEEP_PREFIX is set).
function Ng:stop()
  if self.stopped then return end
  self.stopped = true
  local pid = self:pid()
  if pid then
    -- the workers of this master, in case it has to be killed
    local kids = {}
    local p = io.popen("pgrep -P " .. pid .. " 2>/dev/null")
    for line in p:lines() do kids[#kids + 1] = tonumber(line) end
    p:close()
    os.execute("kill -QUIT " .. pid .. " 2>/dev/null")
    for _ = 1, 100 do
      if not os.execute("kill -0 " .. pid .. " 2>/dev/null") then break end
      sleep(0.05)
    end
    if os.execute("kill -0 " .. pid .. " 2>/dev/null") then
      os.execute("kill -KILL " .. pid .. " 2>/dev/null")
      for _, k in ipairs(kids) do os.execute("kill -KILL " .. k .. " 2>/dev/null") end
    end
  end
  -- removing the pid file also ends the watchdog
  os.remove(self.prefix .. "/logs/nginx.pid")
  if not os.getenv("XS2A_KEEP_PREFIX") then
    os.execute("rm -rf " .. sh_quote(self.prefix))
  end
end

return harness
