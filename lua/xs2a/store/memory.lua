--- In-memory store (one process). Implements the store contract of
-- docs/INTERNALS.md: values are strings, TTLs in seconds (0/nil = none).
--
--     local store = require("xs2a.store.memory").new()
--     store:set("k", "v", 60); store:get("k")
--
-- Expired keys are reclaimed as time goes on, also keys nobody reads again
-- (the limiter's old slots, finished flows): every key with a TTL is listed
-- in the bucket of the second it expires in, and each store call empties
-- at most a few buckets that are in the past (at most 64 keys and 256
-- seconds), so the work is spread over the calls and no call walks the
-- whole store. `opts.clock` (a function returning seconds) replaces the
-- clock in tests.
-- @module xs2a.store.memory
local core = require "xs2a.core"
local check_key = require("xs2a.store.contract").check_key

local type, tonumber, tostring, setmetatable, pairs = type, tonumber, tostring, setmetatable, pairs
local floor = math.floor

local _M = {}
local mt = { __index = _M, __name = "xs2a.store.memory" }
mt.__tostring = function() return "xs2a.store.memory" end

local REAP_KEYS, REAP_STEPS = 64, 256

--- Creates a memory store.
function _M.new(opts)
  opts = opts or {}
  local clock = opts.clock or core.now
  return setmetatable({
    data = {}, expires = {},
    buckets = {},            -- second -> list of keys that expire in it (may be stale)
    nbuckets = 0,
    cursor = floor(clock()), -- the oldest second not reclaimed yet
    clock = clock,
    -- the limiter needs no lease keys for a store of one process
    process_local = true,
  }, mt)
end

-- reclaims expired keys of past buckets, a bounded amount per call
local function reap(self, now)
  local sec = floor(now)
  local cursor = self.cursor
  if cursor >= sec then return end
  if self.nbuckets == 0 then
    self.cursor = sec
    return
  end
  local buckets, expires, data = self.buckets, self.expires, self.data
  local keys, steps = REAP_KEYS, REAP_STEPS
  while cursor < sec and steps > 0 and keys > 0 do
    local list = buckets[cursor]
    if list then
      local i, n = list.i or 1, list.n
      while i <= n and keys > 0 do
        local k = list[i]
        local e = expires[k]
        if e and e <= now then
          data[k] = nil
          expires[k] = nil
        end
        i = i + 1
        keys = keys - 1
      end
      if i <= n then
        list.i = i
        break
      end
      buckets[cursor] = nil
      self.nbuckets = self.nbuckets - 1
    end
    cursor = cursor + 1
    steps = steps - 1
  end
  self.cursor = cursor
end

local function live(self, key, now)
  local exp = self.expires[key]
  if exp and exp <= now then
    self.data[key] = nil
    self.expires[key] = nil
  end
  return self.data[key]
end

local function put(self, key, value, ttl, now)
  if type(value) ~= "string" and type(value) ~= "number" then
    error("store value must be a string or number", 3)
  end
  self.data[key] = value
  ttl = tonumber(ttl)
  if ttl and ttl > 0 then
    local exp = now + ttl
    self.expires[key] = exp
    local b = floor(exp)
    if b < self.cursor then b = self.cursor end
    local list = self.buckets[b]
    if not list then
      list = { n = 0 }
      self.buckets[b] = list
      self.nbuckets = self.nbuckets + 1
    end
    local n = list.n + 1
    list.n = n
    list[n] = key
  else
    self.expires[key] = nil
  end
end

-- the clock once per call, and the reclaiming step
local function tick(self)
  local now = self.clock()
  reap(self, now)
  return now
end

--- @return value or nil
function _M:get(key)
  check_key(key)
  return live(self, key, tick(self))
end

--- Values of several keys (`{ n = #keys, v1, v2, ... }`, nil for absent).
function _M:get_many(keys)
  local now = tick(self)
  local out = { n = #keys }
  for i = 1, #keys do
    check_key(keys[i])
    out[i] = live(self, keys[i], now)
  end
  return out
end

--- Sets `key` (TTL seconds, optional). Returns true.
function _M:set(key, value, ttl)
  check_key(key)
  put(self, key, value, ttl, tick(self))
  return true
end

--- Sets `key` only when absent. Returns true, or false, "exists".
function _M:add(key, value, ttl)
  check_key(key)
  local now = tick(self)
  if live(self, key, now) ~= nil then return false, "exists" end
  put(self, key, value, ttl, now)
  return true
end

--- Deletes `key`. Returns true.
function _M:delete(key)
  check_key(key)
  self.data[key] = nil
  self.expires[key] = nil
  return true
end

--- Adds `by` to a number at `key`, creating it with `init` (and `ttl`)
-- when absent. Returns the new value.
function _M:incr(key, by, init, ttl)
  check_key(key)
  local now = tick(self)
  local v = live(self, key, now)
  if v == nil then
    put(self, key, (tonumber(init) or 0) + (by or 1), ttl, now)
  else
    local n = tonumber(v)
    if not n then return nil, "not a number" end
    self.data[key] = n + (by or 1)
  end
  return self.data[key]
end

--- Takes a lock for `ttl` seconds (non-blocking).
-- @return unlock function, or nil, "locked"
function _M:lock(key, ttl)
  check_key(key)
  local lkey = "lock:" .. key
  local token = tostring({}) .. tostring(self.clock())
  local ok = self:add(lkey, token, ttl or 30)
  if not ok then return nil, "locked" end
  return function()
    if self.data[lkey] == token then self:delete(lkey) end
    return true
  end
end

--- Removes every expired entry now (a full walk; the store also reclaims
-- them on its own, a little at each call).
function _M:sweep()
  local now = self.clock()
  for k in pairs(self.data) do live(self, k, now) end
end

--- Number of keys held (expired ones not yet reclaimed included); a full
-- walk, for tests and benchmarks.
function _M:size()
  local n = 0
  for _ in pairs(self.data) do n = n + 1 end
  return n
end

return _M
