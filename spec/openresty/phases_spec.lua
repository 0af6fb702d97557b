-- The ngx transport refuses, with a clear error and without blocking, to
-- run in nginx phases that have no cosockets; in content and timer context
-- the same call works.
local harness = require "openresty.harness"

describe("#openresty ngx transport in phases without cosockets", function()
  local ng, results

  lazy_setup(function()
    -- the probes target the test nginx itself (plain HTTP), which is up by
    -- the time content, log and timer probes run
    ng = harness.start{
      workers = 1,
      init = [[
    require("openresty.cases.phases").probe("init", "http://127.0.0.1:9/")
]],
      init_worker = [[
    require("openresty.cases.phases").probe("init_worker", "http://127.0.0.1:9/")
]],
      server = [[
    location = /phases {
      set_by_lua_block $probe {
        require("openresty.cases.phases").probe("set", "http://127.0.0.1:" .. ngx.var.server_port .. "/ping")
        return "done"
      }
      content_by_lua_block { ngx.say("phases ", ngx.var.probe) }
      header_filter_by_lua_block {
        require("openresty.cases.phases").probe("header_filter", "http://127.0.0.1:" .. ngx.var.server_port .. "/ping")
      }
      body_filter_by_lua_block {
        if ngx.arg[2] then
          require("openresty.cases.phases").probe("body_filter", "http://127.0.0.1:" .. ngx.var.server_port .. "/ping")
        end
      }
      log_by_lua_block {
        local phases = require("openresty.cases.phases")
        local url = "http://127.0.0.1:" .. ngx.var.server_port .. "/ping"
        phases.probe("log", url)
        phases.probe_in_timer("timer", url)
      }
    }
]],
    }
    local status, body = ng:http("GET", "/phases")
    assert.equal(200, status)
    assert.matches("phases done", body)
    -- the log phase and the timer run after the response went out
    for _ = 1, 50 do
      local r = ng:call("openresty.cases.phases", "results")
      assert.is_true(r.ok, r.err)
      results = r.result
      if results.timer then break end
      harness.sleep(0.1)
    end
    local c = ng:call("openresty.cases.phases", "content", { url = ng.base_url .. "/ping" })
    assert.is_true(c.ok, c.err)
    results = ng:call("openresty.cases.phases", "results").result
  end)

  lazy_teardown(function()
    if ng then ng:stop() end
  end)

  for _, phase in ipairs({ "init", "init_worker", "set", "header_filter", "body_filter", "log" }) do
    it("returns code unavailable in " .. phase, function()
      local r = results[phase]
      assert.is_table(r, "no result recorded for " .. phase)
      assert.equal(phase, r.phase)
      assert.is_false(r.ok)
      assert.equal("unavailable", r.code)
      assert.equal("cosockets unavailable in " .. phase, r.message)
      assert.is_false(r.sent)
    end)
  end

  it("works in content and in a timer started from the log phase", function()
    for _, phase in ipairs({ "content", "timer" }) do
      local r = results[phase]
      assert.is_table(r, "no result recorded for " .. phase)
      assert.equal(phase, r.phase)
      assert.is_true(r.ok, tostring(r.code) .. ": " .. tostring(r.message))
      assert.equal(200, r.status)
    end
  end)
end)
