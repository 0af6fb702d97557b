--- In-memory store (one process). Implements the store contract of
-- docs/INTERNALS.md: values are strings, TTLs in seconds (0/nil = none).
--
--     local store = require("xs2a.store.memory").new()
--     store:set("k", "v", 60); store:get("k")
--
-- `opts.clock` (a function returning seconds) replaces the clock in tests.
-- @module xs2a.store.memory
local date = require "xs2a.net.date"

local type, tostring, tonumber, setmetatable = type, tostring, tonumber, setmetatable

local _M = {}
local mt = { __index = _M, __name = "xs2a.store.memory" }
mt.__tostring = function() return "xs2a.store.memory" end

--- Creates a memory store.
function _M.new(opts)
  opts = opts or {}
  return setmetatable({ data = {}, expires = {}, clock = opts.clock or date.now, count = 0 }, mt)
end

local check_key = require("xs2a.store.contract").check_key

local function live(self, key)
  local exp = self.expires[key]
  if exp and exp <= self.clock() then
    self.data[key] = nil
    self.expires[key] = nil
  end
  return self.data[key]
end

local function put(self, key, value, ttl)
  if type(value) ~= "string" and type(value) ~= "number" then
    error("store value must be a string or number", 3)
  end
  self.data[key] = value
  ttl = tonumber(ttl)
  self.expires[key] = (ttl and ttl > 0) and (self.clock() + ttl) or nil
end

--- @return value or nil
function _M:get(key)
  check_key(key)
  return live(self, key)
end

--- Sets `key` (TTL seconds, optional). Returns true.
function _M:set(key, value, ttl)
  check_key(key)
  put(self, key, value, ttl)
  return true
end

--- Sets `key` only when absent. Returns true, or false, "exists".
function _M:add(key, value, ttl)
  check_key(key)
  if live(self, key) ~= nil then return false, "exists" end
  put(self, key, value, ttl)
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
  local v = live(self, key)
  if v == nil then
    put(self, key, (tonumber(init) or 0) + (by or 1), ttl)
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

--- Removes expired entries (called by users who care about memory).
function _M:sweep()
  for k in pairs(self.data) do live(self, k) end
end

return _M
