--- Client-side rate limiter: requests per second, per hour, and in flight.
--
-- State lives in the client's store (see the store contract), so an nginx
-- shared-dict store makes all workers of a server share one budget.
--
-- * Rate: sliding windows built from short slots, plus pacing (a slot of
--   0.1 s takes at most its share of the per-second limit, rounded up). Each start of a request
--   increments the counter of the current slot (`xs2a:rl:s:<id>:<slot>`) and
--   then sums the slots covering the window; when the sum exceeds the limit
--   the increment is taken back and the caller waits. Increment-then-check
--   never admits more than the limit, even with many workers. The window
--   looked at is a little longer than the limit's period (1.1-1.2 s for the
--   per-second limit) so that latency jitter cannot push more than the limit
--   into one second at the bank.
-- * Concurrency: `concurrent` lease keys (`xs2a:rl:c:<id>:<i>`), taken with
--   `add` and a TTL (the request timeout plus a margin), deleted on release.
--   A crashed holder's lease expires on its own.
-- * `frequencyPerDay`: `limiter:frequency(consent_id, resource, max)` counts
--   AIS calls without the PSU present per consent, resource and UTC day.
--
-- `acquire()` waits by calling `opts.sleep(seconds)` (the client passes a
-- sleep that yields inside `xs2a.parallel` and nginx). It gives up with a
-- `kind = "limit"` error when the wait would exceed `max_wait` seconds.
-- @module xs2a.limiter
local date = require "xs2a.net.date"
local errors = require "xs2a.errors"

local floor, max, min, random = math.floor, math.max, math.min, math.random
local tostring, type, setmetatable = tostring, type, setmetatable

local _M = {}
local Limiter = {}
Limiter.__index = Limiter
Limiter.__name = "xs2a.Limiter"

local SECOND = { period = 1, slot = 0.1, slots = 12, pace = true }   -- window 1.1 .. 1.2 s
local HOUR = { period = 3600, slot = 300, slots = 13, pace = false } -- window 60 .. 65 min

--- Creates a limiter.
-- @param opts `{ store, id (e.g. the TPP org id), per_second, per_hour,
--   concurrent, headroom (default 0.9), sleep = function(s), clock = function() -> s,
--   lease_ttl = s, max_wait = s (default 30) }`; a limit that is nil/false is
--   not enforced. `headroom` scales the per-second budget: the bank counts
--   arrivals, and latency jitter moves requests between its seconds, so
--   aiming just under its limit keeps a busy client from ever meeting a 429
--   (1 = aim at the limit itself).
function _M.new(opts)
  assert(type(opts) == "table" and opts.store, "limiter needs a store")
  local headroom = opts.headroom or 0.9
  if type(headroom) ~= "number" or headroom <= 0 or headroom > 1 then
    error("limiter headroom must be a number in (0, 1]", 2)
  end
  local per_second = opts.per_second or nil
  if per_second then per_second = math.max(1, floor(per_second * headroom)) end
  local self = setmetatable({
    store = opts.store,
    id = tostring(opts.id or "default"):gsub("[^%w%-_.]", "_"),
    per_second = per_second,
    per_hour = opts.per_hour or nil,
    concurrent = opts.concurrent or nil,
    sleep = opts.sleep or require("xs2a.parallel").sleep,
    clock = opts.clock or date.now,
    lease_ttl = opts.lease_ttl or 120,
    max_wait = opts.max_wait or 30,
  }, Limiter)
  return self
end

local function slot_key(self, kind, n)
  return "xs2a:rl:" .. kind .. ":" .. self.id .. ":" .. n
end

-- Tries to take one unit in a windowed counter.
-- @return true | false, seconds to wait
local function take(self, kind, w, limit, now)
  local slot = floor(now / w.slot)
  local key = slot_key(self, kind, slot)
  local ttl = math.ceil(w.slot * (w.slots + 1))
  local v = self.store:incr(key, 1, 0, ttl)
  if not v then return true end -- a store that cannot count must not stop traffic
  -- pacing: no slot takes more than its share, so a burst is spread over
  -- the period instead of queueing at the bank (where arrival jitter would
  -- push part of it into the next second)
  if w.pace and v > math.max(1, math.ceil(limit * w.slot / w.period)) then
    self.store:incr(key, -1, 0, ttl)
    return false, max((slot + 1) * w.slot - now, 0.002)
  end
  -- the earlier slots of the window: one round trip when the store can
  -- read many keys at once (Redis MGET), else one get per slot
  local earlier
  if self.store.get_many then
    local keys = {}
    for i = w.slots - 1, 1, -1 do keys[#keys + 1] = slot_key(self, kind, slot - i) end
    earlier = self.store:get_many(keys)
  end
  local sum = 0
  local oldest_used
  for i = w.slots - 1, 0, -1 do
    local n
    if i == 0 then
      n = v
    elseif earlier then
      n = tonumber(earlier[w.slots - i] or 0) or 0
    else
      n = tonumber(self.store:get(slot_key(self, kind, slot - i)) or 0) or 0
    end
    if n > 0 and not oldest_used then oldest_used = slot - i end
    sum = sum + n
  end
  if sum <= limit then return true end
  self.store:incr(key, -1, 0, ttl)
  -- the oldest slot leaves the window when the current slot moves past it
  local leave = ((oldest_used or slot) + w.slots) * w.slot
  return false, max(leave - now, 0.005)
end

local function limit_error(text, retry_after, code)
  return errors.new("limit", { code = code or "RATE_LIMITED", text = text, retry_after = retry_after,
    retryable = true })
end

--- Takes a concurrency lease and rate budget; waits when needed.
-- @return release function (call once when the request has finished), or
--   nil and a limit error when the wait would exceed `max_wait`
function Limiter:acquire(deadline_s)
  local started = self.clock()
  local max_wait = deadline_s or self.max_wait
  local release = function() end
  -- concurrency first: waiting for a lease must not burn rate budget
  if self.concurrent then
    local n = floor(self.concurrent)
    local delay = 0.005
    while true do
      local start, got = random(1, n), false
      for j = 0, n - 1 do
        local i = (start + j - 1) % n + 1
        local key = slot_key(self, "c", i)
        local token = tostring(self.clock()) .. ":" .. tostring(random())
        if self.store:add(key, token, self.lease_ttl) then
          local released = false
          release = function()
            if released then return end
            released = true
            if self.store:get(key) == token then self.store:delete(key) end
          end
          got = true
          break
        end
      end
      if got then break end
      if self.clock() - started > max_wait then
        return nil, limit_error("too many requests in flight (limit " .. n .. ")", nil, "CONCURRENCY_LIMIT")
      end
      self.sleep(delay)
      delay = min(delay * 2, 0.1)
    end
  end
  while true do
    local now = self.clock()
    local ok, wait = true, nil
    if self.per_hour then
      ok, wait = take(self, "h", HOUR, self.per_hour, now)
      if not ok then
        release()
        return nil, limit_error("hourly request limit (" .. self.per_hour .. ") reached", math.ceil(wait))
      end
    end
    if self.per_second then
      ok, wait = take(self, "s", SECOND, self.per_second, now)
      if not ok and self.per_hour then
        -- give the hour unit back: we will take it again after waiting
        self.store:incr(slot_key(self, "h", floor(now / HOUR.slot)), -1, 0, HOUR.slot * (HOUR.slots + 1))
      end
    end
    if ok then return release end
    if self.clock() + wait - started > max_wait then
      release()
      return nil, limit_error("per-second request limit (" .. self.per_second .. ") wait too long", wait)
    end
    self.sleep(wait + random() * 0.01)
  end
end

local function utc_day(t)
  return os.date("!%Y-%m-%d", floor(t))
end

--- Counts one access without the PSU present for `consent_id` and
-- `resource` today (UTC). Refuses when `max` accesses were made already.
-- @return true, or nil and an error (kind "limit", code "ACCESS_EXCEEDED")
-- and an undo function on success (call it when the request never reached the bank)
function Limiter:frequency(consent_id, resource, max_per_day)
  if not max_per_day then return true, function() end end
  local now = self.clock()
  local day = utc_day(now)
  local key = "xs2a:freq:" .. tostring(consent_id) .. ":" .. tostring(resource) .. ":" .. day
  local v = self.store:incr(key, 1, 0, 2 * 86400)
  if not v then return true, function() end end
  if v > max_per_day then
    self.store:incr(key, -1, 0, 2 * 86400)
    local tomorrow = (floor(now / 86400) + 1) * 86400
    return nil, errors.new("limit", {
      code = "ACCESS_EXCEEDED",
      text = "frequencyPerDay (" .. max_per_day .. ") of this consent is used up for today on this resource",
      retry_after = math.ceil(tomorrow - now),
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
