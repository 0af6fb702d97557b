local errors = require "xs2a.errors"
local date = require "xs2a.net.date"

describe("xs2a.errors", function()
  local ctx = { method = "GET", path = "/v1/accounts", request_id = "9c1b2a34-0000-4000-8000-000000000001" }

  it("reads an RFC 7807 body", function()
    local err = errors.from_response({ status = 401, headers = { ["content-type"] = "application/problem+json" },
      body = '{"type":"https://x/t","title":"Token expired","detail":"The access token has expired",'
        .. '"code":"TOKEN_EXPIRED","additionalErrors":[{"title":"t2","detail":"more","code":"CONSENT_INVALID"}]}' },
      ctx)
    assert.equal("http", err.kind)
    assert.equal(401, err.status)
    assert.equal("TOKEN_EXPIRED", err.code)
    assert.equal(2, #err.messages)
    assert.is_true(errors.is(err, "TOKEN_EXPIRED"))
    assert.is_true(errors.is(err, "CONSENT_INVALID"))
    assert.is_false(errors.is(err, "FORMAT_ERROR"))
    assert.equal("xs2a: 401 TOKEN_EXPIRED: The access token has expired (GET /v1/accounts, X-Request-ID "
      .. ctx.request_id .. ")", tostring(err))
  end)

  it("reads a tppMessages body", function()
    local err = errors.from_response({ status = 400, headers = { ["content-type"] = "application/json" },
      body = '{"tppMessages":[{"category":"WARNING","code":"WARNING","text":"w"},'
        .. '{"category":"ERROR","code":"FORMAT_ERROR","text":"bad field","path":"instructedAmount"}]}' }, ctx)
    assert.equal("FORMAT_ERROR", err.code)
    assert.equal("bad field", err.text)
    assert.equal("instructedAmount", err.messages[2].path)
    assert.is_false(err.retryable)
  end)

  it("describes non-JSON bodies without crashing and masks IBANs", function()
    local err = errors.from_response({ status = 403, headers = { ["content-type"] = "text/html" },
      body = "<html><body>403 Forbidden for LT601010012345678901</body></html>" }, ctx)
    assert.equal(403, err.status)
    assert.is_nil(err.code)
    assert.matches("non%-JSON error body %(text/html%)", err.text)
    assert.not_matches("LT601010012345678901", tostring(err))
    assert.matches("LT%*+8901", tostring(err))
  end)

  it("parses Retry-After as seconds and as an HTTP date", function()
    local e1 = errors.from_response({ status = 429, headers = { ["retry-after"] = "7" }, body = "" }, ctx)
    assert.equal(7, e1.retry_after)
    assert.is_true(e1.retryable)
    local now = os.time()
    assert.equal(120, errors.parse_retry_after(date.http(now + 120), now))
    assert.equal(0, errors.parse_retry_after(date.http(now - 5), now))
    assert.is_nil(errors.parse_retry_after("soon"))
    assert.equal(784111777, date.parse_http("Sun, 06 Nov 1994 08:49:37 GMT"))
    assert.equal(784111777, date.parse_http("Sunday, 06-Nov-94 08:49:37 GMT"))
    assert.equal(784111777, date.parse_http("Sun Nov  6 08:49:37 1994"))
  end)

  it("marks a lost answer to a non-idempotent request as outcome unknown", function()
    local c = { method = "POST", path = "/v1/payments/x", request_id = "r1", idempotent = false }
    local e = errors.from_transport({ code = "recv", message = "connection reset", sent = true }, c)
    assert.equal("transport", e.kind)
    assert.equal("unknown", e.outcome)
    assert.equal("r1", e.request_id)
    assert.matches("outcome unknown", tostring(e))
    assert.is_false(e.retryable)
    local e2 = errors.from_transport({ code = "connect", message = "refused", sent = false }, c)
    assert.is_nil(e2.outcome)
    assert.is_false(e2.sent)
    -- a transport that does not say whether the request left: in doubt it did
    local e4 = errors.from_transport({ code = "bad_request", message = "Received HTTP/0.9" }, c)
    assert.is_true(e4.sent)
    assert.equal("unknown", e4.outcome)
    assert.is_false(e4.retryable)
    local e3 = errors.from_transport({ code = "timeout", message = "t", sent = true },
      { method = "GET", path = "/v1/accounts", idempotent = true })
    assert.is_nil(e3.outcome)
    assert.is_true(e3.retryable)
  end)

  it("accepts the single-table form and OAuth error bodies", function()
    local e = errors.new{ kind = "sca", code = "SCA_DENIED", message = "denied" }
    assert.equal("sca", e.kind)
    assert.equal("denied", e.text)
    assert.equal("denied", e.message)
    local o = errors.from_response({ status = 400, headers = {},
      body = '{"error":"invalid_grant","error_description":"refresh token reused"}' }, ctx)
    assert.equal("invalid_grant", o.code)
    assert.is_true(errors.is_error(o))
    assert.is_false(errors.is_error({}))
  end)

  it("tostring names the cause, masked, at most three levels deep, even for a cycle", function()
    local inner = errors.new("http", { status = 400, code = "invalid_grant", text = "the consent is no longer valid" })
    local outer = errors.new("http", { status = 401, code = "TOKEN_EXPIRED", text = "access token expired",
      method = "GET", path = "/v1/accounts", cause = inner })
    assert.equal("xs2a: 401 TOKEN_EXPIRED: access token expired (GET /v1/accounts); "
      .. "cause: 400 invalid_grant: the consent is no longer valid", tostring(outer))
    local s = errors.new("sca", { code = "SCA_FAILED", text = "failed",
      cause = "refused for LT601010012345678901\nnext line" })
    local text = tostring(s)
    assert.matches("; cause: refused for ", text, 1, true)
    assert.is_nil(text:find("LT601010012345678901", 1, true))
    assert.is_nil(text:find("\n", 1, true))
    local a = errors.new("sca", { code = "A", text = "a" })
    local b = errors.new("sca", { code = "B", text = "b", cause = a })
    a.cause = b
    local _, n = tostring(a):gsub("cause:", "")
    assert.equal(2, n)
  end)
end)

