--- The store contract (docs/INTERNALS.md): the methods every backend has,
-- and the argument checks the backends share (programmer errors raise, at
-- the caller of the store method).
-- @module xs2a.store.contract
local type, ipairs, error = type, ipairs, error

local _M = {}

--- Raises unless `key` is a non-empty string.
function _M.check_key(key)
  if type(key) ~= "string" or key == "" then error("store key must be a non-empty string", 3) end
end

--- Raises unless `value` is a string or a number.
function _M.check_value(value)
  local t = type(value)
  if t ~= "string" and t ~= "number" then error("store values are strings (JSON-encode them)", 3) end
end

--- A TTL in seconds, checked: nil gives 0 (no expiry).
function _M.check_ttl(ttl)
  if ttl == nil then return 0 end
  if type(ttl) ~= "number" or ttl < 0 or ttl ~= ttl then error("ttl must be a non-negative number", 3) end
  return ttl
end

--- The methods of the contract.
_M.REQUIRED = { "get", "set", "add", "delete", "incr", "lock" }

--- Checks that `store` implements the contract.
-- @return true, or nil and the name of a missing method
function _M.check(store)
  if type(store) ~= "table" and type(store) ~= "userdata" then return nil, "store must be a table" end
  for _, m in ipairs(_M.REQUIRED) do
    if type(store[m]) ~= "function" then return nil, "store lacks method " .. m end
  end
  return true
end

return _M
