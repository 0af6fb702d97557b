-- Worker side of spec/openresty/nonblocking_spec.lua: requests to the
-- sandbox bank through the ngx transport, with their start and end times
-- (worker clock) recorded in the xs2a_test shared dict.
local cjson = require "cjson.safe"

local M = {}

local transports = {}
local function transport(pki)
  if not transports[pki] then
    local core = require "xs2a.core"
    local id = assert(core.identity{ cert = pki .. "/qwac.pem", key = pki .. "/qwac.key" })
    transports[pki] = assert(require("xs2a.transport.ngx").new{ identity = id, ca_file = pki .. "/ca.pem",
      timeout = 20000 })
  end
  return transports[pki]
end

local function now()
  ngx.update_time()
  return ngx.now()
end

-- args: base_url, pki, label, delay (seconds, via X-Sandbox-Fault)
function M.request(args)
  local t = transport(args.pki)
  local rec = { label = args.label, started = now(), pid = ngx.worker.pid() }
  ngx.shared.xs2a_test:set("nb:" .. args.label, cjson.encode(rec))
  local headers = { ["X-Request-ID"] = "00000000-0000-4000-8000-" .. string.format("%012d", math.random(1, 1e9)) }
  if args.delay then headers["X-Sandbox-Fault"] = "kind=delay; seconds=" .. args.delay end
  local res, err = t:request{ method = "GET", url = args.base_url .. "/xs2a/berlin/1.3/v1/no-such-endpoint",
    headers = headers }
  rec.finished = now()
  rec.status = res and res.status
  rec.err = err and err.code
  ngx.shared.xs2a_test:set("nb:" .. args.label, cjson.encode(rec))
  return rec
end

function M.record(args)
  local v = ngx.shared.xs2a_test:get("nb:" .. args.label)
  return v and cjson.decode(v) or nil
end

return M
