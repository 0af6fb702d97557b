-- xs2a.store.shdict inside a real nginx: the store contract, and a lock
-- that several workers contend for.
local harness = require "openresty.harness"

describe("#openresty shdict store", function()
  local ng

  lazy_setup(function()
    ng = harness.start{ workers = 3 }
  end)

  lazy_teardown(function()
    if ng then ng:stop() end
  end)

  for _, case in ipairs({ "basic", "ttl", "incr", "lock", "missing_dict" }) do
    it(case, function()
      local r = ng:call("openresty.cases.store", case)
      assert.is_true(r.ok, r.err)
    end)
  end

  it("lets exactly one of several concurrent callers across workers hold a lock", function()
    local key = "contend:" .. os.time() .. ":" .. math.random(1, 1e9)
    local answers = ng:call_all("openresty.cases.store", "contend", { key = key, hold = 1 }, 10, 20)
    local holders, workers = harness.lock_race(answers)
    assert(holders, workers)
    assert.equal(1, holders)
    assert.is_true(workers >= 2, "the requests should have reached more than one worker")
  end)
end)
