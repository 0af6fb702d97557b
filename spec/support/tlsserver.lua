--- A loopback HTTPS test server: Debian nginx with the Lua module.
--
--    local tlsserver = require "support.tlsserver"
--    local srv = tlsserver.start{ verify_client = true, cert = "server" }
--    srv.url            -- "https://127.0.0.1:<port>"
--    srv:connections()  -- distinct nginx $connection values in the access log
--    srv:tls_stats()    -- { connections, resumed (TLS sessions), requests }
--    srv:stop()
--
-- Options (all optional):
--   verify_client  true (default: `ssl_verify_client on`), false (off) or
--                  "optional"
--   cert           "server" (default, SAN localhost + 127.0.0.1) or
--                  "wrong-host" (DNS:wrong.example only): a PKI base name
--   client_ca      path of the CA file for client certificates (default
--                  <pki>/ca.pem)
--   http2          offer HTTP/2 through ALPN (default true)
--   pki            the PKI directory (default: helper.pki_dir)
--   extra          nginx directives inserted in the server block
--
-- Locations: /echo (method, uri, headers, body, body_hex, connection... as
-- JSON), /status/<n>, /delay/<ms>, /big/<bytes> (add ?chunked=1 for no
-- Content-Length), /chunked, /headers (repeated Set-Cookie and X-Multi),
-- /redirect (302), /drop (closes without an answer), /truncate (Content-Length
-- 100, 10 bytes sent, then the connection is closed), /not_http (reads the
-- request, answers bytes that are not HTTP and closes; HTTP/1.1 only),
-- /fat_headers/<bytes> (header lines of about that size), /marked?marker=m
-- (m in a header and in a JSON body), /close (/echo, then nginx closes the
-- connection; HTTP/1.1). The access log line is
-- `$remote_addr $connection $connection_requests "$request" $status $msec $request_time`.
--
-- Runs under Lua 5.4 and LuaJIT; binds 127.0.0.1 on a random free port;
-- stops by the pid in its own pid file, never by name.
local _M = {}

local helper = require "helper"

local FIXTURES = helper.root .. "/spec/fixtures/tlsserver"
local NGINX = os.getenv("NGINX") or "nginx"

local proc = require "support.proc"
local shquote, read, random_port = proc.quote, proc.read_all, proc.random_port

-- true when the shell command exits 0 (Lua 5.1 and 5.4 report differently)
local function run(cmd)
  local a, _, c = os.execute(cmd)
  if type(a) == "number" then return a == 0 end
  return a == true and (c == nil or c == 0)
end

local function write(path, s)
  local f = assert(io.open(path, "wb"))
  assert(f:write(s))
  f:close()
end

-- a zombie counts as gone: the daemonised master's parent is init, which
-- may reap it late
local function pid_alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat", "rb")
  if f then
    local st = f:read("*a") or ""
    f:close()
    return st:match("^%d+ %(.*%) (%a)") ~= "Z"
  end
  local self_stat = io.open("/proc/self/stat", "rb")
  if self_stat then self_stat:close() return false end
  return run("kill -0 " .. pid .. " 2>/dev/null")
end

local function sleep(s)
  run("sleep " .. s)
end


local Server = {}
Server.__index = Server

--- Parsed access log lines: { addr, connection, requests, request, status, msec, time }.
function Server:log()
  local out = {}
  local s = read(self.prefix .. "/logs/access.log") or ""
  for line in s:gmatch("[^\n]+") do
    local addr, conn, nreq, request, status, msec, rt =
      line:match('^(%S+) (%d+) (%d+) "(.-)" (%d+) ([%d.]+) ([%d.]+)$')
    if addr then
      out[#out + 1] = {
        addr = addr, connection = tonumber(conn), requests = tonumber(nreq),
        request = request, status = tonumber(status),
        msec = tonumber(msec), time = tonumber(rt),
      }
    end
  end
  return out
end

--- Number of distinct connections among log lines whose request line
-- contains `filter` (plain text; all lines when nil).
function Server:connections(filter)
  local seen, n = {}, 0
  for _, e in ipairs(self:log()) do
    if (not filter or e.request:find(filter, 1, true)) and not seen[e.connection] then
      seen[e.connection] = true
      n = n + 1
    end
  end
  return n
end

--- TLS facts since the start (or the last `mark_tls()`), from the second
-- access log: distinct connections, how many of them resumed a TLS session,
-- and requests, among requests whose line contains `filter` (all when nil).
-- @return { connections = n, resumed = n, requests = n }
function Server:tls_stats(filter)
  local seen, out = {}, { connections = 0, resumed = 0, requests = 0 }
  for line in (read(self.prefix .. "/logs/reuse.log") or ""):gmatch("[^\n]+") do
    local c, r, req = line:match('^(%d+) (%S+) %S+ "(.-)"')
    if c and (not filter or req:find(filter, 1, true)) then
      out.requests = out.requests + 1
      if not seen[c] then
        seen[c] = true
        out.connections = out.connections + 1
        if r == "r" then out.resumed = out.resumed + 1 end
      end
    end
  end
  return out
end

--- Forgets the TLS facts so far (tls_stats counts from here).
function Server:mark_tls()
  local f = assert(io.open(self.prefix .. "/logs/reuse.log", "wb"))
  f:close()
end

--- The largest number of requests (matching `filter`) that were in progress
-- at the same moment, from their start (end - duration) and end times.
function Server:max_overlap(filter)
  local events = {}
  for _, e in ipairs(self:log()) do
    if not filter or e.request:find(filter, 1, true) then
      events[#events + 1] = { e.msec - e.time, 1 }
      events[#events + 1] = { e.msec, -1 }
    end
  end
  -- at equal times count ends first, so back-to-back requests do not overlap
  table.sort(events, function(a, b)
    if a[1] ~= b[1] then return a[1] < b[1] end
    return a[2] < b[2]
  end)
  local cur, best = 0, 0
  for _, ev in ipairs(events) do
    cur = cur + ev[2]
    if cur > best then best = cur end
  end
  return best
end

function Server:error_log()
  return read(self.prefix .. "/logs/error.log") or ""
end

function Server:pid()
  local p = tonumber((read(self.prefix .. "/logs/nginx.pid") or ""):match("%d+"))
  return p
end

--- Stops nginx (TERM, then KILL after 5 s) by the pid in its pid file and
-- removes the prefix directory. Idempotent.
function Server:stop()
  if self.stopped then return end
  self.stopped = true
  local pid = self:pid()
  if pid and pid_alive(pid) then
    run("kill -TERM " .. pid .. " 2>/dev/null")
    for _ = 1, 100 do
      if not pid_alive(pid) then break end
      sleep(0.05)
    end
    if pid_alive(pid) then run("kill -KILL " .. pid .. " 2>/dev/null") end
  end
  if not os.getenv("XS2A_KEEP_TLSSERVER") then
    run("rm -rf " .. shquote(self.prefix))
  end
end

-- stop the server when the Lua state closes, even if a spec forgot
local function guard(srv)
  if _G.newproxy then                                    -- LuaJIT / 5.1
    local p = _G.newproxy(true)
    getmetatable(p).__gc = function() srv:stop() end
    srv._guard = p
  else
    setmetatable(srv, { __index = getmetatable(srv) or Server, __gc = function(s) s:stop() end })
  end
end

local function fill(template, vars)
  return (template:gsub("@([%u%d_]+)@", function(k)
    local v = vars[k]
    if v == nil then error("tlsserver: no value for @" .. k .. "@") end
    return (tostring(v):gsub("%%", "%%%%"))
  end))
end

--- Starts a server. Returns the server or raises with nginx's error log.
function _M.start(opts)
  opts = opts or {}
  local pki = opts.pki or helper.pki_dir
  local cert = opts.cert or "server"
  local verify = opts.verify_client
  if verify == nil or verify == true then verify = "on"
  elseif verify == false then verify = "off" end
  assert(verify == "on" or verify == "off" or verify == "optional", "bad verify_client")
  assert(read(pki .. "/" .. cert .. ".pem"), "no certificate " .. cert .. ".pem in " .. pki)

  local tmp = assert(io.popen("mktemp -d /tmp/xs2a-tlsserver.XXXXXX")):read("*l")
  assert(tmp and tmp ~= "", "mktemp failed")
  assert(run("mkdir -p " .. shquote(tmp .. "/conf") .. " " .. shquote(tmp .. "/logs") .. " "
    .. shquote(tmp .. "/temp")))
  local template = assert(read(FIXTURES .. "/nginx.conf.in"))
  local is_root = (assert(io.popen("id -u")):read("*l")) == "0"

  local srv = setmetatable({ prefix = tmp, pki = pki }, Server)
  local last_err
  for _ = 1, 20 do
    local port = random_port()
    write(tmp .. "/conf/nginx.conf", fill(template, {
      USER = is_root and "user root root;" or "# nginx keeps the current user",
      PREFIX = tmp, PORT = port, PKI = pki, CERT = cert, VERIFY = verify,
      HTTP2 = (opts.http2 == false) and "" or " http2",
      CLIENT_CA = opts.client_ca or (pki .. "/ca.pem"),
      APPDIR = FIXTURES, EXTRA = opts.extra or "",
    }))
    write(tmp .. "/logs/error.log", "")
    local ok = run(NGINX .. " -p " .. shquote(tmp) .. " -e " .. shquote(tmp .. "/logs/error.log")
      .. " -c " .. shquote(tmp .. "/conf/nginx.conf") .. " >/dev/null 2>&1")
    if ok then
      -- the master binds before it daemonises; wait for the pid file
      for _ = 1, 100 do
        if srv:pid() then break end
        sleep(0.02)
      end
      if srv:pid() then
        srv.port = port
        srv.url = "https://127.0.0.1:" .. port
        srv.host_url = "https://localhost:" .. port
        guard(srv)
        return srv
      end
    end
    last_err = srv:error_log()
    if not last_err:find("Address already in use", 1, true) then break end
  end
  srv.stopped = false
  srv:stop()
  error("tlsserver: nginx did not start:\n" .. tostring(last_err), 2)
end

local Strict = setmetatable({}, { __index = Server })
Strict.__index = Strict

function Strict:error_log()
  return read(self.prefix .. "/s_server.log") or ""
end

function Strict:pid()
  return tonumber((read(self.prefix .. "/s_server.pid") or ""):match("%d+"))
end

--- Starts `openssl s_server -Verify` instead of nginx: a server that aborts
-- the TLS handshake (TLS 1.2) or alerts right after it (TLS 1.3) when the
-- client certificate is missing or untrusted, where nginx would answer
-- HTTP 400. `opts.tls` = "1.2" | "1.3" (default "1.3"), `opts.client_ca`.
-- It serves one connection at a time; `GET /` answers 200 (s_server -www).
-- Same `url`, `port`, `stop()` as `start`.
function _M.start_strict(opts)
  opts = opts or {}
  local pki = opts.pki or helper.pki_dir
  local version = opts.tls or "1.3"
  assert(version == "1.2" or version == "1.3", "tls must be 1.2 or 1.3")
  local tmp = assert(io.popen("mktemp -d /tmp/xs2a-tlsserver.XXXXXX")):read("*l")
  assert(tmp and tmp ~= "", "mktemp failed")
  local srv = setmetatable({ prefix = tmp, pki = pki }, Strict)
  local log = tmp .. "/s_server.log"
  for _ = 1, 20 do
    local port = random_port()
    write(log, "")
    local cmd = table.concat({
      "openssl s_server -accept", "127.0.0.1:" .. port,
      "-cert", shquote(pki .. "/server.pem"), "-key", shquote(pki .. "/server.key"),
      "-CAfile", shquote(opts.client_ca or (pki .. "/ca.pem")),
      "-Verify 3 -verify_return_error -www", version == "1.2" and "-tls1_2" or "-tls1_3",
    }, " ")
    -- a backgrounded simple command: $! is the pid of openssl itself
    assert(run(cmd .. " </dev/null >" .. shquote(log)
      .. " 2>&1 & echo $! > " .. shquote(tmp .. "/s_server.pid")))
    local state
    for _ = 1, 250 do
      local s = read(log) or ""
      if s:find("ACCEPT", 1, true) then state = "up" break end
      if not pid_alive(srv:pid()) then state = "down" break end
      sleep(0.02)
    end
    if state == "up" then
      srv.port = port
      srv.url = "https://127.0.0.1:" .. port
      guard(srv)
      return srv
    end
    srv.stopped = false
    local out = srv:error_log()
    if state ~= "down" or not out:lower():find("address already in use", 1, true) then
      Server.stop(srv)
      error("tlsserver: openssl s_server did not start:\n" .. out, 2)
    end
  end
  Server.stop(srv)
  error("tlsserver: no free port for openssl s_server", 2)
end

--- A URL on 127.0.0.1 where nothing listens: port 1 (tcpmux). A port a
-- test server held a moment before can be taken again by the next server
-- (random ports), and a free port inside the kernel's ephemeral range can
-- even connect to itself (TCP self-connect); both once turned an expected
-- "connect" failure into "tls". Port 1 is below both ranges.
function _M.refused_url()
  return "https://127.0.0.1:1"
end

return _M
