local store = require "xs2a.store"

describe("xs2a.store.memory", function()
  local now, s
  before_each(function()
    now = 1000
    s = store.memory{ clock = function() return now end }
  end)

  it("gets, sets and expires values", function()
    assert.is_true(s:set("a", "1", 10))
    assert.equal("1", s:get("a"))
    now = now + 11
    assert.is_nil(s:get("a"))
    s:set("b", "2")
    now = now + 1e6
    assert.equal("2", s:get("b"))
  end)

  it("adds only when absent", function()
    assert.is_true(s:add("k", "v", 5))
    local ok, why = s:add("k", "w", 5)
    assert.is_false(ok)
    assert.equal("exists", why)
    now = now + 6
    assert.is_true(s:add("k", "w", 5))
  end)

  it("increments with init and ttl, and deletes", function()
    assert.equal(1, s:incr("n", 1, 0, 2))
    assert.equal(3, s:incr("n", 2))
    assert.equal(2, s:incr("n", -1))
    now = now + 3
    assert.equal(6, s:incr("n", 1, 5))
    s:delete("n")
    assert.is_nil(s:get("n"))
  end)

  it("locks without blocking and unlocks", function()
    local unlock = assert(s:lock("r", 30))
    local again, why = s:lock("r", 30)
    assert.is_nil(again)
    assert.equal("locked", why)
    unlock()
    assert.is_function(s:lock("r", 30))
  end)

  it("passes the contract check and refuses bad keys", function()
    assert.is_true(store.check(s))
    assert.is_nil((store.check({ get = print })))
    assert.has_error(function() s:get("") end)
  end)
end)
