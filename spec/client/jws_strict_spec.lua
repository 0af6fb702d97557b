-- Georgian JWS as strictly as a strict bank: every header of the rule's set
-- that a request sends (host, content-type, content-length, digest, psu-*)
-- is signed. The sandbox refuses a signature that leaves the sent
-- Content-Length out (as the client did when the transport added it after
-- signing); the client signs it and its Georgian payments go through.
local sandbox = require "support.sandbox"
local support = require "support.client"
local sign = require "xs2a.sign"
local json = require "xs2a.codec.json"
local core = require "xs2a.core"

describe("strict Georgian JWS #network", function()
  local sb

  setup(function() sb = sandbox.shared() end)

  local function pars_of(header)
    local head = header:match("^([^.]+)%.%.")
    return json.decode(core.b64url_decode(head)).sigD.pars
  end

  local function has(list, v)
    for _, x in ipairs(list) do if x == v then return true end end
    return false
  end

  it("the signer signs the Content-Length the transports will send", function()
    local signer = sign.jws(support.identity("qseal"))
    local post = { method = "POST", url = "https://bank.example/v1/payments/domestic", body = '{"a":1}',
      headers = { ["X-Request-ID"] = "9e1b2a34-0000-4000-8000-000000000001", ["Content-Type"] = "application/json" } }
    assert(signer:sign(post))
    assert.equal("7", post.headers["Content-Length"])
    assert.is_true(has(pars_of(post.headers["x-jws-signature"]), "content-length"))
    -- a bodiless PUT still sends Content-Length: 0
    local put = { method = "PUT", url = "https://bank.example/v1/x", headers = { ["X-Request-ID"] = "r" } }
    assert(signer:sign(put))
    assert.equal("0", put.headers["Content-Length"])
    -- a GET sends none
    local get = { method = "GET", url = "https://bank.example/v1/x", headers = { ["X-Request-ID"] = "r" } }
    assert(signer:sign(get))
    assert.is_nil(get.headers["Content-Length"])
    assert.is_false(has(pars_of(get.headers["x-jws-signature"]), "content-length"))
  end)

  it("the bank refuses a signature without the Content-Length it received", function()
    local signer = sign.jws(support.identity("qseal"))
    local body = '{"instructedAmount":{"currency":"GEL","amount":"1.00"}}'
    local url = sb.roots.georgia .. "/v1/payments/domestic"
    -- what the old client signed: no Content-Length among the headers (the
    -- transport added it afterwards). Signing the message as a GET gives
    -- exactly that header set (the bank looks at the signed set before the
    -- digest and the signature).
    local msg = { method = "GET", url = url, headers = {
      ["X-Request-ID"] = "6f1b2a34-0000-4000-8000-000000000002", ["Content-Type"] = "application/json",
      ["PSU-IP-Address"] = "192.0.2.10" } }
    assert(signer:sign(msg))
    assert.is_nil(msg.headers["Content-Length"])
    assert.is_false(has(pars_of(msg.headers["x-jws-signature"]), "content-length"))
    local res = sb:request{ method = "POST", url = url, headers = msg.headers, body = body }
    assert.equal(401, res.status)
    assert.equal("SIGNATURE_INVALID", res.json.code)
    assert.matches("sigD.pars must include content%-length", res.json.detail)
  end)

  it("a Georgian payment signed by the client passes the strict bank", function()
    local c = support.new_client("georgia")
    local _, body = sb:control("GET", "/accounts")
    local debtor, creditor
    for _, a in ipairs(body.accounts) do
      if a.resourceId == "g-alice-gel" then debtor = a.iban end
      if a.resourceId == "g-bob-gel" then creditor = a.iban end
    end
    local p, err = c:initiate_payment("domestic", { instructedAmount = { currency = "GEL", amount = "1.00" },
      debtorAccount = { iban = debtor }, creditorAccount = { iban = creditor }, creditorName = "Bob" },
      { psu_ip = "192.0.2.10" })
    assert.is_table(p, tostring(err))
    assert.is_string(p.id)
  end)
end)
