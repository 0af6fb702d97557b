--- Dates and clocks: HTTP dates, ISO 8601 date-times, the wall clock.
-- @module xs2a.net.date
local core = require "xs2a.core"

local type, tonumber, rawget = type, tonumber, rawget
local str_format, str_match = string.format, string.match
local os_date = os.date
local floor = math.floor

local _M = {}

local DAYS = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" }
local MONTHS = { "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" }
local MONTH_NO = {}
for i, m in ipairs(MONTHS) do MONTH_NO[m] = i end

-- days since 1970-01-01 of a civil date (proleptic Gregorian)
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

--- Epoch seconds of a UTC date-time.
function _M.timegm(y, mo, d, h, mi, s)
  return days_from_civil(y, mo, d) * 86400 + (h or 0) * 3600 + (mi or 0) * 60 + (s or 0)
end
local timegm = _M.timegm

--- Parses an HTTP-date (IMF-fixdate, RFC 850 or asctime) to epoch seconds.
function _M.parse_http(s)
  if type(s) ~= "string" then return nil end
  local d, mon, y, h, mi, sec = str_match(s, "^%a+, (%d%d?) (%a%a%a) (%d%d%d%d) (%d%d):(%d%d):(%d%d) GMT$")
  if not d then
    d, mon, y, h, mi, sec = str_match(s, "^%a+, (%d%d)%-(%a%a%a)%-(%d%d) (%d%d):(%d%d):(%d%d) GMT$")
    if y then y = tonumber(y) + (tonumber(y) < 70 and 2000 or 1900) end
  end
  if not d then
    mon, d, h, mi, sec, y = str_match(s, "^%a+ (%a%a%a) +(%d%d?) (%d%d):(%d%d):(%d%d) (%d%d%d%d)$")
  end
  if not d or not MONTH_NO[mon] then return nil end
  return timegm(tonumber(y), MONTH_NO[mon], tonumber(d), tonumber(h), tonumber(mi), tonumber(sec))
end

local last_sec, last_http          -- the current second's text, made once

--- Formats epoch seconds (default: now) as an IMF-fixdate
-- (`Sun, 06 Nov 1994 08:49:37 GMT`), locale independent.
function _M.http(t)
  if t == nil then
    local sec = os.time()
    if sec ~= last_sec then
      last_http, last_sec = _M.http(sec), sec
    end
    return last_http
  end
  local u = os_date("!*t", t)
  return str_format("%s, %02d %s %04d %02d:%02d:%02d GMT", DAYS[u.wday], u.day, MONTHS[u.month], u.year,
    u.hour, u.min, u.sec)
end

--- Parses an ISO 8601 date-time (`2024-05-01T10:00:00Z`, a fraction and a
-- `+hh:mm` offset allowed) to epoch seconds.
function _M.parse_iso(s)
  if type(s) ~= "string" then return nil end
  local y, mo, d, h, mi, sec, rest =
    str_match(s, "^(%d%d%d%d)-(%d%d)-(%d%d)T(%d%d):(%d%d):(%d%d)%.?%d*(.*)$")
  if not y then return nil end
  local off = 0
  if rest ~= "Z" then
    local sign, oh, om = str_match(rest, "^([+-])(%d%d):?(%d%d)$")
    if not sign then return nil end
    off = (tonumber(oh) * 3600 + tonumber(om) * 60) * (sign == "+" and 1 or -1)
  end
  y, mo, d, h, mi, sec = tonumber(y), tonumber(mo), tonumber(d), tonumber(h), tonumber(mi), tonumber(sec)
  if mo < 1 or mo > 12 or d < 1 or d > 31 or h > 23 or mi > 59 or sec > 60 then return nil end
  return timegm(y, mo, d, h, mi, sec) - off
end

local core_now = core.now
--- Current time in seconds, sub-second (nginx's cached clock inside nginx).
function _M.now()
  local ngx = rawget(_G, "ngx")
  if ngx and ngx.now then return ngx.now() end
  return core_now()
end

return _M
