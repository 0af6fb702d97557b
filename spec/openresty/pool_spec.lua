-- Guarantees of the ngx transport that only a real nginx shows:
-- * two transports with different client certificates and the same pool
--   settings never share a connection: the bank sees each request with its
--   own certificate (the pool key carries the certificate's digest);
-- * the curl transport, which would block the worker, is refused there
--   (issue 8 hole 10).
local helper = require "helper"
local harness = require "openresty.harness"
local tlsserver = require "support.tlsserver"

describe("#openresty ngx pools and transports", function()
  local ng, srv

  lazy_setup(function()
    srv = tlsserver.start{ verify_client = true, http2 = false,
      extra = [[        location = /whoami { default_type text/plain; return 200 "$ssl_client_s_dn"; }]] }
    ng = harness.start{ workers = 1 }
  end)

  lazy_teardown(function()
    if ng then ng:stop() end
    if srv then srv:stop() end
  end)

  it("keeps each client certificate on its own connections", function()
    local r = ng:call("openresty.cases.pool", "two_identities", { url = srv.url, pki = helper.pki_dir })
    assert.is_true(r.ok, r.err)
    local reused = 0
    for i, s in ipairs(r.result) do
      assert.equal(200, s.status)
      local want = (i % 2 == 1) and "CN=tpp.example" or "CN=tpp2.example"
      assert.truthy(s.dn:find(want, 1, true), "request " .. i .. " reached the bank as " .. s.dn)
      if s.reused then reused = reused + 1 end
    end
    -- the pools do work: after the first request of each, connections are reused
    assert.equal(4, reused)
  end)

  it("refuses the curl transport inside nginx (it would block the worker)", function()
    local r = ng:call("openresty.cases.pool", "curl_refused", { url = srv.url, pki = helper.pki_dir })
    assert.is_true(r.ok, r.err)
    local o = r.result
    assert.is_false(o.new_ok)
    assert.matches("block", o.new_err)
    assert.is_false(o.curl_ok)
    assert.is_false(o.client_ok)
    assert.equal("config", o.client_kind)
    assert.equal("TRANSPORT_INVALID", o.client_code)
    assert.equal("ngx", o.default_kind)
  end)
end)
