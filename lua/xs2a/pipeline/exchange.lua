--- The exchange: the one record the pipeline's stages share for a logical
-- request (its attempts included). It replaces positional arguments and
-- multiple return values between stages.
--
-- Fields set once by `new` (from the caller's request):
--   `req` (the caller's table), `method`, `url`, `path` (under the variant
--   root, for errors and logs), `service`, `body` (encoded), `ctype`,
--   `idempotent`, `token_key`, `freq` (`{ consent_id, resource, max }` when
--   the read spends a frequencyPerDay unit).
-- Fields of the current attempt (reset by `begin_attempt`):
--   `attempt`, `request_id`, `headers`, `token` (the access token sent),
--   `release` (the limiter slot), `treq` (what the transport gets: the
--   exchange itself for the client's own curl transport, which then also
--   reads `timeout` here), `res` (the transport's answer), `out` (the result
--   being built; `res` itself for that transport), `started`.
-- Fields of the whole request: `first_request_id`, `refreshed`,
--   `freq_undo` (gives the frequencyPerDay unit back), `max_attempts`.
-- @module xs2a.pipeline.exchange
local url = require "xs2a.net.url"
local json = require "xs2a.codec.json"
local errors = require "xs2a.errors"
local redact = require "xs2a.redact"

local type, tostring, next, error = type, tostring, next, error
local str_find, str_sub, str_match, str_byte = string.find, string.sub, string.match, string.byte

local _M = {}

-- AIS reads that spend a frequencyPerDay unit when the PSU is not present
local AIS_READ = { "^/v1/accounts", "^/v1/card%-accounts" }
local function is_ais_read(path)
  for i = 1, #AIS_READ do
    if str_find(path, AIS_READ[i]) then return true end
  end
  return false
end

-- request paths (a `path` without a query) already seen to hold neither a
-- "." nor a "%2", so no dot segment: they skip the two searches. Bounded:
-- past PLAIN_MAX paths the set starts again.
local plain_paths, n_plain, PLAIN_MAX = {}, 0, 512

-- methods already seen to be upper-case tokens (the pattern check runs once per name)
local METHOD_OK = { GET = true, POST = true, PUT = true, DELETE = true, PATCH = true, HEAD = true, OPTIONS = true }

--- Builds the exchange of a caller's request. Programmer errors (a bad
-- method, no path) raise at `level`; runtime failures return nil, err.
-- @param ctx the client context (`base_url`, `root`, `origin`, `roles`, `limiter`, `store`, `profile`)
-- @param req the caller's request (see `client:request`)
-- @param[opt] level the stack level of the caller, for `error` (default 1)
-- @return exchange, or nil, err
function _M.new(ctx, req, level)
  level = (level or 1) + 1
  if type(req) ~= "table" then error("request must be a table", level) end
  local method = req.method or "GET"
  if not METHOD_OK[method] and (type(method) ~= "string" or not str_find(method, "^%u+$")) then
    error("bad method " .. tostring(method), level)
  end

  local full, path
  local from = 1 -- where the part of the URL the caller or the bank chose starts
  local memo = false -- that part is `path` alone (no query): its dot check may be remembered
  if req.url then
    local err
    full, err = _M.resolve(ctx, req.url, req.allow_foreign)
    if not full then return nil, err end
    if req.query and next(req.query) then
      full = full .. (str_find(full, "?", 1, true) and "&" or "?") .. url.encode_query(req.query)
    end
    local pu = url.parse(full)
    path = pu and pu.path or full
    if pu and str_sub(path, 1, #ctx.root) == ctx.root then path = str_sub(path, #ctx.root + 1) end
  elseif req.path then
    path = req.path
    -- (a path in plain_paths is a string starting with "/": only such are put there)
    if not plain_paths[path] and (type(path) ~= "string" or str_byte(path, 1) ~= 47) then -- "/"
      error("path must start with /", level)
    end
    local base, root = ctx.base_url, ctx.root
    local q = req.query ~= nil and url.encode_query(req.query) or ""
    if q ~= "" then
      full = base .. root .. path .. "?" .. q
    else
      full = base .. root .. path
      memo = true
    end
    from = #base + #root + 1
  else
    error("request needs path or url", level)
  end

  -- never a path other than the resource's own: a `.` or `..` segment would
  -- be normalised into another resource by a server or proxy
  -- (a path without a dot or a %2 has none: the common case costs two
  -- finds, or one lookup for a path already seen without them)
  if not (memo and plain_paths[path]) then
    if str_find(full, ".", from, true) or str_find(full, "%2", from, true) then
      if url.has_dot_segment(str_match(full, "^[^?#]*")) then
        return nil, errors.new("config", { code = "PATH_INVALID", method = method, path = path,
          text = "refusing a request path with a . or .. segment" })
      end
    elseif memo then
      if n_plain >= PLAIN_MAX then plain_paths, n_plain = {}, 0 end
      plain_paths[path], n_plain = true, n_plain + 1
    end
  end

  local body, ctype
  local rbody = req.body
  local tbody = rbody ~= nil and type(rbody) or nil
  if req.form ~= nil then
    body = url.encode_query(req.form)
    ctype = "application/x-www-form-urlencoded"
  elseif tbody == "table" then
    local err
    body, err = json.encode(rbody, req.shape)
    if not body then
      return nil, errors.new("config", { code = "BODY_INVALID", text = err, method = method, path = path })
    end
    ctype = "application/json"
  elseif tbody == "string" then
    body = rbody
    ctype = "application/json"
  elseif tbody ~= nil then
    error("body must be a table or a string", level)
  end

  local idempotent = req.idempotent
  if idempotent == nil then idempotent = method == "GET" or method == "HEAD" end

  local ex = {
    req = req, method = method, url = full, path = path, service = req.service,
    body = body, ctype = ctype, idempotent = idempotent, token_key = req.token,
    attempt = 0, refreshed = false,
    -- secret values this request carries (scrubbed from errors and logs)
    secrets = (req.form ~= nil or tbody == "table") and redact.collect_secrets(req.form or rbody) or nil,
  }
  -- frequencyPerDay for AIS reads without the PSU: one unit per attempt
  -- that reaches the bank (given back when the bank refused before counting).
  -- The profile's `frequency_rule` (docs/paysera.md, reading 5): "resource"
  -- counts per endpoint and account and lets follow-up pages go free;
  -- "consent" counts every call, pages included, against the consent.
  if req.service ~= "AIS" then return ex end
  local strict = ctx.profile and ctx.profile.frequency_rule == "consent"
  if method == "GET" and req.consent_id and not (type(req.psu) == "table"
      and req.psu.ip ~= nil) and (strict or not req.follow) and ctx.limiter and is_ais_read(path) then
    ex.freq = { consent_id = req.consent_id, resource = strict and "*" or str_match(path, "^([^?]*)"),
      max = req.frequency_per_day or ctx:consent_frequency(req.consent_id) }
  end
  return ex
end

--- Resolves a link href (absolute, or relative with/without the root).
-- Refuses links to another origin: the client would send its certificate
-- and tokens there.
-- @return url or nil, err
function _M.resolve(ctx, href, allow_foreign)
  local full, err = url.resolve(ctx.base_url, ctx.root, href)
  if not full then return nil, errors.protocol("bad link: " .. tostring(err), nil, "BAD_LINK") end
  if not allow_foreign then
    local u = url.parse(full)
    if not u or u.origin ~= ctx.origin then
      return nil, errors.protocol("refusing a link to another origin (" .. (u and u.origin or "?") .. ")",
        nil, "FOREIGN_LINK")
    end
  end
  return full
end

--- Starts an attempt: clears what the previous one left.
function _M.begin_attempt(ex, request_id)
  local attempt = ex.attempt + 1
  ex.attempt = attempt
  ex.request_id = request_id
  if attempt == 1 then
    ex.first_request_id = request_id   -- nothing of an earlier attempt to clear
  else
    ex.headers, ex.token, ex.treq, ex.res, ex.out, ex.release, ex.started = nil, nil, nil, nil, nil, nil, nil
  end
  return ex
end

--- The fields of an error's context: `{ method, path, request_id, idempotent }`.
function _M.error_ctx(ex)
  return { method = ex.method, path = ex.path, request_id = ex.request_id, idempotent = ex.idempotent }
end

return _M
