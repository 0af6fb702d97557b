--- A store in a directory of files: tokens, saved flows and limiter
-- counters that survive the process, on one host, without a server.
-- Implements the store contract of docs/INTERNALS.md.
--
--     local store = assert(require("xs2a.store").file(os.getenv("HOME") .. "/.local/state/xs2a"))
--
-- One file per key (mode 0600) in a directory of mode 0700 that the store
-- creates if needed; a directory that group or others can write, that is a
-- symbolic link, or that another user owns is refused. Every write goes to
-- a temporary file that is fsynced and renamed over the record, so a reader
-- (or a process killed mid-write) never leaves or sees a partial record.
-- Changes run under an advisory `flock` on `DIR/.lock`, so several
-- processes share counters, `add` and locks correctly. Expired keys read as
-- absent and are deleted when met and by `sweep()`, which `new` also runs.
--
-- Blocking file I/O: meant for scripts and the `xs2a` command, not for
-- nginx workers (use `xs2a.store.shdict` or `xs2a.store.redis` there).
-- @module xs2a.store.file
local core = require "xs2a.core"
local crypto = require "xs2a.crypto"
local contract = require "xs2a.store.contract"

local type, tonumber, setmetatable, pcall = type, tonumber, setmetatable, pcall
local str_format, str_byte, str_sub, str_find = string.format, string.byte, string.sub, string.find
local os_remove, math_floor = os.remove, math.floor

local _M = {}
local mt = { __index = _M, __name = "xs2a.store.file" }
mt.__tostring = function(self) return "xs2a.store.file(" .. self.dir .. ")" end

local MAGIC = "xs2a-store 1\n"
local SWEEP_EVERY = 256      -- changes between two automatic sweeps
local STALE_TMP = 600        -- seconds after which a writer's leftover temp file is removed

-- The file name of a key: letters, digits, "-" and "_" as they are, every
-- other byte as =XX; a name that would be too long becomes a digest.
local function file_name(key)
  local enc = key:gsub("[^%w%-_]", function(c) return str_format("=%02X", str_byte(c)) end)
  if #enc > 200 then enc = "#" .. crypto.sha256_hex(key) end
  return "k." .. enc
end

-- A directory we may keep secrets in: ours, no symbolic link, not writable
-- by group or others.
local function check_dir(dir)
  local st, err = core.fs_stat(dir)
  if not st then return nil, err end
  if st.link then return nil, "store directory " .. dir .. " is a symbolic link" end
  if not st.dir then return nil, "store path " .. dir .. " is not a directory" end
  if not st.mine then return nil, "store directory " .. dir .. " belongs to another user" end
  -- the write bits of group (0020) and others (0002)
  if math_floor(st.mode / 16) % 2 == 1 or math_floor(st.mode / 2) % 2 == 1 then
    return nil, str_format("store directory %s can be written by others (mode %o); chmod 700 it", dir, st.mode)
  end
  return true
end

-- mkdir -p with mode 0700 for the parts that do not exist yet
local function make_dirs(dir)
  local path = str_sub(dir, 1, 1) == "/" and "" or "."
  for part in dir:gmatch("[^/]+") do
    path = path .. "/" .. part
    if not core.fs_stat(path) then
      local ok, err = core.fs_mkdir(path)
      if not ok then return nil, err end
    end
  end
  return true
end

--- Opens (and creates if needed) a file store in `dir`.
-- @tparam string dir the directory (created with mode 0700, parents too)
-- @tparam[opt] table opts `{ clock = function returning epoch seconds }` (tests)
-- @return store, or nil and an error message
function _M.new(dir, opts)
  if type(dir) ~= "string" or dir == "" then return nil, "store.file: dir must be a non-empty string" end
  opts = opts or {}
  dir = dir:gsub("(.)/+$", "%1")
  local ok, err = make_dirs(dir)
  if not ok then return nil, "store.file: " .. err end
  ok, err = check_dir(dir)
  if not ok then return nil, "store.file: " .. err end
  local self = setmetatable({ dir = dir, clock = opts.clock or core.now, changes = 0 }, mt)
  ok, err = self:sweep()
  if not ok then return nil, "store.file: " .. err end
  return self
end

local function path_of(self, key)
  return self.dir .. "/" .. file_name(key)
end

-- The record at path: value, expires (0 = never); nil when absent;
-- nil, nil, err when unreadable or not a record.
local function read_record(path)
  -- (core.fs_read: no stdio buffer keeps the record, a token, once read)
  local data, rerr, code = core.fs_read(path)
  if not data then
    if code == "absent" then return nil end
    return nil, nil, "unreadable record " .. path .. ": " .. tostring(rerr)
  end
  if str_sub(data, 1, #MAGIC) ~= MAGIC then return nil, nil, "corrupt record " .. path end
  local nl = str_find(data, "\n", #MAGIC + 1, true)
  local exp = nl and tonumber(str_sub(data, #MAGIC + 1, nl - 1))
  if not exp then return nil, nil, "corrupt record " .. path end
  return str_sub(data, nl + 1), exp
end

local function number_text(n)
  if n == math_floor(n) and n > -2^53 and n < 2^53 then return str_format("%d", n) end
  return str_format("%.17g", n)
end

local function write_record(self, key, value, expires)
  if type(value) == "number" then value = number_text(value) end
  return core.fs_write(path_of(self, key), MAGIC .. number_text(expires) .. "\n" .. value)
end

local function expiry(self, ttl)
  ttl = contract.check_ttl(ttl)
  return ttl > 0 and self.clock() + ttl or 0
end

-- Runs fn(self) under the directory's flock; returns what fn returns.
local function locked(self, fn, ...)
  local lk, err = core.fs_lock(self.dir .. "/.lock")
  if not lk then return nil, "store.file: " .. err end
  local ok, a, b = pcall(fn, self, ...)
  lk:unlock()
  if not ok then error(a, 0) end
  self.changes = self.changes + 1
  if self.changes % SWEEP_EVERY == 0 then self:sweep() end
  return a, b
end

-- The live value at key and its expiry; nil, err when unreadable; nil, nil,
-- true when expired (then deleted when `reclaim`: call it so with the lock held).
local function live(self, key, reclaim)
  local path = path_of(self, key)
  local value, exp, err = read_record(path)
  if err then return nil, "store.file: " .. err end
  if value ~= nil and exp ~= 0 and exp <= self.clock() then
    if reclaim then os_remove(path) end
    return nil, nil, true
  end
  return value, exp
end

--- The value at `key`, or nil (also when expired).
-- @return value, or nil; nil and err when the record cannot be read
function _M:get(key)
  contract.check_key(key)
  local value, exp_or_err, expired = live(self, key, false)
  if expired then
    locked(self, function() live(self, key, true) end)
  end
  if value == nil then return nil, exp_or_err end
  return value
end

--- Sets `key` to `value` (a string or number) for `ttl` seconds (0/nil: no expiry).
-- @return true, or nil and err
function _M:set(key, value, ttl)
  contract.check_key(key)
  contract.check_value(value)
  local exp = expiry(self, ttl)
  return locked(self, function() return write_record(self, key, value, exp) end)
end

--- Sets `key` only when absent.
-- @return true; false, "exists"; or nil and err
function _M:add(key, value, ttl)
  contract.check_key(key)
  contract.check_value(value)
  local exp = expiry(self, ttl)
  return locked(self, function()
    local cur, err = live(self, key, true)
    if cur ~= nil then return false, "exists" end
    if err then return nil, err end
    return write_record(self, key, value, exp)
  end)
end

--- Deletes `key`.
-- @return true
function _M:delete(key)
  contract.check_key(key)
  return locked(self, function()
    os_remove(path_of(self, key))
    return true
  end)
end

--- Adds `by` (default 1) to the number at `key`, creating it as `init`
-- (default 0) plus `by` with `ttl` when absent; an existing counter keeps its expiry.
-- @return the new value, or nil and err (also when the value is not a number)
function _M:incr(key, by, init, ttl)
  contract.check_key(key)
  by = by or 1
  local new_exp = expiry(self, ttl)
  return locked(self, function()
    local cur, exp_or_err = live(self, key, true)
    local n, exp
    if cur == nil then
      if exp_or_err then return nil, exp_or_err end
      n, exp = (tonumber(init) or 0) + by, new_exp
    else
      n, exp = tonumber(cur), exp_or_err
      if not n then return nil, "not a number" end
      n = n + by
    end
    local ok, werr = write_record(self, key, n, exp)
    if not ok then return nil, werr end
    return n
  end)
end

--- Takes the lock `key` for `ttl` seconds (default 30), without blocking.
-- The lock is a record of its own (`lock:KEY`); an expired lock is free,
-- and the unlock of a holder whose lock expired spares the next holder.
-- @return unlock function, or nil, "locked" (or nil and err)
function _M:lock(key, ttl)
  contract.check_key(key)
  local lkey = "lock:" .. key
  local token = crypto.token(16)
  local ok, err = self:add(lkey, token, ttl or 30)
  if not ok then return nil, err == "exists" and "locked" or err end
  return function()
    return locked(self, function()
      if live(self, lkey, false) == token then os_remove(path_of(self, lkey)) end
      return true
    end)
  end
end

--- Removes expired records and temporary files that killed writers left.
-- @return true, or nil and err
function _M:sweep()
  local names, err = core.fs_list(self.dir)
  if not names then return nil, err end
  local now = self.clock()
  local lk, lerr = core.fs_lock(self.dir .. "/.lock")
  if not lk then return nil, lerr end
  for i = 1, #names do
    local name = names[i]
    local path = self.dir .. "/" .. name
    if str_sub(name, 1, 2) == "k." then
      if str_find(name, ".tmp.", 3, true) then
        local st = core.fs_stat(path)
        if st and st.mtime < now - STALE_TMP then os_remove(path) end
      else
        local value, exp = read_record(path)
        if value ~= nil and exp ~= 0 and exp <= now then os_remove(path) end
      end
    end
  end
  lk:unlock()
  return true
end

return _M
