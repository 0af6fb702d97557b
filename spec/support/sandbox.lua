--- Spec support: start, drive and stop sandbox bank instances.
--
--   local sandbox = require "support.sandbox"
--   local sb = sandbox.shared()              -- one per busted process
--   local sb2 = sandbox.start{ faults = true, workers = 2, config = { ... } }
--   sb2:stop()
--
-- Works under Lua 5.4 and LuaJIT; talks to the control API with the curl
-- CLI so it does not depend on the C core. Every instance this process
-- started is stopped when the process exits (os.exit wrapper and a __gc
-- sentinel), and a small shell watchdog stops it if the process dies.
local proc = require "support.proc"

local M = {}

local shell_quote, run, read_all, random_port = proc.quote, proc.run, proc.read_all, proc.random_port
M.shell_quote = shell_quote

local function root_dir()
  local h = package.loaded.helper
  if type(h) == "table" and h.root then return h.root end
  local pwd = os.getenv("PWD")
  if not pwd then
    local p = io.popen("pwd")
    pwd = p:read("*l")
    p:close()
  end
  return pwd
end

local function pki_dir()
  local h = package.loaded.helper
  if type(h) == "table" and h.pki_dir then return h.pki_dir end
  return os.getenv("XS2A_PKI") or root_dir() .. "/build/pki"
end

-- JSON: cjson when present, else dkjson (both exist for 5.1 and 5.4 on Debian)
local json
do
  local ok, cjson = pcall(require, "cjson.safe")
  if ok then
    json = {
      encode = function(v) return cjson.encode(v) end,
      decode = function(s) return cjson.decode(s) end,
      null = cjson.null,
    }
  else
    local dk = require "dkjson"
    json = {
      encode = function(v) return dk.encode(v) end,
      decode = function(s) local v = dk.decode(s) return v end,
      null = dk.null,
    }
  end
end
M.json = json


local live = {}       -- instances started by this process
M.live = live

local Sandbox = {}
Sandbox.__index = Sandbox

local function script()
  return root_dir() .. "/sandbox/bin/sandbox"
end

--- Starts a private sandbox.
-- @param opts { faults = bool, workers = n, config = table (merged over the
--   defaults at start), port = n (fixed; default random 20000-60000),
--   separate_as = true (the OAuth authorization server on two origins of
--   its own: `as_url` and its mutual-TLS aliases at `as_mtls_url`) }
-- @return instance (raises on failure)
function M.start(opts)
  opts = opts or {}
  -- The suite's specs hold several consents of one PSU at once, so their
  -- sandboxes keep several (multiple_consents = "keep") unless the config says
  -- otherwise. The sandbox's own default is Paysera's reading ("replace": a new
  -- consent ends the PSU's older ones); spec/readings and
  -- spec/sandbox/bank_readings_spec.lua play it (docs/paysera.md, reading 9).
  local cfg = {}
  for k, v in pairs(opts.config or {}) do cfg[k] = v end
  if cfg.multiple_consents == nil then cfg.multiple_consents = "keep" end
  opts = setmetatable({ config = cfg }, { __index = opts })
  local ok, dir = run("mktemp -d /tmp/xs2a-sandbox-XXXXXX")
  assert(ok, "mktemp failed: " .. tostring(dir))
  dir = dir:gsub("%s+$", "")
  local args = { "sh", shell_quote(script()), "start", "--dir", shell_quote(dir), "--pki", shell_quote(pki_dir()) }
  if opts.faults then args[#args + 1] = "--faults" end
  if opts.workers then args[#args + 1] = "--workers " .. math.floor(opts.workers) end
  if opts.config then
    local cfg_file = dir .. "/start-config.json"
    local f = assert(io.open(cfg_file, "w"))
    f:write(assert(json.encode(opts.config)))
    f:close()
    args[#args + 1] = "--config " .. shell_quote(cfg_file)
  end
  local base = table.concat(args, " ")
  local port, out, as_port, as_mtls_port
  for _ = 1, 10 do
    port = opts.port or random_port()
    local extra = ""
    if opts.separate_as then
      as_port, as_mtls_port = random_port(), random_port()
      extra = " --as-port " .. as_port .. " --as-mtls-port " .. as_mtls_port
    end
    local started
    started, out = run(base .. " --port " .. port .. extra)
    if started then break end
    port = nil
    if opts.port or not out:find("Address already in use", 1, true) then break end
  end
  if not port then
    run("rm -rf " .. shell_quote(dir))
    error("sandbox did not start: " .. tostring(out), 2)
  end
  local pidf = io.open(dir .. "/logs/nginx.pid")
  local pid = pidf and pidf:read("*l")
  if pidf then pidf:close() end
  local base_url = "https://127.0.0.1:" .. port
  local sb = setmetatable({
    port = port,
    pid = tonumber(pid),
    base_url = base_url,
    roots = { berlin = base_url .. "/xs2a/berlin/1.3", georgia = base_url .. "/xs2a/georgia/0.8" },
    pki = pki_dir(),
    prefix = dir,
    faults = opts.faults and true or false,
    as_url = as_port and ("https://127.0.0.1:" .. as_port) or nil,
    as_mtls_url = as_mtls_port and ("https://127.0.0.1:" .. as_mtls_port) or nil,
  }, Sandbox)
  live[sb] = true
  -- watchdog: stops this nginx if the Lua process dies without stopping it
  proc.watchdog(dir .. "/logs/nginx.pid", string.format("sh %s stop --dir %s; rm -rf %s",
    shell_quote(script()), shell_quote(dir), shell_quote(dir)))
  return sb
end

--- Stops the instance (exactly its nginx, by pid file) and removes its prefix.
function Sandbox:stop()
  if not live[self] then return end
  live[self] = nil
  run("sh " .. shell_quote(script()) .. " stop --dir " .. shell_quote(self.prefix))
  if not os.getenv("XS2A_KEEP_SANDBOX") then run("rm -rf " .. shell_quote(self.prefix)) end
end

M.alive = proc.alive

--- True while this instance's nginx master is alive.
function Sandbox:running()
  return self.pid ~= nil and M.alive(self.pid)
end


--- Calls the control API with the curl CLI.
-- @return status (number), decoded JSON body (or the raw text), raw body
function Sandbox:control(method, path, body)
  local args = {
    "curl", "-s", "-S", "--max-time", "30", "-X", method,
    "--cacert", shell_quote(self.pki .. "/ca.pem"),
    "-o", "-", "-w", shell_quote("\n%{http_code}"),
  }
  if body ~= nil then
    local s = type(body) == "string" and body or assert(json.encode(body))
    args[#args + 1] = "-H 'Content-Type: application/json' --data-binary " .. shell_quote(s)
  end
  args[#args + 1] = shell_quote(self.base_url .. "/_sandbox" .. path)
  local _, out = run(table.concat(args, " "))
  local text, code = out:match("^(.*)\n(%d%d%d)$")
  if not code then return nil, out end
  local decoded = json.decode(text)
  return tonumber(code), decoded == nil and text or decoded, text
end

--- One HTTPS request with the curl CLI (real TLS, the test CA).
-- @param req { method = "GET", url = full URL or path (prefixed with
--   base_url), headers = { name = value } or list of "Name: value",
--   body = string | table (JSON-encoded), cert = "qwac" (default; a PKI file
--   base name, key alongside) | false (no client certificate),
--   http1 = true (force HTTP/1.1), timeout = seconds (default 20),
--   curl_args = "extra args" }
-- @return res { status, headers (lower-case names), body, json (decoded or
--   nil), curl_exit, time } (status is nil when curl got no HTTP answer)
function Sandbox:request(req)
  local tmp = os.tmpname()
  local url = req.url or req.path or "/"
  if url:sub(1, 1) == "/" then url = self.base_url .. url end
  local args = {
    "curl", "-s", "--max-time", tostring(req.timeout or 20), "-X", req.method or "GET",
    "--cacert", shell_quote(self.pki .. "/ca.pem"),
    "-D", shell_quote(tmp .. ".h"), "-o", shell_quote(tmp .. ".b"),
    "-w", shell_quote("%{http_code} %{time_total}"),
  }
  local cert = req.cert
  if cert == nil then cert = "qwac" end
  if cert then
    args[#args + 1] = "--cert " .. shell_quote(self.pki .. "/" .. cert .. ".pem")
    args[#args + 1] = "--key " .. shell_quote(self.pki .. "/" .. cert .. ".key")
  end
  if req.http1 then args[#args + 1] = "--http1.1" end
  local headers = req.headers or {}
  for k, v in pairs(headers) do
    local line = type(k) == "number" and v or (k .. ": " .. v)
    args[#args + 1] = "-H " .. shell_quote(line)
  end
  if req.body ~= nil then
    local body = type(req.body) == "table" and assert(json.encode(req.body)) or req.body
    local f = assert(io.open(tmp .. ".in", "wb"))
    f:write(body)
    f:close()
    args[#args + 1] = "--data-binary @" .. shell_quote(tmp .. ".in")
    local has_ct = false
    for k, v in pairs(headers) do
      local name = type(k) == "number" and v:match("^([^:]+)") or k
      if name:lower() == "content-type" then has_ct = true end
    end
    if not has_ct then args[#args + 1] = "-H 'Content-Type: application/json'" end
  end
  if req.curl_args then args[#args + 1] = req.curl_args end
  args[#args + 1] = shell_quote(url)
  local p = assert(io.popen(table.concat(args, " ") .. "; echo \" $?\"", "r"))
  local out = p:read("*a")
  p:close()
  local code, t, exit = out:match("^(%d%d%d) ([%d%.]+)%s+(%d+)%s*$")
  local res = { curl_exit = tonumber(exit), time = tonumber(t), headers = {}, header_list = {} }
  if code and code ~= "000" then res.status = tonumber(code) end
  local raw_headers = read_all(tmp .. ".h") or ""
  -- keep only the last header block (after 1xx answers)
  for line in raw_headers:gmatch("[^\r\n]+") do
    if line:match("^HTTP/") then
      res.headers, res.header_list = {}, {}
    else
      local k, v = line:match("^([^:]+):%s*(.-)%s*$")
      if k then
        k = k:lower()
        res.headers[k] = res.headers[k] and (res.headers[k] .. ", " .. v) or v
        res.header_list[#res.header_list + 1] = { k, v }
      end
    end
  end
  res.body = read_all(tmp .. ".b") or ""
  res.json = json.decode(res.body)
  os.remove(tmp)
  os.remove(tmp .. ".h")
  os.remove(tmp .. ".b")
  os.remove(tmp .. ".in")
  return res
end

--- POST /_sandbox/reset (state, config, rate counters, faults).
function Sandbox:reset()
  local status, body = self:control("POST", "/reset", {})
  assert(status == 200, "sandbox reset failed: " .. tostring(status) .. " " .. tostring(body))
  return body
end

--- POST /_sandbox/config (merged into the current configuration).
-- @return the full configuration
function Sandbox:config(tbl)
  local status, body = self:control("POST", "/config", tbl or {})
  assert(status == 200, "sandbox config failed: " .. tostring(status) .. " " .. tostring(body))
  return body
end

--- POST /_sandbox/faults (only on instances started with faults = true).
function Sandbox:fault(f)
  local status, body = self:control("POST", "/faults", f)
  assert(status == 201, "sandbox fault failed: " .. tostring(status) .. " " .. tostring(body))
  return body
end

--- Lines of the access log (`$remote_addr $connection $connection_requests "$request" $status`).
function Sandbox:access_log()
  local f = io.open(self.prefix .. "/logs/access.log", "r")
  if not f then return {} end
  local lines = {}
  for l in f:lines() do lines[#lines + 1] = l end
  f:close()
  return lines
end

local shared_instance

--- The process-wide shared instance (started on first use, default config).
function M.shared()
  if shared_instance and live[shared_instance] then return shared_instance end
  shared_instance = M.start{}
  return shared_instance
end

--- Stops every instance this process started.
function M.stop_all()
  for sb in pairs(live) do
    pcall(Sandbox.stop, sb)
  end
end

proc.at_exit(M.stop_all)

return M
