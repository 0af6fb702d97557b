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
end)
