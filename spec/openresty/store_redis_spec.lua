-- xs2a.store.redis inside a real nginx: the shared store contract over
-- cosockets, pooled connections, errors in time, and a lock that requests
-- in several workers contend for (spec/openresty/cases/store_redis.lua).
local harness = require "openresty.harness"
local redis_support = require "support.redis"
local cases = require "support.store_cases"

describe("#openresty redis store", function()
  local ng, srv
  local password = "or-secret-" .. math.random(1000, 9999)

  lazy_setup(function()
    srv = redis_support.start{ password = password }
    ng = harness.start{ workers = 2 }
  end)

  lazy_teardown(function()
    if ng then ng:stop() end
    if srv then srv:stop() end
  end)

  local function call(fn, extra)
    local args = { port = srv.port, password = password }
    for k, v in pairs(extra or {}) do args[k] = v end
    local r = ng:call("openresty.cases.store_redis", fn, args)
    assert.is_true(r.ok, r.err)
    return r.result
  end

  it("sees the same contract cases inside the worker", function()
    local names = {}
    for i, c in ipairs(cases) do names[i] = c.name end
    assert.same(names, call("names"))
  end)

  for _, c in ipairs(cases) do
    it(c.name, function() call("run", { name = c.name }) end)
  end

  it("sends many commands of one request over one pooled connection", function()
    local r = call("pooled")
    assert.is_true(r.new_connections <= 1, "new connections: " .. tostring(r.new_connections))
  end)

  it("answers with errors in time when nothing listens", function()
    call("down", { port = harness.random_port() })
  end)

  it("reports a wrong password without showing it", function()
    call("wrong_password")
  end)

  it("lets exactly one of several concurrent requests across workers hold a lock", function()
    local key = "contend:" .. os.time() .. ":" .. math.random(1, 1e9)
    local answers = ng:call_all("openresty.cases.store_redis", "contend",
      { port = srv.port, password = password, key = key, hold = 1 }, 8, 20)
    local holders, workers = harness.lock_race(answers)
    assert(holders, workers)
    assert.equal(1, holders)
    assert.is_true(workers >= 2, "the requests should have reached more than one worker")
  end)
end)
