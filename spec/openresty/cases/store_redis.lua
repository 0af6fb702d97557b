-- Worker side of spec/openresty/store_redis_spec.lua: xs2a.store.redis over
-- cosockets inside nginx. `args` carry the test redis-server's port and
-- password (spec/support/redis.lua).
local assert = require "luassert"
local redis = require "xs2a.store.redis"

local M = {}

local function store(args, extra)
  local o = { port = args.port, password = args.password, timeout = 2,
    prefix = "or:" .. ngx.worker.pid() .. ":" .. ngx.now() .. ":" .. math.random(1, 1e9) .. ":" }
  for k, v in pairs(extra or {}) do o[k] = v end
  return assert(redis.new(o))
end

-- one case of the shared store contract (spec/support/store_cases.lua),
-- waiting with ngx.sleep
function M.run(args)
  local env = { T = 0.2, advance = ngx.sleep, new = function() return store(args) end }
  for _, c in ipairs(require "support.store_cases") do
    if c.name == args.name then
      c.run(env.new(), env)
      return true
    end
  end
  error("no store case named " .. tostring(args.name))
end

function M.names()
  local out = {}
  for i, c in ipairs(require "support.store_cases") do out[i] = c.name end
  return out
end

-- Many commands in one request go over one pooled connection: returns how
-- many connections the server accepted meanwhile, and what the store runs on.
function M.pooled(args)
  local s = store(args, { pool = { size = 4, idle = 30 } })
  local function accepted()
    local info = assert(s:_command("INFO", "stats"))
    return tonumber(info:match("total_connections_received:(%d+)"))
  end
  assert.is_nil(s.sock)
  assert.is_truthy(s.ngx)
  local before = accepted()
  for i = 1, 20 do
    assert.is_true(s:set("k" .. i, tostring(i), 5))
    assert.equal(tostring(i), s:get("k" .. i))
  end
  assert.equal(20, s:incr("n", 20))
  local unlock = assert(s:lock("L", 5))
  assert.is_true(unlock())
  return { new_connections = accepted() - before }
end

-- Holds the lock `key` for `hold` seconds if it can; returns { got, pid }.
function M.contend(args)
  local s = store(args, { prefix = "or-contend:" })
  local unlock = s:lock(args.key, 10)
  if not unlock then return { got = false, pid = ngx.worker.pid() } end
  ngx.sleep(args.hold or 0.5)
  assert.is_true(unlock())
  return { got = true, pid = ngx.worker.pid() }
end

-- Nothing listens on args.port: errors, not exceptions, and in time.
function M.down(args)
  local s = store(args, { timeout = 1 })
  local t = ngx.now()
  local v, err = s:get("k")
  assert.is_nil(v)
  assert.matches("connect", err, 1, true)
  local ok, serr = s:set("k", "v")
  assert.is_nil(ok)
  assert.is_string(serr)
  local unlock, lerr = s:lock("L")
  assert.is_nil(unlock)
  assert.is_not.equal("locked", lerr)
  ngx.update_time()
  assert.is_true(ngx.now() - t < 2)
  return true
end

function M.wrong_password(args)
  local s = store(args, { password = "not-" .. args.password })
  local v, err = s:get("k")
  assert.is_nil(v)
  assert.matches("authentication failed", err, 1, true)
  assert.is_nil(err:find(args.password, 1, true))
  -- the good store still works (its pool is another one)
  local good = store(args)
  assert.is_true(good:set("k", "v"))
  assert.equal("v", good:get("k"))
  return true
end

return M
