-- core.http_session: the libcurl session of the C core, against loopback
-- nginx servers (spec/support/tlsserver.lua) that require client certificates.
local helper = require "helper"
local tlsserver = require "support.tlsserver"
local core = require "xs2a.core"
local cjson = require "cjson"

local CA = helper.pki("ca.pem")

describe("core.http_session", function()
  local srv, srv11, slow_tls, refused_url, qwac

  setup(function()
    refused_url = tlsserver.refused_url()
    srv = tlsserver.start{}
    srv11 = tlsserver.start{ http2 = false }
    -- a server whose TLS handshake stalls for 3 s
    slow_tls = tlsserver.start{ verify_client = false,
      extra = "        ssl_certificate_by_lua_block { ngx.sleep(3) }\n" }
    qwac = assert(core.identity{ cert = helper.pki("qwac.pem"), key = helper.pki("qwac.key") })
  end)

  teardown(function()
    for _, s in ipairs({ srv, srv11, slow_tls }) do s:stop() end
    if qwac then qwac:close() end
  end)

  local function session(opts)
    local o = { identity = qwac, ca_file = CA }
    for k, v in pairs(opts or {}) do o[k] = v end
    if o.identity == false then o.identity = nil end
    return assert(core.http_session(o))
  end

  describe("responses", function()
    it("carry status, headers, header_list, body, reused, http_version and timings", function()
      local s = session()
      local plain = assert(s:request{ url = srv.url .. "/headers" })
      assert.is_nil(plain.header_list)                 -- only when asked for
      assert.is_nil(plain.time)
      assert.equals("one, two, three", plain.headers["x-multi"])
      local res = assert(s:request{ url = srv.url .. "/headers", header_list = true, timings = true })
      assert.equals(200, res.status)
      assert.equals("headers", res.body)
      assert.equals("2", res.http_version)
      assert.is_true(res.reused)
      -- header_list keeps order and repeats
      local cookies, multi = {}, {}
      for _, pair in ipairs(res.header_list) do
        assert.equals(2, #pair)
        local name = pair[1]:lower()
        if name == "set-cookie" then cookies[#cookies + 1] = pair[2] end
        if name == "x-multi" then multi[#multi + 1] = pair[2] end
      end
      assert.same({ "a=1; Path=/", "b=2; Path=/" }, cookies)
      assert.same({ "one", "two", "three" }, multi)
      assert.equals("one, two, three", res.headers["x-multi"])
      -- timings in seconds, in order
      local t = res.time
      assert.is_true(t.total > 0)
      assert.is_true(t.tls >= t.connect)
      assert.is_true(t.ttfb >= t.tls)
      assert.is_true(t.total >= t.ttfb)
      s:close()
    end)

    it("keeps the case of header names in header_list over HTTP/1.1", function()
      local s = session{ http2 = false }
      local res = assert(s:request{ url = srv11.url .. "/headers", header_list = true })
      assert.equals("1.1", res.http_version)
      local names = {}
      for _, pair in ipairs(res.header_list) do names[pair[1]] = true end
      assert.is_true(names["Set-Cookie"])
      assert.is_true(names["X-Single"])
      assert.equals("only", res.headers["x-single"])
      s:close()
    end)

    it("HEAD returns headers and no body", function()
      local s = session()
      local res = assert(s:request{ method = "HEAD", url = srv.url .. "/big/1000" })
      assert.equals(200, res.status)
      assert.equals("1000", res.headers["content-length"])
      assert.equals("", res.body)
      s:close()
    end)

    it("does not add a form content type or Expect to a POST", function()
      local s = session{ http2 = false }
      local body = string.rep("x", 2 * 1024 * 1024)
      local res = assert(s:request{ method = "POST", url = srv11.url .. "/echo", body = body })
      local e = cjson.decode(res.body)
      assert.is_nil(e.headers["content-type"])
      assert.is_nil(e.headers["expect"])
      assert.equals(#body, e.body_len)
      s:close()
    end)

    it("50 sequential requests open one connection (CURLINFO_NUM_CONNECTS)", function()
      local s = session{ http2 = false }
      local mark = "seq-" .. os.time() .. "-" .. math.random(1e6)
      local reused = 0
      for _ = 1, 50 do
        local res = assert(s:request{ url = srv11.url .. "/echo?m=" .. mark })
        if res.reused then reused = reused + 1 end
      end
      assert.equals(49, reused)
      assert.equals(1, srv11:connections(mark))
      s:close()
    end)
  end)

    -- after an idempotent GET the transfer keeps its libcurl handle with its
    -- options (no curl_easy_reset): nothing of one request may reach the next
    it("each request of a mixed sequence on one session carries only its own method, body and headers", function()
      local s = session{ http2 = false }
      local function echo(req)
        req.url = srv11.url .. "/echo"
        local res = assert(s:request(req))
        assert.equals(200, res.status)
        return cjson.decode(res.body), res
      end
      local steps = {
        { { method = "GET", headers = { ["X-Step"] = "1", ["X-Only-Here"] = "a" } }, "GET", "" },
        { { method = "GET", headers = { ["X-Step"] = "2" } }, "GET", "" },
        { { method = "POST", body = '{"n":3}', headers = { ["X-Step"] = "3" } }, "POST", '{"n":3}' },
        { { method = "GET", headers = { ["X-Step"] = "4" } }, "GET", "" },
        { { method = "PUT", body = "five", headers = { ["X-Step"] = "5" } }, "PUT", "five" },
        { { method = "GET", headers = { ["X-Step"] = "6" } }, "GET", "" },
        { { method = "DELETE", headers = { ["X-Step"] = "7" } }, "DELETE", "" },
        { { method = "GET", idempotent = false, headers = { ["X-Step"] = "8" } }, "GET", "" },
        { { method = "GET", headers = { ["X-Step"] = "9" } }, "GET", "" },
        { { method = "PATCH", body = "", headers = { ["X-Step"] = "10" } }, "PATCH", "" },
        { { method = "GET", headers = { ["X-Step"] = "11" } }, "GET", "" },
      }
      for i, step in ipairs(steps) do
        local e, res = echo(step[1])
        assert.equals(step[2], e.method, "step " .. i)
        assert.equals(step[3], e.body, "step " .. i)
        assert.equals(tostring(i), e.headers["x-step"], "step " .. i)
        if i > 1 then assert.is_nil(e.headers["x-only-here"], "step " .. i) end
        -- libcurl's defaults never leak in: no form type, no Expect
        if step[3] == "" and step[2] ~= "PATCH" then assert.is_nil(e.headers["content-type"], "step " .. i) end
        assert.is_nil(e.headers["expect"], "step " .. i)
        -- a request that is not idempotent never rides a reused connection
        if step[1].idempotent == false then assert.is_false(res.reused, "step " .. i) end
      end
      -- HEAD after a GET: no body read; then a GET gets its body again
      local h = assert(s:request{ method = "HEAD", url = srv11.url .. "/big/1000" })
      assert.equals("", h.body)
      local g = assert(s:request{ url = srv11.url .. "/big/1000" })
      assert.equals(1000, #g.body)
      -- a failed GET (body over max_body), then a GET with the session's limits
      local _, _, code = s:request{ url = srv11.url .. "/big/5000", max_body = 100 }
      assert.equals("too_large", code)
      g = assert(s:request{ url = srv11.url .. "/big/5000" })
      assert.equals(5000, #g.body)
      -- a per-request timeout does not stay on the handle
      _, _, code = s:request{ url = srv11.url .. "/delay/1500", timeout = 200 }
      assert.equals("timeout", code)
      local d = assert(s:request{ url = srv11.url .. "/delay/500" })
      assert.equals(200, d.status)
      s:close()
    end)

  describe("submit and poll", function()
    local function run_parallel(s, url, mark, n)
      local ids = {}
      for i = 1, n do
        local id = assert(s:submit{ url = url .. "/delay/300?m=" .. mark .. "&i=" .. i })
        assert.is_nil(ids[id])
        ids[id] = i
      end
      assert.equals(n, s:pending())
      local got, polls = {}, 0
      while s:pending() > 0 do
        polls = polls + 1
        assert(polls < 200, "transfers do not finish")
        for _, e in ipairs(s:poll(200)) do
          assert.is_nil(got[e.id], "an id came back twice")
          got[e.id] = e
        end
      end
      local count = 0
      for id, i in pairs(ids) do
        local e = got[id]
        assert.is_table(e, "transfer " .. i .. " never finished")
        assert.is_nil(e.err)
        assert.equals(200, e.res.status)
        assert.equals("delayed 300", e.res.body)
        count = count + 1
      end
      assert.equals(n, count)
    end

    it("runs 20 transfers at once over HTTP/2", function()
      local s = session()
      local mark = "par2-" .. os.time() .. "-" .. math.random(1e6)
      run_parallel(s, srv.url, mark, 20)
      -- the server had (nearly) all of them in progress at the same time
      assert.is_true(srv:max_overlap(mark) >= 15, "overlap " .. srv:max_overlap(mark))
      s:close()
    end)

    it("runs 20 transfers at once over HTTP/1.1", function()
      local s = session{ http2 = false }
      local mark = "par1-" .. os.time() .. "-" .. math.random(1e6)
      run_parallel(s, srv11.url, mark, 20)
      assert.is_true(srv11:max_overlap(mark) >= 15, "overlap " .. srv11:max_overlap(mark))
      assert.is_true(srv11:connections(mark) > 1)
      s:close()
    end)

    -- issue 10: without CURLMOPT_MAXCONNECTS libcurl keeps at most 4 x the
    -- transfers still attached, so connections closed as a batch finished
    -- and the next batch opened new ones
    it("batches of 20 in flight over HTTP/1.1 keep reusing at most 20 connections", function()
      local s = session{ http2 = false }
      local mark = "batch-" .. os.time() .. "-" .. math.random(1e6)
      for round = 1, 5 do
        for i = 1, 20 do
          assert(s:submit{ url = srv11.url .. "/delay/20?m=" .. mark .. "&r=" .. round .. "&i=" .. i })
        end
        local left = 20
        while left > 0 do
          for _, e in ipairs(s:poll(500)) do
            assert.is_nil(e.err)
            left = left - 1
          end
        end
      end
      local conns = srv11:connections(mark)
      assert.is_true(conns <= 20, conns .. " connections for 100 requests, 20 in flight")
      s:close()
    end)

    it("requests that are not idempotent get fresh connections that resume the TLS session", function()
      local s = session{ http2 = false }
      local mark = "fresh-" .. os.time() .. "-" .. math.random(1e6)
      assert(s:request{ url = srv11.url .. "/echo?warm=" .. mark })
      for i = 1, 6 do
        local res = assert(s:request{ method = "POST", url = srv11.url .. "/echo?m=" .. mark .. "&i=" .. i,
          body = "{}" })
        assert.is_false(res.reused)
        assert.equals("SUCCESS", cjson.decode(res.body).client_verify)
      end
      -- nginx logs a request after its answer left: wait for the last line
      local st
      for _ = 1, 50 do
        st = srv11:tls_stats("?m=" .. mark)
        if st.requests >= 6 then break end
        core.sleep(20)
      end
      assert.equals(6, st.requests)
      assert.equals(6, st.connections)
      -- a TLS 1.3 ticket comes after its handshake: allow one connection
      -- that started before the newest ticket was read
      assert.is_true(st.resumed >= 5, st.resumed .. " of 6 resumed")
      s:close()
    end)

    it("poll waits at most wait_ms and returns an empty list when nothing finished", function()
      local s = session()
      assert.same({}, s:poll(0))
      assert.same({}, s:poll(50))                   -- nothing in flight: returns at once
      local id = assert(s:submit{ url = srv.url .. "/delay/1000" })
      local t0 = core.monotonic()
      assert.same({}, s:poll(100))
      assert.is_true(core.monotonic() - t0 < 0.9)
      assert.equals(1, s:pending())
      local done
      repeat done = s:poll(500) until #done > 0
      assert.equals(id, done[1].id)
      assert.equals(0, s:pending())
      s:close()
    end)

    it("reports failures per transfer, as values", function()
      local s = session{ max_body = 100 }
      local ok_id = assert(s:submit{ url = srv.url .. "/echo" .. "?x", max_body = 100000 })
      local big_id = assert(s:submit{ url = srv.url .. "/big/5000" })
      local bad_id = assert(s:submit{ url = refused_url .. "/" })
      local got, n = {}, 0
      while n < 3 do
        for _, e in ipairs(s:poll(500)) do got[e.id] = e; n = n + 1 end
      end
      assert.equals(200, got[ok_id].res.status)
      assert.equals("too_large", got[big_id].code)
      assert.is_nil(got[big_id].res)
      assert.equals("connect", got[bad_id].code)
      assert.matches("^request: ", got[bad_id].err)
      s:close()
    end)

    it("a blocking request leaves finished submitted transfers for poll", function()
      local s = session()
      local id = assert(s:submit{ url = srv.url .. "/delay/100" })
      local res = assert(s:request{ url = srv.url .. "/delay/400" })
      assert.equals(200, res.status)
      local done = s:poll(0)
      assert.equals(1, #done)
      assert.equals(id, done[1].id)
      assert.equals("delayed 100", done[1].res.body)
      s:close()
    end)

    it("submit rejects a bad request at once", function()
      local s = session()
      local id, msg, code = s:submit{ url = "http://127.0.0.1/" }
      assert.is_nil(id)
      assert.equals("bad_request", code)
      assert.matches("https", msg)
      assert.equals(0, s:pending())
      s:close()
    end)
  end)

  describe("errors", function()
    it("come back as nil, message, code", function()
      local s = session{ connect_timeout = 2000 }
      local cases = {
        { { url = refused_url .. "/" }, "connect" },
        { { url = "https://nonexistent.invalid/" }, "resolve" },
        { { url = srv.url .. "/delay/2000", timeout = 200 }, "timeout" },
        { { url = srv.url .. "/big/100", max_body = 10 }, "too_large" },
        { { url = "http://127.0.0.1:1/" }, "bad_request" },
        { { url = "https://127.0.0.1/a b" }, "bad_request" },
        { { method = "GE T", url = srv.url }, "bad_request" },
        { { url = srv.url, headers = { ["X Y"] = "1" } }, "bad_request" },
        { { url = srv.url, headers = { ["X-Y"] = "a\nb" } }, "bad_request" },
        { { url = srv.url, headers = { ["X-Y"] = "a\0b" } }, "bad_request" },
      }
      for _, c in ipairs(cases) do
        local res, msg, code = s:request(c[1])
        assert.is_nil(res)
        assert.equals(c[2], code, tostring(msg))
        assert.matches("^request: ", msg)
      end
      s:close()
    end)

    it("a connection closed without an answer or in the middle of the body is recv (HTTP/1.1)", function()
      local s = session{ http2 = false }
      for _, path in ipairs({ "/drop", "/truncate" }) do
        local res, msg, code = s:request{ url = srv.url .. path }
        assert.is_nil(res, path)
        assert.equals("recv", code, path .. ": " .. tostring(msg))
      end
      assert.equals(200, assert(s:request{ url = srv.url .. "/echo" }).status)   -- the session goes on
      s:close()
    end)

    it("a stream the server breaks off over HTTP/2 is protocol or recv, never a result", function()
      local s = session{ http2 = true }
      local probe = assert(s:request{ url = srv.url .. "/echo" })
      assert.equals("2", probe.http_version)
      for _, path in ipairs({ "/drop", "/truncate" }) do
        local res, msg, code = s:request{ url = srv.url .. path }
        assert.is_nil(res, path)
        assert.is_truthy(code == "protocol" or code == "recv", path .. ": " .. tostring(code) .. " " .. tostring(msg))
      end
      s:close()
    end)

    -- issue 8 hole 3b: libcurl calls such an answer "Received HTTP/0.9"
    -- (CURLE_UNSUPPORTED_PROTOCOL); the POST had been written, so the code
    -- must not be one that means "never sent"
    it("an answer that is not HTTP to a POST that was written is protocol, and sent", function()
      local s = session{ http2 = false }
      for _, method in ipairs({ "POST", "GET" }) do
        local res, msg, code = s:request{ method = method, url = srv11.url .. "/not_http",
          body = method == "POST" and '{"amount":"1.00"}' or nil }
        assert.is_nil(res, method)
        assert.equals("protocol", code, method .. ": " .. tostring(msg))
      end
      s:close()
      local t = assert(require("xs2a.transport.curl").new{ identity = qwac, ca_file = CA, http2 = false })
      local res, err = t:request{ method = "POST", url = srv11.url .. "/not_http", body = "{}" }
      t:close()
      assert.is_nil(res)
      assert.equals("protocol", err.code)
      assert.is_true(err.sent)
    end)

    -- issue 8 hole 9b
    it("header lines over their cap give too_large quoting the header cap, not the body cap", function()
      local s = session{ http2 = false, max_body = 1000 }
      local res, msg, code = s:request{ url = srv11.url .. "/fat_headers/300000" }
      assert.is_nil(res)
      assert.equals("too_large", code)
      assert.matches("header lines exceed their size cap %(262144 bytes%)", msg)
      assert.is_nil(msg:find("1000", 1, true))
      res, msg, code = s:request{ url = srv11.url .. "/big/5000" }
      assert.is_nil(res)
      assert.equals("too_large", code)
      assert.matches("body exceeds the size cap %(1000 bytes%)", msg)
      s:close()
    end)

    it("a handshake that does not finish in time is a connect failure (never sent)", function()
      local s = session{ ca_file = CA, identity = false }
      local t0 = core.monotonic()
      local res, msg, code = s:request{ url = slow_tls.url .. "/echo", timeout = 300 }
      assert.is_nil(res)
      assert.equals("connect", code, msg)
      assert.is_true(core.monotonic() - t0 < 2.5)
      s:close()
    end)

    for _, version in ipairs({ "1.2", "1.3" }) do
      it("a server that rejects the client certificate in TLS " .. version .. " gives tls", function()
        -- openssl s_server -Verify: fails the handshake instead of answering HTTP 400
        local strict = tlsserver.start_strict{ tls = version }
        local foreign = assert(core.identity{ cert = helper.pki("qwac-foreign.pem"),
          key = helper.pki("qwac-foreign.key") })
        local ok, err = pcall(function()
          for _, id in ipairs({ false, foreign }) do
            local s = session{ identity = id }
            local res, msg, code = s:request{ url = strict.url .. "/" }
            assert.is_nil(res)
            assert.equals("tls", code, msg)
            s:close()
          end
          local s = session()
          local res = assert(s:request{ url = strict.url .. "/" })
          assert.equals(200, res.status)
          s:close()
        end)
        strict:stop()
        foreign:close()
        assert(ok, err)
      end)
    end

    it("a bad client certificate file is client_cert, at once (the files are parsed when the session is made)",
        function()
      local s, msg, code = core.http_session{ cert_file = helper.pki("ca.key"), ca_file = CA }
      assert.is_nil(s)
      assert.equals("client_cert", code, msg)
      assert.matches("not a valid PEM or DER certificate", msg, 1, true)
      s, msg, code = core.http_session{ cert_file = helper.pki("qwac.pem"), key_file = helper.pki("other.key"),
        ca_file = CA }
      assert.is_nil(s)
      assert.equals("client_cert", code, msg)
      assert.matches("does not match", msg, 1, true)
      -- one PEM file holding both the certificate and the key
      local both = os.tmpname()
      local f = assert(io.open(both, "wb"))
      for _, name in ipairs({ "qwac.pem", "qwac.key" }) do
        local part = assert(io.open(helper.pki(name), "rb"))
        f:write(part:read("*a"))
        part:close()
      end
      f:close()
      s = assert(core.http_session{ cert_file = both, ca_file = CA })
      os.remove(both)
      local res = assert(s:request{ url = srv.url .. "/echo" })
      assert.equals(200, res.status)
      s:close()
    end)

    it("verification is always on: the system store does not trust the test CA", function()
      local s = assert(core.http_session{ identity = qwac })
      local res, msg, code = s:request{ url = srv.url .. "/echo" }
      assert.is_nil(res)
      assert.equals("tls", code, msg)
      s:close()
    end)

    it("raise for programmer errors", function()
      local s = session()
      assert.has_error(function() s:request("https://x/") end)
      assert.has_error(function() s:request{ url = 5 } end, "request: url must be a string")
      assert.has_error(function() s:request{ url = srv.url, headers = "x" } end, "request: headers must be a table")
      assert.has_error(function() s:request{ url = srv.url, headers = { [1] = "x" } } end,
        "request: header names must be strings")
      assert.has_error(function() s:request{ url = srv.url, body = {} } end, "request: body must be a string or nil")
      assert.has_error(function() s:request{ url = srv.url, timeout = 0 } end)
      assert.has_error(function() s:poll(-1) end)
      assert.has_error(function() core.http_session{ timeout = "5" } end)
      assert.has_error(function() core.http_session{ connect_timeout = 0 } end)
      assert.has_error(function() core.http_session{ max_body = -1 } end)
      assert.has_error(function() core.http_session{ identity = "qwac" } end)
      assert.has_error(function() core.http_session{ key_file = "x" } end)
      -- the session is still usable after those
      assert.equals(200, assert(s:request{ url = srv.url .. "/echo" }).status)
      s:close()
    end)

    it("never contain key material", function()
      local key_pem = helper.read(helper.pki("qwac.key"))
      local key_lines = {}
      for line in key_pem:gmatch("[^\n]+") do
        if not line:find("-----", 1, true) then key_lines[#key_lines + 1] = line end
      end
      local function clean(msg)
        assert.is_string(msg)
        assert.is_nil(msg:find("PRIVATE KEY", 1, true))
        for _, l in ipairs(key_lines) do assert.is_nil(msg:find(l, 1, true)) end
      end
      local s = session{ max_body = 10 }
      local foreign = session{ ca_file = helper.pki("foreign-ca.pem") }
      local msgs = {}
      local function add(_, msg) msgs[#msgs + 1] = msg end
      add(s:request{ url = srv.url .. "/big/100" })
      add(s:request{ url = refused_url .. "/" })
      add(s:request{ url = srv.url .. "/delay/1000", timeout = 100 })
      add(foreign:request{ url = srv.url .. "/echo" })
      add(s:request{ url = srv.url, headers = { X = "\n" } })
      add(core.http_session{ ca_file = "/nonexistent" })
      for _, m in ipairs(msgs) do clean(m) end
      assert.equals(6, #msgs)
      clean(tostring(s))
      s:close()
      foreign:close()
    end)
  end)

  -- issue 8 hole 5d: a child process runs with spec/fixtures/freecheck.c
  -- preloaded, which reports every block that code in xs2a/core.so frees
  -- while it still holds the marker the server put in a header and the body
  describe("response buffers", function()
    local jit = rawget(_G, "jit") ~= nil
    local lua = jit and "luajit" or "lua5.4"
    local build = helper.root .. "/build/" .. (jit and "luajit" or "lua5.4")
    local dir, so

    setup(function()
      dir = assert(io.popen("mktemp -d /tmp/xs2a-freecheck.XXXXXX")):read("*l")
      so = dir .. "/freecheck.so"
      assert(os.execute("cc -shared -fPIC -o " .. so .. " " .. helper.root
        .. "/spec/fixtures/freecheck.c -ldl"))
    end)
    teardown(function() if dir then os.execute("rm -rf " .. dir) end end)

    local function run_child(lib)
      local marker = "tok" .. core.uuid4():gsub("-", "")
      local script = dir .. "/child.lua"
      local f = assert(io.open(script, "wb"))
      f:write(([[
        package.cpath = %q .. "/?.so;" .. package.cpath
        local core = require "xs2a.core"
        local id = assert(core.identity{ cert = %q, key = %q })
        local s = assert(core.http_session{ identity = id, ca_file = %q, http2 = false })
        for _ = 1, 5 do
          local res = assert(s:request{ url = %q })
          assert(res.status == 200 and res.body:find(%q, 1, true) and res.headers["x-marked"] == %q)
        end
        s:close()
        id:close()
        collectgarbage()
        collectgarbage()
        print("child done")
        os.exit(0, false)
      ]]):format(build, helper.pki("qwac.pem"), helper.pki("qwac.key"), CA,
        srv11.url .. "/marked?marker=" .. marker, marker, marker))
      f:close()
      local p = assert(io.popen("FREECHECK_MARKER=" .. marker .. " FREECHECK_LIB=" .. lib
        .. " LD_PRELOAD=" .. so .. " " .. lua .. " " .. script .. " 2>&1"))
      local out = p:read("*a")
      p:close()
      return out
    end

    it("are wiped before xs2a/core.so frees them", function()
      local out = run_child("xs2a/core.so")
      assert.matches("child done", out)
      assert.is_nil(out:find("freecheck:", 1, true), out)
    end)

    it("(the check sees uncleansed frees: the interpreter's own copies of the body)", function()
      if jit then return end   -- LuaJIT keeps its strings in its own allocator
      local out = run_child("lua5.4")
      assert.matches("child done", out)
      assert.matches("freecheck:", out)
    end)
  end)

  describe("lifecycle", function()
    it("close twice is fine; use after close raises", function()
      local s = session()
      assert.matches("^xs2a.Session %(0 pending%)$", tostring(s))
      s:close()
      s:close()
      assert.equals("xs2a.Session (closed)", tostring(s))
      assert.has_error(function() s:request{ url = srv.url } end, "session is closed")
      assert.has_error(function() s:submit{ url = srv.url } end, "session is closed")
      assert.has_error(function() s:poll(0) end, "session is closed")
      assert.has_error(function() s:pending() end, "session is closed")
    end)

    it("close with transfers in flight cancels them", function()
      local s = session()
      for _ = 1, 5 do assert(s:submit{ url = srv.url .. "/delay/2000" }) end
      s:poll(50)
      assert.equals(5, s:pending())
      s:close()
      assert.equals("xs2a.Session (closed)", tostring(s))
    end)

    it("garbage collection frees sessions, also busy ones", function()
      for i = 1, 30 do
        local s = session()
        if i % 3 == 0 then s:submit{ url = srv.url .. "/delay/2000" } end
        if i % 3 == 1 then assert(s:request{ url = srv.url .. "/echo" }) end
      end
      collectgarbage()
      collectgarbage()
      -- still fine afterwards
      local s = session()
      assert.equals(200, assert(s:request{ url = srv.url .. "/echo" }).status)
      s:close()
    end)

    it("supports to-be-closed variables (Lua 5.4)", function()
      if _VERSION ~= "Lua 5.4" then return end
      local chunk = assert(load([[
        local core, opts, url = ...
        local kept
        do
          local s <close> = assert(core.http_session(opts))
          kept = s
          assert(s:request{ url = url })
        end
        return tostring(kept)
      ]]))
      assert.equals("xs2a.Session (closed)", chunk(core, { identity = qwac, ca_file = CA }, srv.url .. "/echo"))
    end)

    it("keeps working after its identity is closed", function()
      local id = assert(core.identity{ cert = helper.pki("qwac.pem"), key = helper.pki("qwac.key") })
      local s = assert(core.http_session{ identity = id, ca_file = CA })
      id:close()
      collectgarbage()
      local res = assert(s:request{ url = srv.url .. "/echo" })
      assert.equals("SUCCESS", cjson.decode(res.body).client_verify)
      s:close()
    end)

    it("refuses a closed identity", function()
      local id = assert(core.identity{ cert = helper.pki("qwac.pem"), key = helper.pki("qwac.key") })
      id:close()
      assert.has_error(function() core.http_session{ identity = id } end)
    end)
  end)
end)
