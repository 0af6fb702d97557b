--- Standing-order calendar: the execution dates of a periodic payment
-- (frequency, dayOfExecution, monthsOfExecution, executionRule, endDate).
-- Pure functions; the payment module runs what falls due.
local util = require "sandbox.util"

local _M = {}

--- The frequencies Berlin Group names, as a step in days or months.
local FREQUENCIES = {
  Daily = { days = 1 }, Weekly = { days = 7 }, EveryTwoWeeks = { days = 14 },
  Monthly = { months = 1 }, EveryTwoMonths = { months = 2 }, Quarterly = { months = 3 },
  SemiAnnual = { months = 6 }, Annual = { months = 12 }, MonthlyVariable = { variable = true },
}
_M.FREQUENCIES = FREQUENCIES

local function ymd(s)
  local y, m, d = s:match("^(%d+)%-(%d+)%-(%d+)$")
  return tonumber(y), tonumber(m), tonumber(d)
end

local function days_in_month(y, m)
  local nd = m == 12 and util.parse_date(string.format("%04d-01-01", y + 1))
    or util.parse_date(string.format("%04d-%02d-01", y, m + 1))
  return tonumber(os.date("!%d", nd - 86400))
end

local function date_of(y, m, d)
  local dim = days_in_month(y, m)
  if d > dim then d = dim end
  return string.format("%04d-%02d-%02d", y, m, d)
end

-- weekend days move to the next (following) or previous (preceding) business day
local function business_day(date, rule)
  local t = util.parse_date(date)
  local wday = tonumber(os.date("!%w", t))  -- 0 = Sunday
  if wday ~= 0 and wday ~= 6 then return date end
  if rule == "preceding" then
    t = t - (wday == 6 and 1 or 2) * 86400
  else
    t = t + (wday == 6 and 2 or 1) * 86400
  end
  return util.iso_date(t)
end

--- Execution dates of a standing order (at most `n`, from startDate on).
function _M.dates(b, n)
  local out = {}
  local f = FREQUENCIES[b.frequency]
  if not f then return out end
  local sy, sm, sd = ymd(b.startDate)
  local day = tonumber(b.dayOfExecution) or sd
  local function push(date)
    if b.endDate and date > b.endDate then return false end
    if date >= b.startDate then out[#out + 1] = business_day(date, b.executionRule) end
    return #out < n
  end
  if f.days then
    local t = util.parse_date(b.startDate)
    for i = 0, 10 * n do
      if not push(util.iso_date(t + i * f.days * 86400)) then break end
    end
  else
    local months = {}
    if f.variable then
      for _, m in ipairs(b.monthsOfExecution or {}) do months[tonumber(m)] = true end
    end
    local step = f.months or 1
    local y, m = sy, sm
    for _ = 1, 24 * n do
      if not f.variable or months[m] then
        if not push(date_of(y, m, day)) then break end
      end
      m = m + step
      while m > 12 do m, y = m - 12, y + 1 end
    end
  end
  return out
end


return _M
