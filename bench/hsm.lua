-- Signatures per second through a PKCS#11 token (SoftHSM2) against the same
-- key in software and against `openssl speed` (issue 12; informational, no
-- goal). Needs softhsm2, opensc and libengine-pkcs11-openssl (make deps).
--   lua5.4 bench/hsm.lua | luajit bench/hsm.lua     (from the repository root)
local jit_build = rawget(_G, "jit") ~= nil
local LUA = jit_build and "luajit" or "lua5.4"
package.path = "./lua/?.lua;./lua/?/init.lua;./spec/?.lua;" .. package.path
package.cpath = (jit_build and "./build/luajit/?.so;" or "./build/lua5.4/?.so;") .. package.cpath

local SECONDS = tonumber(os.getenv("XS2A_BENCH_SECONDS") or "") or 2

local function rate(f)
  for _ = 1, 5 do f() end
  local n, t0 = 0, os.clock()            -- CPU time of this process, as openssl speed counts
  local w0 = os.time()
  repeat
    for _ = 1, 10 do f() end
    n = n + 10
  until os.clock() - t0 >= SECONDS or os.time() - w0 > 4 * SECONDS
  return n / (os.clock() - t0), n
end

if arg[1] == "measure" then
  local identity = require "xs2a.identity"
  local sign = require "xs2a.sign"
  local core = require "xs2a.core"
  local pki, token, pin, module = os.getenv("XS2A_PKI"), os.getenv("XS2A_HSM_TOKEN"), os.getenv("XS2A_HSM_PIN"),
    os.getenv("XS2A_HSM_MODULE")
  local data = string.rep("x", 200)
  for _, k in ipairs({ { "qseal", "RSA-2048" }, { "qseal-ec", "ECDSA P-256" } }) do
    local soft = assert(identity{ cert = pki .. "/" .. k[1] .. ".pem", key = pki .. "/" .. k[1] .. ".key" })
    local hsm = assert(identity{ cert = pki .. "/" .. k[1] .. ".pem", pin = pin, module = module,
      key = "pkcs11:token=" .. token .. ";object=" .. k[1] .. ";type=private" })
    local r_soft = rate(function() soft:sign(data) end)
    local r_hsm = rate(function() assert(hsm:sign(data)) end)
    local signer = sign.berlin(hsm)
    local r_berlin = rate(function()
      assert(signer:sign{ method = "POST", url = "https://bank.example/v1/payments/sepa-credit-transfers",
        headers = { ["X-Request-ID"] = core.uuid4() }, body = '{"a":1}' })
    end)
    print(string.format("MEASURE %s %.1f %.1f %.1f", k[2]:gsub(" ", "_"), r_soft, r_hsm, r_berlin))
  end
  os.exit(0)
end

local softhsm = require "hsm.softhsm"
local proc = require "support.proc"
local helper = require "helper"
local tok = assert(softhsm.setup())
local _, out = proc.run(table.concat({ tok.env, "XS2A_PKI=" .. proc.quote(helper.pki_dir),
  "XS2A_HSM_TOKEN=" .. tok.token, "XS2A_HSM_PIN=" .. tok.pin, "XS2A_HSM_MODULE=" .. tok.module,
  "XS2A_BENCH_SECONDS=" .. SECONDS, LUA, "bench/hsm.lua measure" }, " "))
softhsm.teardown(tok)
local function speed(alg)
  local _, o = proc.run("openssl speed -mr -seconds " .. SECONDS .. " " .. alg .. " 2>/dev/null")
  return tonumber(o:match("%+F%d*:%d+:%d+:([%d.]+):"))
end
local ref = { ["RSA-2048"] = speed("rsa2048"), ["ECDSA_P-256"] = speed("ecdsap256") }
print(string.format("%s, SoftHSM2 2.6 through libp11's pkcs11 engine; signatures per CPU second of this process", LUA))
print(string.format("%-12s %12s %12s %12s %14s %10s %10s", "key", "openssl", "software", "token",
  "token Berlin", "token/ssl", "token/sw"))
for alg, soft, hsm, berlin in out:gmatch("MEASURE (%S+) ([%d.]+) ([%d.]+) ([%d.]+)") do
  soft, hsm, berlin = tonumber(soft), tonumber(hsm), tonumber(berlin)
  print(string.format("%-12s %11.0f/s %11.0f/s %11.0f/s %13.0f/s %10.2f %10.2f", alg, ref[alg], soft, hsm, berlin,
    hsm / ref[alg], hsm / soft))
end
if not out:find("MEASURE") then io.stderr:write(out, "\n") os.exit(1) end
