--- Spec support for spec/interop: starts the third-party "bank"
-- (spec/interop/bank.mjs: jose, http-signature, Node crypto) or another
-- Node server of that directory (as.mjs: oidc-provider) on 127.0.0.1 with
-- TLS from the test PKI, on a random port; stops it by its pid.
--
--   local bank = require("interop.bank").start()
--   local as = require("interop.bank").start{ script = "as.mjs", args = { "--client-id", "tpp" } }
--   bank.url           -- "https://127.0.0.1:<port>"
--   bank:verdict(id)   -- the verdict logged for the request with X-Request-ID id
--   bank:stop()
local helper = require "helper"
local proc = require "support.proc"
local json = require "xs2a.codec.json"

local M = {}
local Bank = {}
Bank.__index = Bank

local DIR = helper.root .. "/spec/interop"

--- Every verdict logged so far (a list of tables), oldest first.
function Bank:verdicts()
  local out = {}
  for line in (proc.read_all(self.log) or ""):gmatch("[^\n]+") do out[#out + 1] = assert(json.decode(line)) end
  return out
end

--- The last verdict for X-Request-ID `id`, or nil.
function Bank:verdict(id)
  local found
  for _, v in ipairs(self:verdicts()) do if v.request_id == id then found = v end end
  return found
end

function Bank:stop()
  if self.pid then
    os.execute("kill " .. self.pid .. " 2>/dev/null")
    self.pid = nil
    -- the temporary files of this server (os.tmpname's own and its siblings)
    for _, f in ipairs({ self.ready, self.log, self.out, self.base }) do os.remove(f) end
  end
end

local function sleep(s) os.execute("sleep " .. s) end

--- Starts the bank, or `opts.script` with the extra arguments `opts.args`
-- (fails the caller's spec when Node or the npm packages from scripts/deps
-- are missing).
function M.start(opts)
  opts = opts or {}
  local extra = {}
  for i, a in ipairs(opts.args or {}) do extra[i] = proc.quote(a) end
  local f = io.open(DIR .. "/node_modules/.package-lock.json", "rb")
  assert(f, "spec/interop/node_modules is missing: run scripts/deps (npm install in spec/interop)")
  f:close()
  local base = os.tmpname()
  for _ = 1, 5 do
    local port = proc.random_port()
    local self = setmetatable({ base = base, log = base .. ".log", ready = base .. ".ready", out = base .. ".out",
      url = "https://127.0.0.1:" .. port }, Bank)
    os.remove(self.ready)
    os.execute(string.format("node %s --pki %s --port %d --log %s --ready %s %s >%s 2>&1 </dev/null &",
      proc.quote(DIR .. "/" .. (opts.script or "bank.mjs")), proc.quote(helper.pki_dir), port, proc.quote(self.log),
      proc.quote(self.ready), table.concat(extra, " "), proc.quote(self.out)))
    for _ = 1, 200 do
      local pid = (proc.read_all(self.ready) or ""):match("^(%d+)")
      if pid then
        self.pid = pid
        proc.watchdog(self.ready, "kill " .. pid)
        proc.at_exit(function() self:stop() end)
        return self
      end
      if (proc.read_all(self.out) or ""):find("^%a+: ") then break end   -- port taken: next one
      sleep(0.05)
    end
  end
  local out = proc.read_all(base .. ".out")
  for _, p in ipairs({ base, base .. ".log", base .. ".ready", base .. ".out" }) do os.remove(p) end
  error("interop bank did not start: " .. tostring(out))
end

return M
