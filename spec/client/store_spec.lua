-- The memory store against the shared contract cases
-- (spec/support/store_cases.lua), on a fake clock.
local store = require "xs2a.store"
local cases = require "support.store_cases"

describe("xs2a.store.memory", function()
  local now = 1000
  local env = {
    T = 10,
    new = function() return store.memory{ clock = function() return now end } end,
    advance = function(seconds) now = now + seconds end,
  }

  for _, case in ipairs(cases) do
    it(case.name, function() case.run(env.new(), env) end)
  end

  it("keeps a value without TTL however much time passes", function()
    local s = env.new()
    s:set("b", "2")
    now = now + 1e6
    assert.equal("2", s:get("b"))
  end)
end)
