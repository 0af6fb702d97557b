--- Stores for tokens, saved flows and limiter state (see the store
-- contract in docs/INTERNALS.md).
--
--     xs2a.store.memory()            -- one process
--     xs2a.store.file(dir)           -- files in a 0700 directory: one host,
--                                    -- several processes, survives restarts
--     xs2a.store.shdict("xs2a")      -- nginx lua_shared_dict (OpenResty)
--     xs2a.store.redis{ host = "10.0.0.5", port = 6379 }
--                                    -- Redis: several hosts share tokens and
--                                    -- limiter state (cosockets inside nginx)
-- @module xs2a.store
local _M = {}

--- A new in-memory store.
function _M.memory(opts)
  return require("xs2a.store.memory").new(opts)
end

--- A store in the directory `dir` (see `xs2a.store.file`).
-- @return store, or nil and err
function _M.file(dir, opts)
  return require("xs2a.store.file").new(dir, opts)
end

--- A store over the nginx shared dict `name` (inside OpenResty only).
-- @return store, or nil and err
function _M.shdict(name, opts)
  local ok, mod = pcall(require, "xs2a.store.shdict")
  if not ok then return nil, "xs2a.store.shdict unavailable: " .. tostring(mod) end
  return mod.new(name, opts)
end

--- A store on a Redis server (LuaSocket, or cosockets inside nginx).
-- @param opts `{ host, port, password, username, db, prefix, timeout, pool = { size, idle } }`
-- @return store, or nil and err
function _M.redis(opts)
  local ok, mod = pcall(require, "xs2a.store.redis")
  if not ok then return nil, "xs2a.store.redis unavailable: " .. tostring(mod) end
  return mod.new(opts)
end

--- Argument checks shared by the backends (programmer errors raise, at the
-- caller of the store method).
function _M.check_key(key)
  if type(key) ~= "string" or key == "" then error("store key must be a non-empty string", 3) end
end

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

local REQUIRED = { "get", "set", "add", "delete", "incr", "lock" }

--- Checks that `store` implements the contract.
-- @return true, or nil and the name of a missing method
function _M.check(store)
  if type(store) ~= "table" and type(store) ~= "userdata" then return nil, "store must be a table" end
  for _, m in ipairs(REQUIRED) do
    if type(store[m]) ~= "function" then return nil, "store lacks method " .. m end
  end
  return true
end

return _M
