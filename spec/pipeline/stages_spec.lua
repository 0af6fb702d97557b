-- Stage-level specs of xs2a.pipeline: a context made of stubs (transport,
-- signer, limiter, token source) so each guarantee of the runner is shown
-- at its seam.
local pipeline = require "xs2a.pipeline"
local profile = require "xs2a.profile"
local date = require "xs2a.net.date"

local function ok_res(status, body, headers)
  local h = { ["content-type"] = "application/json" }
  for k, v in pairs(headers or {}) do h[k] = v end
  return { status = status or 200, headers = h, body = body or "{}" }
end

-- a context of stubs; `answer` is what the transport returns
local function new_ctx(answer)
  local ctx = {
    profile = assert(profile.get("paysera-berlin")),
    roles = { PSP_AI = true, PSP_PI = true, PSP_IC = true },
    base_url = "https://bank.test", origin = "https://bank.test", root = "/xs2a/berlin/1.3",
    retry = { max_attempts = 3, base_delay = 0, max_delay = 0, max_retry_after = 30 },
    tokens = { current = "AT-1234567" },
    transport = { request = function() if answer then return answer() end return ok_res() end },
    signer = { sign = function(_, req) req.headers.Signature = "sig" return req end },
    limiter = {
      acquire = function() return function() end end,
      frequency = function() return true, function() end end,
    },
    logged = {},
  }
  function ctx.tokens.access_token() return ctx.tokens.current end
  function ctx.tokens.refresh()
    ctx.tokens.current = "AT-NEW-7654321"
    return ctx.tokens.current
  end
  function ctx:log(level, event, fields) self.logged[#self.logged + 1] = { level, event, fields } end
  function ctx.sleep() end
  function ctx.consent_frequency() return 4 end
  spy.on(ctx.transport, "request")
  return ctx
end

local PIS = { method = "POST", path = "/v1/payments/sepa-credit-transfers", body = { a = 1 }, service = "PIS",
  idempotent = false }
local AIS = { method = "GET", path = "/v1/accounts", service = "AIS", consent_id = "c1", token = "consent:c1" }

describe("xs2a.pipeline stages", function()
  it("runs the stages in the order of the design: limit, then sign, then send", function()
    assert.same({ "prepare", "attach_token", "spend_unit", "acquire_limit", "sign", "send", "verify", "decode",
      "map_error" }, pipeline.ORDER)
  end)

  describe("a stage that returns nil, err stops the request and nothing is sent", function()
    for _, name in ipairs({ "prepare", "attach_token", "spend_unit", "acquire_limit", "sign" }) do
      it(name, function()
        local ctx = new_ctx()
        local real = pipeline.stages[name]
        local marker = setmetatable({ kind = "config", code = "STOP_" .. name, retryable = true },
          { __tostring = function() return "stop" end })
        pipeline.stages[name] = function() return nil, marker end
        local released = 0
        ctx.limiter.acquire = function() return function() released = released + 1 end end
        local res, err = pipeline.request(ctx, AIS)
        pipeline.stages[name] = real
        assert.is_nil(res)
        assert.equal(marker, err)
        assert.spy(ctx.transport.request).was_not_called()
        -- a slot taken before the failing stage is given back
        local taken = name == "sign" and 1 or 0
        assert.equal(taken, released)
      end)
    end

    it("a stage that returns nothing at all is a failure too (STAGE_FAILED), nothing sent", function()
      local ctx = new_ctx()
      local real = pipeline.stages.sign
      pipeline.stages.sign = function() return nil end
      local res, err = pipeline.request(ctx, PIS)
      pipeline.stages.sign = real
      assert.is_nil(res)
      assert.equal("STAGE_FAILED", err.code)
      assert.spy(ctx.transport.request).was_not_called()
    end)

    for _, name in ipairs({ "verify", "decode", "map_error" }) do
      it(name .. " (after the send): the answer is refused, the request is not repeated", function()
        local ctx = new_ctx()
        local real = pipeline.stages[name]
        pipeline.stages[name] = function() return nil, setmetatable({ kind = "protocol", code = "BAD" }, {}) end
        local res, err = pipeline.request(ctx, PIS)
        pipeline.stages[name] = real
        assert.is_nil(res)
        assert.equal("BAD", err.code)
        assert.spy(ctx.transport.request).was_called(1)
      end)
    end
  end)

  it("hole 1: a signer's nil, err (or a raise) means nothing is sent", function()
    for _, sign in ipairs({ function() return nil, "no key" end, function() error("boom") end,
        function() return false end }) do
      local ctx = new_ctx()
      ctx.signer = { sign = sign }
      local res, err = pipeline.request(ctx, PIS)
      assert.is_nil(res)
      assert.equal("SIGN_FAILED", err.code)
      assert.spy(ctx.transport.request).was_not_called()
    end
  end)

  it("hole 1: a token source that fails, or none at all, means nothing is sent", function()
    local ctx = new_ctx()
    ctx.tokens.access_token = function()
      return nil, setmetatable({ kind = "store", code = "STORE_UNAVAILABLE" }, {})
    end
    local res, err = pipeline.request(ctx, AIS)
    assert.is_nil(res)
    assert.equal("STORE_UNAVAILABLE", err.code)
    ctx.tokens = nil
    res, err = pipeline.request(ctx, AIS)
    assert.is_nil(res)
    assert.equal("TOKENS_UNAVAILABLE", err.code)
    assert.spy(ctx.transport.request).was_not_called()
  end)

  it("hole 2: Date and the signature are made after the limiter's wait", function()
    local ctx = new_ctx()
    local order = {}
    local clock = 1700000000
    local real_http = date.http
    date.http = function() return real_http(clock) end
    ctx.limiter.acquire = function()
      order[#order + 1] = "limit"
      clock = clock + 30 -- the limiter waited 30 s
      return function() end
    end
    local signed_date
    ctx.signer.sign = function(_, req)
      order[#order + 1] = "sign"
      signed_date = req.headers.Date
      return req
    end
    local res = pipeline.request(ctx, PIS)
    date.http = real_http
    assert.truthy(res)
    assert.same({ "limit", "sign" }, order)
    assert.equal(real_http(1700000030), signed_date)
    assert.equal(real_http(1700000030), ctx.transport.request.calls[1].vals[2].headers.Date)
  end)

  describe("hole 3: sent or not sent only from the transport's facts", function()
    it("a POST whose answer was lost: outcome unknown, not retryable, sent once", function()
      local ctx = new_ctx(function() return nil, { code = "timeout", message = "t", sent = true } end)
      local res, err = pipeline.request(ctx, PIS)
      assert.is_nil(res)
      assert.equal("unknown", err.outcome)
      assert.is_false(err.retryable)
      assert.spy(ctx.transport.request).was_called(1)
    end)

    it("a POST that surely never left: not sent, outcome known (the caller may send it again)", function()
      local ctx = new_ctx(function() return nil, { code = "connect", message = "refused", sent = false } end)
      local res, err = pipeline.request(ctx, PIS)
      assert.is_nil(res)
      assert.is_false(err.sent)
      assert.is_nil(err.outcome)
      assert.spy(ctx.transport.request).was_called(1)
    end)

    it("a transport failure that does not say is taken as sent", function()
      local ctx = new_ctx(function() return nil, { code = "bad_request", message = "Received HTTP/0.9" } end)
      local _, err = pipeline.request(ctx, PIS)
      assert.is_true(err.sent)
      assert.equal("unknown", err.outcome)
      assert.spy(ctx.transport.request).was_called(1)
    end)

    it("a transport that raises counts as sent", function()
      local ctx = new_ctx(function() error("socket exploded") end)
      local _, err = pipeline.request(ctx, PIS)
      assert.is_true(err.sent)
      assert.is_false(err.retryable)
      assert.spy(ctx.transport.request).was_called(1)
    end)

    it("a GET is repeated after a lost answer (safe to repeat)", function()
      local n = 0
      local ctx = new_ctx(function()
        n = n + 1
        if n == 1 then return nil, { code = "recv", message = "reset", sent = true } end
        return ok_res(200)
      end)
      local res = assert(pipeline.request(ctx, AIS))
      assert.equal(2, res.attempts)
    end)
  end)

  it("hole 4: a path with a dot segment is refused before any stage", function()
    local ctx = new_ctx()
    for _, p in ipairs({ "/v1/consents/..", "/v1/./x", "/v1/a/%2e%2E/b" }) do
      local _, err = pipeline.request(ctx, { method = "GET", path = p, service = "AIS" })
      assert.equal("PATH_INVALID", err.code, p)
    end
    assert.spy(ctx.transport.request).was_not_called()
  end)

  it("hole 4: the same refused path is refused again (exchange remembers only paths without a dot)", function()
    local ctx = new_ctx()
    for _ = 1, 3 do
      for _, p in ipairs({ "/v1/consents/..", "/v1/./x", "/v1/a/%2e%2E/b" }) do
        local _, err = pipeline.request(ctx, { method = "GET", path = p, service = "AIS" })
        assert.equal("PATH_INVALID", err.code, p)
      end
    end
    assert.spy(ctx.transport.request).was_not_called()
    -- a plain path is remembered and still sent
    assert(pipeline.request(ctx, { method = "GET", path = "/v1/consents/c-1", service = "AIS" }))
    assert(pipeline.request(ctx, { method = "GET", path = "/v1/consents/c-1", service = "AIS" }))
    assert.spy(ctx.transport.request).was_called(2)
  end)

  it("hole 5a: secrets the request carried are scrubbed from the error and the log", function()
    local ctx = new_ctx(function()
      return ok_res(400, '{"error":"invalid_request","error_description":"code C0DE-SECRET-1 and AT-1234567"}',
        { ["x-echo"] = "AT-1234567" })
    end)
    local _, err = pipeline.request(ctx, { method = "POST", path = "/v1/x", service = "AIS", token = "k",
      form = { grant_type = "authorization_code", code = "C0DE-SECRET-1" } })
    local text = tostring(err)
    assert.is_nil(text:find("C0DE-SECRET-1", 1, true))
    assert.is_nil(text:find("AT-1234567", 1, true))
    assert.matches("[redacted]", text, 1, true)
  end)

  it("401 TOKEN_EXPIRED: one refresh with the stale token, then one more attempt", function()
    local n = 0
    local ctx = new_ctx(function()
      n = n + 1
      if n == 1 then return ok_res(401, '{"tppMessages":[{"category":"ERROR","code":"TOKEN_EXPIRED"}]}') end
      return ok_res(200)
    end)
    spy.on(ctx.tokens, "refresh")
    local res = assert(pipeline.request(ctx, AIS))
    assert.equal(2, res.attempts)
    assert.spy(ctx.tokens.refresh).was_called(1)
    assert.equal("AT-1234567", ctx.tokens.refresh.calls[1].vals[3])
    assert.equal("Bearer AT-NEW-7654321", ctx.transport.request.calls[2].vals[2].headers.Authorization)
  end)

  it("a frequencyPerDay unit is given back only when the request never left", function()
    for _, case in ipairs({
      { { code = "connect", sent = false }, 1 },
      { { code = "recv", sent = true }, 0 },
    }) do
      local undone = 0
      local ctx = new_ctx(function() return nil, case[1] end)
      ctx.retry.max_attempts = 1
      ctx.limiter.frequency = function() return true, function() undone = undone + 1 end end
      assert.is_nil((pipeline.request(ctx, AIS)))
      assert.equal(case[2], undone, case[1].code)
    end
  end)
end)
