-- xs2a.store.shdict inside a real nginx: the store contract, and a lock
-- that several workers contend for.
local harness = require "openresty.harness"

describe("#openresty shdict store", function()
  local ng

  lazy_setup(function()
    ng = harness.start{ workers = 3 }
  end)

  lazy_teardown(function()
    if ng then ng:stop() end
  end)

  for _, case in ipairs({ "basic", "ttl", "incr", "lock", "missing_dict" }) do
    it(case, function()
      local r = ng:call("openresty.cases.store", case)
      assert.is_true(r.ok, r.err)
    end)
  end

  it("lets exactly one of several concurrent callers across workers hold a lock", function()
    local key = "contend:" .. os.time() .. ":" .. math.random(1, 1e9)
    local cmds, outs, tmps = {}, {}, {}
    for i = 1, 10 do
      outs[i] = os.tmpname()
      local cmd, tmp = ng:call_cmd("openresty.cases.store", "contend", { key = key, hold = 1 }, outs[i], 20)
      cmds[i], tmps[i] = cmd .. " &", tmp
    end
    assert(os.execute("(" .. table.concat(cmds, " ") .. " wait)"))
    local got, pids = 0, {}
    local cjson = require "cjson"
    for i = 1, 10 do
      local body = harness.read(outs[i])
      assert.is_string(body, "no answer from the worker")
      local r = cjson.decode(body)
      os.remove(outs[i]); os.remove(tmps[i])
      assert.is_true(r.ok, r.err)
      if r.result.got then got = got + 1 end
      pids[r.result.pid] = true
    end
    assert.equal(1, got)
    local n = 0
    for _ in pairs(pids) do n = n + 1 end
    assert.is_true(n >= 2, "the requests should have reached more than one worker")
  end)
end)
