--- Stores for tokens, saved flows and limiter state (see the store
-- contract in docs/INTERNALS.md and `xs2a.store.contract`).
--
--     xs2a.store.memory()            -- one process
--     xs2a.store.file(dir)           -- files in a 0700 directory: one host,
--                                    -- several processes, survives restarts
--     xs2a.store.shdict("xs2a")      -- nginx lua_shared_dict (OpenResty)
--     xs2a.store.redis{ host = "10.0.0.5", port = 6379 }
--                                    -- Redis: several hosts share tokens and
--                                    -- limiter state (cosockets inside nginx)
--
-- The backends require the contract, never this module.
-- @module xs2a.store
local contract = require "xs2a.store.contract"
local memory = require "xs2a.store.memory"
local file = require "xs2a.store.file"
local shdict = require "xs2a.store.shdict"
local redis = require "xs2a.store.redis"

local _M = {}

--- A new in-memory store.
function _M.memory(opts)
  return memory.new(opts)
end

--- A store in the directory `dir` (see `xs2a.store.file`).
-- @return store, or nil and err
function _M.file(dir, opts)
  return file.new(dir, opts)
end

--- A store over the nginx shared dict `name` (inside OpenResty only).
-- @return store, or nil and err
function _M.shdict(name, opts)
  return shdict.new(name, opts)
end

--- A store on a Redis server (LuaSocket, or cosockets inside nginx).
-- @param opts `{ host, port, password, username, db, prefix, timeout, pool = { size, idle } }`
-- @return store, or nil and err
function _M.redis(opts)
  return redis.new(opts)
end

_M.check_key, _M.check_value, _M.check_ttl = contract.check_key, contract.check_value, contract.check_ttl
--- Checks that `store` implements the contract.
-- @return true, or nil and the name of a missing method
_M.check = contract.check

return _M
