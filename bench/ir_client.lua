-- For `make bench`: N sequential client GETs of URL's origin + /ok, run
-- under callgrind to count the instructions one request costs (a figure
-- that does not depend on what else the machine is doing).
--   lua5.4 bench/ir_client.lua BASE_URL N
local is_jit = rawget(_G, "jit") ~= nil
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = (is_jit and "./build/luajit/?.so;" or "./build/lua5.4/?.so;") .. package.cpath
local xs2a = require "xs2a"
local PKI = (os.getenv("XS2A_PKI") or "build/pki") .. "/"
local c = assert(xs2a.client{ profile = "paysera-berlin", base_url = arg[1], ca_file = PKI .. "ca.pem",
  qwac = xs2a.identity{ cert = PKI .. "qwac.pem", key = PKI .. "qwac.key" },
  qseal = xs2a.identity{ cert = PKI .. "qseal.pem", key = PKI .. "qseal.key" }, limits = false })
for _ = 1, tonumber(arg[2]) do assert(c:request{ path = "/ok" }) end
