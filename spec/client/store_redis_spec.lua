-- xs2a.store.redis against real redis-server processes (spec/support/redis.lua):
-- the shared store contract (spec/support/store_cases.lua) on a real clock,
-- authentication, database and prefix isolation, failures that answer with an
-- error in time (server down, stopped, protocol broken) and recover, the
-- retry rule (a broken connection repeats GET but never INCR), the lock's
-- compare-and-delete, and a real client whose tokens live in Redis: an OAuth
-- consent flow, and two OS processes refreshing the same expired token with
-- exactly one refresh_token grant at the sandbox.
local redis_support = require "support.redis"
local cases = require "support.store_cases"
local sandbox = require "support.sandbox"
local support = require "support.client"
local xs2a = require "xs2a"
local oauth = require "xs2a.sca.oauth"
local json = require "xs2a.codec.json"
local socket = require "socket"

local LUA = rawget(_G, "jit") and "luajit" or "lua5.4"
local CPATH = rawget(_G, "jit") and "build/luajit/?.so;" or "build/lua5.4/?.so;"
local PRESENT = { psu_ip = "198.51.100.7" }   -- the PSU is at the screen: no frequencyPerDay count
local PASSWORD = "correct-horse-" .. math.random(1000, 9999)

local function unique(name)
  return name .. ":" .. os.time() .. ":" .. math.random(1, 1e9) .. ":"
end

local function elapsed(f)
  local t = socket.gettime()
  local a, b, c = f()
  return socket.gettime() - t, a, b, c
end

-- every string reachable from a table (not through metatables)
local function strings_in(t, out, seen)
  out, seen = out or {}, seen or {}
  if seen[t] then return out end
  seen[t] = true
  for k, v in pairs(t) do
    for _, x in ipairs({ k, v }) do
      if type(x) == "string" then out[#out + 1] = x
      elseif type(x) == "table" then strings_in(x, out, seen) end
    end
  end
  return out
end

describe("xs2a.store.redis #network", function()
  local srv

  setup(function()
    srv = redis_support.start{ password = PASSWORD }
  end)

  teardown(function()
    if srv then srv:stop() end
  end)

  local function new_store(extra)
    local o = { port = srv.port, password = PASSWORD, timeout = 2 }
    for k, v in pairs(extra or {}) do
      if v == false then o[k] = nil else o[k] = v end
    end
    return assert(xs2a.store.redis(o))
  end

  describe("contract", function()
    local env = {
      T = 0.2,
      new = function() return new_store{ prefix = unique("contract") } end,
      advance = function(seconds) socket.sleep(seconds) end,
    }
    for _, case in ipairs(cases) do
      it(case.name, function() case.run(env.new(), env) end)
    end
  end)

  it("returns values as strings, numbers included, and sends TTLs in milliseconds", function()
    local p = unique("values")
    local s = new_store{ prefix = p }
    assert.is_true(s:set("n", 5))
    assert.equal("5", s:get("n"))
    assert.is_true(s:set("f", 0.25))
    assert.equal("0.25", s:get("f"))
    assert.is_true(s:set("bin", "a\0b\r\nc"))
    assert.equal("a\0b\r\nc", s:get("bin"))
    assert.is_true(s:set("t", "v", 1.5))
    local pttl = assert(s:_command("PTTL", p .. "t"))
    assert.is_true(pttl > 1000 and pttl <= 1500, "PTTL " .. tostring(pttl))
    assert.equal(-1, s:_command("PTTL", p .. "n"))
  end)

  it("authenticates with the password and names neither password in errors or tostring", function()
    local good = new_store{ prefix = unique("auth") }
    assert.is_true(good:set("k", "v"))
    assert.equal("v", good:get("k"))
    assert.equal("xs2a.store.redis(127.0.0.1:" .. srv.port .. " db 0)", tostring(good))
    for _, str in ipairs(strings_in(good)) do
      assert.is_nil(str:find(PASSWORD, 1, true), "the store table holds the password")
    end

    local wrong_pw = "wrong-" .. PASSWORD
    local bad = new_store{ password = wrong_pw }
    local calls = {
      function() return bad:get("k") end,
      function() return bad:set("k", "v") end,
      function() return bad:add("k", "v") end,
      function() return bad:delete("k") end,
      function() return bad:incr("k") end,
      function() return bad:lock("k") end,
    }
    for _, call in ipairs(calls) do
      local v, err = call()
      assert.is_nil(v)
      assert.matches("authentication failed", err, 1, true)
      assert.matches(tostring(bad), err, 1, true)
      assert.is_nil(err:find(wrong_pw, 1, true))
      assert.is_nil(err:find(PASSWORD, 1, true))
    end
    assert.is_nil(tostring(bad):find(wrong_pw, 1, true))

    local none = new_store{ password = false }
    local v, err = none:get("k")
    assert.is_nil(v)
    assert.matches("NOAUTH", err, 1, true)
  end)

  it("keeps databases apart", function()
    local p = unique("db")
    local one, two = new_store{ db = 1, prefix = p }, new_store{ db = 2, prefix = p }
    assert.equal("xs2a.store.redis(127.0.0.1:" .. srv.port .. " db 2)", tostring(two))
    assert.is_true(one:set("k", "in-one"))
    assert.is_nil(two:get("k"))
    assert.is_true(two:set("k", "in-two"))
    assert.equal("in-one", one:get("k"))
    assert.equal("in-two", two:get("k"))
    assert.is_nil(new_store{ prefix = p }:get("k"))   -- db 0
  end)

  it("puts the prefix in front of every key, locks included", function()
    local p = unique("prefix")
    local s = new_store{ prefix = p .. "app1:" }
    local raw = new_store{ prefix = "" }
    assert.is_true(s:set("k", "v"))
    assert.is_true(s:add("a", "x"))
    assert.equal(3, s:incr("n", 1, 2))
    local unlock = assert(s:lock("L", 5))
    assert.equal("v", raw:get(p .. "app1:k"))
    assert.equal("x", raw:get(p .. "app1:a"))
    assert.equal("3", raw:get(p .. "app1:n"))
    assert.is_string(raw:get(p .. "app1:lock:L"))
    assert.is_nil(raw:get("k"))
    assert.is_nil(new_store{ prefix = p .. "app2:" }:get("k"))
    assert.is_true(unlock())
    assert.is_nil(raw:get(p .. "app1:lock:L"))
    -- the default prefix
    local d = new_store{}
    assert.equal("xs2a:", d.prefix)
  end)

  it("refuses bad options without raising", function()
    for _, o in ipairs({ { port = 0 }, { port = "x" }, { db = -1 }, { timeout = 0 }, { prefix = 1 },
        { password = 5 }, { pool = 3 }, { pool = { size = 0 } } }) do
      local s, err = xs2a.store.redis(o)
      assert.is_nil(s)
      assert.matches("xs2a.store.redis", err, 1, true)
    end
  end)

  it("releases only its own lock: an expired lock taken by another holder survives the first unlock", function()
    local p = unique("cad")
    local host_a, host_b = new_store{ prefix = p }, new_store{ prefix = p }
    local raw = new_store{ prefix = p }
    local unlock_a = assert(host_a:lock("job", 0.2))
    socket.sleep(0.35)
    local unlock_b = assert(host_b:lock("job", 10))
    local token_b = raw:get("lock:job")
    assert.is_string(token_b)
    assert.is_false(unlock_a())      -- compare-and-delete: not A's token any more
    assert.equal(token_b, raw:get("lock:job"))
    local again, why = host_a:lock("job", 10)
    assert.is_nil(again)
    assert.equal("locked", why)
    assert.is_true(unlock_b())
    assert.is_false(unlock_b())      -- a second call does nothing
    assert.is_nil(raw:get("lock:job"))
  end)

  it("reads many keys in one MGET, and limiters on two hosts share one budget through it", function()
    local p = unique("mget")
    local s = new_store{ prefix = p }
    assert.is_true(s:set("a", "1"))
    assert.is_true(s:set("c", "3"))
    local got = assert(s:get_many{ "a", "b", "c" })
    assert.equal(3, got.n)
    assert.equal("1", got[1])
    assert.is_nil(got[2])
    assert.equal("3", got[3])
    assert.equal(0, assert(s:get_many{}).n)

    -- two hosts, one virtual clock: together they never start more than
    -- the per-second budget within any second
    local limiter = require "xs2a.limiter"
    local limits = require "support.limits"
    local vc = limits.vclock()
    local hosts, gets = {}, 0
    for i = 1, 2 do
      local st = new_store{ prefix = p }
      local real_get = st.get
      st.get = function(...) gets = gets + 1; return real_get(...) end
      hosts[i] = limiter.new{ store = st, id = "tpp", per_second = 10, headroom = 1, clock = vc.clock,
        sleep = vc.sleep }
    end
    local starts = limits.run(hosts, 60, 0.01, vc)
    assert.is_true(limits.busiest_second(starts) <= 10)
    assert.is_true(vc.now - starts[1] > 5, "60 starts at 10/s take more than 5 s")
    -- the window was read with MGET, never key by key
    assert.equal(0, gets)
  end)

  describe("when Redis fails", function()
    local own

    before_each(function() own = redis_support.start{} end)
    after_each(function() if own then own:stop() end end)

    it("answers every method with a clear error in time while the server is down, then reconnects", function()
      local s = assert(xs2a.store.redis{ port = own.port, timeout = 1, prefix = unique("down") })
      assert.is_true(s:set("k", "v"))
      own:stop()
      local calls = {
        get = function() return s:get("k") end,
        set = function() return s:set("k", "v") end,
        add = function() return s:add("k", "v") end,
        delete = function() return s:delete("k") end,
        incr = function() return s:incr("n", 1, 0, 10) end,
        lock = function() return s:lock("L", 10) end,
      }
      for name, call in pairs(calls) do
        local took, v, err = elapsed(call)
        assert.is_nil(v, name)
        assert.is_string(err, name)
        assert.matches(tostring(s), err, 1, true)
        assert.matches("connect", err, 1, true)
        assert.is_true(took < 1.5, name .. " took " .. took .. " s")
      end
      own:restart()
      -- a fresh server: the old value is gone, the store works again
      assert.is_nil(s:get("k"))
      assert.is_true(s:set("k", "again"))
      assert.equal("again", s:get("k"))
      assert.equal(1, s:incr("n"))
    end)

    it("times out on a server that stopped answering, then recovers", function()
      local s = assert(xs2a.store.redis{ port = own.port, timeout = 0.3, prefix = unique("hang") })
      assert.is_true(s:set("k", "v"))
      assert(os.execute("kill -STOP " .. own.pid))
      local ok, result = pcall(function()
        local took, v, err = elapsed(function() return s:get("k") end)
        assert.is_nil(v)
        assert.matches("timeout", err, 1, true)
        assert.is_true(took < 0.8, "get took " .. took .. " s")
        took, v, err = elapsed(function() return s:incr("n") end)
        assert.is_nil(v)
        assert.matches("timeout", err, 1, true)
        assert.is_true(took < 0.8, "incr took " .. took .. " s")
      end)
      assert(os.execute("kill -CONT " .. own.pid))
      assert(ok, result)
      assert.equal("v", s:get("k"))
    end)
  end)

  describe("against a misbehaving server", function()
    -- A fake Redis in another process: on each connection it answers the
    -- first command and, for the second, logs it and hangs up without an
    -- answer (a connection that broke under a command). With `garbage` it
    -- answers everything with a malformed reply.
    local FAKE = [==[
local socket = require "socket"
local port_file, log_file, mode = arg[1], arg[2], arg[3]
local server = assert(socket.bind("127.0.0.1", 0))
local _, port = server:getsockname()
local f = assert(io.open(port_file .. ".tmp", "w")); f:write(port); f:close()
os.rename(port_file .. ".tmp", port_file)
server:settimeout(20)
local function read_command(c)
  local head = c:receive("*l")
  if not head then return nil end
  local n = tonumber(head:match("^%*(%d+)$"))
  local parts = {}
  for i = 1, n do
    local len = tonumber(c:receive("*l"):match("^%$(%d+)$"))
    parts[i] = c:receive(len + 2):sub(1, len)
  end
  return parts
end
local answers = { SET = "+OK\r\n", GET = "$-1\r\n", EVAL = ":7\r\n" }
for conn = 1, 10 do
  local c = server:accept()
  if not c then break end
  c:settimeout(20)
  for i = 1, 2 do
    local cmd = read_command(c)
    if not cmd then break end
    local lf = io.open(log_file, "a"); lf:write(conn, " ", cmd[1], "\n"); lf:close()
    if mode == "garbage" then c:send("?what\r\n") break end
    if i == 1 then c:send(answers[cmd[1]] or "+OK\r\n") end
  end
  c:close()
end
]==]

    local function start_fake(mode)
      local script, port_file, log_file = os.tmpname(), os.tmpname(), os.tmpname()
      os.remove(port_file)
      local f = assert(io.open(script, "w")); f:write(FAKE); f:close()
      local p = io.popen(LUA .. " " .. script .. " " .. port_file .. " " .. log_file .. " "
        .. (mode or "normal") .. " >/dev/null 2>&1 & echo $!")
      local pid = tonumber(p:read("*l"))
      p:close()
      local port
      for _ = 1, 200 do
        local pf = io.open(port_file)
        if pf then port = tonumber(pf:read("*a")); pf:close() end
        if port then break end
        socket.sleep(0.01)
      end
      assert(port, "fake server did not start")
      return {
        port = port,
        log = function()
          local lf = io.open(log_file)
          local s = lf and lf:read("*a") or ""
          if lf then lf:close() end
          return s
        end,
        stop = function()
          os.execute("kill " .. pid .. " 2>/dev/null")
          os.remove(script); os.remove(port_file); os.remove(log_file)
        end,
      }
    end

    it("repeats GET on a new connection when a reused one breaks, but never INCR", function()
      local fake = start_fake()
      local ok, err = pcall(function()
        local s = assert(xs2a.store.redis{ port = fake.port, timeout = 2, prefix = "" })
        assert.is_true(s:set("a", "1"))          -- connection 1, answered
        local v, gerr = s:get("a")               -- connection 1 breaks; sent again on 2
        assert.is_nil(gerr)
        assert.is_nil(v)                         -- (the fake answers GET with a nil)
        local n, ierr = s:incr("n")              -- connection 2 breaks: not repeated
        assert.is_nil(n)
        assert.matches("connection", ierr, 1, true)
        assert.equal("1 SET\n1 GET\n2 GET\n2 EVAL\n", fake.log())
        -- the next command opens a new connection and works
        assert.equal(7, s:incr("n"))
        assert.equal("1 SET\n1 GET\n2 GET\n2 EVAL\n3 EVAL\n", fake.log())
      end)
      fake.stop()
      assert(ok, err)
    end)

    it("turns a malformed reply into an error value", function()
      local fake = start_fake("garbage")
      local ok, err = pcall(function()
        local s = assert(xs2a.store.redis{ port = fake.port, timeout = 2 })
        local v, gerr = s:get("a")
        assert.is_nil(v)
        assert.matches("protocol error", gerr, 1, true)
      end)
      fake.stop()
      assert(ok, err)
    end)
  end)

  describe("with a client", function()
    local sb

    setup(function()
      -- a private bank: this file's clients count requests in Redis, apart
      -- from the other spec files' shared limiter
      sb = sandbox.start{}
    end)

    teardown(function()
      if sb then sb:stop() end
    end)

    local function token_posts(from)
      local n = 0
      local lines = sb:access_log()
      for i = from + 1, #lines do
        if lines[i]:find("POST /xs2a/berlin/1.3/oauth/token", 1, true) then n = n + 1 end
      end
      return n
    end

    local consent_body = support.consent_body

    local prefix = unique("client")

    local function redis_client()
      return support.new_client("berlin", { store = new_store{ prefix = prefix } }, sb)
    end

    local consent, client

    it("completes an OAuth consent flow and reads accounts with the token kept in Redis", function()
      client = redis_client()
      consent = assert(client:create_consent(consent_body(), PRESENT))
      local step = assert(support.authorise(consent))
      assert.equal("valid", step.status)
      local accounts = assert(consent:accounts(PRESENT))
      assert.is_true(#accounts > 0)
      -- the token record is in Redis (seen through a new connection) ...
      local raw = new_store{ prefix = prefix }:get(oauth.store_key(consent.token_key))
      assert.is_string(raw)
      assert.is_string(json.decode(raw).access_token)
      -- ... and nowhere else
      assert.is_nil(support.shared_store():get(oauth.store_key(consent.token_key)))
      -- a second client on the same Redis (another host) uses it as it is
      local other = redis_client()
      local mark = #sb:access_log()
      assert.is_true(#assert(other:consent(consent.id):accounts(PRESENT)) > 0)
      assert.equal(0, token_posts(mark))
    end)

    it("reports a token store that is down as a store error, at once and without calling the bank", function()
      local own = redis_support.start{}
      finally(function() own:stop() end)
      local c = support.new_client("berlin", {
        store = assert(xs2a.store.redis{ port = own.port, timeout = 1, prefix = unique("gone") }) }, sb)
      local cons = assert(c:create_consent(consent_body(), PRESENT))
      assert.equal("valid", assert(support.authorise(cons)).status)
      own:stop()
      local mark = #sb:access_log()
      local took, list, err = elapsed(function() return cons:accounts(PRESENT) end)
      assert.is_nil(list)
      assert.equal("store", err.kind)
      assert.equal("STORE_UNAVAILABLE", err.code)
      assert.is_true(err.retryable)
      assert.matches("token store read failed", tostring(err), 1, true)
      assert.is_true(took < 3, "took " .. took .. " s")
      for i = mark + 1, #sb:access_log() do
        assert.is_nil(sb:access_log()[i]:find("/v1/accounts", 1, true))
      end
    end)

    it("lets exactly one of two processes refresh an expired token", function()
      assert.is_table(consent, "needs the consent of the previous case")
      local rec = assert(oauth.read_record(client, consent.token_key))
      local old_access, old_refresh = rec.access_token, rec.refresh_token
      rec.expires_at = oauth.now() - 1
      oauth.set_record(client, consent.token_key, rec)

      local child = os.tmpname()
      local f = assert(io.open(child, "w"))
      f:write([==[
local root, cpath, port, password, prefix, base_url, pki, consent_id, go_at = ...
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. root .. "/spec/?.lua;" .. package.path
package.cpath = root .. "/" .. cpath .. package.cpath
require "helper"
local support = require "support.client"
local store = assert(require("xs2a.store").redis{ port = tonumber(port), password = password, prefix = prefix })
local client = support.new_client("berlin", { store = store }, { base_url = base_url, pki = pki })
local consent = client:consent(consent_id)
local socket = require "socket"
while socket.gettime() < tonumber(go_at) do socket.sleep(0.002) end
local accounts, err = consent:accounts()
io.write(accounts and ("OK " .. #accounts) or ("ERR " .. tostring(err)), "\n")
]==])
      f:close()
      local root = require("helper").root
      local mark = #sb:access_log()
      local go_at = socket.gettime() + 1.5
      local procs = {}
      for i = 1, 2 do
        local args = { root, CPATH, srv.port, PASSWORD, prefix, sb.base_url, sb.pki, consent.id,
          string.format("%.3f", go_at) }
        for j, a in ipairs(args) do args[j] = sandbox.shell_quote(a) end
        procs[i] = io.popen(LUA .. " " .. child .. " " .. table.concat(args, " ") .. " 2>&1")
      end
      local outs = {}
      for i = 1, 2 do
        outs[i] = procs[i]:read("*a")
        procs[i]:close()
      end
      os.remove(child)
      for i = 1, 2 do
        assert.matches("^OK %d+", outs[i], nil, false)
      end
      -- one refresh_token grant at the bank, no refused one
      local n, bad = token_posts(mark), 0
      local lines = sb:access_log()
      for i = mark + 1, #lines do
        if lines[i]:find("oauth/token", 1, true) and not lines[i]:find(" 200$") then bad = bad + 1 end
      end
      assert.equal(1, n)
      assert.equal(0, bad)
      local new = assert(oauth.read_record(client, consent.token_key))
      assert.not_equal(old_access, new.access_token)
      assert.not_equal(old_refresh, new.refresh_token)
      assert.is_true(new.expires_at > oauth.now() + 60)
      -- and this process uses the rotated token without another refresh
      assert.is_true(#assert(consent:accounts(PRESENT)) > 0)
      assert.equal(1, token_posts(mark))
    end)
  end)
end)
