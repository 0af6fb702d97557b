--- Run functions concurrently as coroutines whose HTTP requests overlap.
--
--     local results = xs2a.parallel(
--       function() return consent:balances(a) end,
--       function() return consent:balances(b) end)
--     -- results[i] is what `table.pack(pcall(f_i))` would give:
--     -- { true, value1, value2, ..., n = k } or { false, error, n = 2 }
--
-- In plain Lua, each function runs in a coroutine driven by a scheduler; the
-- curl transport, when `parallel.current()` returns a scheduler, submits its
-- transfer to the session's multi handle and calls
-- `sched:wait_http(session, id)`, which yields until `session:poll()` reports
-- that transfer. Sleeps (`parallel.sleep`, the limiter's waits, retry
-- backoff) yield too. Inside nginx the functions run as `ngx.thread`s (the
-- ngx transport yields on its own).
--
-- A coroutine created by the function itself (for example inside a flow) is
-- not scheduled: requests made from it block until they finish (correct, just
-- not overlapping).
-- @module xs2a.parallel
local co_create, co_resume, co_yield, co_running, co_status =
  coroutine.create, coroutine.resume, coroutine.yield, coroutine.running, coroutine.status
local select, type, pairs, setmetatable, unpack = select, type, pairs, setmetatable, table.unpack or unpack

local _M = {}

-- coroutine -> scheduler that owns it
local owners = setmetatable({}, { __mode = "k" })

local WAIT_HTTP, SLEEP = {}, {}

local core = require "xs2a.core"
local function get_core() return core end

local function clock()
  local c = get_core()
  if c and c.monotonic then return c.monotonic() end
  return os.clock()
end

local function block_sleep(s)
  if s <= 0 then return end
  local c = get_core()
  if c and c.sleep then return c.sleep(s * 1000) end
  local t = os.clock() + s
  repeat until os.clock() >= t
end

local function pack(...) return { n = select("#", ...), ... } end

--- The scheduler running the current coroutine, or nil.
function _M.current()
  local co = co_running()
  if not co then return nil end
  return owners[co]
end

--- Sleeps `s` seconds without blocking other work where possible: the
-- current scheduler, then nginx's `ngx.sleep`, then a blocking sleep.
function _M.sleep(s)
  s = tonumber(s) or 0
  if s < 0 then s = 0 end
  local sched = _M.current()
  if sched then return sched:sleep(s) end
  local ngx = rawget(_G, "ngx")
  if ngx and ngx.sleep and ngx.get_phase then
    local phase = ngx.get_phase()
    if phase ~= "init" and phase ~= "init_worker" and phase ~= "log" and phase ~= "header_filter"
        and phase ~= "body_filter" and phase ~= "set" then
      return ngx.sleep(s)
    end
  end
  return block_sleep(s)
end

local Sched = {}
Sched.__index = Sched
Sched.__name = "xs2a.Scheduler"

--- Called by a transport from inside a scheduled coroutine after
-- `session:submit(req)` returned `id`. Yields until the transfer finishes.
-- @return res | nil, message, code (the same values as `session:request`)
function Sched:wait_http(session, id)
  local co = co_running()
  if owners[co] ~= self then
    error("wait_http called outside the scheduler's coroutines", 2)
  end
  local by_id = self.http[session]
  if not by_id then
    by_id = {}
    self.http[session] = by_id
  end
  by_id[id] = co
  self.nwait = self.nwait + 1
  local entry = co_yield(WAIT_HTTP)
  return entry.res, entry.err, entry.code
end

--- Yields the current coroutine for `s` seconds.
function Sched:sleep(s)
  local co = co_running()
  if owners[co] ~= self then return block_sleep(s) end
  self.sleepers[#self.sleepers + 1] = { co = co, at = clock() + (tonumber(s) or 0) }
  return co_yield(SLEEP)
end

local function step(self, task, ...)
  local r = pack(co_resume(task.co, ...))
  if co_status(task.co) == "dead" then
    self.results[task.index] = r
    self.alive = self.alive - 1
    return
  end
  local what = r[2]
  if what ~= WAIT_HTTP and what ~= SLEEP then
    -- a bare coroutine.yield() from user code: run it again later
    self.ready[#self.ready + 1] = { task = task, args = { n = 0 } }
  end
end

local function task_of(self, co)
  return self.tasks[co]
end

local function wake_sleepers(self, now)
  local keep = {}
  for _, s in ipairs(self.sleepers) do
    if s.at <= now then
      self.ready[#self.ready + 1] = { task = task_of(self, s.co), args = { n = 0 } }
    else
      keep[#keep + 1] = s
    end
  end
  self.sleepers = keep
end

local function next_wake(self)
  local at
  for _, s in ipairs(self.sleepers) do
    if not at or s.at < at then at = s.at end
  end
  return at
end

local function poll_sessions(self, wait_s)
  local sessions = {}
  for session, by_id in pairs(self.http) do
    if next(by_id) ~= nil then sessions[#sessions + 1] = session end
  end
  local per = #sessions > 1 and math.min(wait_s, 0.01) or wait_s
  for _, session in ipairs(sessions) do
    local by_id = self.http[session]
    local ok, done = pcall(session.poll, session, math.floor(per * 1000))
    if not ok or type(done) ~= "table" then
      -- the session failed or was closed: fail every waiter on it
      for id, co in pairs(by_id) do
        by_id[id] = nil
        self.nwait = self.nwait - 1
        self.ready[#self.ready + 1] = { task = task_of(self, co),
          args = { n = 1, { err = "poll failed: " .. tostring(done), code = "other" } } }
      end
    else
      for _, e in ipairs(done) do
        local co = by_id[e.id]
        if co then
          by_id[e.id] = nil
          self.nwait = self.nwait - 1
          self.ready[#self.ready + 1] = { task = task_of(self, co), args = { n = 1, e } }
        end
      end
      if #done == 0 and next(by_id) ~= nil then
        local pok, pending = pcall(session.pending, session)
        if pok and pending == 0 then
          for id, co in pairs(by_id) do
            by_id[id] = nil
            self.nwait = self.nwait - 1
            self.ready[#self.ready + 1] = { task = task_of(self, co),
              args = { n = 1, { err = "transfer lost by the session", code = "other" } } }
          end
        end
      end
    end
  end
end

local function run_plain(fns, n)
  local self = setmetatable({ http = setmetatable({}, { __mode = "k" }), sleepers = {}, ready = {},
    results = {}, tasks = {}, alive = n, nwait = 0 }, Sched)
  for i = 1, n do
    local f = fns[i]
    local co = co_create(function() return f() end)
    owners[co] = self
    local task = { co = co, index = i }
    self.tasks[co] = task
    self.ready[#self.ready + 1] = { task = task, args = { n = 0 } }
  end
  while self.alive > 0 do
    while #self.ready > 0 do
      local list = self.ready
      self.ready = {}
      for _, item in ipairs(list) do
        step(self, item.task, unpack(item.args, 1, item.args.n))
      end
    end
    if self.alive == 0 then break end
    local now = clock()
    local at = next_wake(self)
    local wait = at and math.max(0, at - now) or 1
    if self.nwait > 0 then
      poll_sessions(self, math.min(wait, 1))
    elseif at then
      block_sleep(wait)
    else
      -- every live task yielded to nothing we know: should not happen
      error("xs2a.parallel: tasks are blocked on nothing", 0)
    end
    wake_sleepers(self, clock())
  end
  return self.results
end

local function in_ngx_thread_phase()
  local ngx = rawget(_G, "ngx")
  if not (ngx and ngx.thread and ngx.get_phase) then return nil end
  local phase = ngx.get_phase()
  if phase == "rewrite" or phase == "access" or phase == "content" or phase == "timer"
      or phase == "ssl_cert" or phase == "ssl_session_fetch" then
    return ngx
  end
  return nil
end

local function run_ngx(ngx, fns, n)
  local threads, results = {}, {}
  for i = 1, n do
    local f = fns[i]
    local t, err = ngx.thread.spawn(function() return f() end)
    threads[i] = t or false
    if not t then results[i] = { false, "ngx.thread.spawn: " .. tostring(err), n = 2 } end
  end
  for i = 1, n do
    if threads[i] then
      results[i] = pack(ngx.thread.wait(threads[i]))
    end
  end
  return results
end

--- Runs functions concurrently and returns their results.
-- @param ... functions (no arguments; use closures)
-- @return list of `{ ok, ... , n = }` tables, one per function, in order
function _M.run(...)
  local n = select("#", ...)
  local fns = { ... }
  for i = 1, n do
    if type(fns[i]) ~= "function" then error("xs2a.parallel: argument " .. i .. " is not a function", 2) end
  end
  local ngx = in_ngx_thread_phase()
  if ngx then return run_ngx(ngx, fns, n) end
  return run_plain(fns, n)
end

--- Like `run`, with a list of functions.
function _M.all(list)
  return _M.run(unpack(list, 1, #list))
end

return setmetatable(_M, { __call = function(_, ...) return _M.run(...) end })
