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

  it("aims at the whole per-second limit by default, and at headroom times it when given", function()
    local function busiest_second(headroom)
      local vc = vclock()
      local st = store_mod.memory{ clock = vc.clock }
      local l = limiter.new{ store = st, id = "tpp", per_second = 20, headroom = headroom,
        clock = vc.clock, sleep = vc.sleep }
      return limits.busiest_second(limits.run({ l }, 120, 0.001, vc))
    end
    assert.equals(20, busiest_second(nil))
    assert.is_true(busiest_second(0.9) <= 18)
    assert.has_error(function() limiter.new{ store = store_mod.memory(), headroom = 1.5 } end)
    assert.has_error(function() limiter.new{ store = store_mod.memory(), margin = -1 } end)
  end)

  -- the window is 1 s plus the margin (default 0.025 s): 300 starts as fast
  -- as allowed run at per_second / 1.025 after the first window's burst
  it("uses the bank's whole per-second budget minus the margin, and never more per window", function()
    for _, margin in ipairs({ 0.025, 0 }) do
      local vc = vclock()
      local st = store_mod.memory{ clock = vc.clock }
      local l = limiter.new{ store = st, id = "tpp", per_second = 10, margin = margin,
        clock = vc.clock, sleep = vc.sleep }
      local starts = limits.run({ l }, 300, 0, vc)
      assert.equals(10, limits.busiest_second(starts))
      local rate = (300 - 10) / (starts[300] - starts[1])
      assert.is_true(math.abs(rate - 10 / (1 + margin)) < 1e-3, "rate " .. rate)
      -- no start within 1 + margin of the start ten tickets earlier
      for i = 11, 300 do assert.is_true(starts[i] - starts[i - 10] >= 1 + margin - 1e-5) end
    end
  end)

  it("takes a constant number of store calls per acquire, whatever the limits", function()
    local function calls_per_acquire(per_second)
      local vc = vclock()
      local st = store_mod.memory{ clock = vc.clock }
      local n = 0
      local counting = setmetatable({}, { __index = function(_, k)
        local f = st[k]
        if type(f) ~= "function" then return f end
        return function(_, ...) n = n + 1 return f(st, ...) end
      end })
      local l = limiter.new{ store = counting, id = "tpp", per_second = per_second, per_hour = 1e9,
        concurrent = 20, clock = vc.clock, sleep = vc.sleep }
      for _ = 1, 3 * per_second do assert(l:acquire())() end
      n = 0
      for _ = 1, 100 do assert(l:acquire())() end
      return n / 100
    end
    local small, big = calls_per_acquire(10), calls_per_acquire(1000)
    assert.equals(small, big)
    assert.is_true(small <= 6, small .. " store calls per acquire")
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
    local l = limiter.new{ store = st, id = "tpp", concurrent = 2, clock = vc.clock, sleep = vc.sleep, max_wait = 0.05 }
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

  it("wakes the first waiting task when a lease is released, in arrival order, without polling", function()
    local parallel = require "xs2a.parallel"
    local st = store_mod.memory()
    local sleeps = 0
    local l = limiter.new{ store = st, id = "gate", concurrent = 2, max_wait = 5,
      sleep = function(s) sleeps = sleeps + 1 return parallel.sleep(s) end }
    local log = {}
    local tasks = {}
    for i = 1, 6 do
      tasks[i] = function()
        local release = assert(l:acquire())
        log[#log + 1] = "in " .. i
        parallel.sleep(0.01)
        log[#log + 1] = "out " .. i
        release()
      end
    end
    local r = parallel.all(tasks)
    for i = 1, 6 do assert.is_true(r[i][1], tostring(r[i][2])) end
    -- in arrival order, never more than two inside, and each waiter gets in
    -- only when a lease is released (timer jitter may split a pair's releases,
    -- so the exact interleaving is not asserted)
    local inside, peak, entered, outs = 0, 0, {}, 0
    for _, ev in ipairs(log) do
      local what, i = ev:match("^(%a+) (%d)$")
      if what == "in" then
        inside = inside + 1
        peak = math.max(peak, inside)
        entered[#entered + 1] = tonumber(i)
        if tonumber(i) > 2 then assert.is_true(outs >= tonumber(i) - 2, "task " .. i .. " got in before a release") end
      else
        inside = inside - 1
        outs = outs + 1
      end
    end
    assert.same({ 1, 2, 3, 4, 5, 6 }, entered)
    assert.equals(2, peak)
    assert.equals(12, #log)
    assert.equals(0, sleeps)                 -- nobody polled
    local free, waiting = l.gate:state()
    assert.equals(2, free)
    assert.equals(0, waiting)
  end)

  it("holds the in-flight limit across workers sharing a store (lease keys)", function()
    local vc = vclock()
    local shared = store_mod.memory{ clock = vc.clock }
    -- two "workers": two store objects over the same data, not process-local
    local function worker_store()
      return setmetatable({ process_local = false }, { __index = function(_, k)
        local f = shared[k]
        if type(f) ~= "function" then return f end
        return function(_, ...) return f(shared, ...) end
      end })
    end
    local a = limiter.new{ store = worker_store(), id = "tpp", concurrent = 2, clock = vc.clock, sleep = vc.sleep,
      max_wait = 0.5 }
    local b = limiter.new{ store = worker_store(), id = "tpp", concurrent = 2, clock = vc.clock, sleep = vc.sleep,
      max_wait = 0.5 }
    local ra = assert(a:acquire())
    local rb = assert(b:acquire())
    local r3, err = a:acquire()
    assert.is_nil(r3)
    assert.equal("CONCURRENCY_LIMIT", err.code)
    rb()
    local r4 = assert(a:acquire())
    ra()
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
