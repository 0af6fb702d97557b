--- Store over an nginx `lua_shared_dict`: shared by every worker.
--
--     -- nginx.conf: lua_shared_dict xs2a 10m;
--     local store = require("xs2a.store.shdict")("xs2a")
--
-- Same contract as `xs2a.store.memory` (docs/INTERNALS.md): string values,
-- TTLs in seconds (0 or nil = none), `lock` non-blocking. The lock is an
-- `add` with expiry holding a random owner token; the unlock function deletes
-- the key only while that token is still there, so a holder whose lock
-- expired cannot release somebody else's.
-- @module xs2a.store.shdict

local Store = {}
Store.__index = Store

local checks = require "xs2a.store.contract"
local core = require "xs2a.core"
local check_key, check_value, ttl_of = checks.check_key, checks.check_value, checks.check_ttl

local function full(err)
  return err == "no memory"
end

--- Value of `key`, or nil.
function Store:get(key)
  check_key(key)
  -- numbers (from incr) come back as numbers, as in the memory store
  return (self.dict:get(key))
end

--- Stores `value` under `key` for `ttl` seconds (0/nil: no expiry).
-- @return true | nil, err
function Store:set(key, value, ttl)
  check_key(key)
  check_value(value)
  local ok, err, forcible = self.dict:set(key, value, ttl_of(ttl))
  if not ok then return nil, "shared dict " .. self.name .. ": " .. tostring(err) end
  if forcible and rawget(_G, "ngx") then
    ngx.log(ngx.WARN, "xs2a: shared dict ", self.name, " is full; entries were evicted")
  end
  return true
end

--- Stores only when `key` is absent.
-- @return true | false, "exists" | nil, err
function Store:add(key, value, ttl)
  check_key(key)
  check_value(value)
  local ok, err = self.dict:add(key, value, ttl_of(ttl))
  if ok then return true end
  if err == "exists" then return false, "exists" end
  return nil, "shared dict " .. self.name .. ": " .. tostring(err) .. (full(err) and " (dict full)" or "")
end

--- Removes `key`.
function Store:delete(key)
  check_key(key)
  self.dict:delete(key)
  return true
end

--- Adds `by` (default 1) to the number under `key`, creating it with `init`
-- (default 0) and `ttl` when absent. Returns the new value.
function Store:incr(key, by, init, ttl)
  check_key(key)
  by = by or 1
  init = init or 0
  if type(by) ~= "number" or type(init) ~= "number" then error("incr takes numbers", 2) end
  local v, err = self.dict:incr(key, by, init, ttl_of(ttl))
  if not v then
    -- the key holds a non-number (or the dict is full)
    return nil, "shared dict " .. self.name .. ": " .. tostring(err)
  end
  return v
end

local function token()
  return (core.random(16):gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

--- Takes the lock `key` for `ttl` seconds (default 30) without waiting.
-- @return unlock function | nil, "locked"
function Store:lock(key, ttl)
  check_key(key)
  ttl = ttl_of(ttl)
  if ttl == 0 then ttl = 30 end
  local lock_key = "lock:" .. key
  local owner = token()
  local ok, err = self.dict:add(lock_key, owner, ttl)
  if not ok then
    if err == "exists" then return nil, "locked" end
    return nil, "shared dict " .. self.name .. ": " .. tostring(err)
  end
  local released = false
  return function()
    if released then return false end
    released = true
    -- get + delete are two steps; another worker can only have taken the
    -- key after our lock expired, and then the token differs and we leave it.
    -- (The key expiring between the two calls is the one remaining window.)
    if self.dict:get(lock_key) == owner then
      self.dict:delete(lock_key)
      return true
    end
    return false
  end
end

--- Creates a store over `ngx.shared[name]`.
-- @return store | nil, err
local function new(name)
  local ngx_ = rawget(_G, "ngx")
  if not ngx_ or not ngx_.shared then
    return nil, "xs2a.store.shdict works only inside nginx (lua-nginx-module)"
  end
  if type(name) ~= "string" then return nil, "shared dict name must be a string" end
  local dict = ngx.shared[name]
  if not dict then
    return nil, "no lua_shared_dict named " .. name .. " (add `lua_shared_dict " .. name
      .. " 10m;` to the http block)"
  end
  return setmetatable({ dict = dict, name = name }, Store)
end

return setmetatable({ new = new }, { __call = function(_, name) return new(name) end })
