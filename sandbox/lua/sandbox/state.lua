--- Bank state: JSON values in `lua_shared_dict sandbox_state`, shared by
-- every worker. Keys starting with "__" are the platform's own.
local util = require "sandbox.util"

local _M = {}

local unpack = unpack or table.unpack    -- luacheck: ignore 143

local function pack(...)
  return { n = select("#", ...), ... }
end

local function dict()
  return ngx.shared.sandbox_state
end

local function store(key, value)
  local d = dict()
  if value == nil then
    d:delete(key)
    return true
  end
  local s, err = util.json_encode(value)
  if not s then error("state.set(" .. key .. "): " .. err, 3) end
  local ok, serr = d:set(key, s)
  if not ok then error("state.set(" .. key .. "): " .. tostring(serr), 3) end
  return true
end

--- The value stored under `key` (decoded), or nil.
function _M.get(key)
  local v = dict():get(key)
  if v == nil or type(v) ~= "string" then return v end
  local decoded = util.json_decode(v)
  return decoded
end

--- Stores `value` (any JSON-encodable value; nil deletes).
function _M.set(key, value)
  return store(key, value)
end

--- Takes the per-key lock: a shared-dict entry with a short expiry, so a
-- crashed holder cannot block others for long.
local function lock(key)
  local d = dict()
  local lk = "__lock:" .. key
  for _ = 1, 5000 do
    if d:add(lk, true, 5) then
      return function() d:delete(lk) end
    end
    local ok = pcall(ngx.sleep, 0.001)
    if not ok then break end    -- a phase that cannot sleep: go on unlocked
  end
  return function() end
end

--- Read-modify-write under a lock: `fn(old)` returns the new value (nil
-- deletes) and optionally more values, which update() returns after it.
-- @return new value, extra values of fn
function _M.update(key, fn)
  local unlock = lock(key)
  local res = pack(pcall(fn, _M.get(key)))
  if not res[1] then
    unlock()
    error(res[2], 2)
  end
  local ok, err = pcall(store, key, res[2])
  unlock()
  if not ok then error(err, 2) end
  return unpack(res, 2, res.n)
end

--- Atomically adds `n` (default 1) to a counter (starting at 0).
-- @return the new value
function _M.incr(key, n)
  local v, err = dict():incr(key, n or 1, 0)
  if not v then error("state.incr(" .. key .. "): " .. tostring(err), 2) end
  return v
end

--- The sorted keys that start with `prefix` (all keys when nil), without
-- the platform's internal keys.
function _M.keys(prefix)
  local out = {}
  prefix = prefix or ""
  for _, k in ipairs(dict():get_keys(0)) do
    if k:sub(1, #prefix) == prefix and k:sub(1, 2) ~= "__" then out[#out + 1] = k end
  end
  table.sort(out)
  return out
end

--- Removes every value.
function _M.flush()
  local d = dict()
  d:flush_all()
  d:flush_expired()
end

return _M
