-- The shared transport spec (spec/support/transport_cases.lua) against the
-- curl transport, over HTTP/2 and over HTTP/1.1, on loopback nginx servers.
local helper = require "helper"
local tlsserver = require "support.tlsserver"
local cases = require "support.transport_cases"
local core = require "xs2a.core"
local curl = require "xs2a.transport.curl"

local unpack = table.unpack or unpack -- luacheck: ignore 143

describe("xs2a.transport.curl", function()
  local srv, wrong, refused_url
  local identities = {}

  local function identity(name)
    if not identities[name] then
      identities[name] = assert(core.identity{ cert = helper.pki(name .. ".pem"), key = helper.pki(name .. ".key") })
    end
    return identities[name]
  end

  local function make_env(defaults)
    local env = {
      pki = helper.pki,
      identity = identity,
      connections = function(filter) return srv:connections(filter) end,
      tls_stats = function(filter) return srv:tls_stats(filter) end,
      sleep = function(seconds) core.sleep(seconds * 1000) end,
    }
    function env.new_transport(opts)
      local o = { identity = identity("qwac"), ca_file = helper.pki("ca.pem") }
      for k, v in pairs(defaults) do o[k] = v end
      for k, v in pairs(opts or {}) do o[k] = v end
      if o.identity == false then o.identity = nil end
      return assert(curl.new(o))
    end
    setmetatable(env, { __index = function(_, k)
      if k == "url" then return srv.url end
      if k == "wrong_host_url" then return wrong.url end
      if k == "refused_url" then return refused_url end
    end })
    return env
  end

  setup(function()
    refused_url = tlsserver.refused_url()
    srv = tlsserver.start{ verify_client = true }
    wrong = tlsserver.start{ verify_client = false, cert = "wrong-host" }
  end)

  teardown(function()
    if srv then srv:stop() end
    if wrong then wrong:stop() end
    for _, id in pairs(identities) do id:close() end
  end)

  for _, variant in ipairs({ { name = "HTTP/2", opts = {} }, { name = "HTTP/1.1", opts = { http2 = false } } }) do
    describe("shared transport spec over " .. variant.name, function()
      local env = make_env(variant.opts)
      for _, c in ipairs(cases) do
        it(c.name, function()
          local t = env.new_transport()
          local ok, err = pcall(c.run, t, env)
          t:close()
          if not ok then error(err, 0) end
        end)
      end
    end)
  end

  describe("specifics", function()
    it("speaks HTTP/2 when offered and HTTP/1.1 when asked", function()
      local t2 = assert(curl.new{ identity = identity("qwac"), ca_file = helper.pki("ca.pem") })
      local t1 = assert(curl.new{ identity = identity("qwac"), ca_file = helper.pki("ca.pem"), http2 = false })
      local r2 = assert(t2:request{ url = srv.url .. "/echo" })
      local r1 = assert(t1:request{ url = srv.url .. "/echo" })
      assert.equals("2", r2.http_version)
      assert.equals("1.1", r1.http_version)
      t1:close()
      t2:close()
    end)

    it("reports a chunked HTTP/1.1 response as chunked", function()
      local t = assert(curl.new{ identity = identity("qwac"), ca_file = helper.pki("ca.pem"), http2 = false })
      local res = assert(t:request{ url = srv.url .. "/chunked" })
      assert.equals("chunked", res.headers["transfer-encoding"])
      assert.equals("chunk-1;chunk-2;chunk-3;chunk-4;chunk-5;", res.body)
      t:close()
    end)

    it("errors carry code, message and sent, and print as one line", function()
      local t = assert(curl.new{ identity = identity("qwac"), ca_file = helper.pki("ca.pem") })
      local res, err = t:request{ url = refused_url .. "/" }
      assert.is_nil(res)
      assert.equals("connect", err.code)
      assert.is_false(err.sent)
      assert.matches("^transport error %(connect%): request: ", tostring(err))
      t:close()
    end)

    it("a handshake-level client certificate rejection is tls, not sent", function()
      local strict = tlsserver.start_strict{ tls = "1.3" }
      local t = assert(curl.new{ ca_file = helper.pki("ca.pem") })
      local res, err = t:request{ method = "POST", url = strict.url .. "/", body = "x" }
      t:close()
      strict:stop()
      assert.is_nil(res)
      assert.equals("tls", err.code)
      assert.is_false(err.sent)
    end)

    it("close is idempotent and use after close raises", function()
      local t = assert(curl.new{ ca_file = helper.pki("ca.pem") })
      t:close()
      t:close()
      assert.has_error(function() t:request{ url = srv.url .. "/echo" } end, "transport is closed")
      assert.equals("xs2a.transport.curl (closed)", tostring(t))
    end)

    it("new returns nil and a message for an unreadable ca_file", function()
      local t, err = curl.new{ ca_file = "/nonexistent/ca.pem" }
      assert.is_nil(t)
      assert.matches("ca_file", err)
    end)

    it("takes the client certificate from cert_file/key_file paths too", function()
      local t = assert(curl.new{ cert_file = helper.pki("qwac.pem"), key_file = helper.pki("qwac.key"),
        ca_file = helper.pki("ca.pem") })
      local res = assert(t:request{ url = srv.url .. "/echo" })
      assert.equals(200, res.status)
      t:close()
    end)

    it("requests of xs2a.parallel tasks overlap on one transport", function()
      local ok_mod, parallel = pcall(require, "xs2a.parallel")
      assert(ok_mod, "xs2a.parallel is missing: " .. tostring(parallel))
      local t = assert(curl.new{ identity = identity("qwac"), ca_file = helper.pki("ca.pem") })
      local mark = "sched-" .. os.time() .. "-" .. math.random(1e6)
      local fns = {}
      for i = 1, 8 do
        fns[i] = function()
          local res, err = t:request{ url = srv.url .. "/delay/300?m=" .. mark .. "&i=" .. i }
          assert(res, err and err.message)
          return res.status, res.body
        end
      end
      fns[9] = function() return t:request{ url = refused_url .. "/" } end
      local results = parallel.run(unpack(fns, 1, 9))
      for i = 1, 8 do
        assert.is_true(results[i][1], tostring(results[i][2]))
        assert.equals(200, results[i][2])
        assert.equals("delayed 300", results[i][3])
      end
      assert.is_true(results[9][1])
      assert.is_nil(results[9][2])
      assert.equals("connect", results[9][3].code)
      -- the server had them in progress at the same time
      assert.is_true(srv:max_overlap(mark) >= 6, "overlap " .. srv:max_overlap(mark))
      t:close()
    end)

    it("yields to the xs2a.parallel scheduler when one runs the request", function()
      -- a stand-in scheduler: records the wait, then polls like the real one
      local t = assert(curl.new{ identity = identity("qwac"), ca_file = helper.pki("ca.pem") })
      local waited = {}
      local sched = {}
      function sched:wait_http(session, id)   -- luacheck: ignore self
        waited[#waited + 1] = id
        for _ = 1, 100 do
          local done = session:poll(100)
          for _, e in ipairs(done) do
            if e.id == id then return e.res, e.err, e.code end
          end
        end
        error("transfer did not finish")
      end
      local saved = package.loaded["xs2a.parallel"]
      package.loaded["xs2a.parallel"] = { current = function() return sched end }
      local ok, res = pcall(t.request, t, { url = srv.url .. "/echo" })
      local ok2, res2, err2 = pcall(t.request, t, { url = refused_url .. "/" })
      package.loaded["xs2a.parallel"] = saved
      assert(ok, res)
      assert(ok2, res2)
      assert.equals(200, res.status)
      assert.is_nil(res2)
      assert.equals("connect", err2.code)
      assert.equals(2, #waited)
      t:close()
    end)
  end)
end)
