-- For `make bench`: N sequential client GETs of URL's origin + /ok (or, with
-- "pay", N signed payment POSTs to /pay, each on a fresh connection), run
-- under callgrind to count the instructions one request costs (a figure
-- that does not depend on what else the machine is doing).
--   lua5.4 bench/ir_client.lua BASE_URL N [pay]
local is_jit = rawget(_G, "jit") ~= nil
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = (is_jit and "./build/luajit/?.so;" or "./build/lua5.4/?.so;") .. package.cpath
local xs2a = require "xs2a"
local PKI = (os.getenv("XS2A_PKI") or "build/pki") .. "/"
local c = assert(xs2a.client{ profile = "paysera-berlin", base_url = arg[1], ca_file = PKI .. "ca.pem",
  qwac = xs2a.identity{ cert = PKI .. "qwac.pem", key = PKI .. "qwac.key" },
  qseal = xs2a.identity{ cert = PKI .. "qseal.pem", key = PKI .. "qseal.key" }, limits = false,
  store = xs2a.store.memory() })
if arg[3] == "pay" then
  -- the body of bench.lua's payment row
  local body = { instructedAmount = { currency = "EUR", amount = "123.45" },
    creditorAccount = { iban = "LT601010012345678901" }, creditorName = "Bench",
    remittanceInformationUnstructured = "bench" }
  for _ = 1, tonumber(arg[2]) do
    assert(assert(c:request{ method = "POST", path = "/pay", service = "PIS", body = body }).status == 201)
  end
else
  for _ = 1, tonumber(arg[2]) do assert(c:request{ path = "/ok" }) end
end
