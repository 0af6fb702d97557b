--- When a failed attempt is tried again: one decision table.
--
-- The facts are the exchange (`idempotent`, `attempt`, `max_attempts`,
-- whether a token was sent and already refreshed), the stage that failed,
-- and the error (`kind`, `status`, `code`, `sent`, `retryable`,
-- `retry_after`). `decide` returns one of
--
-- * `"refresh"`: the bank refused the access token (401 or 403 with
--   TOKEN_EXPIRED, TOKEN_INVALID or TOKEN_UNKNOWN);
--   refresh it once, then `after_refresh` says what follows;
-- * `"retry", wait`: sleep `wait` seconds and make another attempt;
-- * `"return"`: the error is the answer.
--
-- A request that may have reached the bank is repeated only when it is
-- safe to repeat (`idempotent`); whether it left is what the transport
-- reported (`err.sent`), nothing else.
-- @module xs2a.pipeline.retry
local errors = require "xs2a.errors"

local type, random, min, max = type, math.random, math.min, math.max

local _M = {}

--- Defaults of the `retry` client option.
_M.DEFAULTS = { max_attempts = 3, base_delay = 0.2, max_delay = 5, max_retry_after = 30 }

-- May an attempt that failed in `stage` with `err` go out again?
-- (before asking whether the error is worth it)
local SAFE_AFTER = {
  prepare = false, attach_token = false, sign = false, verify = false,
  acquire_limit = true,
  send = function(ex, err) return ex.idempotent or err.sent == false end,
  decode = function(ex) return ex.idempotent end,
  map_error = function(ex, err) return ex.idempotent and err.code ~= "UNEXPECTED_STATUS" end,
}

local function safe_after(stage, ex, err)
  local rule = SAFE_AFTER[stage]
  if type(rule) == "function" then return rule(ex, err) and true or false end
  return rule or false
end
_M.safe_after = safe_after

--- Jittered exponential backoff before attempt `attempt + 1`.
function _M.backoff(policy, attempt)
  local d = min(policy.max_delay, policy.base_delay * 2 ^ (attempt - 1))
  return d * (0.5 + random() * 0.5)
end

-- The bank refused the access token: 401 (Berlin Group) or 403 (Paysera's
-- Georgia page) with a code that names the token (docs/paysera.md, reading
-- 3). Never another 403, and never CONSENT_EXPIRED: a refresh cannot revive
-- a consent, the PSU must authorise a new one.
local TOKEN_CODES = { "TOKEN_EXPIRED", "TOKEN_INVALID", "TOKEN_UNKNOWN" }
local function token_refusal(ex, err)
  if err.kind ~= "http" or (err.status ~= 401 and err.status ~= 403) or ex.token_key == nil or ex.refreshed then
    return false
  end
  for i = 1, #TOKEN_CODES do
    if errors.is(err, TOKEN_CODES[i]) then return true end
  end
  return false
end
_M.token_refusal = token_refusal

--- Decides what follows a failed attempt.
-- @param policy the client's retry policy
-- @param ex the exchange
-- @param stage the name of the stage that failed
-- @param err the error
-- @return "refresh" | "return" | "retry", wait
function _M.decide(policy, ex, stage, err)
  if token_refusal(ex, err) then return "refresh" end
  if not safe_after(stage, ex, err) then return "return" end
  if ex.attempt >= ex.max_attempts or not err.retryable then return "return" end
  if err.retry_after then
    if err.retry_after > policy.max_retry_after then return "return" end
    return "retry", max(err.retry_after, 0) + random() * 0.05
  end
  return "retry", _M.backoff(policy, ex.attempt)
end

--- After a successful refresh: `"retry"` (one more attempt with the new
-- token), or `"return"` for a request that is not safe to repeat (the bank
-- refused it, but the library never sends it twice: the caller may).
function _M.after_refresh(ex)
  if ex.method == "POST" and not ex.idempotent then return "return" end
  return "retry"
end

--- True when the frequencyPerDay unit of the attempt is given back: the
-- request never left, or the bank refused it before counting (429), or the
-- client's own limiter refused it.
function _M.gives_back_unit(err)
  return (err.kind == "transport" and not err.sent) or err.status == 429 or err.kind == "limit"
end

return _M
