-- Worker side of spec/openresty/phases_spec.lua: calls the ngx transport
-- from nginx phases without cosockets and records what it returned in the
-- xs2a_test shared dict.
local cjson = require "cjson.safe"

local M = {}

local function record(phase, res, err, target)
  local v = {
    phase = ngx.get_phase(),
    ok = res ~= nil,
    status = res and res.status or nil,
    code = err and err.code or nil,
    message = err and err.message or nil,
    sent = err and err.sent,
    target = target,
  }
  ngx.shared.xs2a_test:set("phase:" .. phase, cjson.encode(v))
end

-- Makes one request to `url` (the test nginx itself) and records the result.
function M.probe(phase, url)
  local t = require("xs2a.transport.ngx").new{ timeout = 2000, connect_timeout = 1000 }
  local res, err = t:request{ method = "GET", url = url }
  record(phase, res, err, url)
end

-- From a phase without cosockets, the suggested way out: a zero-delay timer.
function M.probe_in_timer(phase, url)
  local ok, err = ngx.timer.at(0, function(premature)
    if premature then return end
    M.probe(phase, url)
  end)
  if not ok then record(phase, nil, { code = "timer", message = err }) end
end

function M.results()
  local out = {}
  for _, k in ipairs(ngx.shared.xs2a_test:get_keys(0)) do
    if k:sub(1, 6) == "phase:" then out[k:sub(7)] = cjson.decode(ngx.shared.xs2a_test:get(k)) end
  end
  return out
end

function M.content(args)
  M.probe("content", args.url)
  return true
end

return M
