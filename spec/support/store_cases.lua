--- The store contract (docs/INTERNALS.md) as data, shared by the specs of
-- every store: memory and Redis under busted, Redis inside an nginx worker.
--
--     for _, case in ipairs(require "support.store_cases") do
--       it(case.name, function() case.run(env.new(), env) end)
--     end
--
-- `run(s, env)` raises (through luassert) on failure. `s` is a fresh, empty
-- store; `env.advance(seconds)` lets time pass (a fake clock, or a real
-- sleep) and `env.T` is the TTL unit of the cases in seconds. Every TTL is a
-- multiple of T and every wait at least 1.5 T past an expiry, so a store on a
-- real clock can use a short T (0.2 s) and still be exact.
local assert = require "luassert"
local xs2a_store = require "xs2a.store"

local cases = {}
local function case(name, run) cases[#cases + 1] = { name = name, run = run } end

case("gets, sets and expires values", function(s, ctx)
  local T = ctx.T
  assert.is_nil(s:get("a"))
  assert.is_true(s:set("a", "1", T))
  assert.equal("1", s:get("a"))
  ctx.advance(1.5 * T)
  assert.is_nil(s:get("a"))
  assert.is_true(s:set("b", "2"))
  assert.is_true(s:set("c", "3", 0))
  -- set replaces the value and the TTL
  assert.is_true(s:set("d", "4", T))
  assert.is_true(s:set("d", "5"))
  ctx.advance(2 * T)
  assert.equal("2", s:get("b"))
  assert.equal("3", s:get("c"))
  assert.equal("5", s:get("d"))
end)

case("adds only when absent", function(s, ctx)
  local T = ctx.T
  assert.is_true(s:add("k", "v", T))
  local ok, why = s:add("k", "w", T)
  assert.is_false(ok)
  assert.equal("exists", why)
  assert.equal("v", s:get("k"))
  ctx.advance(1.5 * T)
  assert.is_true(s:add("k", "w", T))
  assert.equal("w", s:get("k"))
end)

case("increments with init and ttl, and deletes", function(s, ctx)
  local T = ctx.T
  assert.equal(1, s:incr("n", 1, 0, 2 * T))
  assert.equal(3, s:incr("n", 2))
  assert.equal(2, s:incr("n", -1))
  assert.equal(2, tonumber(s:get("n")))
  ctx.advance(3 * T)
  -- expired: starts again from init
  assert.equal(6, s:incr("n", 1, 5))
  assert.equal(7, s:incr("n"))
  assert.is_true(s:delete("n"))
  assert.is_nil(s:get("n"))
  assert.is_true(s:delete("never-there"))
end)

case("sets an incr TTL only when it creates the counter", function(s, ctx)
  local T = ctx.T
  assert.equal(1, s:incr("m", 1, 0, 2 * T))
  ctx.advance(T)
  -- a later TTL does not extend the counter's life
  assert.equal(2, s:incr("m", 1, 0, 20 * T))
  ctx.advance(1.5 * T)
  assert.is_nil(s:get("m"))
  assert.equal(11, s:incr("m", 1, 10))
end)

case("increments by fractions and refuses to increment text", function(s)
  assert.equal(2.5, s:incr("f", 1.5, 1))
  assert.equal(3, s:incr("f", 0.5))
  assert.is_true(s:set("text", "abc"))
  local v, err = s:incr("text", 1)
  assert.is_nil(v)
  assert.is_string(err)
  assert.equal("abc", s:get("text"))
end)

case("locks without blocking and unlocks", function(s)
  local unlock = assert(s:lock("r", 30))
  local again, why = s:lock("r", 30)
  assert.is_nil(again)
  assert.equal("locked", why)
  unlock()
  local u2 = s:lock("r", 30)
  assert.is_function(u2)
  u2()
  -- a lock lives in its own key: the plain key is untouched
  assert.is_nil(s:get("r"))
end)

case("lets an expired lock go, and the old holder's unlock spares the new holder", function(s, ctx)
  local T = ctx.T
  local old = assert(s:lock("E", T))
  ctx.advance(1.5 * T)
  local new = assert(s:lock("E", 20 * T))
  old()
  local blocked, why = s:lock("E", 20 * T)
  assert.is_nil(blocked)
  assert.equal("locked", why)
  new()
  assert.is_function(s:lock("E", T))
end)

case("passes the contract check and refuses bad keys and values", function(s)
  assert.is_true(xs2a_store.check(s))
  assert.is_nil((xs2a_store.check({ get = print })))
  assert.has_error(function() s:get("") end)
  assert.has_error(function() s:get(nil) end)
  assert.has_error(function() s:set("x", {}) end)
  assert.has_error(function() s:add("x", nil) end)
end)

return cases
