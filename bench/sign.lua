-- Signing throughput on the payment hot path (informational, no assertions).
-- lua5.4 bench/sign.lua  |  luajit bench/sign.lua (uses build/luajit)
local jit_build = rawget(_G, "jit") ~= nil
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = (jit_build and "./build/luajit/?.so;" or "./build/lua5.4/?.so;") .. package.cpath

local identity = require "xs2a.identity"
local sign = require "xs2a.sign"
local core = require "xs2a.core"

local pki = (os.getenv("XS2A_PKI") or "build/pki") .. "/"
local N = tonumber(arg and arg[1]) or 500

local rsa = assert(identity{ cert = pki .. "qseal.pem", key = pki .. "qseal.key" })
local ec = assert(identity{ cert = pki .. "qseal-ec.pem", key = pki .. "qseal-ec.key" })
local body = string.rep('{"instructedAmount":{"currency":"EUR","amount":"123.45"}}', 20)

local function bench(name, signer)
  local t0 = os.clock()
  for _ = 1, N do
    local req = { method = "POST", url = "https://bank.example/v1/payments/sepa-credit-transfers",
      headers = { ["X-Request-ID"] = core.uuid4(), ["PSU-ID"] = "alice", ["Content-Type"] = "application/json" },
      body = body }
    assert(signer:sign(req))
  end
  local dt = os.clock() - t0
  print(string.format("%-22s %6d signs  %8.1f/s  %7.3f ms/sign", name, N, N / dt, dt * 1000 / N))
end

bench("berlin rsa-sha256", sign.berlin(rsa))
bench("berlin ecdsa-sha256", sign.berlin(ec))
bench("jws RS256", sign.jws(rsa))
bench("jws PS256", sign.jws(rsa, { alg = "PS256" }))
bench("jws ES256", sign.jws(ec))
bench("mac hmac-sha-256", sign.mac{ id = "bench", key = core.random(32) })
