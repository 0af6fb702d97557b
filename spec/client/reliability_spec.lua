-- Retries, Retry-After, outcome unknown, malformed answers and the limiter,
-- against a private sandbox started with fault injection. #network
local sandbox = require "support.sandbox"
local support = require "support.client"
local errors = require "xs2a.errors"

local AIS = "/v1/_platform/ais"
local PIS = "/v1/_platform/pis"

local function sleep(s) require("xs2a.parallel").sleep(s) end

local function scan(sb, method, path_part)
  local n, statuses = 0, {}
  for _, line in ipairs(sb:access_log()) do
    local req, status = line:match('"([^"]*)" (%d+)')
    if req and req:find(method .. " ", 1, true) == 1 and req:find(path_part, 1, true) then
      n = n + 1
      statuses[#statuses + 1] = tonumber(status)
    end
  end
  return n, statuses
end

-- nginx writes the access log line after the answer: wait until `expected`
-- lines are there (at most 3 s), then a little longer to catch extra ones
local function count_requests(sb, method, path_part, expected)
  for _ = 1, 60 do
    local n = scan(sb, method, path_part)
    if n >= (expected or 1) then break end
    sleep(0.05)
  end
  sleep(0.2)
  return scan(sb, method, path_part)
end

describe("client reliability #network", function()
  local sb
  setup(function()
    sb = sandbox.start{ faults = true, config = { platform_test_routes = true,
      rate = { per_second = 50, per_hour = 100000, concurrent = 20 } } }
  end)
  teardown(function() if sb then sb:stop() end end)

  local function client(overrides)
    overrides = overrides or {}
    overrides.retry = overrides.retry or { base_delay = 0.05, max_delay = 0.2 }
    overrides.limits = overrides.limits or { per_second = 50, per_hour = 100000, concurrent = 20 }
    return support.new_client(overrides.variant or "berlin", overrides, sb)
  end

  local function marker()
    -- a unique path suffix so access log counts belong to one test
    return tostring(math.random(1, 1e9))
  end

  it("retries a GET answered 503 with Retry-After and then succeeds", function()
    local m = marker()
    sb:fault{ kind = "status", status = 503, retry_after = 1, method = "GET", path = "/_platform/ais", count = 1 }
    local c, events = client{ capture_log = true }
    local res, err = c:request{ method = "GET", path = AIS, query = { m = m }, service = "AIS" }
    assert.is_nil(err)
    assert.equal(200, res.status)
    assert.equal(2, res.attempts)
    local retries = 0
    for _, e in ipairs(events) do
      if e.event == "retry" then
        retries = retries + 1
        assert.equal(503, e.fields.status)
        assert.is_true(e.fields.wait >= 1)
      end
    end
    assert.equal(1, retries)
    local n, statuses = count_requests(sb, "GET", "m=" .. m, 2)
    assert.equal(2, n)
    assert.same({ 503, 200 }, statuses)
  end)

  it("retries a GET answered 429 and honours Retry-After", function()
    local m = marker()
    sb:fault{ kind = "status", status = 429, retry_after = 1, method = "GET", path = "/_platform/ais", count = 2 }
    local c = client{ retry = { max_attempts = 3, base_delay = 0.01, max_delay = 0.02 } }
    local res = assert(c:request{ method = "GET", path = AIS, query = { m = m }, service = "AIS" })
    assert.equal(3, res.attempts)
    assert.equal(3, (count_requests(sb, "GET", "m=" .. m, 3)))
  end)

  it("does not retry when Retry-After exceeds the cap", function()
    sb:fault{ kind = "status", status = 503, retry_after = 120, method = "GET", path = "/_platform/ais", count = 1 }
    local c = client()
    local res, err = c:request{ method = "GET", path = AIS, service = "AIS" }
    assert.is_nil(res)
    assert.equal(503, err.status)
    assert.equal(120, err.retry_after)
    assert.is_true(err.retryable)
  end)

  it("never repeats a payment POST answered 429 or 503", function()
    for _, st in ipairs({ 429, 503 }) do
      local m = marker()
      sb:fault{ kind = "status", status = st, retry_after = 1, method = "POST", path = "/_platform/pis", count = 1 }
      local c = client()
      local res, err = c:request{ method = "POST", path = PIS, query = { m = m }, service = "PIS",
        body = { instructedAmount = { currency = "EUR", amount = "1.00" } }, psu = { ip = "198.51.100.7" } }
      assert.is_nil(res)
      assert.equal(st, err.status)
      assert.is_nil(err.outcome)
      assert.equal(1, (count_requests(sb, "POST", "m=" .. m)))
    end
  end)

  it("reports outcome unknown with the X-Request-ID when a POST's answer is lost", function()
    local m = marker()
    sb:fault{ kind = "drop", method = "POST", path = "/_platform/pis", count = 1 }
    local c, events = client{ capture_log = true }
    local res, err = c:request{ method = "POST", path = PIS, query = { m = m }, service = "PIS", body = { a = 1 },
      psu = { ip = "198.51.100.7" } }
    assert.is_nil(res)
    assert.equal("transport", err.kind)
    assert.equal("unknown", err.outcome)
    assert.matches("^%x+%-%x+%-4%x+%-%x+%-%x+$", err.request_id)
    local sent_id
    for _, e in ipairs(events) do
      if e.event == "request" then sent_id = e.fields.headers["X-Request-ID"] end
    end
    assert.equal(sent_id, err.request_id)
    assert.equal(1, (count_requests(sb, "POST", "m=" .. m)))
  end)

  it("leaves exactly one payment in the ledger when a payment POST's answer is lost", function()
    local _, before = sb:control("GET", "/payments")
    local c = client()
    sb:fault{ kind = "drop", method = "POST", path = "/v1/payments/", count = 1 }
    local p, err = c:initiate_payment("sepa-credit-transfers", {
      debtorAccount = { iban = "LT203500000010001101", currency = "EUR" },
      instructedAmount = { currency = "EUR", amount = "4.20" },
      creditorAccount = { iban = "LT023500000010002201" }, creditorName = "Bob",
    }, { psu_ip = "198.51.100.7" })
    assert.is_nil(p)
    assert.equal("unknown", err.outcome)
    assert.is_string(err.request_id)
    local _, after = sb:control("GET", "/payments")
    assert.equal(#before.payments + 1, #after.payments)
  end)

  it("sends a payment POST once over HTTP/1.1 keepalive when its answer is lost", function()
    -- libcurl resends a request whose reused connection dies before any
    -- answer; the session must not let that happen to a payment
    local curl = require "xs2a.transport.curl"
    local helper = require "helper"
    local t = assert(curl.new{ identity = support.identity("qwac"), ca_file = helper.pki("ca.pem"), http2 = false })
    finally(function() t:close() end)
    local c = client{ transport = t }
    local body = {
      debtorAccount = { iban = "LT203500000010001101", currency = "EUR" },
      instructedAmount = { currency = "EUR", amount = "1.10" },
      creditorAccount = { iban = "LT023500000010002201" }, creditorName = "Bob",
    }
    -- warm the pool: the next requests would ride on a kept-alive connection
    assert(c:request{ method = "GET", path = AIS, service = "AIS" })
    local _, before = sb:control("GET", "/payments")
    sb:fault{ kind = "drop", method = "POST", path = "/v1/payments/", count = 1 }
    local p, err = c:initiate_payment("sepa-credit-transfers", body, { psu_ip = "198.51.100.7" })
    assert.is_nil(p)
    assert.equal("unknown", err.outcome)
    local _, after = sb:control("GET", "/payments")
    assert.equal(#before.payments + 1, #after.payments)
    -- and the transport still works afterwards
    assert(c:initiate_payment("sepa-credit-transfers", body, { psu_ip = "198.51.100.7" }))
  end)

  it("retries a GET whose connection was dropped", function()
    local m = marker()
    sb:fault{ kind = "drop", method = "GET", path = "/_platform/ais", count = 1 }
    local res = assert(client():request{ method = "GET", path = AIS, query = { m = m }, service = "AIS" })
    assert.equal(2, res.attempts)
  end)

  it("gives typed errors for malformed, truncated and oversize answers", function()
    local c = client{ retry = { max_attempts = 1 }, max_body = 64 * 1024 }
    sb:fault{ kind = "malformed", method = "GET", path = "/_platform/ais", count = 1 }
    local _, e1 = c:request{ method = "GET", path = AIS, service = "AIS" }
    assert.equal("protocol", e1.kind)
    assert.equal("BAD_JSON", e1.code)
    sb:fault{ kind = "truncate", method = "GET", path = "/_platform/ais", count = 1 }
    local _, e2 = c:request{ method = "GET", path = AIS, service = "AIS" }
    assert.is_true(e2.kind == "transport" or e2.kind == "protocol", tostring(e2))
    sb:fault{ kind = "oversize", method = "GET", path = "/_platform/ais", count = 1, bytes = 1024 * 1024 }
    local _, e3 = c:request{ method = "GET", path = AIS, service = "AIS" }
    assert.equal("transport", e3.kind)
    assert.equal("too_large", e3.code)
    -- a malformed answer to a payment POST: the bank may have acted
    sb:fault{ kind = "malformed", method = "POST", path = "/_platform/pis", count = 1 }
    local _, e4 = c:request{ method = "POST", path = PIS, service = "PIS", body = {}, psu = { ip = "198.51.100.7" } }
    assert.equal("protocol", e4.kind)
    assert.equal("unknown", e4.outcome)
    assert.is_true(errors.is_error(e4))
  end)

  it("overlaps requests of parallel tasks (a slow answer does not hold the others)", function()
    local c = client()
    local order = {}
    local r = require("xs2a").parallel(
      function()
        assert(c:request{ method = "GET", path = AIS, service = "AIS",
          headers = { ["X-Sandbox-Fault"] = "kind=delay; seconds=1" } })
        order[#order + 1] = "slow"
      end,
      function()
        for _ = 1, 3 do assert(c:request{ method = "GET", path = AIS, service = "AIS" }) end
        order[#order + 1] = "quick"
      end)
    assert.is_true(r[1][1], tostring(r[1][2]))
    assert.is_true(r[2][1], tostring(r[2][2]))
    assert.same({ "quick", "slow" }, order)
  end)

  it("keeps a burst of 300 calls under the bank's rate limit (no 429)", function()
    local m = marker()
    local c = client{ retry = { max_attempts = 1 } }
    local tasks = {}
    for t = 1, 10 do
      tasks[t] = function()
        for i = 1, 30 do
          assert(c:request{ method = "GET", path = AIS, query = { m = m, t = t, i = i }, service = "AIS" })
        end
        return true
      end
    end
    local results = require("xs2a").parallel((table.unpack or unpack)(tasks))
    for i = 1, 10 do
      assert.is_true(results[i][1], tostring(results[i][2]))
    end
    local n, statuses = count_requests(sb, "GET", "m=" .. m, 300)
    assert.equal(300, n)
    for _, s in ipairs(statuses) do assert.equal(200, s) end
  end)
end)
