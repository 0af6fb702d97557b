-- lua-xs2a benchmarks: each figure is measured against a baseline on the same
-- machine in the same run, and a target is a ratio to that baseline, so the
-- result does not depend on how fast the machine is. Exit status 1 when a
-- target is missed. Run with `make bench` (both interpreters).
--
--   lua5.4 bench/bench.lua | luajit bench/bench.lua
local is_jit = rawget(_G, "jit") ~= nil
package.path = "./lua/?.lua;./lua/?/init.lua;./spec/?.lua;" .. package.path
package.cpath = (is_jit and "./build/luajit/?.so;" or "./build/lua5.4/?.so;") .. package.cpath

local core = require "xs2a.core"
local identity = require "xs2a.identity"
local sign = require "xs2a.sign"
local json = require "xs2a.codec.json"
local cjson = require "cjson"

local PKI = (os.getenv("XS2A_PKI") or "build/pki") .. "/"
local missed = 0

local function cpu(n, f)
  local t0 = os.clock()
  for i = 1, n do f(i) end
  return (os.clock() - t0) / n
end

local function report(name, value, baseline, unit, target, better)
  local ratio = value / baseline
  local ok = (better == "lower" and ratio <= target) or (better == "higher" and ratio >= target)
  if not ok then missed = missed + 1 end
  print(string.format("%-44s %10.3f %-6s baseline %10.3f  ratio %6.2f  target %s %.2f  %s",
    name, value, unit, baseline, ratio, better == "lower" and "<=" or ">=", target, ok and "ok" or "MISSED"))
end

print(string.format("lua-xs2a bench under %s", is_jit and jit.version or _VERSION))

-- 1. Request signing: the Berlin Group signer (digest, signing string, headers,
--    certificate) against the bare RSA signature it has to make anyway.
do
  local qseal = assert(identity{ cert = PKI .. "qseal.pem", key = PKI .. "qseal.key" })
  local body = string.rep('{"instructedAmount":{"currency":"EUR","amount":"123.45"}}', 8)
  local signer = sign.berlin(qseal)
  local n = 300
  local raw = cpu(n, function() qseal:sign("digest: SHA-256=x\nx-request-id: y", { hash = "sha256" }) end)
  local full = cpu(n, function()
    assert(signer:sign{ method = "POST", url = "https://bank.example/v1/payments/sepa-credit-transfers",
      headers = { ["X-Request-ID"] = core.uuid4(), ["Content-Type"] = "application/json" }, body = body })
  end)
  report("berlin sign (ms/request) vs raw RSA sign", full * 1e3, raw * 1e3, "ms", 1.25, "lower")
end

-- 2. JSON: our encoder (keeps empty arrays, sorted keys) and decoder (cjson
--    plus array marking) against plain cjson on a page of transactions.
do
  local page = { transactions = { booked = {} } }
  for i = 1, 50 do
    page.transactions.booked[i] = {
      transactionId = "tx-" .. i, bookingDate = "2026-03-01", valueDate = "2026-03-01",
      transactionAmount = { amount = "-12.34", currency = "EUR" },
      creditorName = "Merchant " .. i, creditorAccount = { iban = "LT601010012345678901" },
      remittanceInformationUnstructured = "Invoice " .. i,
      _links = { transactionDetails = { href = "/v1/accounts/a/transactions/tx-" .. i } },
    }
  end
  local text = cjson.encode(page)
  local n = 200
  local enc_base = cpu(n, function() cjson.encode(page) end)
  local enc = cpu(n, function() json.encode(page) end)
  -- pure Lua with sorted keys and BG array rules (cjson 2.1 cannot keep empty
  -- arrays): about 10-20x cjson; a quadratic slip would show as 100x and more
  report("json encode, 50 transactions (ms) vs cjson", enc * 1e3, enc_base * 1e3, "ms", 25, "lower")
  local dec_base = cpu(n, function() cjson.decode(text) end)
  local dec = cpu(n, function() json.decode(text) end)
  report("json decode, 50 transactions (ms) vs cjson", dec * 1e3, dec_base * 1e3, "ms", 4, "lower")
end

-- 3. HTTP over mTLS to the sandbox: requests on one kept-alive session
--    against a new session (new TCP + TLS handshake) per request, and the
--    memory held after many requests.
do
  local sandbox = require "support.sandbox"
  local sb = sandbox.start{}
  local ok, err = pcall(function()
    local curl = require "xs2a.transport.curl"
    local qwac = assert(identity{ cert = PKI .. "qwac.pem", key = PKI .. "qwac.key" })
    local url = sb.roots.berlin .. "/.well-known/oauth-authorization-server"
    local function get(t)
      local res, e = t:request{ method = "GET", url = url, headers = { Accept = "application/json" } }
      assert(res and res.status == 200, e and e.message)
    end
    local n = 60
    local t = assert(curl.new{ identity = qwac, ca_file = PKI .. "ca.pem" })
    get(t)
    local t0 = core.monotonic()
    for _ = 1, n do get(t) end
    local reused = (core.monotonic() - t0) / n
    t0 = core.monotonic()
    for _ = 1, n do
      local fresh = assert(curl.new{ identity = qwac, ca_file = PKI .. "ca.pem" })
      get(fresh)
      fresh:close()
    end
    local fresh = (core.monotonic() - t0) / n
    report("requests/s, kept-alive vs new connection", 1 / reused, 1 / fresh, "req/s", 1.5, "higher")

    -- memory: the Lua heap after 300 more requests against the heap after
    -- the warm-up; a leak per request (headers, bodies, handles) shows here
    collectgarbage(); collectgarbage()
    local before = collectgarbage("count")
    for _ = 1, 300 do get(t) end
    collectgarbage(); collectgarbage()
    report("Lua heap after 300 more requests (KiB)", collectgarbage("count"), before, "KiB", 1.10, "lower")
    t:close()
  end)
  sb:stop()
  assert(ok, err)
end

-- 4. The limiter over a Redis store (two hosts share a budget): one
--    acquire reads the window with MGET, against the same limiter made to
--    read it key by key (a store without get_many). The limit is set high so
--    that no acquire waits: this measures round trips only.
do
  local redis_support = require "support.redis"
  local srv = redis_support.start{}
  local ok, err = pcall(function()
    local limiter = require "xs2a.limiter"
    local store = require("xs2a.store").redis{ port = srv.port, prefix = "bench:" }
    local per_key = setmetatable({ get_many = false }, { __index = store })
    local function per_acquire(st)
      local l = limiter.new{ store = st, id = "bench", per_second = 1e9 }
      for _ = 1, 50 do assert(l:acquire())() end
      local n = 500
      local t0 = core.monotonic()
      for _ = 1, n do assert(l:acquire())() end
      return (core.monotonic() - t0) / n
    end
    local mget = per_acquire(store)
    local single = per_acquire(per_key)
    report("limiter acquire on Redis (ms) vs per-key GETs", mget * 1e3, single * 1e3, "ms", 0.5, "lower")
  end)
  srv:stop()
  assert(ok, err)
end

print(missed == 0 and "bench: all targets met" or ("bench: " .. missed .. " target(s) missed"))
os.exit(missed == 0 and 0 or 1)
