--- Store over a Redis server: tokens, saved flows and limiter counters shared
-- by several hosts (or several nginx instances) of one TPP.
--
--     local store = require("xs2a.store.redis"){ host = "10.0.0.5", port = 6379,
--       password = os.getenv("REDIS_PASSWORD"), db = 0, prefix = "xs2a:",
--       timeout = 2, pool = { size = 30, idle = 60 } }
--
-- Same contract as `xs2a.store.memory` (docs/INTERNALS.md): string values
-- (they come back as strings, numbers included), TTLs in seconds, fractional
-- allowed (sent as milliseconds; 0 or nil = none), `lock` non-blocking.
--
-- The wire protocol (RESP2) is spoken by the small client below. Inside nginx
-- it runs over cosockets (`ngx.socket.tcp`): every command borrows a
-- connection from a per-worker keepalive pool and gives it back; a new
-- connection authenticates and selects the database first. Outside nginx it
-- uses LuaSocket with one persistent connection per store object.
--
-- Failures of Redis itself (down, refused, timeout, wrong password, protocol
-- garbage) never raise: every method returns nil and a message naming the
-- server (never the password). A command whose connection turned out to be
-- broken is sent once more on a new connection only when repeating it is
-- harmless (GET, SET, DEL) or when it was certainly not sent; INCR, SET NX
-- and the unlock script are never repeated blindly. Bad keys and values are
-- programmer errors and raise, as in the other stores.
-- @module xs2a.store.redis
local resp = require "xs2a.store.resp"
local contract = require "xs2a.store.contract"
local core = require "xs2a.core"

local type, tostring, tonumber, setmetatable, pcall = type, tostring, tonumber, setmetatable, pcall
local str_format, str_sub, str_find, str_gsub = string.format, string.sub, string.find, string.gsub
local tconcat = table.concat
local floor, ceil, huge = math.floor, math.ceil, math.huge

local _M = {}

local Store = {}
Store.__index = Store
Store.__name = "xs2a.store.redis"

-- credentials live here, not in the store table, so dumping a store shows none
local secrets = setmetatable({}, { __mode = "k" })

local NULL = resp.null
_M.null = NULL
_M.encode = resp.encode
_M.read_reply = resp.read_reply
local read_reply = resp.read_reply_at
local num, is_integer = resp.num, resp.is_integer
local unpack = table.unpack or unpack  -- luacheck: ignore 143

-- ----------------------------------------------------------------------------
-- Sockets: cosockets inside nginx, LuaSocket elsewhere

local function ngx_api()
  local ngx = rawget(_G, "ngx")
  if type(ngx) == "table" and type(ngx.socket) == "table" and type(ngx.socket.tcp) == "function" then
    return ngx
  end
  return nil
end

local luasocket
local function get_luasocket()
  if luasocket == nil then
    local ok, s = pcall(require, "socket")
    luasocket = ok and type(s) == "table" and s or false
  end
  return luasocket or nil
end

local function clock(self)
  if self.ngx then
    self.ngx.update_time()
    return self.ngx.now()
  end
  return luasocket.gettime()
end

-- Sets the socket's timeout to what is left of `deadline` (seconds).
local function budget(self, sock, deadline)
  local left = deadline - clock(self)
  if left < 0.001 then left = 0.001 end
  if self.ngx then sock:settimeout(ceil(left * 1000)) else sock:settimeout(left) end
  return left
end

local function is_timeout(err)
  return type(err) == "string" and str_find(err, "timeout", 1, true) ~= nil
end

-- ----------------------------------------------------------------------------
-- Errors

-- Never lets the password through, whatever a server or a socket says.
local function scrub(self, msg)
  msg = tostring(msg)
  local sec = secrets[self]
  local pw = sec and sec.password
  if pw and pw ~= "" then
    local at = 1
    repeat
      local i, j = str_find(msg, pw, at, true)
      if i then msg = str_sub(msg, 1, i - 1) .. "***" .. str_sub(msg, j + 1); at = i + 3 end
    until not i
  end
  return msg
end

local function fail(self, what, msg)
  return nil, scrub(self, tostring(self) .. ": " .. what .. (msg and (": " .. tostring(msg)) or ""))
end

-- ----------------------------------------------------------------------------
-- Connections

-- Sends one command and reads its reply on `sock`.
-- @return value | nil, message, kind, sent (false when not a byte left us)
local function roundtrip(self, sock, deadline, payload)
  budget(self, sock, deadline)
  local ok, err, last = sock:send(payload)
  if not ok then
    -- LuaSocket tells how much went out; a cosocket does not (assume some did)
    local sent = true
    if not self.ngx and last == 0 then sent = false end
    return nil, err, "io", sent
  end
  budget(self, sock, deadline)
  local v, rerr, kind = read_reply(sock, 0)
  return v, rerr, kind, true
end

-- AUTH and SELECT on a new connection.
local function handshake(self, sock, deadline)
  local sec = secrets[self]
  if sec and sec.password then
    local payload = sec.username and _M.encode("AUTH", sec.username, sec.password)
      or _M.encode("AUTH", sec.password)
    local v, err, kind = roundtrip(self, sock, deadline, payload)
    if v == nil then
      if kind == "reply" then return nil, "authentication failed", err end
      return nil, "authentication", err
    end
  end
  if self.db ~= 0 then
    local v, err, kind = roundtrip(self, sock, deadline, _M.encode("SELECT", self.db))
    if v == nil then
      if kind == "reply" then return nil, "SELECT " .. self.db .. " failed", err end
      return nil, "SELECT", err
    end
  end
  return true
end

-- True when an idle LuaSocket connection still looks usable: a non-blocking
-- read must find nothing to read (a closed peer reads as "closed"; stray
-- bytes mean we lost step with the server).
local function idle_ok(sock)
  sock:settimeout(0)
  local data, err = sock:receive(1)
  if data then return false end
  return err == "timeout"
end

-- A connection for the next command.
-- @return sock, reused (bool) | nil, what, message
local function acquire(self, deadline)
  if self.ngx then
    local ok, sock = pcall(self.ngx.socket.tcp)
    if not ok or not sock then return nil, "cosocket", sock end
    budget(self, sock, deadline)
    local cok, cerr = sock:connect(self.host, self.port, { pool = self.pool_name, pool_size = self.pool_size })
    if not cok then return nil, "connect", cerr end
    local reused = (sock:getreusedtimes() or 0) > 0
    if not reused then
      local hok, what, herr = handshake(self, sock, deadline)
      if not hok then sock:close(); return nil, what, herr end
    end
    return sock, reused
  end
  local sock = self.sock
  if sock then
    if idle_ok(sock) then return sock, true end
    sock:close()
    self.sock = nil
  end
  sock = luasocket.tcp()
  budget(self, sock, deadline)
  local cok, cerr = sock:connect(self.host, self.port)
  if not cok then sock:close(); return nil, "connect", cerr end
  pcall(sock.setoption, sock, "tcp-nodelay", true)
  local hok, what, herr = handshake(self, sock, deadline)
  if not hok then sock:close(); return nil, what, herr end
  self.sock = sock
  return sock, false
end

local function release(self, sock)
  if self.ngx then
    local ok = sock:setkeepalive(self.pool_idle_ms, self.pool_size)
    if not ok then sock:close() end
  end
  -- LuaSocket: the connection stays in self.sock
end

local function drop(self, sock)
  sock:close()
  if self.sock == sock then self.sock = nil end
end

-- Runs one command (see `command`).
local function run_command(self, retry, ...)
  local payload = _M.encode(...)
  local deadline = clock(self) + self.timeout
  for attempt = 1, 2 do
    local sock, reused, err = acquire(self, deadline)
    if not sock then return fail(self, reused, err) end
    local v, rerr, kind, sent = roundtrip(self, sock, deadline, payload)
    if v ~= nil then
      release(self, sock)
      return v
    end
    if kind == "reply" then
      release(self, sock)
      return nil, scrub(self, tostring(self) .. ": " .. tostring(rerr)), "reply"
    end
    drop(self, sock)
    if kind == "protocol" then return fail(self, "protocol error", rerr) end
    -- a reused connection that broke (the server restarted, an idle timeout)
    -- is worth one more try when the command can be repeated or never left
    if attempt == 2 or not reused or is_timeout(rerr) or (sent and not retry) then
      return fail(self, is_timeout(rerr) and "timeout" or "connection", rerr)
    end
  end
end

--- Runs one command.
-- @param self the store
-- @param retry true when repeating the command is harmless
-- @param ... the command and its arguments
-- @return value (`null` for a Redis nil) | nil, message, kind
local function command(self, retry, ...)
  -- a socket API that raises (a cosocket in a phase that has none, say)
  -- is a failure like any other: reported, never raised
  local ok, v, err, kind = pcall(run_command, self, retry, ...)
  if ok then return v, err, kind end
  if self.sock then pcall(self.sock.close, self.sock); self.sock = nil end
  return fail(self, "socket error", v)
end

-- ----------------------------------------------------------------------------
-- The store contract

local checks = contract
local check_key, check_value = checks.check_key, checks.check_value

-- TTL in whole milliseconds (at least 1 for any positive TTL), 0 for none.
local function ttl_ms(ttl)
  if ttl == nil then return 0 end
  if type(ttl) ~= "number" or ttl < 0 or ttl ~= ttl then error("ttl must be a non-negative number", 3) end
  if ttl == 0 then return 0 end
  if ttl == huge then return 0 end
  return ceil(ttl * 1000)
end

local function wire(value)
  if type(value) == "number" then return num(value) end
  return value
end

--- Value of `key` (a string), or nil when absent | nil, err.
function Store:get(key)
  check_key(key)
  local v, err = command(self, true, "GET", self.prefix .. key)
  if v == nil then return nil, err end
  if v == NULL then return nil end
  if type(v) ~= "string" then return fail(self, "GET", "unexpected reply") end
  return v
end

--- Values of several keys in one round trip (MGET); the limiter reads its
-- window this way. Missing keys are nil in the result.
-- @return list (with `n` = #keys) | nil, err
function Store:get_many(keys)
  local args = { "MGET" }
  for i, key in ipairs(keys) do
    check_key(key)
    args[i + 1] = self.prefix .. key
  end
  if #keys == 0 then return { n = 0 } end
  local v, err = command(self, true, unpack(args))
  if v == nil then return nil, err end
  if type(v) ~= "table" or v == NULL or #v ~= #keys then return fail(self, "MGET", "unexpected reply") end
  local out = { n = #keys }
  for i = 1, #keys do
    if v[i] ~= NULL then out[i] = v[i] end
  end
  return out
end

--- Stores `value` under `key` for `ttl` seconds (0/nil: no expiry).
-- @return true | nil, err
function Store:set(key, value, ttl)
  check_key(key)
  check_value(value)
  local ms = ttl_ms(ttl)
  local v, err
  if ms > 0 then
    v, err = command(self, true, "SET", self.prefix .. key, wire(value), "PX", ms)
  else
    v, err = command(self, true, "SET", self.prefix .. key, wire(value))
  end
  if v == nil then return nil, err end
  return true
end

-- SET key value NX [PX ms]: true when set, false when the key exists.
local function set_nx(self, full_key, value, ms)
  local v, err
  if ms > 0 then
    v, err = command(self, false, "SET", full_key, value, "NX", "PX", ms)
  else
    v, err = command(self, false, "SET", full_key, value, "NX")
  end
  if v == nil then return nil, err end
  return v ~= NULL
end

--- Stores only when `key` is absent.
-- @return true | false, "exists" | nil, err
function Store:add(key, value, ttl)
  check_key(key)
  check_value(value)
  local ok, err = set_nx(self, self.prefix .. key, wire(value), ttl_ms(ttl))
  if ok == nil then return nil, err end
  if not ok then return false, "exists" end
  return true
end

--- Removes `key`.
-- @return true | nil, err
function Store:delete(key)
  check_key(key)
  local v, err = command(self, true, "DEL", self.prefix .. key)
  if v == nil then return nil, err end
  return true
end

-- Creates the counter with init (and its TTL) when absent, then adds `by`;
-- one script, so no other client sees the key between the two steps, and a
-- TTL is set only at creation.
local INCR_SCRIPT = [[
if redis.call('EXISTS', KEYS[1]) == 0 then
  if ARGV[3] ~= '0' then
    redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  else
    redis.call('SET', KEYS[1], ARGV[2])
  end
end
if ARGV[4] == 'f' then
  return redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
end
return redis.call('INCRBY', KEYS[1], ARGV[1])
]]

--- Adds `by` (default 1) to the number under `key`, creating it with `init`
-- (default 0) and `ttl` when absent. Returns the new value | nil, err.
function Store:incr(key, by, init, ttl)
  check_key(key)
  by = by or 1
  init = init or 0
  if type(by) ~= "number" or type(init) ~= "number" then error("incr takes numbers", 2) end
  local mode = (is_integer(by) and is_integer(init)) and "i" or "f"
  local v, err, kind = command(self, false, "EVAL", INCR_SCRIPT, 1, self.prefix .. key,
    num(by), num(init), ttl_ms(ttl), mode)
  if v == nil then
    if kind == "reply" and (str_find(err, "not an integer", 1, true)
        or str_find(err, "not a valid float", 1, true)) then
      return nil, tostring(self) .. ": not a number"
    end
    return nil, err
  end
  local n = tonumber(v)
  if n == nil then return fail(self, "INCR", "unexpected reply") end
  return n
end

-- Deletes KEYS[1] only while it still holds our token.
local UNLOCK_SCRIPT = [[
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
]]

local function token()
  return (str_gsub(core.random(16), ".", function(c) return str_format("%02x", c:byte()) end))
end

--- Takes the lock `key` for `ttl` seconds (default 30) without waiting.
-- @return unlock function | nil, "locked" | nil, err (Redis failed)
-- The unlock function returns true when it released the lock, false when
-- the lock had already expired or was released (it never deletes a lock
-- somebody else took since), nil and err when Redis failed.
function Store:lock(key, ttl)
  check_key(key)
  local ms = ttl_ms(ttl)
  if ms == 0 then ms = 30000 end
  local lock_key = self.prefix .. "lock:" .. key
  local owner = token()
  local ok, err = set_nx(self, lock_key, owner, ms)
  if ok == nil then return nil, err end
  if not ok then return nil, "locked" end
  local released = false
  return function()
    if released then return false end
    local v, uerr = command(self, false, "EVAL", UNLOCK_SCRIPT, 1, lock_key, owner)
    if v == nil then return nil, uerr end
    released = true
    return v == 1
  end
end

--- Runs a raw command (strings and numbers) and returns its reply (`null`
-- for a Redis nil) | nil, err. Not part of the store contract: for tools
-- and tests. Never repeated on a broken connection.
function Store:_command(...)
  return command(self, false, ...)
end

--- Closes the persistent connection (outside nginx; inside nginx the pool
-- keeps connections per worker).
function Store:close()
  if self.sock then
    self.sock:close()
    self.sock = nil
  end
  return true
end

function Store:__tostring()
  return "xs2a.store.redis(" .. self.host .. ":" .. self.port .. " db " .. self.db .. ")"
end

-- ----------------------------------------------------------------------------
-- Construction

-- distinct pool names per (server, db, credentials), without putting a
-- password or a hash of it into a name that nginx may log
local pool_ids, pool_count = {}, 0

local function pool_name(host, port, db, username, password)
  local id = tconcat({ host, port, db, username or "", password or "" }, "\0")
  if not pool_ids[id] then
    pool_count = pool_count + 1
    pool_ids[id] = pool_count
  end
  return "xs2a.store.redis:" .. host .. ":" .. port .. ":" .. db .. "#" .. pool_ids[id]
end

local function whole(n, lo, hi)
  return type(n) == "number" and n == floor(n) and n >= lo and n <= hi
end

--- Creates a store. Nothing is connected until the first command.
-- @param opts `{ host = "127.0.0.1", port = 6379, password, username, db = 0,
--   prefix = "xs2a:", timeout = 2 (seconds, per call), pool = { size, idle
--   (seconds) } }` (pool: inside nginx only)
-- @return store | nil, err
function _M.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then return nil, "xs2a.store.redis: options must be a table" end
  local host = opts.host or "127.0.0.1"
  local port = opts.port or 6379
  local db = opts.db or 0
  local prefix = opts.prefix or "xs2a:"
  local timeout = opts.timeout or 2
  local pool = opts.pool or {}
  if type(host) ~= "string" or host == "" then return nil, "xs2a.store.redis: host must be a string" end
  if not whole(port, 1, 65535) then return nil, "xs2a.store.redis: port must be 1-65535" end
  if not whole(db, 0, 2 ^ 31) then return nil, "xs2a.store.redis: db must be a whole number >= 0" end
  if type(prefix) ~= "string" then return nil, "xs2a.store.redis: prefix must be a string" end
  if type(timeout) ~= "number" or timeout <= 0 then
    return nil, "xs2a.store.redis: timeout must be > 0 seconds"
  end
  if opts.password ~= nil and type(opts.password) ~= "string" then
    return nil, "xs2a.store.redis: password must be a string"
  end
  if opts.username ~= nil and type(opts.username) ~= "string" then
    return nil, "xs2a.store.redis: username must be a string"
  end
  if type(pool) ~= "table" then return nil, "xs2a.store.redis: pool must be a table" end
  if pool.size ~= nil and not whole(pool.size, 1, 1e6) then
    return nil, "xs2a.store.redis: pool.size must be a whole number >= 1"
  end
  if pool.idle ~= nil and (type(pool.idle) ~= "number" or pool.idle < 0) then
    return nil, "xs2a.store.redis: pool.idle must be seconds >= 0"
  end
  local self = setmetatable({
    host = host, port = port, db = db, prefix = prefix, timeout = timeout,
    pool_size = pool.size, pool_idle_ms = floor((pool.idle or 60) * 1000),
  }, Store)
  local password = opts.password
  if password == "" then password = nil end
  secrets[self] = { password = password, username = password and opts.username or nil }
  self.ngx = ngx_api()
  if self.ngx then
    self.pool_name = pool_name(host, port, db, opts.username, password)
  elseif not get_luasocket() then
    return nil, "xs2a.store.redis: outside nginx it needs LuaSocket (Debian: lua-socket)"
  end
  return self
end

return setmetatable(_M, { __call = function(_, opts) return _M.new(opts) end })
