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
-- backoff) yield too, and so does waiting on a `parallel.semaphore`, which
-- wakes the first waiter as soon as a permit is released. Inside nginx the
-- functions run as `ngx.thread`s (the ngx transport yields on its own) and a
-- semaphore is an `ngx.semaphore`.
--
-- Timers are kept in a binary heap and semaphore waiters in FIFO queues, so
-- thousands of waiting tasks cost the scheduler O(log n) per wake-up, not a
-- scan of every task.
--
-- A coroutine created by the function itself is not scheduled: requests
-- made from it block until they finish (correct, just not overlapping).
-- SCA flows keep no such coroutine: their polling sleeps yield here.
-- @module xs2a.parallel
local core = require "xs2a.core"

local co_create, co_resume, co_yield, co_running, co_status =
  coroutine.create, coroutine.resume, coroutine.yield, coroutine.running, coroutine.status
local select, type, pairs, next, setmetatable, tostring, tonumber =
  select, type, pairs, next, setmetatable, tostring, tonumber
local unpack = table.unpack or unpack -- luacheck: ignore 143
local floor, min, max = math.floor, math.min, math.max
local monotonic, core_sleep = core.monotonic, core.sleep

local _M = {}

-- coroutine -> scheduler that owns it
local owners = setmetatable({}, { __mode = "k" })

local WAIT_HTTP, SLEEP, WAIT_SEM = {}, {}, {}
local NONE = {}   -- "resume with no value" in the ready queue

local function block_sleep(s)
  if s > 0 then core_sleep(s * 1000) end
end

local function pack(...) return { n = select("#", ...), ... } end

--- The scheduler running the current coroutine, or nil.
function _M.current()
  local co = co_running()
  if not co then return nil end
  return owners[co]
end

-- nginx, when the current phase may yield (ngx.sleep, cosockets, semaphores)
local YIELDING_PHASES = { rewrite = true, access = true, content = true, timer = true,
  ssl_cert = true, ssl_session_fetch = true }
local function ngx_yieldable()
  local ngx = rawget(_G, "ngx")
  if ngx and ngx.get_phase and YIELDING_PHASES[ngx.get_phase()] then return ngx end
  return nil
end

--- Sleeps `s` seconds without blocking other work where possible: the
-- current scheduler, then nginx's `ngx.sleep`, then a blocking sleep.
function _M.sleep(s)
  s = tonumber(s) or 0
  if s < 0 then s = 0 end
  local sched = _M.current()
  if sched then return sched:sleep(s) end
  local ngx = ngx_yieldable()
  if ngx then return ngx.sleep(s) end
  return block_sleep(s)
end

------------------------------------------------------------------------------
-- timers: a binary min-heap of { at, co, waiter? }

local function heap_push(h, e)
  local i = #h + 1
  h[i] = e
  while i > 1 do
    local p = floor(i / 2)
    if h[p].at <= e.at then break end
    h[i], h[p] = h[p], e
    i = p
  end
end

local function heap_pop(h)
  local n = #h
  local top, last = h[1], h[n]
  h[n] = nil
  n = n - 1
  if n == 0 then return top end
  local i = 1
  while true do
    local c = 2 * i
    if c > n then break end
    if c + 1 <= n and h[c + 1].at < h[c].at then c = c + 1 end
    if h[c].at >= last.at then break end
    h[i] = h[c]
    i = c
  end
  h[i] = last
  return top
end

local Sched = {}
Sched.__index = Sched
Sched.__name = "xs2a.Scheduler"

-- makes the task of `co` runnable; it resumes with `value` (one value at
-- most: an HTTP result, a semaphore answer; NONE for nothing). The queue is
-- two arrays, so a wake-up allocates nothing.
local function ready(self, co, value)
  local task = self.tasks[co]
  if task then
    local n = self.nready + 1
    self.nready = n
    self.rtask[n] = task
    self.rvalue[n] = value == nil and NONE or value
  end
end

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
  heap_push(self.timers, { at = monotonic() + (tonumber(s) or 0), co = co })
  return co_yield(SLEEP)
end

local function after(self, task, ...)
  if co_status(task.co) == "dead" then
    self.results[task.index] = pack(...)
    self.tasks[task.co] = nil
    self.alive = self.alive - 1
    return
  end
  local _, what = ...
  if what ~= WAIT_HTTP and what ~= SLEEP and what ~= WAIT_SEM then
    -- a bare coroutine.yield() from user code: run it again later
    ready(self, task.co)
  end
end

local function step(self, task, value)
  if value == NONE then return after(self, task, co_resume(task.co)) end
  return after(self, task, co_resume(task.co, value))
end

-- wakes the timers that are due; a semaphore wait that timed out leaves
-- its queue and returns false
local function wake_timers(self, now)
  local h = self.timers
  while h[1] and h[1].at <= now do
    local e = heap_pop(h)
    local w = e.waiter
    if not w then
      ready(self, e.co)
    elseif not w.done then
      w.done = true
      w.sem.nwaiting = w.sem.nwaiting - 1
      ready(self, e.co, false)
    end
  end
end

local function fail_waiters(self, by_id, message)
  for id, co in pairs(by_id) do
    by_id[id] = nil
    self.nwait = self.nwait - 1
    ready(self, co, { err = message, code = "other" })
  end
end

-- one poll of `session`; wakes the tasks whose transfers finished
local function poll_one(self, session, by_id, wait_s)
  local ok, done = pcall(session.poll, session, floor(wait_s * 1000))
  if not ok or type(done) ~= "table" then
    -- the session failed or was closed: fail every waiter on it
    fail_waiters(self, by_id, "poll failed: " .. tostring(done))
    return
  end
  for i = 1, #done do
    local e = done[i]
    local co = by_id[e.id]
    if co then
      by_id[e.id] = nil
      self.nwait = self.nwait - 1
      ready(self, co, e)
    end
  end
  if #done == 0 and next(by_id) ~= nil then
    local pok, pending = pcall(session.pending, session)
    if pok and pending == 0 then fail_waiters(self, by_id, "transfer lost by the session") end
  end
end

local function poll_sessions(self, wait_s)
  local nsessions = 0
  for _, by_id in pairs(self.http) do
    if next(by_id) ~= nil then nsessions = nsessions + 1 end
  end
  local per = nsessions > 1 and min(wait_s, 0.01) or wait_s
  for session, by_id in pairs(self.http) do
    if next(by_id) ~= nil then poll_one(self, session, by_id, per) end
  end
end

-- Unties a finished scheduler from its coroutines. Timers of semaphore
-- waits that a release ended early are still in the heap, and they hold
-- their coroutines; `owners` holds the scheduler. Lua 5.1 and LuaJIT weak
-- tables have no ephemerons, so without this a scheduler and every task it
-- ran stayed alive for good (Lua 5.2+ collected them).
local function finish(self, cos)
  self.timers = {}
  for i = 1, #cos do owners[cos[i]] = nil end
end

local function run_plain(fns, n)
  local self = setmetatable({ http = setmetatable({}, { __mode = "k" }), timers = {},
    rtask = {}, rvalue = {}, nready = 0, results = {}, tasks = {}, alive = n, nwait = 0 }, Sched)
  local cos = {}
  for i = 1, n do
    local f = fns[i]
    local co = co_create(function() return f() end)
    cos[i] = co
    owners[co] = self
    self.tasks[co] = { co = co, index = i }
    ready(self, co)
  end
  while self.alive > 0 do
    -- run what is ready; tasks woken meanwhile run in the next round
    while self.nready > 0 do
      local tasks, values, count = self.rtask, self.rvalue, self.nready
      self.rtask, self.rvalue, self.nready = {}, {}, 0
      for i = 1, count do step(self, tasks[i], values[i]) end
    end
    if self.alive == 0 then break end
    local first = self.timers[1]
    local wait = first and max(0, first.at - monotonic()) or 1
    if self.nwait > 0 then
      poll_sessions(self, min(wait, 1))
    elseif first then
      block_sleep(wait)
    else
      -- every live task waits on something no task can give (a semaphore
      -- nobody releases): a deadlock
      finish(self, cos)
      error("xs2a.parallel: tasks are blocked on nothing", 0)
    end
    if self.timers[1] then wake_timers(self, monotonic()) end
  end
  finish(self, cos)
  return self.results
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
  local ngx = ngx_yieldable()
  if ngx and ngx.thread then return run_ngx(ngx, fns, n) end
  return run_plain(fns, n)
end

--- Like `run`, with a list of functions.
function _M.all(list)
  return _M.run(unpack(list, 1, #list))
end

------------------------------------------------------------------------------
-- Semaphores

local Sem = {}
Sem.__index = Sem
Sem.__name = "xs2a.Semaphore"

--- A counting semaphore with `n` permits for the tasks of this process
-- (inside nginx: of this worker, through `ngx.semaphore`).
-- `sem:acquire(timeout_s)` takes a permit, waiting at most `timeout_s`
-- seconds (default: forever): a task of an `xs2a.parallel` scheduler or an
-- nginx request yields while it waits, and the first waiter (FIFO) is woken
-- by the next `sem:release()`. Plain blocking code cannot be woken by
-- anyone else, so it only takes a free permit or waits out its timeout.
-- @return true, or false and "timeout"
function _M.semaphore(n)
  n = floor(tonumber(n) or 0)
  if n < 1 then error("xs2a.parallel.semaphore: needs at least one permit", 2) end
  local self = setmetatable({ count = n, size = n, queue = {}, head = 1, tail = 0, nwaiting = 0 }, Sem)
  return self
end

-- Inside an nginx worker (past init) a semaphore is an ngx.semaphore of
-- that worker, made on first use; elsewhere it is the queue above.
local function ngx_sem(self)
  local s = self.ngx_sem
  if s == nil then
    s = false
    local ngx = rawget(_G, "ngx")
    if ngx and ngx.get_phase and ngx.get_phase() ~= "init" then
      local ok, mod = pcall(require, "ngx.semaphore")
      if ok then s = mod.new(self.count) end
    end
    self.ngx_sem = s
  end
  return s or nil
end

function Sem:acquire(timeout)
  timeout = tonumber(timeout)
  local ns = ngx_sem(self)
  if ns then
    -- a phase that cannot yield cannot wait: it takes a free permit or none
    local ok = ns:wait(ngx_yieldable() and (timeout or 86400) or 0)
    if ok then return true end
    return false, "timeout"
  end
  local sched = _M.current()
  if self.count > 0 and self.nwaiting == 0 then
    self.count = self.count - 1
    return true
  end
  if not sched then
    -- nobody else runs while this thread blocks: wait out the timeout in
    -- case a permit comes back from elsewhere (another scheduler's task)
    local deadline = monotonic() + (timeout or 0)
    local delay = 0.001
    while self.count <= 0 do
      local left = deadline - monotonic()
      if left <= 0 then return false, "timeout" end
      block_sleep(min(delay, left))
      delay = min(delay * 2, 0.05)
    end
    self.count = self.count - 1
    return true
  end
  local co = co_running()
  local w = { co = co, sched = sched, sem = self, done = false }
  self.tail = self.tail + 1
  self.queue[self.tail] = w
  self.nwaiting = self.nwaiting + 1
  if timeout then heap_push(sched.timers, { at = monotonic() + timeout, co = co, waiter = w }) end
  local got = co_yield(WAIT_SEM)
  if got then return true end
  return false, "timeout"
end

--- Returns a permit: the first task still waiting gets it and is woken.
function Sem:release()
  local ns = self.ngx_sem
  if ns then return ns:post(1) end
  local q = self.queue
  while self.head <= self.tail do
    local w = q[self.head]
    q[self.head] = nil
    self.head = self.head + 1
    if not w.done then
      w.done = true
      self.nwaiting = self.nwaiting - 1
      ready(w.sched, w.co, true)
      return
    end
  end
  self.head, self.tail = 1, 0
  if self.count < self.size then self.count = self.count + 1 end
end

--- Permits free right now, and tasks waiting.
function Sem:state()
  local ns = self.ngx_sem
  if ns then return ns:count(), 0 end
  return self.count, self.nwaiting
end

return setmetatable(_M, { __call = function(_, ...) return _M.run(...) end })
