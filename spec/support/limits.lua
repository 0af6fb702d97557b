--- Spec support for the rate limiter: a virtual clock and the start times
-- of a run of acquisitions.
--
--   local limits = require "support.limits"
--   local vc = limits.vclock()                 -- vc.clock, vc.sleep, vc.now
--   local starts = limits.run({ a, b }, 60, 0.01, vc)
--   limits.busiest_second(starts)              -- most starts within any 1 s
local M = {}

--- A virtual clock that only moves when someone sleeps (or sets `now`).
function M.vclock(start)
  local t = { now = start or 1700000000.0, slept = 0 }
  t.clock = function() return t.now end
  t.sleep = function(s) t.now = t.now + s; t.slept = t.slept + s end
  return t
end

--- Acquires and releases `n` times, taking the limiters of `list` in turn and
-- moving `vc` by `step` seconds after each; returns the start times.
function M.run(list, n, step, vc)
  local starts = {}
  for k = 1, n do
    local release = assert(list[(k - 1) % #list + 1]:acquire())
    starts[#starts + 1] = vc.now
    release()
    vc.now = vc.now + step
  end
  return starts
end

--- The largest number of `starts` within any window of one second.
function M.busiest_second(starts)
  local most = 0
  for i = 1, #starts do
    local n = 0
    for j = i, #starts do
      if starts[j] - starts[i] < 1.0 then n = n + 1 end
    end
    if n > most then most = n end
  end
  return most
end

return M
