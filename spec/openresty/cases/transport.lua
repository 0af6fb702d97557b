-- Worker side of spec/openresty/transport_spec.lua: runs one case of the
-- shared transport spec (spec/support/transport_cases.lua) against the ngx
-- transport, inside the nginx worker.
local M = {}

local identities = {}
local pool_seq = 0

local function make_env(args)
  local pki_dir = args.pki_dir
  local env = {
    url = args.url,
    wrong_host_url = args.wrong_host_url,
    refused_url = args.refused_url,
  }
  function env.pki(name) return pki_dir .. "/" .. name end
  function env.identity(name)
    if not identities[name] then
      local core = require "xs2a.core"
      identities[name] = assert(core.identity{ cert = env.pki(name .. ".pem"), key = env.pki(name .. ".key") })
    end
    return identities[name]
  end
  function env.new_transport(opts)
    -- keepalive pools belong to the worker; a pool name per transport keeps
    -- the cases independent of the connections earlier cases left open
    pool_seq = pool_seq + 1
    local o = { identity = env.identity("qwac"), ca_file = env.pki("ca.pem"),
      pool = "case-" .. ngx.worker.pid() .. "-" .. ngx.now() .. "-" .. pool_seq }
    for k, v in pairs(opts or {}) do o[k] = v end
    if o.identity == false then o.identity = nil end
    return assert(require("xs2a.transport.ngx").new(o))
  end
  function env.tls_stats(filter)
    local f = assert(io.open(args.reuse_log, "rb"))
    local log = f:read("*a")
    f:close()
    local seen, out = {}, { connections = 0, resumed = 0, requests = 0 }
    for line in log:gmatch("[^\n]+") do
      local conn, reused, request = line:match('^(%d+) (%S+) %S+ "(.-)"')
      if conn and (not filter or request:find(filter, 1, true)) then
        out.requests = out.requests + 1
        if not seen[conn] then
          seen[conn] = true
          out.connections = out.connections + 1
          if reused == "r" then out.resumed = out.resumed + 1 end
        end
      end
    end
    return out
  end
  function env.sleep(seconds) ngx.sleep(seconds) end
  function env.connections(filter)
    local f = assert(io.open(args.access_log, "rb"))
    local log = f:read("*a")
    f:close()
    local seen, n = {}, 0
    for line in log:gmatch("[^\n]+") do
      local conn, request = line:match('^%S+ (%d+) %d+ "(.-)"')
      if conn and (not filter or request:find(filter, 1, true)) and not seen[conn] then
        seen[conn] = true
        n = n + 1
      end
    end
    return n
  end
  return env
end

function M.run(args)
  local cases = require "support.transport_cases"
  local env = make_env(args)
  for _, c in ipairs(cases) do
    if c.name == args.name then
      local t = env.new_transport()
      local ok, err = pcall(c.run, t, env)
      t:close()
      if not ok then error(err, 0) end
      return true
    end
  end
  error("no transport case named " .. tostring(args.name))
end

-- names of the cases as this worker sees them (the busted side checks that
-- both sides agree)
function M.names()
  local out = {}
  for i, c in ipairs(require "support.transport_cases") do out[i] = c.name end
  return out
end

return M
