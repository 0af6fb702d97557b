local limiter = require "xs2a.limiter"
local store_mod = require "xs2a.store"

local limits = require "support.limits"
local vclock = limits.vclock

describe("xs2a.limiter", function()
  it("never lets more than per_second requests start within any second", function()
    local vc = vclock()
    local st = store_mod.memory{ clock = vc.clock }
    local l = limiter.new{ store = st, id = "tpp", per_second = 10, clock = vc.clock, sleep = vc.sleep }
    local starts = limits.run({ l }, 100, 0.013, vc)
    assert.is_true(limits.busiest_second(starts) <= 10)
    assert.is_true(vc.slept > 0)
  end)

  it("aims at headroom (default 0.9) times the per-second limit, and at the limit with headroom = 1", function()
    local function busiest_second(headroom)
      local vc = vclock()
      local st = store_mod.memory{ clock = vc.clock }
      local l = limiter.new{ store = st, id = "tpp", per_second = 20, headroom = headroom,
        clock = vc.clock, sleep = vc.sleep }
      return limits.busiest_second(limits.run({ l }, 120, 0.001, vc))
    end
    assert.is_true(busiest_second(nil) <= 18)
    local full = busiest_second(1)
    assert.is_true(full > 18 and full <= 20, "headroom 1 allowed " .. full)
    assert.has_error(function() limiter.new{ store = store_mod.memory(), headroom = 1.5 } end)
  end)

  it("shares the budget between limiters on one store (nginx workers)", function()
    local vc = vclock()
    local st = store_mod.memory{ clock = vc.clock }
    local a = limiter.new{ store = st, id = "tpp", per_second = 5, clock = vc.clock, sleep = vc.sleep }
    local b = limiter.new{ store = st, id = "tpp", per_second = 5, clock = vc.clock, sleep = vc.sleep }
    local t0 = vc.now
    limits.run({ b, a }, 10, 0, vc)
    -- 10 starts at 5/s need at least one second of waiting
    assert.is_true(vc.now - t0 >= 1.0)
  end)

  it("caps requests in flight and lets the next one in after a release", function()
    local vc = vclock()
    local st = store_mod.memory{ clock = vc.clock }
    local l = limiter.new{ store = st, id = "tpp", concurrent = 2, clock = vc.clock, sleep = vc.sleep, max_wait = 0.5 }
    local r1 = assert(l:acquire())
    local r2 = assert(l:acquire())
    local r3, err = l:acquire()
    assert.is_nil(r3)
    assert.equal("limit", err.kind)
    assert.equal("CONCURRENCY_LIMIT", err.code)
    r1()
    r1() -- twice is harmless
    local r4 = assert(l:acquire())
    r2()
    r4()
  end)

  it("refuses beyond the hourly budget with retry_after", function()
    local vc = vclock()
    local st = store_mod.memory{ clock = vc.clock }
    local l = limiter.new{ store = st, id = "tpp", per_hour = 3, clock = vc.clock, sleep = vc.sleep }
    for _ = 1, 3 do assert(l:acquire())() end
    local r, err = l:acquire()
    assert.is_nil(r)
    assert.equal("limit", err.kind)
    assert.is_true(err.retry_after > 0)
  end)

  it("counts frequencyPerDay per consent and resource, with undo and a daily reset", function()
    local vc = vclock(1767225600 + 3600) -- 2026-01-01T01:00:00Z
    local st = store_mod.memory{ clock = vc.clock }
    local l = limiter.new{ store = st, id = "tpp", clock = vc.clock, sleep = vc.sleep }
    for _ = 1, 4 do assert.is_true((l:frequency("c1", "/v1/accounts", 4))) end
    local ok, err = l:frequency("c1", "/v1/accounts", 4)
    assert.is_nil(ok)
    assert.equal("limit", err.kind)
    assert.equal("ACCESS_EXCEEDED", err.code)
    assert.is_true((l:frequency("c2", "/v1/accounts", 4)))
    assert.is_true((l:frequency("c1", "/v1/accounts/a1/balances", 4)))
    vc.now = vc.now + 86400
    local ok2, undo = l:frequency("c1", "/v1/accounts", 1)
    assert.is_true(ok2)
    undo()
    assert.is_true((l:frequency("c1", "/v1/accounts", 1)))
  end)
end)
