-- Worker side of spec/openresty/store_spec.lua: the store contract over a
-- lua_shared_dict, exercised inside nginx.
local assert = require "luassert"
local shdict = require "xs2a.store.shdict"

local M = {}

local function fresh(prefix)
  local store = assert(shdict("xs2a"))
  local p = prefix .. ":" .. ngx.worker.pid() .. ":" .. ngx.now() .. ":"
  return store, p
end

function M.basic()
  local store, p = fresh("basic")
  assert.is_nil(store:get(p .. "a"))
  assert.is_true(store:set(p .. "a", "one"))
  assert.equal("one", store:get(p .. "a"))
  assert.is_true(store:set(p .. "a", "two", 0))
  assert.equal("two", store:get(p .. "a"))
  local ok, err = store:add(p .. "a", "three")
  assert.is_false(ok)
  assert.equal("exists", err)
  assert.equal("two", store:get(p .. "a"))
  assert.is_true(store:add(p .. "b", "bee"))
  assert.equal("bee", store:get(p .. "b"))
  assert.is_true(store:delete(p .. "a"))
  assert.is_nil(store:get(p .. "a"))
  assert.is_true(store:delete(p .. "never"))
  -- bad keys and values are programmer errors
  assert.has_error(function() store:get("") end)
  assert.has_error(function() store:set(p .. "x", {}) end)
  return true
end

function M.ttl()
  local store, p = fresh("ttl")
  assert.is_true(store:set(p .. "short", "v", 0.1))
  assert.is_true(store:set(p .. "long", "v", 60))
  assert.is_true(store:add(p .. "added", "v", 0.1))
  assert.equal("v", store:get(p .. "short"))
  ngx.sleep(0.25)
  assert.is_nil(store:get(p .. "short"))
  assert.is_nil(store:get(p .. "added"))
  assert.equal("v", store:get(p .. "long"))
  -- an expired key can be added again
  assert.is_true(store:add(p .. "added", "again", 1))
  return true
end

function M.incr()
  local store, p = fresh("incr")
  assert.equal(1, store:incr(p .. "n"))
  assert.equal(6, store:incr(p .. "n", 5))
  assert.equal(17, store:incr(p .. "m", 7, 10))
  assert.equal(6, tonumber(store:get(p .. "n")))
  -- init ttl: the counter goes away and starts again from init
  assert.equal(3, store:incr(p .. "t", 1, 2, 0.1))
  ngx.sleep(0.25)
  assert.equal(3, store:incr(p .. "t", 1, 2, 0.1))
  assert.is_true(store:set(p .. "s", "text"))
  local v, err = store:incr(p .. "s", 1)
  assert.is_nil(v)
  assert.is_string(err)
  return true
end

function M.lock()
  local store, p = fresh("lock")
  local unlock = store:lock(p .. "L", 5)
  assert.is_function(unlock)
  local again, err = store:lock(p .. "L", 5)
  assert.is_nil(again)
  assert.equal("locked", err)
  assert.is_true(unlock())
  assert.is_false(unlock()) -- second call does nothing
  local u2 = store:lock(p .. "L", 5)
  assert.is_function(u2)
  u2()
  -- an expired lock is taken by somebody else; the old owner's unlock
  -- must not release the new owner's lock
  local old = assert(store:lock(p .. "E", 0.1))
  ngx.sleep(0.25)
  local new = assert(store:lock(p .. "E", 5))
  assert.is_false(old())
  local blocked = store:lock(p .. "E", 5)
  assert.is_nil(blocked)
  assert.is_true(new())
  return true
end

-- Counts, across workers, how many callers got the lock `key` while each
-- holds it for `hold` seconds: used with concurrent requests to several
-- workers. Returns { got = bool, pid = worker pid }.
function M.contend(args)
  local store = assert(shdict("xs2a"))
  local unlock = store:lock(args.key, 10)
  if not unlock then return { got = false, pid = ngx.worker.pid() } end
  store:incr(args.key .. ":holders", 1, 0, 60)
  ngx.sleep(args.hold or 0.5)
  unlock()
  return { got = true, pid = ngx.worker.pid() }
end

function M.missing_dict()
  local store, err = shdict("no_such_dict")
  assert.is_nil(store)
  assert.matches("lua_shared_dict", err)
  local via_init, err2 = require("xs2a.store").shdict("no_such_dict")
  assert.is_nil(via_init)
  assert.is_string(err2)
  return true
end

return M
