--- The request log of the OpenAPI conformance specs: with `record = true` in
-- the configuration, every request under a variant root is appended as one
-- JSON line to <prefix>/logs/requests.jsonl, as the bank received it
-- (method, path below the variant root, raw query, headers with lower-case
-- names, body). The log holds whatever the client sent, tokens included:
-- it is for test instances only.
local util = require "sandbox.util"

local _M = {}

--- Appends ctx's request to the log of `settings.prefix`.
function _M.record(ctx, settings)
  local line = util.json_encode({
    variant = ctx.variant, listener = ctx.listener, method = ctx.method, path = ctx.path,
    query = ngx.var.args or "", headers = ctx.headers, body = ctx.body or "",
  })
  if not line then return end
  local f = io.open((settings.prefix or ".") .. "/logs/requests.jsonl", "a")
  if not f then return end
  f:write(line, "\n")
  f:close()
end

return _M
