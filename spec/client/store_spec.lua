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

  -- issue 10: keys written once and never read again (the limiter's old
  -- slots) used to stay until read; they are reclaimed a little at each call
  it("reclaims expired keys nobody reads again, without a full walk per call", function()
    local s = env.new()
    local most = 0
    for i = 1, 20000 do                     -- 10 writes a second for 2000 s, TTL 5 s
      s:set("k" .. i, "v", 5)
      now = now + 0.1
      if i % 100 == 0 then most = math.max(most, s:size()) end
    end
    assert.is_true(most <= 70, most .. " keys held")
    -- the limiter on this store at 10 requests a second for 1 simulated hour
    local limiter = require "xs2a.limiter"
    local l = limiter.new{ store = s, id = "tpp", per_second = 10, per_hour = 1e6, concurrent = 20,
      clock = function() return now end, sleep = function(d) now = now + d end }
    local sizes = {}
    for i = 1, 36000 do
      assert(l:acquire())()
      now = now + 0.1
      if i % 18000 == 0 then sizes[#sizes + 1] = s:size() end
    end
    -- what the limiter needs: 10 ring slots, a ticket counter, at most 14
    -- five-minute hour slots (and stale ones for a few seconds)
    for _, n in ipairs(sizes) do assert.is_true(n <= 30, "keys after 30 and 60 min: " .. table.concat(sizes, ", ")) end
  end)
end)
