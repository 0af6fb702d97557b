-- The shared transport spec (spec/support/transport_cases.lua) against the
-- ngx cosocket transport, run inside a real nginx worker; the servers are
-- the same loopback nginx test servers the curl transport is tested with.
local helper = require "helper"
local harness = require "openresty.harness"
local tlsserver = require "support.tlsserver"
local cases = require "support.transport_cases"

describe("#openresty xs2a.transport.ngx", function()
  local ng, srv, wrong, refused_url

  lazy_setup(function()
    refused_url = tlsserver.refused_url()
    srv = tlsserver.start{ verify_client = true }
    wrong = tlsserver.start{ verify_client = false, cert = "wrong-host" }
    ng = harness.start{ workers = 1 }
  end)

  lazy_teardown(function()
    if ng then ng:stop() end
    if srv then srv:stop() end
    if wrong then wrong:stop() end
  end)

  local function call(fn, args)
    return ng:call("openresty.cases.transport", fn, args)
  end

  it("sees the same cases inside the worker", function()
    local r = call("names")
    assert.is_true(r.ok, r.err)
    local names = {}
    for i, c in ipairs(cases) do names[i] = c.name end
    assert.same(names, r.result)
  end)

  for _, c in ipairs(cases) do
    it(c.name, function()
      local r = call("run", {
        name = c.name, url = srv.url, wrong_host_url = wrong.url, refused_url = refused_url,
        pki_dir = helper.pki_dir, access_log = srv.prefix .. "/logs/access.log",
        reuse_log = srv.prefix .. "/logs/reuse.log",
      })
      assert.is_true(r.ok, r.err)
    end)
  end
end)
