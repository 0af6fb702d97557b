-- No blocking: while one request of a single-worker nginx waits on a slow
-- sandbox answer (an injected 2 s delay), the same worker keeps serving
-- other requests, which also talk to the sandbox. Ordering is proved with
-- the worker's own clock, not with wall-clock thresholds.
local cjson = require "cjson"
local helper = require "helper"
local harness = require "openresty.harness"
local sandbox = require "support.sandbox"

describe("#openresty a single nginx worker", function()
  local ng, sb

  lazy_setup(function()
    sb = sandbox.start{ faults = true }
    ng = harness.start{ workers = 1 }
  end)

  lazy_teardown(function()
    if ng then ng:stop() end
    if sb then sb:stop() end
  end)

  it("answers other requests while one waits on a slow bank", function()
    local base = { base_url = sb.base_url, pki = helper.pki_dir }
    local function args(label, delay)
      local a = { label = label, delay = delay }
      for k, v in pairs(base) do a[k] = v end
      return a
    end
    -- warm up (loads modules, opens the pooled connection)
    local w = ng:call("openresty.cases.nonblocking", "request", args("warm"))
    assert.is_true(w.ok, w.err)
    assert.equal(404, w.result.status)

    local slow_out = os.tmpname()
    local cmd, tmp = ng:call_cmd("openresty.cases.nonblocking", "request", args("slow", 2), slow_out, 30)
    assert(os.execute(cmd .. " >/dev/null 2>&1 &"))
    -- wait until the worker has started the slow request
    local started
    for _ = 1, 100 do
      local r = ng:call("openresty.cases.nonblocking", "record", { label = "slow" })
      if r.ok and r.result and r.result ~= cjson.null and r.result.started then started = r.result break end
      harness.sleep(0.02)
    end
    assert.is_table(started, "the slow request never started")

    local fast = {}
    for i = 1, 3 do
      local r = ng:call("openresty.cases.nonblocking", "request", args("fast" .. i))
      assert.is_true(r.ok, r.err)
      assert.equal(404, r.result.status)
      fast[i] = r.result
    end

    local slow
    for _ = 1, 300 do
      local r = ng:call("openresty.cases.nonblocking", "record", { label = "slow" })
      if r.ok and r.result and r.result ~= cjson.null and r.result.finished then slow = r.result break end
      harness.sleep(0.05)
    end
    os.execute("sleep 0.2")
    os.remove(slow_out); os.remove(tmp)
    assert.is_table(slow, "the slow request never finished")
    assert.equal(404, slow.status)
    for i = 1, 3 do
      -- same worker, started after the slow one, finished before it
      assert.equal(slow.pid, fast[i].pid)
      assert.is_true(fast[i].started > slow.started)
      assert.is_true(fast[i].finished < slow.finished,
        ("fast request %d finished at %.3f, the slow one at %.3f"):format(i, fast[i].finished, slow.finished))
    end
    -- the slow answer really was slow (the injected delay happened)
    assert.is_true(slow.finished - slow.started >= 1.9)
  end)
end)
