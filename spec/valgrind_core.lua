-- Exercises identity, crypto and signing in load-use-close-gc loops so that
-- `make valgrind` (valgrind --leak-check=full lua5.4 spec/valgrind_core.lua)
-- can report leaks and invalid accesses in xs2a.core. Plain Lua, no busted.
package.path = "./lua/?.lua;./lua/?/init.lua;./spec/?.lua;" .. package.path
package.cpath = "./build/lua5.4/?.so;" .. package.cpath

local core = require "xs2a.core"
local sign = require "xs2a.sign"
local crypto = require "xs2a.crypto"

local pki = (os.getenv("XS2A_PKI") or "build/pki") .. "/"
local function read(p)
  local f = assert(io.open(p, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end
local PASS = "test-passphrase"
local ROUNDS = tonumber(os.getenv("ROUNDS") or "3")

for _ = 1, ROUNDS do
  -- every way to load, and every way to fail
  local ids = {
    assert(core.identity{ cert = pki .. "qwac.pem", key = pki .. "qwac.key" }),
    assert(core.identity{ cert = read(pki .. "qseal.pem"), key = read(pki .. "qseal.key") }),
    assert(core.identity{ cert = pki .. "qseal-ec.pem", key = pki .. "qseal-ec.key" }),
    assert(core.identity{ cert = pki .. "qwac.pem", key = pki .. "qwac-enc.key", passphrase = PASS }),
    assert(core.identity{ p12 = pki .. "qwac.p12", passphrase = PASS }),
    assert(core.identity{ p12 = read(pki .. "qwac.p12"), passphrase = PASS }),
    assert(core.identity{ cert = read(pki .. "qwac.pem") .. read(pki .. "ca.pem"), key = pki .. "qwac.key" }),
  }
  for _, bad in ipairs({
    { cert = pki .. "qwac.pem", key = pki .. "other.key" },
    { cert = pki .. "qwac.pem", key = pki .. "qwac-enc.key", passphrase = "wrong" },
    { cert = pki .. "qwac.pem", key = pki .. "qwac-enc.key" },
    { p12 = pki .. "qwac.p12", passphrase = "wrong" },
    { p12 = pki .. "qwac.p12" },
    { cert = "/nonexistent.pem", key = pki .. "qwac.key" },
    { cert = "garbage", key = "garbage" },
    { cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", key = pki .. "qwac.key" },
    { cert = pki .. "qwac.pem", key = "\48\130\1\1junk" },
    { p12 = "\48\3\2\1\0", passphrase = PASS },
  }) do
    assert(core.identity(bad) == nil)
  end
  assert(not pcall(core.identity, {}))

  for _, id in ipairs(ids) do
    local info = id:info()
    assert(#info.roles == 3)
    local der = id:cert_der()
    assert(core.cert_info(der) and core.cert_info(id:cert_pem()))
    for n = 0, #der, 97 do core.cert_info(der:sub(1, n)) end
    id:chain_der()
    tostring(id)
    if info.key_type == "EC" then
      local raw = id:sign("data", { ec_format = "raw" })
      assert(core.verify(der, "data", raw, { ec_format = "raw" }))
      assert(core.verify(id, "data", id:sign("data")))
      assert(not core.verify(der, "datA", raw, { ec_format = "raw" }))
      assert(not core.verify(der, "data", "xx", { ec_format = "raw" }))
    else
      local s = id:sign("data", { hash = "sha512", padding = "pss" })
      assert(core.verify(der, "data", s, { hash = "sha512", padding = "pss" }))
      assert(not core.verify(der, "data", s))
    end
    assert(not pcall(id.sign, id, "x", { hash = "md5" }))
    assert(not core.verify("garbage", "d", "s"))
  end

  -- signers
  local qseal, qseal_ec = ids[2], ids[3]
  local ca = read(pki .. "ca.pem")
  for _, s in ipairs({ sign.berlin(qseal), sign.berlin(qseal_ec, { headers = { "date", "(request-target)" } }) }) do
    local req = { method = "POST", url = "https://b.example/p?x=1", body = '{"a":1}',
      headers = { ["X-Request-ID"] = core.uuid4(), ["PSU-ID"] = "alice" } }
    assert(s:sign(req))
    assert(sign.verify_berlin(req, { cert = ca }))
  end
  local req = { method = "POST", url = "https://b.example:8443/p", body = "{}",
    headers = { ["X-Request-ID"] = "r", ["PSU-IP-Address"] = "1.2.3.4" } }
  assert(sign.jws(qseal_ec):sign(req))
  assert(sign.verify_jws(req, { cert = ca, request = true }))
  local res = { status = 200, headers = { ["x-request-id"] = "r" }, body = "{}" }
  assert(sign.jws(qseal, { response = true }):sign(res))
  assert(sign.verify_jws(res, { cert = read(pki .. "qseal.pem") }))
  assert(core.cert_issued_by(read(pki .. "qwac.pem"), ca))
  assert(not core.cert_issued_by(read(pki .. "qwac-foreign.pem"), ca))
  assert(core.cert_verify(read(pki .. "aspsp-seal.pem"),
    { anchors = { ca }, organization_identifier = "PSDLT-BOL-ASPSP1" }))
  assert(not core.cert_verify(read(pki .. "qseal.pem"),
    { anchors = ca, chain = { ca }, organization_identifier = "X" }))
  assert(not core.cert_verify(read(pki .. "qwac-expired.pem"), { anchors = ca .. ca }))
  assert(not core.cert_verify("junk", { anchors = "junk" }))
  local mac = sign.mac{ id = "c", key = "k" }
  assert(mac:sign{ method = "POST", url = "https://h.example/x", body = "b" })

  -- crypto primitives
  for n = 0, 40 do
    local r = core.random(n)
    assert(core.b64decode(core.b64encode(r)) == r)
    assert(core.b64url_decode(core.b64url_encode(r)) == r)
    core.hex(r)
  end
  assert(core.b64decode("Zh==") == nil and core.b64url_decode("A") == nil)
  core.digest("sha512", "x")
  core.hmac("sha256", "k", "x")
  core.uuid4()
  core.ct_equal("a", "ab")
  crypto.pkce()
  crypto.state()

  -- half closed explicitly (twice), half left to the collector
  for i, id in ipairs(ids) do
    if i % 2 == 0 then
      id:close()
      id:close()
      assert(not pcall(id.info, id))
    end
  end
  ids = nil   -- luacheck: ignore
  collectgarbage()
  collectgarbage()
end

-- The HTTP session against a real local TLS server that demands a client
-- certificate (spec/support/tlsserver.lua): success, every kind of failure,
-- the multi interface, and sessions closed or left to the collector with
-- transfers in flight.
local function http_round(srv, qwac)
  local ca = pki .. "ca.pem"
  local s = core.http_session{ identity = qwac, ca_file = ca, timeout = 5000, connect_timeout = 5000 }
  local res = assert(s:request{ method = "POST", url = srv.url .. "/echo", body = '{"a":1}',
    headers = { ["X-Request-ID"] = "r1", ["Content-Type"] = "application/json" }, header_list = true })
  assert(res.status == 200 and res.headers["content-type"] and #res.header_list > 0)
  res = assert(s:request{ url = srv.url .. "/headers" })
  assert(res.status == 200)
  assert(assert(s:request{ url = srv.url .. "/status/503" }).status == 503)
  local _, _, code = s:request{ url = srv.url .. "/big/100000", max_body = 1000 }
  assert(code == "too_large", tostring(code))
  _, _, code = s:request{ url = srv.url .. "/delay/3000", timeout = 300 }
  assert(code == "timeout", tostring(code))
  _, _, code = s:request{ url = srv.url .. "/echo", headers = { ["Bad\nName"] = "x" } }
  assert(code == "bad_request", tostring(code))
  local ids = {}
  for i = 1, 5 do ids[#ids + 1] = assert(s:submit{ url = srv.url .. "/echo?n=" .. i }) end
  ids[#ids + 1] = assert(s:submit{ url = srv.url .. "/big/100000", max_body = 10 })
  local done, deadline = 0, core.monotonic() + 30
  while done < #ids and core.monotonic() < deadline do
    for _, r in ipairs(s:poll(200)) do
      assert(r.res or r.code == "too_large")
      done = done + 1
    end
  end
  assert(done == #ids, "poll finished " .. done)
  assert(s:pending() == 0)
  tostring(s)
  s:close()
  s:close()
  assert(not pcall(s.request, s, { url = srv.url }))

  -- failures before anything is sent
  local bare = core.http_session{ identity = false, ca_file = ca, timeout = 5000 }
  res, _, code = bare:request{ url = srv.url .. "/echo" }   -- no client certificate: nginx says 400
  assert((res and res.status == 400) or code == "tls", tostring(code))
  bare:close()
  local untrusting = core.http_session{ identity = qwac, ca_file = pki .. "foreign-ca.pem" }
  _, _, code = untrusting:request{ url = srv.url .. "/echo" }
  assert(code == "tls", tostring(code))
  untrusting:close()
  _, _, code = core.http_session{ identity = qwac, ca_file = ca, connect_timeout = 1000 }
    :request{ url = require("support.tlsserver").refused_url() }
  assert(code == "connect", tostring(code))

  -- transfers in flight when the session is closed or collected
  local busy = core.http_session{ identity = qwac, ca_file = ca }
  busy:submit{ url = srv.url .. "/delay/2000" }
  busy:poll(50)
  busy:close()
  busy = core.http_session{ identity = qwac, ca_file = ca }
  busy:submit{ url = srv.url .. "/delay/2000" }
  busy:poll(50)
  busy = nil   -- luacheck: ignore
  collectgarbage()
  collectgarbage()
end

if os.getenv("XS2A_VALGRIND_HTTP") ~= "0" then
  local tlsserver = require "support.tlsserver"
  local srv = tlsserver.start{ verify_client = true }
  local qwac = assert(core.identity{ cert = pki .. "qwac.pem", key = pki .. "qwac.key" })
  local ok, err = xpcall(function()
    for _ = 1, math.min(ROUNDS, 2) do http_round(srv, qwac) end
  end, debug.traceback)
  srv:stop()
  qwac:close()
  collectgarbage()
  assert(ok, tostring(err))
end

-- the JSON walk (csrc/json.c): marks, conversions, and the depth refusal
do
  local cjson = require "cjson"
  local mt = {}
  for _ = 1, ROUNDS do
    local v = assert(core.json_walk(cjson.decode('{"a":[1,2.0,{"b":[3.5]}],"c":{}}'), mt, true, true))
    assert(getmetatable(v.a) == mt and getmetatable(v.a[3].b) == mt)
    local deep = {}
    local t = deep
    for _ = 1, 3000 do t[1] = {}; t = t[1] end
    assert(core.json_walk(deep, mt, true, true) == nil)
  end
  collectgarbage()
end

print("valgrind_core: ok")
