--- Picks the HTTP transport: `ngx` (cosockets) inside nginx, `curl` (the C
-- core's libcurl session) everywhere else.
--
--     local t = require("xs2a.transport").new{ identity = qwac, ca_file = ca }
--
-- `opts.kind = "curl"|"ngx"` forces one. Both follow the transport contract
-- of docs/INTERNALS.md: `t:request(req) -> res | nil, { code, message, sent }`.
-- @module xs2a.transport
local curl = require "xs2a.transport.curl"
local ngx_transport = require "xs2a.transport.ngx"

local _M = {}

local KINDS = { curl = curl, ngx = ngx_transport }

--- True when running inside an nginx worker with cosockets.
function _M.in_nginx()
  local ngx = rawget(_G, "ngx")
  return type(ngx) == "table" and type(ngx.socket) == "table" and type(ngx.socket.tcp) == "function"
    and type(ngx.get_phase) == "function" and ngx.config ~= nil and ngx.config.subsystem ~= nil
end

--- Name of the transport `new` would choose.
function _M.default_kind()
  return _M.in_nginx() and "ngx" or "curl"
end

--- Creates a transport.
-- @param opts transport options (identity, ca_file, connect_timeout, timeout, max_body...), plus `kind`
-- @return transport, or nil and a message
function _M.new(opts)
  opts = opts or {}
  local kind = opts.kind or _M.default_kind()
  local mod = KINDS[kind]
  if not mod then return nil, "unknown transport kind " .. tostring(kind) end
  return mod.new(opts)
end

return _M
