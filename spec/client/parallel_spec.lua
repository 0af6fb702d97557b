local parallel = require "xs2a.parallel"
local xs2a = require "xs2a"

describe("xs2a.parallel", function()
  it("returns what pcall would give, per function and in order", function()
    local r = xs2a.parallel(
      function() return 1, nil, 3 end,
      function() error("boom", 0) end,
      function() end)
    assert.equal(3, #r)
    assert.same({ true, 1, nil, 3, n = 4 }, r[1])
    assert.same({ false, "boom", n = 2 }, r[2])
    assert.same({ true, n = 1 }, r[3])
  end)

  it("interleaves sleeping tasks and exposes the scheduler inside them only", function()
    local order = {}
    assert.is_nil(parallel.current())
    local r = xs2a.parallel(
      function() parallel.sleep(0.15) order[#order + 1] = "slow" return parallel.current() ~= nil end,
      function() parallel.sleep(0.01) order[#order + 1] = "fast" return parallel.current() ~= nil end)
    assert.same({ "fast", "slow" }, order)
    assert.is_true(r[1][2])
    assert.is_true(r[2][2])
  end)

  it("raises for arguments that are not functions", function()
    assert.has_error(function() xs2a.parallel(function() end, 42) end)
  end)

  it("lets a task yield on its own and still finish", function()
    local r = xs2a.parallel(function() coroutine.yield() return "done" end)
    assert.equal("done", r[1][2])
  end)

  -- A task woken by a semaphore release still has its wait's timeout in the
  -- scheduler's timer heap. Under LuaJIT (Lua 5.1 weak tables, no
  -- ephemerons) the scheduler kept every coroutine it ran alive through
  -- that: about 1 KB per task for good (2000 tasks through the limiter's
  -- gate grew the heap by 2 MB each time).
  it("leaves no task alive once run returns, also after semaphore waits with a timeout", function()
    local seen = setmetatable({}, { __mode = "k" })
    local sem = parallel.semaphore(1)
    for _ = 1, 3 do
      local fns = {}
      for i = 1, 50 do
        fns[i] = function()
          seen[coroutine.running()] = true
          assert(sem:acquire(30))
          parallel.sleep(0)
          sem:release()
          return i
        end
      end
      local r = parallel.all(fns)
      assert.equal(50, #r)
      assert.equal(50, r[50][2])
    end
    collectgarbage()
    collectgarbage()
    local left = 0
    for _ in pairs(seen) do left = left + 1 end
    assert.equal(0, left)
  end)
end)
