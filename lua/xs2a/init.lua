--- lua-xs2a: a PSD2 / Berlin Group NextGenPSD2 client for Paysera's Open
-- Banking API (and other XS2A banks described by a profile).
--
--     local xs2a = require "xs2a"
--     local client = assert(xs2a.client{ profile = "paysera-berlin", qwac = ..., qseal = ... })
--
-- Submodules load on first use, so `require "xs2a"` is cheap.
-- @module xs2a
local _M = { _VERSION = "0.1.0" }

local LAZY = {
  identity = "xs2a.identity",
  sign = "xs2a.sign",
  crypto = "xs2a.crypto",
  store = "xs2a.store",
  errors = "xs2a.errors",
  json = "xs2a.codec.json",
  profiles = "xs2a.profile",
  profile = "xs2a.profile",
  transport = "xs2a.transport",
  oauth = "xs2a.sca.oauth",
  flow = "xs2a.sca.flow",
  limiter = "xs2a.limiter",
  status = "xs2a.status",
}

--- Creates a client (see `xs2a.client`).
-- @return client or nil, err
function _M.client(opts)
  return require("xs2a.client").new(opts)
end

--- Runs functions concurrently (see `xs2a.parallel`).
function _M.parallel(...)
  return require("xs2a.parallel").run(...)
end

--- Continues a saved SCA flow (`flow:save()`) with `client`.
-- @return flow or nil, err
function _M.resume(client, saved)
  return require("xs2a.sca.flow").resume(client, saved)
end

return setmetatable(_M, {
  __index = function(t, k)
    local name = LAZY[k]
    if not name then return nil end
    local mod = require(name)
    rawset(t, k, mod)
    return mod
  end,
})
