-- lua-xs2a benchmarks (`make bench`): the client side by side with the tools
-- a TPP would otherwise use, against the same loopback mTLS server in the
-- same run, so the ratios do not depend on how fast the machine is. Each
-- row prints its ratio and goal; the exit status is 1 when a goal is missed.
-- Not a test: nothing here runs in `make test`.
--
--   lua5.4 bench/bench.lua | luajit bench/bench.lua     (after `make all pki`
--   and `cc -O2 -o build/bench/curl_loop bench/curl_loop.c -lcurl -lcrypto`, the same for
--   bench/curl_pay.c with -lssl too; bench/run does both)
--
-- XS2A_BENCH_ROUNDS (default 5): interleaved rounds per timed comparison;
-- each side's best round is used (the machine is shared: other work only
-- ever slows a round down, so the best round is the least disturbed one). XS2A_BENCH_QUICK=1 skips the two
-- 30-second limiter runs against the sandbox.
local is_jit = rawget(_G, "jit") ~= nil
package.path = "./lua/?.lua;./lua/?/init.lua;./spec/?.lua;./bench/?.lua;" .. package.path
package.cpath = (is_jit and "./build/luajit/?.so;" or "./build/lua5.4/?.so;") .. package.cpath
require "helper"

local core = require "xs2a.core"
local xs2a = require "xs2a"
local parallel = require "xs2a.parallel"
local server = require "server"

local PKI = (os.getenv("XS2A_PKI") or "build/pki") .. "/"
local ROUNDS = tonumber(os.getenv("XS2A_BENCH_ROUNDS") or "") or 5
local QUICK = os.getenv("XS2A_BENCH_QUICK") == "1"
local LOOP = "build/bench/curl_loop"
local PAY = "build/bench/curl_pay"
local now = core.monotonic
local fmt = string.format

local missed, rows, notes = 0, {}, {}

-- the best (shortest) of a list of durations
local function best(t)
  local m = math.huge
  for _, v in ipairs(t) do if v < m then m = v end end
  return m
end

-- the median of a list of numbers
local function median(t)
  local r = {}
  for i = 1, #t do r[i] = t[i] end
  table.sort(r)
  local n = #r
  if n == 0 then return 0 / 0 end
  if n % 2 == 1 then return r[(n + 1) / 2] end
  return (r[n / 2] + r[n / 2 + 1]) / 2
end

-- The verdict of a timed row: the median of the per-round ratios a[i] / b[i].
-- Each round measures both sides back to back, so a change of the machine's
-- speed (on this shared 2-core VM it drifts over seconds: openssl speed alone
-- gives 37k to 50k ECDSA signatures/s from one run to the next) hits both
-- sides of a pair alike, and the median drops the rounds one side lost to a
-- stall. Comparing each side's best round instead compares the two luckiest
-- moments, which need not be alike; that figure is printed too, as a note.
local function paired(a, b)
  local r = {}
  for i = 1, math.min(#a, #b) do r[i] = a[i] / b[i] end
  return median(r)
end

-- ratio: the figure that the goal is about; better: "higher" | "lower"
local function row(what, ours, ref, ratio, goal, better)
  local ok
  if goal == nil then ok = nil
  elseif better == "lower" then ok = ratio <= goal
  else ok = ratio >= goal end
  if ok == false then missed = missed + 1 end
  rows[#rows + 1] = { what, ours, ref, ratio and fmt("%.2f", ratio) or "",
    goal and ((better == "lower" and "<= " or ">= ") .. goal) or "", ok == nil and "" or (ok and "ok" or "MISSED") }
  print(fmt("%-58s %-22s %-30s ratio %-6s goal %-7s %s", what, ours, ref, rows[#rows][4], rows[#rows][5],
    rows[#rows][6]))
  io.stdout:flush()
end

local function note(s)
  notes[#notes + 1] = s
  print("  " .. s)
  io.stdout:flush()
end

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("*a")
  local ok = p:close()
  return out, ok
end

-- waits until nginx logged `n` requests matching `filter` (it logs after
-- the answer left), at most 3 s
local function settled(srv, filter, n)
  local st
  for _ = 1, 150 do
    st = srv:tls_stats(filter)
    if st.requests >= n then break end
    core.sleep(20)
  end
  return st
end

local function conns(st)
  return fmt("%d TLS connections, %d resumed (%d requests)", st.connections, st.resumed, st.requests)
end

-- Instruction counts (callgrind), which no other load on the machine
-- changes. HAVE_VALGRIND: whether they can be taken at all.
local HAVE_VALGRIND = sh("command -v valgrind"):find("valgrind", 1, true) ~= nil

-- the instructions `cmd` runs (nil when callgrind gave none), and its output.
-- glibc's memset clears large blocks with `rep stosb`, one instruction that
-- callgrind counts once per byte: the client wipes libcurl's two 16 KiB
-- buffers per transfer (0.4 us) and would show 33k instructions more per
-- GET than it runs. The tunable makes memset use vector stores, for both
-- sides alike.
local function instructions(cmd)
  local out = sh("GLIBC_TUNABLES=glibc.cpu.x86_rep_stosb_threshold=4294967295 "
    .. "valgrind --tool=callgrind --callgrind-out-file=/dev/null " .. cmd)
  return tonumber((out:match("Collected : (%d+)"))), out
end

-- instructions per unit of work: the difference of two runs of `make(n)`
-- (a command doing n units) at n = lo and n = hi, over hi - lo
local function per_unit(make, lo, hi)
  local a, b = instructions(make(lo)), instructions(make(hi))
  return a and b and (b - a) / (hi - lo)
end

print(fmt("lua-xs2a bench under %s, %d interleaved rounds, %s", is_jit and jit.version or _VERSION, ROUNDS,
  (sh("uname -m; nproc"):gsub("\n", " "))))

local qwac = assert(xs2a.identity{ cert = PKI .. "qwac.pem", key = PKI .. "qwac.key" })
local qseal = assert(xs2a.identity{ cert = PKI .. "qseal.pem", key = PKI .. "qseal.key" })

local function client(base_url, limits)
  return assert(xs2a.client{ profile = "paysera-berlin", base_url = base_url, ca_file = PKI .. "ca.pem",
    qwac = qwac, qseal = qseal, limits = limits, store = xs2a.store.memory() })
end

------------------------------------------------------------------------------
-- 1. HTTP against the loopback server (HTTP/1.1: one connection per
--    request in flight, as with most bank gateways)

-- the payment row's median times (seconds per payment / connection), for
-- the floor note after the RSA row
local pay_times

local srv = server.start{ http2 = false }
local ok_http, err_http = pcall(function()
  -- 1a. sequential GETs over one kept-alive connection
  local N = 3000
  local c = client(srv.url, false)
  local url_ok = c:url("/ok")
  local lua_cpu = math.huge
  local function lua_seq(n)
    local t0, c0 = now(), os.clock()
    for _ = 1, n do
      local res = assert(c:request{ path = "/ok" })
      assert(res.status == 200 and res.json and res.json.ok == true)
    end
    lua_cpu = math.min(lua_cpu, (os.clock() - c0) / n)
    return now() - t0
  end
  lua_seq(50)
  local c_cpu = math.huge
  local function c_seq(n)
    local out = sh(table.concat({ LOOP, url_ok, PKI .. "qwac.pem", PKI .. "qwac.key", PKI .. "ca.pem", n }, " "))
    local wall = tonumber(out:match("wall ([%d.]+)"))
    assert(wall, "curl_loop: " .. out)
    c_cpu = math.min(c_cpu, tonumber(out:match("cpu ([%d.]+)")) / n)
    return wall
  end
  local python
  for _, py in ipairs({ "/usr/bin/python3", "python3" }) do
    if not python and sh(py .. " -c 'import requests' && echo yes"):find("yes", 1, true) then python = py end
  end
  local function py_seq(n)
    local out = sh(table.concat({ python, "bench/py_requests.py", url_ok, PKI .. "qwac.pem", PKI .. "qwac.key",
      PKI .. "ca.pem", n }, " "))
    local wall = tonumber(out:match("wall ([%d.]+)"))
    assert(wall, "py_requests: " .. out)
    return wall
  end
  local lw, cw, pw = {}, {}, {}
  local seq_stats
  for r = 1, ROUNDS do
    cw[r] = c_seq(N)
    srv:mark_tls()
    lw[r] = lua_seq(N)
    seq_stats = settled(srv, "/ok", N)
    if python then pw[r] = py_seq(math.floor(N / 6)) * 6 end
  end
  local lua_rate, c_rate = N / median(lw), N / median(cw)
  row("3000 sequential GETs, one kept-alive mTLS connection (wall)", fmt("%.0f req/s", lua_rate),
    fmt("raw C libcurl loop %.0f req/s", c_rate), paired(lw, cw), 1.15, "lower")
  note(fmt("(rates are each side's median round; best rounds: client %.0f, C loop %.0f req/s, x%.2f)",
    N / best(lw), N / best(cw), best(lw) / best(cw)))
  if python then
    local py_rate = N / median(pw)
    row("  same, against Python requests.Session", fmt("%.0f req/s", lua_rate), fmt("requests %.0f req/s", py_rate),
      paired(pw, lw), 5, "higher")
    note(fmt("the raw C loop itself is %.2fx Python requests in the same rounds (best rounds: client %.2fx)",
      paired(pw, cw), best(pw) / best(lw)))
  else
    note("Python requests not installed (python3-requests): row skipped")
  end
  note(fmt("sequential run: %s; CPU per request: client %.0f us, C loop %.0f us", conns(seq_stats),
    lua_cpu * 1e6, c_cpu * 1e6))
  -- instructions per request (callgrind: 400 requests minus 100), which no
  -- other load on the machine changes
  if HAVE_VALGRIND then
    local ir_c = per_unit(function(n)
      return table.concat({ LOOP, url_ok, PKI .. "qwac.pem", PKI .. "qwac.key", PKI .. "ca.pem", n }, " ")
    end, 100, 400)
    local ir_l = per_unit(function(n)
      return (is_jit and "luajit" or "lua5.4") .. " bench/ir_client.lua " .. srv.url .. " " .. n
    end, 100, 400)
    if ir_c and ir_l then
      note(fmt("instructions per sequential GET (callgrind): client %.0f, C loop %.0f (x%.2f)", ir_l, ir_c,
        ir_l / ir_c))
    end
  end

  -- 1b. 2000 GETs, 20 in flight: 20 worker loops, and 2000 tasks through
  --     the limiter's concurrency gate, against curl --parallel
  local M, W = 2000, 20
  local cfg = os.tmpname()
  do
    local f = assert(io.open(cfg, "wb"))
    for i = 1, M do f:write(fmt('url = "%s?i=%d"\noutput = "/dev/null"\n', url_ok, i)) end
    f:close()
  end
  local function curl_par()
    local t0 = now()
    local out, okc = sh(table.concat({ "curl -s -S --parallel --parallel-max", W, "--http1.1",
      "--cert", PKI .. "qwac.pem", "--key", PKI .. "qwac.key", "--cacert", PKI .. "ca.pem",
      "-H 'Accept: application/json' -K", cfg }, " "))
    assert(okc, "curl --parallel: " .. out)
    return now() - t0
  end
  local pc = client(srv.url, false)
  local function loops()
    local fns = {}
    for w = 1, W do
      fns[w] = function()
        for _ = 1, M / W do assert(pc:request{ path = "/ok" }) end
      end
    end
    local t0 = now()
    local r = parallel.all(fns)
    local dt = now() - t0
    for w = 1, W do assert(r[w][1], r[w][2]) end
    return dt
  end
  local tc = client(srv.url, { per_second = false, per_hour = false, concurrent = W })
  local function tasks()
    local fns = {}
    for i = 1, M do fns[i] = function() assert(tc:request{ path = "/ok" }) end end
    local t0 = now()
    local r = parallel.all(fns)
    local dt = now() - t0
    for i = 1, M do assert(r[i][1], r[i][2]) end
    return dt
  end
  loops()
  tasks()
  local cp, lp, tp = {}, {}, {}
  local curl_stats, loop_stats, task_stats
  for r = 1, ROUNDS do
    srv:mark_tls()
    cp[r] = curl_par()
    curl_stats = settled(srv, "/ok", M)
    srv:mark_tls()
    lp[r] = loops()
    loop_stats = settled(srv, "/ok", M)
    srv:mark_tls()
    tp[r] = tasks()
    task_stats = settled(srv, "/ok", M)
  end
  os.remove(cfg)
  local curl_rate = M / median(cp)
  row("2000 GETs, 20 in flight, 20 worker loops", fmt("%.0f req/s", M / median(lp)),
    fmt("curl --parallel-max 20: %.0f", curl_rate), paired(cp, lp), 0.9, "higher")
  row("2000 GETs as 2000 tasks, limiter concurrent = 20", fmt("%.0f req/s", M / median(tp)),
    fmt("curl --parallel-max 20: %.0f", curl_rate), paired(cp, tp), 0.9, "higher")
  row("TLS connections for 20 in flight (worker loops / tasks)",
    fmt("%d / %d", loop_stats.connections, task_stats.connections),
    fmt("curl: %d", curl_stats.connections), math.max(loop_stats.connections, task_stats.connections), 20, "lower")
  note("20 worker loops: " .. conns(loop_stats) .. "; 2000 tasks: " .. conns(task_stats)
    .. "; curl --parallel: " .. conns(curl_stats))

  -- 1c. signed payment POSTs, each on a fresh connection (by design: never
  --     resent on a reused connection), against openssl s_time -reuse
  local pay = client(srv.url, false)
  local body = { instructedAmount = { currency = "EUR", amount = "123.45" },
    creditorAccount = { iban = "LT601010012345678901" }, creditorName = "Bench",
    remittanceInformationUnstructured = "bench" }
  local function payments(n)
    local t0 = now()
    for _ = 1, n do
      local res = assert(pay:request{ method = "POST", path = "/pay", service = "PIS", body = body })
      assert(res.status == 201)
    end
    return now() - t0
  end
  local function s_time()
    -- s_time prints its real time in whole seconds (time(3)), and runs
    -- between 2 and 3 s for `-time 2`: that figure understates its rate by
    -- up to a third. The wall clock around the command is the honest one
    -- (its start-up, a few ms, counts against s_time).
    local t0 = now()
    local out = sh(table.concat({ "openssl s_time -connect", "127.0.0.1:" .. srv.port, "-cert", PKI .. "qwac.pem",
      "-key", PKI .. "qwac.key", "-CAfile", PKI .. "ca.pem", "-reuse -time 2 -www",
      url_ok:match("^https://[^/]+(/.*)$") }, " "))
    local wall = now() - t0
    local n = out:match("(%d+) connections in %d+ real seconds")
    assert(n, "openssl s_time: " .. out:sub(-300))
    return wall / tonumber(n)              -- seconds per connection
  end
  -- the same payments from raw C (bench/curl_pay.c: libcurl and OpenSSL,
  -- the same fresh connection, headers and RSA signature): what libcurl
  -- itself allows
  local function c_pay(n)
    local out = sh(table.concat({ PAY, url_ok:gsub("/ok$", "/pay"), PKI .. "qwac.pem", PKI .. "qwac.key",
      PKI .. "ca.pem", PKI .. "qseal.pem", PKI .. "qseal.key", n }, " "))
    local wall = tonumber(out:match("wall ([%d.]+)"))
    assert(wall, "curl_pay: " .. out)
    return wall
  end
  payments(20)
  local PN = 300
  local pr, sr, cr = {}, {}, {}
  local pay_stats
  for r = 1, ROUNDS do
    sr[r] = s_time()
    cr[r] = c_pay(PN) / PN
    srv:mark_tls()
    pr[r] = payments(PN) / PN
    pay_stats = settled(srv, "/pay", PN)
  end
  row("signed payment POSTs, a fresh connection each", fmt("%.0f payments/s", 1 / median(pr)),
    fmt("s_time -reuse %.0f conn/s", 1 / median(sr)), paired(sr, pr), 0.8, "higher")
  row("  same, against a raw C libcurl payment loop (wall)", fmt("%.0f payments/s", 1 / median(pr)),
    fmt("raw C %.0f payments/s", 1 / median(cr)), paired(pr, cr), 1.15, "lower")
  note(fmt("the raw C payment loop itself reaches %.2f of s_time -reuse (libcurl 7.88 builds an SSL_CTX for "
    .. "every new connection; s_time keeps one)", paired(sr, cr)))
  note("payment run: " .. conns(pay_stats))
  pay_times = { s_time = median(sr), client = median(pr), c = median(cr) }
  -- instructions per payment (callgrind: 30 payments minus 10), client and
  -- raw C loop: what each does per payment, whatever the machine's speed
  if HAVE_VALGRIND then
    local ir_c = per_unit(function(n)
      return table.concat({ PAY, url_ok:gsub("/ok$", "/pay"), PKI .. "qwac.pem", PKI .. "qwac.key",
        PKI .. "ca.pem", PKI .. "qseal.pem", PKI .. "qseal.key", n }, " ")
    end, 10, 30)
    local ir_l = per_unit(function(n)
      return (is_jit and "luajit" or "lua5.4") .. " bench/ir_client.lua " .. srv.url .. " " .. n .. " pay"
    end, 10, 30)
    if ir_c and ir_l then
      note(fmt("instructions per payment (callgrind): client %.0f, raw C loop %.0f (x%.3f)", ir_l, ir_c,
        ir_l / ir_c))
    end
  end
end)
srv:stop()
assert(ok_http, err_http)

------------------------------------------------------------------------------
-- 2. Signatures: the Berlin Group signer against openssl speed, in
--    interleaved rounds of one CPU second each; each side's best round

do
  local sign = require "xs2a.sign"
  local function speed(alg)
    -- signatures per user CPU second (openssl speed counts the user time of
    -- times(), in clock ticks)
    local out = sh("openssl speed -mr -seconds 1 " .. alg)
    local per_s = out:match("%+F%d*:%d+:%d+:([%d.]+):")
    assert(per_s, "openssl speed " .. alg .. ": " .. out:sub(-300))
    return tonumber(per_s)
  end
  -- the signer alone: one request signed in place again and again (each
  -- signature replaces Digest, Signature and TPP-Signature-Certificate), as
  -- openssl speed signs one buffer again and again; building a new request
  -- table with a new X-Request-ID each time is the pipeline's work, not the
  -- signer's
  -- the same clock for ours: this process's user time in clock ticks, from
  -- /proc/self/stat (os.clock() where there is none, which adds system time)
  local tick = tonumber((sh("getconf CLK_TCK"))) or 100
  local function user_time()
    local f = io.open("/proc/self/stat", "rb")
    local stat = f and f:read("*a")
    if f then f:close() end
    local rest = stat and stat:match(".*%)(.*)")   -- after the command name, which may hold ")"
    local ticks = rest and tonumber(rest:match("^%s+%S+" .. string.rep("%s+%S+", 10) .. "%s+(%d+)"))
    return ticks and ticks / tick or os.clock()
  end
  local function ours(signer, secs)
    local req = { method = "POST", url = "https://bank.example/v1/payments/sepa-credit-transfers",
      headers = { ["X-Request-ID"] = core.uuid4(), ["Content-Type"] = "application/json",
        ["Date"] = "Sun, 29 Nov 2026 07:00:00 GMT" },
      body = '{"instructedAmount":{"currency":"EUR","amount":"123.45"}}' }
    for _ = 1, 20 do assert(signer:sign(req)) end
    local n, c0, u0 = 0, os.clock(), user_time()
    repeat
      for _ = 1, 50 do assert(signer:sign(req)) end
      n = n + 50
    until os.clock() - c0 >= secs
    return n / (user_time() - u0)
  end
  -- each round brackets one second of openssl speed with half a second of
  -- ours before and after it (a drift of the machine's speed within the
  -- round then weighs on both sides alike); at least 8 rounds
  local SROUNDS = math.max(ROUNDS, 8)
  local rsa_rate
  local ec = assert(xs2a.identity{ cert = PKI .. "qseal-ec.pem", key = PKI .. "qseal-ec.key" })
  for _, c in ipairs({ { "ECDSA P-256", ec, "ecdsap256" }, { "RSA-2048", qseal, "rsa2048" } }) do
    local signer, o, r = sign.berlin(c[2]), {}, {}
    for i = 1, SROUNDS do
      local before = ours(signer, 0.5)
      r[i] = speed(c[3])
      o[i] = (before + ours(signer, 0.5)) / 2
    end
    local s_ours, s_ref = median(o), median(r)
    row(c[1] .. " Berlin signatures per second", fmt("%.0f/s", s_ours), fmt("openssl speed %.0f/s", s_ref),
      paired(o, r), 0.9, "higher")
    local bo, br = 0, 0
    for i = 1, SROUNDS do bo, br = math.max(bo, o[i]), math.max(br, r[i]) end
    note(fmt("(%d rounds, medians; best rounds: %.0f vs %.0f/s, %.2f)", SROUNDS, bo, br, bo / br))
    if c[3] == "rsa2048" then rsa_rate = s_ref end
  end
  -- the payment row's goal against what any client could do here: open a
  -- resumed mTLS connection as fast as s_time does, and sign as fast as
  -- openssl speed does (the reference does no signature)
  if pay_times and rsa_rate then
    local floor = pay_times.s_time + 1 / rsa_rate
    note(fmt("payments: a client with s_time's connection and openssl speed's RSA-2048 signature would do "
      .. "%.0f/s, %.2f of s_time -reuse; the raw C libcurl loop does %.0f/s, the client %.0f/s (%.2f of that "
      .. "floor)", 1 / floor, pay_times.s_time / floor, 1 / pay_times.c, 1 / pay_times.client,
      floor / pay_times.client))
  end
  -- instructions per signature (callgrind), which no other load on the
  -- machine changes: ours is the difference of two fixed-count runs of the
  -- loop above; openssl speed's is what it spends inside EVP_PKEY_sign over
  -- the signatures it reports
  if HAVE_VALGRIND then
    local script = os.tmpname()
    local f = assert(io.open(script, "wb"))
    f:write(fmt([[
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = %q .. package.cpath
local xs2a = require "xs2a"
local id = assert(xs2a.identity{ cert = arg[1] .. ".pem", key = arg[1] .. ".key" })
local signer = xs2a.sign.berlin(id)
local req = { method = "POST", url = "https://bank.example/v1/payments/sepa-credit-transfers",
  headers = { ["X-Request-ID"] = "0b7e9c1e-5d2a-4f7e-9a51-3c8d2e6f4a10", ["Content-Type"] = "application/json",
    ["Date"] = "Sun, 29 Nov 2026 07:00:00 GMT" },
  body = '{"instructedAmount":{"currency":"EUR","amount":"123.45"}}' }
for _ = 1, tonumber(arg[2]) do assert(signer:sign(req)) end
]], is_jit and "./build/luajit/?.so;" or "./build/lua5.4/?.so;"))
    f:close()
    for _, c in ipairs({ { "ECDSA P-256", "qseal-ec", "ecdsap256", 100, 400 },
                         { "RSA-2048", "qseal", "rsa2048", 10, 40 } }) do
      local lua = (is_jit and "luajit " or "lua5.4 ") .. script .. " " .. PKI .. c[2] .. " "
      local mine = per_unit(function(n) return lua .. n end, c[4], c[5])
      local total, out = instructions("--toggle-collect=EVP_PKEY_sign openssl speed -mr -seconds 1 " .. c[3])
      local count = tonumber(out:match("%+R%d+:(%d+):"))
      if mine and total and count and count > 0 then
        local ref = total / count
        note(fmt("instructions per %s signature (callgrind): Berlin signer %.0f, openssl speed's EVP_PKEY_sign %.0f "
          .. "(ratio %.2f)", c[1], mine, ref, ref / mine))
      end
    end
    os.remove(script)
  end
end

------------------------------------------------------------------------------
-- 3. The limiter against the sandbox bank's own rate limit (10/s per TPP,
--    counted per calendar second): 300 requests sequentially and 300 with
--    20 in flight. The rate is the steady one: (300 - 10) requests over the
--    time from the middle of the first window's answers to the middle of the
--    last window's (the first window's 10 go at once).

if QUICK then
  note("limiter runs against the sandbox skipped (XS2A_BENCH_QUICK=1)")
else
  local sandbox = require "support.sandbox"
  local sb = sandbox.start{ config = { platform_test_routes = true } }
  local ok_l, err_l = pcall(function()
    local bank_rate = 10
    local c = assert(xs2a.client{ profile = "paysera-berlin", base_url = sb.base_url,
      ca_file = sb.pki .. "/ca.pem", qwac = qwac, qseal = qseal, store = xs2a.store.memory() })
    local function run(label, in_flight)
      local n, done, statuses = 300, {}, {}
      local tag = label .. "-" .. math.random(1e9)
      local function one(i)
        local res, err = c:request{ method = "GET", path = "/v1/_platform/ais", query = { m = tag, i = i },
          service = "AIS" }
        local st = res and res.status or (err and err.status) or 0
        statuses[st] = (statuses[st] or 0) + 1
        done[#done + 1] = now()
      end
      local t0 = now()
      if in_flight == 1 then
        for i = 1, n do one(i) end
      else
        local fns = {}
        for w = 1, in_flight do
          fns[w] = function() for i = w, n, in_flight do one(i) end end
        end
        parallel.all(fns)
      end
      local total = now() - t0
      -- the steady rate: from the middle of the first window's answers to
      -- the middle of the last window's (the first window's burst and the
      -- answer latency of a burst's last request do not count)
      table.sort(done)
      local w, h = bank_rate, math.floor(bank_rate / 2)
      local steady = (n - w) / (done[n - w + h + 1] - done[h + 1])
      local bank429 = 0
      for _ = 1, 40 do
        local seen = 0
        bank429 = 0
        for _, line in ipairs(sb:access_log()) do
          if line:find(tag, 1, true) then
            seen = seen + 1
            if line:match('" (%d+)') == "429" then bank429 = bank429 + 1 end
          end
        end
        if seen >= n then break end
        core.sleep(50)
      end
      local ok200 = statuses[200] or 0
      row(fmt("limiter, 300 requests, %s (bank: %d/s)", label, bank_rate),
        fmt("%.2f req/s, %d x 429", steady, bank429 + (statuses[429] or 0)),
        fmt("%d x 200, %.1f s in all", ok200, total), steady / bank_rate, 0.97, "higher")
      if bank429 + (statuses[429] or 0) > 0 or ok200 ~= n then
        missed = missed + 1
        note("limiter " .. label .. ": MISSED: a 429 or a failed request")
      end
    end
    run("sequential", 1)
    run("20 in flight", 20)
  end)
  sb:stop()
  assert(ok_l, err_l)
end

------------------------------------------------------------------------------
-- 4. The memory store under the limiter at 10 requests a second for 24
--    simulated hours (with frequencyPerDay counters): keys and Lua heap.

do
  local t = 1767225600
  local clock = function() return t end
  local st = xs2a.store.memory{ clock = clock }
  local limiter = require "xs2a.limiter"
  local l = limiter.new{ store = st, id = "tpp", per_second = 10, per_hour = 50000, concurrent = 20,
    clock = clock, sleep = function(s) t = t + s end }
  local marks = {}
  local function heap()
    collectgarbage()
    collectgarbage()
    return collectgarbage("count")
  end
  local h0 = heap()
  local per_hour = 36000
  for hour = 1, 24 do
    for i = 1, per_hour do
      assert(l:acquire())()
      if i % 10 == 0 then assert(l:frequency("consent-" .. (i % 4), "/v1/accounts", 1e9)) end
      t = t + 0.1
    end
    if hour == 1 or hour == 12 or hour == 24 then marks[#marks + 1] = { hour, st:size(), heap() } end
  end
  local first, last = marks[1], marks[#marks]
  row("memory store, 24 simulated hours at 10 req/s (keys)",
    fmt("%d keys after 24 h", last[2]), fmt("%d after 1 h, %d after 12 h", first[2], marks[2][2]),
    last[2] / first[2], 1.25, "lower")
  note("(the keys that come and go: 10 ring slots, 13-14 hour slots, the frequencyPerDay counters of "
    .. "today and yesterday)")
  row("memory store, 24 simulated hours at 10 req/s (Lua heap)",
    fmt("%.0f KiB after 24 h", last[3]), fmt("%.0f KiB after 1 h (start %.0f)", first[3], h0),
    last[3] / first[3], 1.1, "lower")
end

------------------------------------------------------------------------------
-- 5. Decoding a page of 50 transactions (19 KB, the common large answer of
--    AIS): xs2a.codec.json (cjson, then the pass that marks arrays and makes
--    integers) against cjson.decode alone, in paired rounds. A note, no goal.

do
  local json = require "xs2a.codec.json"
  local cjson = require "cjson"
  local tx = {}
  for i = 1, 50 do
    tx[i] = fmt('{"transactionId":"tx-%d","bookingDate":"2026-11-%02d","valueDate":"2026-11-%02d",'
      .. '"transactionAmount":{"currency":"EUR","amount":"-%d.%02d"},"creditorName":"Shop %d",'
      .. '"creditorAccount":{"iban":"LT12100001111111%04d"},"remittanceInformationUnstructured":"Invoice %d",'
      .. '"bankTransactionCode":"PMNT-ICDT-STDO","entryReference":%d,'
      .. '"_links":{"transactionDetails":{"href":"/v1/accounts/acc-1/transactions/tx-%d"}}}',
      i, i % 28 + 1, i % 28 + 1, i, i % 100, i, i, i, i, i)
  end
  local text = '{"account":{"iban":"LT601010012345678901"},"transactions":{"booked":['
    .. table.concat(tx, ",") .. '],"pending":[],"_links":{"next":{"href":"/v1/accounts/acc-1/transactions'
    .. '?page=2"}}}}'
  local function per_call(f)
    for _ = 1, 20 do f(text) end
    local n, c0 = 0, os.clock()
    repeat
      for _ = 1, 20 do f(text) end
      n = n + 20
    until os.clock() - c0 >= 0.3
    return (os.clock() - c0) / n
  end
  local ours, ref = {}, {}
  for r = 1, ROUNDS do
    ours[r] = per_call(json.decode)
    ref[r] = per_call(cjson.decode)
  end
  note(fmt("JSON decode of a 50-transaction page (%d bytes): xs2a.codec.json %.0f us, cjson.decode %.0f us "
    .. "(x%.2f; the pass after cjson runs in %s)", #text, median(ours) * 1e6, median(ref) * 1e6,
    paired(ours, ref), json._walks.used or "none"))
end

print(missed == 0 and "bench: all goals met" or ("bench: " .. missed .. " goal(s) missed"))
os.exit(missed == 0 and 0 or 1)
