--- Spec support: runs the `xs2a` command (bin/xs2a, Lua 5.4) of this tree
-- as a real process against a sandbox, and plays the PSU's browser for its
-- loopback callback (spec/support/psu.lua drives the bank's page, then the
-- browser's last hop, the redirect to http://127.0.0.1:PORT/callback, is
-- sent with curl as a browser would).
--
--   local cli = require "support.cli"
--   local env = cli.env(sb, state_dir)            -- XS2A_* for the sandbox and the test PKI
--   local rc, out, err = cli.run({ "accounts" }, env)
--   local h = cli.start({ "consent", "create" }, env)
--   local rc, out, err = h:authorise{ username = "alice", password = "alice-pass" }
local helper = require "helper"
local proc = require "support.proc"
local psu = require "support.psu"

local M = {}

M.BIN = helper.root .. "/bin/xs2a"

--- Environment for the command: the tree's modules, the sandbox, the test PKI.
function M.env(sb, state_dir, extra)
  local e = {
    LUA_PATH = helper.root .. "/lua/?.lua;" .. helper.root .. "/lua/?/init.lua;;",
    LUA_CPATH = helper.root .. "/build/lua5.4/?.so;;",
    XS2A_BASE_URL = sb.base_url,
    XS2A_CA_FILE = sb.pki .. "/ca.pem",
    XS2A_QWAC_CERT = sb.pki .. "/qwac.pem", XS2A_QWAC_KEY = sb.pki .. "/qwac.key",
    XS2A_QSEAL_CERT = sb.pki .. "/qseal.pem", XS2A_QSEAL_KEY = sb.pki .. "/qseal.key",
    XS2A_STATE_DIR = state_dir,
    XDG_CONFIG_HOME = state_dir .. "/no-config",
  }
  for k, v in pairs(extra or {}) do e[k] = v end
  return e
end

local function command(args, env, lua)
  local parts = { "env" }
  local keys = {}
  for k in pairs(env or {}) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    if env[k] == false then table.insert(parts, 2, "-u " .. k)
    else parts[#parts + 1] = k .. "=" .. proc.quote(env[k]) end
  end
  parts[#parts + 1] = lua or "lua5.4"
  parts[#parts + 1] = proc.quote(M.BIN)
  for _, a in ipairs(args) do parts[#parts + 1] = proc.quote(a) end
  return table.concat(parts, " ")
end

--- Runs the command to its end (stdin from /dev/null unless `input`),
-- under `lua` (default lua5.4; give LUA_CPATH for another in `env`).
-- @return exit status, stdout, stderr
function M.run(args, env, input, lua)
  local dir = os.tmpname()
  local infile = dir .. ".in"
  local f = assert(io.open(infile, "wb"))
  f:write(input or "")
  f:close()
  local ok, out, code = proc.run(command(args, env, lua) .. " < " .. proc.quote(infile) .. " > " .. proc.quote(dir)
    .. " 2> " .. proc.quote(dir .. ".err"))
  local stdout, stderr = proc.read_all(dir) or "", proc.read_all(dir .. ".err") or ""
  os.remove(dir); os.remove(dir .. ".err"); os.remove(infile)
  assert(ok or code, out)
  return code, stdout, stderr
end

local Running = {}
Running.__index = Running

--- Starts the command in the background. Its stdin is empty, or with
-- `opts.stdin = true` a pipe that `h:type(line)` writes to.
function M.start(args, env, opts)
  local base = os.tmpname()
  if opts and opts.stdin then
    assert(proc.run("rm -f " .. proc.quote(base .. ".in") .. " && mkfifo -m 0600 " .. proc.quote(base .. ".in")))
  else
    local f = assert(io.open(base .. ".in", "wb"))
    f:close()
  end
  local pid = proc.output("sh -c " .. proc.quote("( " .. command(args, env) .. " < " .. proc.quote(base .. ".in")
    .. " > " .. proc.quote(base .. ".out") .. " 2> " .. proc.quote(base .. ".err") .. "; echo $? > "
    .. proc.quote(base .. ".rc") .. " ) > /dev/null 2>&1 & echo $!")):match("%d+")
  local h = setmetatable({ base = base, pid = pid }, Running)
  -- opening the pipe waits for the command's shell to open its end
  if opts and opts.stdin then h.stdin = assert(io.open(base .. ".in", "w")) end
  return h
end

--- Types a line on the command's stdin (started with `stdin = true`).
function Running:type(line)
  self.stdin:write(line, "\n")
  self.stdin:flush()
end

local function sleep(s) os.execute("sleep " .. s) end

--- Waits (up to `timeout` s) until stderr holds a line matching `pattern`.
-- @return the capture, or nil and stderr so far
function Running:wait_for(pattern, timeout)
  local deadline = os.time() + (timeout or 20)
  repeat
    local err = proc.read_all(self.base .. ".err") or ""
    local m = err:match(pattern)
    if m then return m end
    if (proc.read_all(self.base .. ".rc") or ""):match("^%d+%s") then return nil, err end
    sleep(0.1)
  until os.time() > deadline
  return nil, proc.read_all(self.base .. ".err")
end

--- Waits for the end of the command.
-- @return exit status, stdout, stderr
function Running:finish(timeout)
  if self.stdin then self.stdin:close(); self.stdin = nil end
  local deadline = os.time() + (timeout or 60)
  local rc
  repeat
    -- the shell creates the file before it writes the status: wait for the digits
    rc = (proc.read_all(self.base .. ".rc") or ""):match("^(%d+)%s")
    if not rc then sleep(0.1) end
  until rc or os.time() > deadline
  local out, err = proc.read_all(self.base .. ".out") or "", proc.read_all(self.base .. ".err") or ""
  for _, ext in ipairs({ ".in", ".out", ".err", ".rc" }) do os.remove(self.base .. ext) end
  os.remove(self.base)
  return tonumber(rc), out, err
end

--- Plays the PSU: reads the authorisation URL the command printed, approves
-- (or denies) on the bank's page, and follows the bank's redirect to the
-- command's loopback listener.
-- @return exit status, stdout, stderr, the callback URL
function Running:authorise(opts)
  opts = opts or {}
  local url, why = self:wait_for("\n(https://[^\n]+)\n", 30)
  if not url then return nil, nil, why end
  local location = psu.authorize(url, { username = opts.username or "alice",
    password = opts.password or "alice-pass", decision = opts.decision or "approve" })
  if location then
    assert(location:match("^http://127%.0%.0%.1:%d+/"), "callback is not loopback: " .. tostring(location))
    proc.run("curl -s -o /dev/null --max-time 10 " .. proc.quote(location))
  end
  local rc, out, err = self:finish()
  return rc, out, err, location
end

return M
