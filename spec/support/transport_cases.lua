--- The shared transport spec, as data: every transport (curl under busted,
-- ngx inside an nginx worker) must pass every case.
--
--     for _, case in ipairs(require "support.transport_cases") do
--       it(case.name, function()
--         local t = env.new_transport()
--         case.run(t, env)
--         t:close()
--       end)
--     end
--
-- `run(t, env)` raises (through luassert) on failure. `t` is a transport made
-- with `env.new_transport()` (QWAC identity, the test CA); a case that needs
-- other options makes (and closes) its own transport. What `env` provides:
--
--   env.new_transport(opts) -> transport; opts override the defaults
--                            { identity = env.identity("qwac"), ca_file = env.pki("ca.pem") }
--                            (pass identity = false for no client certificate)
--   env.identity(name)      -> an xs2a.Identity from <pki>/<name>.pem + .key
--   env.pki(name)           -> path of a file of the test PKI
--   env.url                 -> base URL of tlsserver{ verify_client = true }
--   env.wrong_host_url      -> base URL of tlsserver{ cert = "wrong-host" }
--   env.refused_url         -> base URL where nothing listens
--   env.connections(filter) -> distinct connections the env.url server saw for
--                              request lines containing filter
--   env.tls_stats(filter)   -> { connections, resumed, requests } from the
--                              env.url server's TLS log (resumed = connections
--                              whose TLS session was resumed)
--
-- The cases only use the transport contract of docs/INTERNALS.md:
-- res = { status, headers (lowercase names, repeated values joined with
-- ", "), body, reused }, err = { code, message, sent }.
local assert = require "luassert"
local cjson = require "cjson"

local function json(res)
  assert.is_table(res)
  local ok, v = pcall(cjson.decode, res.body)
  assert(ok, "response is not JSON: " .. tostring(res.body):sub(1, 200))
  return v
end

local counter = 0
local function tag(prefix)
  counter = counter + 1
  return ("%s-%d-%d-%d"):format(prefix, os.time(), math.random(0, 999999), counter)
end

local function hex(s)
  return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

-- res, err must be a failure with `code` and `sent`
local function assert_fails(res, err, code, sent)
  assert.is_nil(res, "expected a failure, got status " .. tostring(res and res.status))
  assert.is_table(err)
  assert.equals(code, err.code, "code: " .. tostring(err.code) .. " (" .. tostring(err.message) .. ")")
  assert.is_string(err.message)
  assert.is_true(#err.message > 0)
  if sent ~= nil then assert.equals(sent, err.sent) end
end

-- a refused client certificate: nginx answers 400 over the TLS connection;
-- a transport may also see the handshake fail
local function assert_refused(res, err)
  if res then
    assert.equals(400, res.status)
    assert.matches("SSL certificate", res.body)
  else
    assert.is_table(err)
    assert.equals("tls", err.code, tostring(err.message))
  end
end

local cases = {}
local function case(name, run) cases[#cases + 1] = { name = name, run = run } end

case("GET returns status, headers and body", function(t, env)
  local res, err = t:request{ method = "GET", url = env.url .. "/echo?q=1&r=a%20b",
    headers = { ["X-Test"] = "hello", ["Accept"] = "application/json" } }
  assert.is_nil(err)
  assert.equals(200, res.status)
  assert.equals("application/json", res.headers["content-type"])
  assert.is_nil(res.headers["Content-Type"])
  local e = json(res)
  assert.equals("GET", e.method)
  assert.equals("/echo?q=1&r=a%20b", e.uri)
  assert.equals("hello", e.headers["x-test"])
  assert.equals("application/json", e.headers["accept"])
  assert.equals("", e.body)
  -- the server saw our QWAC
  assert.equals("SUCCESS", e.client_verify)
  assert.matches("PSDLT%-BOL%-TPP001", e.client_subject)
  assert.is_boolean(res.reused)
end)

case("POST sends the body and the headers", function(t, env)
  local body = '{"instructedAmount":{"currency":"EUR","amount":"1.23"}}'
  local res, err = t:request{ method = "POST", url = env.url .. "/echo",
    headers = { ["Content-Type"] = "application/json", ["X-Request-ID"] = "a7b9c2d4-0000-4000-8000-000000000001" },
    body = body }
  assert.is_nil(err)
  assert.equals(200, res.status)
  local e = json(res)
  assert.equals("POST", e.method)
  assert.equals(body, e.body)
  assert.equals(#body, e.body_len)
  assert.equals("application/json", e.headers["content-type"])
  assert.equals(tostring(#body), e.headers["content-length"])
  assert.equals("a7b9c2d4-0000-4000-8000-000000000001", e.headers["x-request-id"])
end)

case("PUT, PATCH and DELETE carry their method and body", function(t, env)
  for _, method in ipairs({ "PUT", "PATCH", "DELETE" }) do
    local body = '{"method":"' .. method .. '"}'
    local res, err = t:request{ method = method, url = env.url .. "/echo",
      headers = { ["Content-Type"] = "application/json" }, body = body }
    assert.is_nil(err)
    local e = json(res)
    assert.equals(method, e.method)
    assert.equals(body, e.body)
  end
  -- DELETE without a body
  local res = assert(t:request{ method = "DELETE", url = env.url .. "/echo" })
  local e = json(res)
  assert.equals("DELETE", e.method)
  assert.equals("", e.body)
end)

case("POST without a body sends an empty body", function(t, env)
  local res, err = t:request{ method = "POST", url = env.url .. "/echo" }
  assert.is_nil(err)
  local e = json(res)
  assert.equals("POST", e.method)
  assert.equals(0, e.body_len)
end)

case("binary bodies are sent byte for byte", function(t, env)
  local bytes = {}
  for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
  local body = table.concat(bytes) .. "\0\r\n"
  local res, err = t:request{ method = "POST", url = env.url .. "/echo",
    headers = { ["Content-Type"] = "application/octet-stream" }, body = body }
  assert.is_nil(err)
  local e = json(res)
  assert.equals(#body, e.body_len)
  assert.equals(hex(body), e.body_hex)
end)

case("a 1 MiB request body arrives intact", function(t, env)
  local body = string.rep("0123456789abcdef", 65536)
  local res, err = t:request{ method = "PUT", url = env.url .. "/echo",
    headers = { ["Content-Type"] = "text/plain" }, body = body }
  assert.is_nil(err)
  local e = json(res)
  assert.equals(#body, e.body_len)
  assert.is_true(e.body == body)
end)

case("HTTP error statuses are responses, not errors", function(t, env)
  for _, status in ipairs({ 201, 204, 400, 401, 404, 429, 500, 503 }) do
    local res, err = t:request{ method = "GET", url = env.url .. "/status/" .. status }
    assert.is_nil(err)
    assert.equals(status, res.status)
    assert.equals(tostring(status), res.headers["x-status"])
    if status == 204 then assert.equals("", res.body)
    else assert.equals("status " .. status, res.body) end
  end
end)

case("redirects are returned, never followed", function(t, env)
  local res, err = t:request{ method = "GET", url = env.url .. "/redirect" }
  assert.is_nil(err)
  assert.equals(302, res.status)
  assert.equals("/echo?redirected=1", res.headers["location"])
end)

case("repeated response headers are joined with a comma", function(t, env)
  local res, err = t:request{ method = "GET", url = env.url .. "/headers" }
  assert.is_nil(err)
  assert.equals(200, res.status)
  assert.equals("one, two, three", res.headers["x-multi"])
  assert.equals("a=1; Path=/, b=2; Path=/", res.headers["set-cookie"])
  assert.equals("only", res.headers["x-single"])
  assert.is_nil(res.headers["X-Single"])
end)

case("a chunked response is decoded", function(t, env)
  local res, err = t:request{ method = "GET", url = env.url .. "/chunked" }
  assert.is_nil(err)
  assert.equals(200, res.status)
  assert.equals("chunk-1;chunk-2;chunk-3;chunk-4;chunk-5;", res.body)
  assert.is_nil(res.headers["content-length"])
end)

case("a body under the size cap is read whole", function(_, env)
  local big = assert(env.new_transport{ max_body = 300000 })
  local want = string.rep("0123456789", 20000)
  for _, q in ipairs({ "", "?chunked=1" }) do
    local res, err = big:request{ method = "GET", url = env.url .. "/big/200000" .. q }
    assert.is_nil(err)
    assert.equals(200, res.status)
    assert.equals(200000, #res.body)
    assert.is_true(res.body == want)
  end
  -- exactly at the cap
  local res, err = big:request{ method = "GET", url = env.url .. "/big/300000?chunked=1" }
  assert.is_nil(err)
  assert.equals(300000, #res.body)
  big:close()
end)

case("a body over the size cap fails with too_large", function(_, env)
  local small = assert(env.new_transport{ max_body = 1000 })
  -- with Content-Length, and without it (chunked / HTTP/2 data frames)
  for _, q in ipairs({ "", "?chunked=1" }) do
    local res, err = small:request{ method = "GET", url = env.url .. "/big/50000" .. q }
    assert_fails(res, err, "too_large", true)
  end
  -- the transport still works afterwards
  local res = assert(small:request{ method = "GET", url = env.url .. "/big/1000" })
  assert.equals(1000, #res.body)
  small:close()
end)

case("a connection closed without an answer or mid-body fails as sent", function(t, env)
  for _, path in ipairs({ "/drop", "/truncate" }) do
    local res, err = t:request{ method = "GET", url = env.url .. path }
    assert.is_nil(res, path .. ": expected a failure, got status " .. tostring(res and res.status))
    assert.is_table(err)
    assert.is_truthy(err.code == "recv" or err.code == "closed" or err.code == "protocol",
      path .. ": code " .. tostring(err.code) .. " (" .. tostring(err.message) .. ")")
    assert.is_true(err.sent, path)
  end
  -- the transport still works afterwards
  assert.equals(200, assert(t:request{ method = "GET", url = env.url .. "/echo" }).status)
end)

case("a slow answer fails with timeout", function(t, env)
  local quick = assert(env.new_transport{ timeout = 300 })
  local res, err = quick:request{ method = "GET", url = env.url .. "/delay/3000" }
  assert_fails(res, err, "timeout", true)
  -- a per-request timeout overrides the transport's
  res, err = t:request{ method = "GET", url = env.url .. "/delay/3000", timeout = 300 }
  assert_fails(res, err, "timeout", true)
  -- and a fast answer still comes through on the same transport
  res = assert(quick:request{ method = "GET", url = env.url .. "/delay/0" })
  assert.equals(200, res.status)
  quick:close()
end)

case("a refused connection fails with connect, not sent", function(t, env)
  local res, err = t:request{ method = "POST", url = env.refused_url .. "/echo", body = "x" }
  assert_fails(res, err, "connect", false)
end)

case("an untrusted server certificate fails with tls, not sent", function(_, env)
  local t = assert(env.new_transport{ ca_file = env.pki("foreign-ca.pem") })
  local res, err = t:request{ method = "POST", url = env.url .. "/echo", body = "x" }
  assert_fails(res, err, "tls", false)
  t:close()
end)

case("a server certificate for another host fails with tls, not sent", function(t, env)
  local res, err = t:request{ method = "GET", url = env.wrong_host_url .. "/echo" }
  assert_fails(res, err, "tls", false)
end)

case("without a client certificate the server refuses", function(_, env)
  local t = assert(env.new_transport{ identity = false })
  assert_refused(t:request{ method = "GET", url = env.url .. "/echo" })
  t:close()
end)

case("a client certificate from a foreign CA is refused", function(_, env)
  local t = assert(env.new_transport{ identity = env.identity("qwac-foreign") })
  assert_refused(t:request{ method = "GET", url = env.url .. "/echo" })
  t:close()
end)

case("an expired client certificate is refused", function(_, env)
  local t = assert(env.new_transport{ identity = env.identity("qwac-expired") })
  assert_refused(t:request{ method = "GET", url = env.url .. "/echo" })
  t:close()
end)

case("header values with CR or LF are rejected before sending", function(t, env)
  for _, v in ipairs({ "a\r\nX-Evil: 1", "a\nb", "a\rb" }) do
    local res, err = t:request{ method = "GET", url = env.url .. "/echo", headers = { ["X-Test"] = v } }
    assert_fails(res, err, "bad_request", false)
  end
end)

case("the second request reuses the connection", function(t, env)
  local r1 = assert(t:request{ method = "GET", url = env.url .. "/echo" })
  local r2 = assert(t:request{ method = "GET", url = env.url .. "/echo" })
  assert.equals(200, r1.status)
  assert.is_false(r1.reused)
  assert.is_true(r2.reused)
  assert.equals(json(r1).connection, json(r2).connection)
end)

case("50 sequential requests use one connection", function(t, env)
  local mark = tag("keepalive")
  for i = 1, 50 do
    -- the POSTs are marked safe to repeat: a transport may keep a request
    -- that is not (a payment) off reused connections
    local res, err = t:request{ method = i % 2 == 0 and "POST" or "GET",
      url = env.url .. "/echo?mark=" .. mark, body = i % 2 == 0 and tostring(i) or nil, idempotent = true }
    assert.is_nil(err)
    assert.equals(200, res.status)
    assert.equals(i > 1, res.reused)
  end
  assert.equals(1, env.connections(mark))
end)

-- issue 10: a new connection (here the server closes each one) resumes the
-- TLS session of the one before instead of a full handshake
case("new connections to one server resume its TLS session", function(t, env)
  local mark = tag("resume")
  for i = 1, 4 do
    local res, err = t:request{ method = "GET", url = env.url .. "/close?mark=" .. mark .. "&i=" .. i }
    assert.is_nil(err)
    assert.equals(200, res.status)
    -- HTTP/2 keeps its one connection (nginx does not close it per request)
    if res.http_version == "2" then return end
    assert.is_false(res.reused)
  end
  local st
  for _ = 1, 50 do                          -- nginx logs after the answer left
    st = env.tls_stats(mark)
    if st.requests >= 4 then break end
    env.sleep(0.02)
  end
  assert.equals(4, st.connections)
  assert.is_true(st.resumed >= 3, st.resumed .. " of 4 connections resumed")
end)

return cases
