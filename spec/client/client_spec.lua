local xs2a = require "xs2a"
local helper = require "helper"
local support = require "support.client"

local function opts(over)
  local o = {
    profile = "paysera-berlin", base_url = "https://127.0.0.1:1", ca_file = helper.pki("ca.pem"),
    qwac = support.identity("qwac"), qseal = support.identity("qseal"),
  }
  for k, v in pairs(over or {}) do o[k] = v end
  if o.qseal == false then o.qseal = nil end
  return o
end

describe("xs2a.client construction", function()
  it("builds a client and takes the client id from the QWAC", function()
    local c = assert(xs2a.client(opts()))
    assert.equal("PSDLT-BOL-TPP001", c.client_id)
    assert.equal("https://127.0.0.1:1", c.base_url)
    assert.equal("/xs2a/berlin/1.3", c.root)
    assert.matches("xs2a.Client %(paysera%-berlin", tostring(c))
  end)

  it("refuses an expired QWAC", function()
    local c, err = xs2a.client(opts{
      qwac = { cert = helper.pki("qwac-expired.pem"), key = helper.pki("qwac-expired.key") } })
    assert.is_nil(c)
    assert.equal("config", err.kind)
    assert.equal("CERTIFICATE_EXPIRED", err.code)
  end)

  it("refuses a QWAC whose key does not match", function()
    local c, err = xs2a.client(opts{ qwac = { cert = helper.pki("qwac.pem"), key = helper.pki("other.key") } })
    assert.is_nil(c)
    assert.equal("config", err.kind)
    assert.matches("qwac", err.text)
  end)

  it("refuses PIS with an AI-only QWAC, at construction and per call", function()
    local c, err = xs2a.client(opts{ qwac = support.identity("qwac-ai"), services = { "AIS", "PIS" } })
    assert.is_nil(c)
    assert.equal("ROLE_INVALID", err.code)
    assert.matches("PSP_PI", err.text)
    -- AIS only: fine, and no QSealC needed because Paysera signs PIS only
    local ais = assert(xs2a.client(opts{ qwac = support.identity("qwac-ai"), qseal = false }))
    assert.is_nil(ais.services.PIS)
    local p, perr = ais:initiate_payment("sepa-credit-transfers", { instructedAmount = {} },
      { psu_ip = "198.51.100.7" })
    assert.is_nil(p)
    assert.equal("config", perr.kind)
    assert.equal("ROLE_INVALID", perr.code)
  end)

  it("refuses a missing QSealC when the profile signs", function()
    local c, err = xs2a.client(opts{ qseal = false })
    assert.is_nil(c)
    assert.equal("CERTIFICATE_MISSING", err.code)
    assert.matches("qseal", err.text)
    local g, gerr = xs2a.client(opts{ qseal = false, profile = "paysera-georgia" })
    assert.is_nil(g)
    assert.equal("config", gerr.kind)
  end)

  it("refuses bad options with config errors", function()
    for _, o in ipairs({
      { base_url = "http://127.0.0.1:1" }, { base_url = "https://h/x" }, { profile = "nope" },
      { redirect_uri = "https://tpp.example/cb\r\nX: y" }, { services = { "XIS" } }, { qwac = false },
    }) do
      local c, err = xs2a.client(opts(o))
      assert.is_nil(c)
      assert.equal("config", err.kind)
    end
    assert.has_error(function() xs2a.client("x") end)
  end)

  it("rejects CR/LF in header values and links to another origin", function()
    local c = assert(xs2a.client(opts()))
    local r, err = c:request{ method = "GET", path = "/v1/x", headers = { ["X-A"] = "a\r\nb: c" } }
    assert.is_nil(r)
    assert.equal("HEADER_INVALID", err.code)
    local r2, err2 = c:request{ method = "GET", url = "https://evil.example/v1/x" }
    assert.is_nil(r2)
    assert.equal("FOREIGN_LINK", err2.code)
    local r3, err3 = c:request{ method = "GET", path = "/v1/x", psu = { id = "alice\nX" } }
    assert.is_nil(r3)
    assert.equal("HEADER_INVALID", err3.code)
  end)

  it("requires the PSU IP address for consents and payments", function()
    local c = assert(xs2a.client(opts()))
    local _, e1 = c:create_consent({ access = {} }, {})
    assert.equal("PSU_IP_REQUIRED", e1.code)
    local _, e2 = c:initiate_payment("sepa-credit-transfers", {}, {})
    assert.equal("PSU_IP_REQUIRED", e2.code)
  end)
end)
