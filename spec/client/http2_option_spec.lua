-- The client's `http2` option reaches the curl transport it makes: with
-- `http2 = false` every request goes out over HTTP/1.1, also to a server
-- that offers HTTP/2 (then nghttp2 never holds a copy of the bearer token:
-- README, "Secrets in freed memory"); by default HTTP/2 is taken. #network
local tlsserver = require "support.tlsserver"
local helper = require "helper"
local xs2a = require "xs2a"

describe("client option http2", function()
  local srv, qwac
  setup(function()
    srv = tlsserver.start{ verify_client = true }   -- offers h2 and http/1.1 through ALPN
    qwac = assert(xs2a.identity{ cert = helper.pki("qwac.pem"), key = helper.pki("qwac.key") })
  end)
  teardown(function()
    if srv then srv:stop() end
  end)

  local function version_seen(http2)
    local c = assert(xs2a.client{ profile = "paysera-berlin", base_url = srv.url, qwac = qwac,
      ca_file = helper.pki("ca.pem"), limits = false, http2 = http2, services = { "AIS" } })
    local res = assert(c:request{ url = srv.url .. "/echo", headers = { Authorization = "Bearer t" } })
    assert.equals(200, res.status)
    return res.json.http_version
  end

  it("false: HTTP/1.1 to a server that offers HTTP/2", function()
    assert.equals(1.1, version_seen(false))
  end)

  it("default and true: HTTP/2", function()
    assert.equals(2, version_seen(nil))
    assert.equals(2, version_seen(true))
  end)

  it("refuses a value that is not a boolean", function()
    local c, err = xs2a.client{ profile = "paysera-berlin", base_url = srv.url, qwac = qwac,
      ca_file = helper.pki("ca.pem"), http2 = "no" }
    assert.is_nil(c)
    assert.equals("OPTION_INVALID", err.code)
    assert.matches("option http2 must be a boolean", err.message, 1, true)
  end)
end)
