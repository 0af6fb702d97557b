-- Worker side of spec/openresty/pool_spec.lua.
local M = {}

local function identity(pki, name)
  local core = require "xs2a.core"
  return assert(core.identity{ cert = pki .. "/" .. name .. ".pem", key = pki .. "/" .. name .. ".key" })
end

-- Two transports with the same pool settings and different client
-- certificates, used in turn: each request must reach the server with its
-- own certificate (the pool key carries the certificate's digest).
function M.two_identities(args)
  local ngx_transport = require "xs2a.transport.ngx"
  local a = assert(ngx_transport.new{ identity = identity(args.pki, "qwac"), ca_file = args.pki .. "/ca.pem" })
  local b = assert(ngx_transport.new{ identity = identity(args.pki, "qwac-ai"), ca_file = args.pki .. "/ca.pem" })
  local seen = {}
  for i = 1, 6 do
    local t = (i % 2 == 1) and a or b
    local res = assert(t:request{ method = "GET", url = args.url .. "/whoami" })
    seen[i] = { status = res.status, dn = res.body, reused = res.reused }
  end
  return seen
end

-- The curl transport blocks the worker: refused inside nginx.
function M.curl_refused(args)
  local transport = require "xs2a.transport"
  local out = {}
  local t, err = transport.new{ kind = "curl", ca_file = args.pki .. "/ca.pem" }
  out.new_ok, out.new_err = t ~= nil, tostring(err)
  local curl = require "xs2a.transport.curl"
  local c2, err2 = curl.new{ ca_file = args.pki .. "/ca.pem" }
  out.curl_ok, out.curl_err = c2 ~= nil, tostring(err2)
  -- a curl transport made before (a stand-in with the curl kind) is refused by the client
  local xs2a = require "xs2a"
  local client, cerr = xs2a.client{
    profile = "paysera-berlin", base_url = args.url, ca_file = args.pki .. "/ca.pem",
    qwac = identity(args.pki, "qwac"), qseal = identity(args.pki, "qseal"),
    transport = { kind = "curl", request = function() error("must not be called") end },
  }
  out.client_ok, out.client_kind, out.client_code = client ~= nil, cerr and cerr.kind, cerr and cerr.code
  local client2, cerr2 = xs2a.client{
    profile = "paysera-berlin", base_url = args.url, ca_file = args.pki .. "/ca.pem",
    qwac = identity(args.pki, "qwac"), qseal = identity(args.pki, "qseal"),
  }
  out.default_kind = client2 and client2.transport.kind or tostring(cerr2)
  return out
end

return M
