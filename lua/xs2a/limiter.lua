--- Client-side rate limiter: requests per second, per hour, and in flight.
--
-- State lives in the client's store (see the store contract), so an nginx
-- shared-dict store makes all workers of a server share one budget, and a
-- Redis store all hosts.
--
-- * Per second: a sliding window. At most `per_second` requests start in
--   any window of `1 + margin` seconds. The bank counts arrivals per
--   second; the small `margin` (default 0.025 s, so 97.6 % of the bank's
--   rate) absorbs the difference in latency between two requests that are
--   `per_second` starts apart. Each acquire takes a ticket (`incr` of
--   `xs2a:rl:q:<id>`), reads the start times of tickets k-1 and
--   k-per_second from a ring of `per_second` keys (`xs2a:rl:r:<id>:<slot>`,
--   one MGET on Redis), writes its own start time, and sleeps until then:
--   three store round trips, no retries, and first come first served across
--   every worker and host sharing the store. Starts never go backwards in ticket
--   order, so any window holds at most `per_second` of them.
-- * Per hour: windowed counters of 5-minute slots (refuses with
--   `retry_after` instead of waiting).
-- * Concurrency: a semaphore per store and limiter id in this process (an
--   `xs2a.parallel.semaphore`: a released lease wakes the first waiting
--   task at once; an `ngx.semaphore` per nginx worker). A store shared
--   between processes (shdict, Redis, files) also holds `concurrent` lease
--   keys (`xs2a:rl:c:<id>:<i>`, `add` with a TTL, deleted on release), so
--   the limit holds across workers and hosts and a crashed holder's lease
--   expires on its own.
-- * `frequencyPerDay`: `limiter:frequency(consent_id, resource, max)` counts
--   AIS calls without the PSU present per consent, resource and UTC day.
--
-- `acquire()` waits by calling `opts.sleep(seconds)` (the client passes a
-- sleep that yields inside `xs2a.parallel` and nginx). It gives up with a
-- `kind = "limit"` error when the wait would exceed `max_wait` seconds.
-- @module xs2a.limiter
local core = require "xs2a.core"
local errors = require "xs2a.errors"
local parallel = require "xs2a.parallel"

local floor, max, ceil, random = math.floor, math.max, math.ceil, math.random
local tostring, tonumber, type, setmetatable = tostring, tonumber, type, setmetatable
local str_format, str_match = string.format, string.match

local _M = {}
local Limiter = {}
Limiter.__index = Limiter
Limiter.__name = "xs2a.Limiter"

local DEFAULT_MARGIN = 0.025
local HOUR = { period = 3600, slot = 300, slots = 13 }   -- window 60 .. 65 min

-- one concurrency semaphore per (store, limiter id) in this process
local gates = setmetatable({}, { __mode = "k" })

local function gate_for(store, id, n)
  local by_id = gates[store]
  if not by_id then
    by_id = {}
    gates[store] = by_id
  end
  local g = by_id[id]
  if not g or g.size ~= n then
    g = parallel.semaphore(n)
    by_id[id] = g
  end
  return g
end

--- Creates a limiter.
-- @param opts `{ store, id (e.g. the TPP org id), per_second, per_hour,
--   concurrent, margin = s (default 0.025), headroom (default 1),
--   sleep = function(s), clock = function() -> s, lease_ttl = s,
--   max_wait = s (default 30) }`; a limit that is nil/false is not
--   enforced. `headroom` scales the per-second budget (0.9 aims at 90 % of
--   it); `margin` lengthens the one-second window.
function _M.new(opts)
  assert(type(opts) == "table" and opts.store, "limiter needs a store")
  local headroom = opts.headroom or 1
  if type(headroom) ~= "number" or headroom <= 0 or headroom > 1 then
    error("limiter headroom must be a number in (0, 1]", 2)
  end
  local margin = opts.margin or DEFAULT_MARGIN
  if type(margin) ~= "number" or margin < 0 or margin > 1 then
    error("limiter margin must be a number of seconds in [0, 1]", 2)
  end
  local per_second = opts.per_second or nil
  if per_second then per_second = max(1, floor(per_second * headroom)) end
  local id = tostring(opts.id or "default"):gsub("[^%w%-_.]", "_")
  local concurrent = opts.concurrent and max(1, floor(opts.concurrent)) or nil
  local store = opts.store
  local self = setmetatable({
    store = store,
    id = id,
    per_second = per_second,
    window = 1 + margin,
    per_hour = opts.per_hour or nil,
    concurrent = concurrent,
    sleep = opts.sleep or parallel.sleep,
    clock = opts.clock or core.now,
    lease_ttl = opts.lease_ttl or 120,
    max_wait = opts.max_wait or 30,
    -- a store of this process only needs no lease keys: the semaphore is exact
    shared = not store.process_local,
    seq_key = "xs2a:rl:q:" .. id,
    ring_prefix = "xs2a:rl:r:" .. id .. ":",
    lease_prefix = "xs2a:rl:c:" .. id .. ":",
  }, Limiter)
  if concurrent then self.gate = gate_for(store, id, concurrent) end
  return self
end

local function limit_error(text, retry_after, code)
  return errors.new("limit", { code = code or "RATE_LIMITED", text = text, retry_after = retry_after,
    retryable = true })
end

------------------------------------------------------------------------------
-- per second: the ticket ring

local function ring_key(self, j)
  return self.ring_prefix .. floor(j % self.per_second)
end

-- start time of ticket j from the value `v` of its ring slot (0 when it is
-- older than the ring or unknown), re-reading while ticket j was taken but
-- its holder has not written its start yet (another worker or host, between
-- its two store calls)
local function start_of(self, j, v)
  if j < 1 then return 0 end
  for _ = 1, 50 do
    if v == nil then return 0 end        -- expired: long ago
    local tk, t = str_match(tostring(v), "^(%d+)|(.+)$")
    tk, t = tonumber(tk), tonumber(t)
    if not tk or not t then return 0 end
    if tk >= j then return t end          -- ticket j (or a later one: a later start)
    self.sleep(0.001)
    v = self.store:get(ring_key(self, j))
  end
  return self.clock()                     -- its holder died: count it as now
end

-- @return seconds to wait (>= 0) | nil, error (max_wait exceeded; the slot
-- is claimed all the same, which only wastes it)
local function take_second(self, started, max_wait)
  local store = self.store
  local n = self.per_second
  local k = store:incr(self.seq_key, 1, 0, 0)
  if not k then return 0 end              -- a store that cannot count must not stop traffic
  -- the slots of tickets k - n and k - 1: one round trip where the store
  -- reads many keys at once (Redis MGET)
  local old, prev
  if store.get_many then
    local got = store:get_many{ ring_key(self, k - n), ring_key(self, k - 1) }
    old, prev = got and got[1], got and got[2]
  else
    old, prev = store:get(ring_key(self, k - n)), store:get(ring_key(self, k - 1))
  end
  local now = self.clock()
  local at = max(now, start_of(self, k - n, old) + self.window, start_of(self, k - 1, prev))
  store:set(ring_key(self, k), str_format("%d|%.6f", k, at), ceil(self.window + max_wait + 60))
  local wait = at - now
  if now + wait - started > max_wait then
    return nil, limit_error("per-second request limit (" .. n .. ") wait too long", wait)
  end
  return wait
end

------------------------------------------------------------------------------
-- per hour: windowed counters

local function hour_key(self, n)
  return "xs2a:rl:h:" .. self.id .. ":" .. n
end

-- @return true | false, seconds until a unit frees
local function take_hour(self, now)
  local w, limit = HOUR, self.per_hour
  local slot = floor(now / w.slot)
  local key = hour_key(self, slot)
  local ttl = w.slot * (w.slots + 1)
  local store = self.store
  local v = store:incr(key, 1, 0, ttl)
  if not v then return true end
  local earlier
  if store.get_many then
    local keys = {}
    for i = w.slots - 1, 1, -1 do keys[#keys + 1] = hour_key(self, slot - i) end
    earlier = store:get_many(keys)
  end
  local sum, oldest_used = 0, nil
  for i = w.slots - 1, 0, -1 do
    local n
    if i == 0 then
      n = v
    elseif earlier then
      n = tonumber(earlier[w.slots - i] or 0) or 0
    else
      n = tonumber(store:get(hour_key(self, slot - i)) or 0) or 0
    end
    if n > 0 and not oldest_used then oldest_used = slot - i end
    sum = sum + n
  end
  if sum <= limit then return true end
  store:incr(key, -1, 0, ttl)
  local leave = ((oldest_used or slot) + w.slots) * w.slot
  return false, max(leave - now, 1)
end

local function give_hour_back(self, now)
  self.store:incr(hour_key(self, floor(now / HOUR.slot)), -1, 0, HOUR.slot * (HOUR.slots + 1))
end

------------------------------------------------------------------------------
-- concurrency

-- a lease key in the shared store; expected O(1) tries while there is room
local function take_lease(self)
  local n = self.concurrent
  local start = random(1, n)
  local token = str_format("%.6f:%d", self.clock(), random(1, 2 ^ 30))
  for j = 0, n - 1 do
    local key = self.lease_prefix .. ((start + j - 1) % n + 1)
    if self.store:add(key, token, self.lease_ttl) then return key, token end
  end
  return nil
end

-- the lease: the local semaphore, then (shared stores) a lease key
-- @return release function | nil, error
local function acquire_concurrency(self, started, max_wait)
  local n = self.concurrent
  local gate = self.gate
  local ok = gate:acquire(max(0, max_wait - (self.clock() - started)))
  if not ok then
    return nil, limit_error("too many requests in flight (limit " .. n .. ")", nil, "CONCURRENCY_LIMIT")
  end
  local key, token
  if self.shared then
    -- other workers or hosts hold leases too: poll for a free key
    local delay = 0.002
    while true do
      key, token = take_lease(self)
      if key then break end
      if self.clock() - started > max_wait then
        gate:release()
        return nil, limit_error("too many requests in flight (limit " .. n .. ")", nil, "CONCURRENCY_LIMIT")
      end
      self.sleep(delay + random() * delay)
      delay = delay < 0.05 and delay * 2 or 0.05
    end
  end
  local released = false
  return function()
    if released then return end
    released = true
    if key and self.store:get(key) == token then self.store:delete(key) end
    gate:release()
  end
end

local function nothing() end

--- Takes a concurrency lease and rate budget; waits when needed.
-- @return release function (call once when the request has finished), or
--   nil and a limit error when the wait would exceed `max_wait`
function Limiter:acquire(deadline_s)
  local started = self.clock()
  local max_wait = deadline_s or self.max_wait
  local release = nothing
  -- concurrency first: waiting for a lease must not burn rate budget
  if self.concurrent then
    local err
    release, err = acquire_concurrency(self, started, max_wait)
    if not release then return nil, err end
  end
  local now = self.clock()
  if self.per_hour then
    local ok, wait = take_hour(self, now)
    if not ok then
      release()
      return nil, limit_error("hourly request limit (" .. self.per_hour .. ") reached", ceil(wait))
    end
  end
  if self.per_second then
    local wait, err = take_second(self, started, max_wait)
    if not wait then
      if self.per_hour then give_hour_back(self, now) end
      release()
      return nil, err
    end
    if wait > 0 then self.sleep(wait) end
  end
  return release
end

local function utc_day(t)
  return os.date("!%Y-%m-%d", floor(t))
end

--- Counts one access without the PSU present for `consent_id` and
-- `resource` today (UTC). Refuses when `max` accesses were made already.
-- @return true, or nil and an error (kind "limit", code "ACCESS_EXCEEDED")
-- and an undo function on success (call it when the request never reached the bank)
function Limiter:frequency(consent_id, resource, max_per_day)
  if not max_per_day then return true, nothing end
  local now = self.clock()
  local day = utc_day(now)
  local key = "xs2a:freq:" .. tostring(consent_id) .. ":" .. tostring(resource) .. ":" .. day
  local v = self.store:incr(key, 1, 0, 2 * 86400)
  if not v then return true, nothing end
  if v > max_per_day then
    self.store:incr(key, -1, 0, 2 * 86400)
    local tomorrow = (floor(now / 86400) + 1) * 86400
    return nil, errors.new("limit", {
      code = "ACCESS_EXCEEDED",
      text = "frequencyPerDay (" .. max_per_day .. ") of this consent is used up for today on this resource",
      retry_after = ceil(tomorrow - now),
      retryable = false,
    })
  end
  local undone = false
  return true, function()
    if not undone then
      undone = true
      self.store:incr(key, -1, 0, 2 * 86400)
    end
  end
end

return _M
