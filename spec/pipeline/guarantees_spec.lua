-- The guarantees of issue 8, proven at the client's seams: a stub transport
-- (what would have gone on the wire), and stub signer, limiter and store
-- where a guarantee is about them. Each `it` names the hole it covers; each
-- failed against the code before its fix.
local helper = require "helper"
local xs2a = require "xs2a"
local oauth = xs2a.oauth

local function json_res(status, body, headers)
  local h = { ["content-type"] = "application/json" }
  for k, v in pairs(headers or {}) do h[k] = v end
  return { status = status, headers = h, body = body }
end

-- A transport that records every request and answers from `answers`
-- (a list of functions or results, the last one repeating).
local function stub_transport(answers)
  local t = { sent = {} }
  function t.request(_, req)
    t.sent[#t.sent + 1] = req
    local a = answers[math.min(#t.sent, #answers)]
    if type(a) == "function" then return a(req) end
    return a[1], a[2]
  end
  return t
end

local function new_client(transport, extra)
  local opts = {
    profile = "paysera-berlin", base_url = "https://bank.test",
    qwac = { cert = helper.pki("qwac.pem"), key = helper.pki("qwac.key") },
    qseal = { cert = helper.pki("qseal.pem"), key = helper.pki("qseal.key") },
    redirect_uri = "https://tpp.example/cb", transport = transport, limits = false,
    retry = { max_attempts = 3, base_delay = 0.001, max_delay = 0.002 },
  }
  for k, v in pairs(extra or {}) do opts[k] = v end
  return assert(xs2a.client(opts))
end

local PAYMENT = { instructedAmount = { currency = "EUR", amount = "1.00" },
  debtorAccount = { iban = "LT601010012345678901" }, creditorAccount = { iban = "LT121000011101001000" },
  creditorName = "Shop" }

describe("issue 8 guarantees (client level)", function()
  it("hole 1: a signer returning nil, err stops the request: nothing unsigned is sent", function()
    local t = stub_transport({ { json_res(201, '{"paymentId":"p1","transactionStatus":"RCVD"}') } })
    local c = new_client(t)
    c.signer = { sign = function() return nil, "HSM offline" end }
    local p, err = c:initiate_payment("sepa-credit-transfers", PAYMENT, { psu_ip = "192.0.2.1" })
    assert.is_nil(p)
    assert.equal(0, #t.sent)
    assert.equal("SIGN_FAILED", err.code)
    assert.matches("HSM offline", tostring(err), 1, true)
  end)

  it("hole 2: signs after the limiter's wait (limit, then sign, then send)", function()
    local order = {}
    local t = stub_transport({ function() order[#order + 1] = "send"
      return json_res(201, '{"paymentId":"p1","transactionStatus":"RCVD"}') end })
    local c = new_client(t)
    local real = c.signer
    c.signer = { sign = function(_, req) order[#order + 1] = "sign" return real:sign(req) end }
    c.limiter = {
      acquire = function() order[#order + 1] = "limit" return function() end end,
      frequency = function() return true, function() end end,
    }
    assert(c:initiate_payment("sepa-credit-transfers", PAYMENT, { psu_ip = "192.0.2.1" }))
    assert.same({ "limit", "sign", "send" }, order)
  end)

  it("hole 3a: a payment whose answer was lost is outcome unknown and NOT retryable, sent once", function()
    local t = stub_transport({ { nil, { code = "recv", message = "connection reset", sent = true } } })
    local c = new_client(t)
    local p, err = c:initiate_payment("sepa-credit-transfers", PAYMENT, { psu_ip = "192.0.2.1" })
    assert.is_nil(p)
    assert.equal(1, #t.sent)
    assert.equal("unknown", err.outcome)
    assert.is_false(err.retryable)
  end)

  it("hole 3b (Lua side): a transport failure that does not say whether it sent counts as sent", function()
    local t = stub_transport({ { nil, { code = "bad_request", message = "Received HTTP/0.9" } } })
    local c = new_client(t)
    local p, err = c:initiate_payment("sepa-credit-transfers", PAYMENT, { psu_ip = "192.0.2.1" })
    assert.is_nil(p)
    assert.equal(1, #t.sent)
    assert.equal("unknown", err.outcome)
    assert.is_false(err.retryable)
  end)

  describe("hole 4: path safety", function()
    for _, id in ipairs({ "..", "." }) do
      it("refuses the id " .. id .. " as a config error; nothing is sent", function()
        local t = stub_transport({ { json_res(200, '{"consentStatus":"valid"}') } })
        local c = new_client(t)
        local consent, err = c:consent(id)
        assert.is_nil(consent)
        assert.equal("config", err.kind)
        local pay, perr = c:payment("payments", "sepa-credit-transfers", id)
        assert.is_nil(pay)
        assert.equal("config", perr.kind)
        assert.equal(0, #t.sent)
      end)
    end

    it("never sends a path with a dot segment, even through the raw request", function()
      local t = stub_transport({ { json_res(200, "{}") } })
      local c = new_client(t)
      for _, path in ipairs({ "/v1/consents/../status", "/v1/./accounts", "/v1/consents/%2E%2e/x" }) do
        local res, err = c:request{ method = "GET", path = path, service = "AIS" }
        assert.is_nil(res, path)
        assert.equal("PATH_INVALID", err.code, path)
      end
      local res, err = c:request{ method = "GET", url = "/xs2a/berlin/1.3/v1/accounts/../payments/x", service = "AIS" }
      assert.is_nil(res)
      assert.equal("PATH_INVALID", err.code)
      assert.equal(0, #t.sent)
    end)

    it("follows _links.next only within the same transaction list", function()
      local page1 = '{"account":{"iban":"LT601010012345678901"},"transactions":{"booked":[{"transactionId":"t1"}],'
        .. '"_links":{"next":{"href":"/v1/payments/sepa-credit-transfers/p1"}}}}'
      local t = stub_transport({ { json_res(200, page1) }, { json_res(200, '{"transactionStatus":"ACSC"}') } })
      local c = new_client(t)
      local consent = assert(c:consent("c1"))
      local got, err = {}, nil
      for tx, e in consent:transactions("a1") do
        if tx == false then err = e break end
        got[#got + 1] = tx.transactionId
      end
      assert.same({ "t1" }, got)
      assert.equal("protocol", err.kind)
      assert.equal("FOREIGN_PAGE_LINK", err.code)
      assert.equal(1, #t.sent)
    end)

    it("follows a next link of the same list (another page, same account)", function()
      local page1 = '{"transactions":{"booked":[{"transactionId":"t1"}],'
        .. '"_links":{"next":{"href":"/v1/accounts/a1/transactions?bookingStatus=booked&page=2"}}}}'
      local page2 = '{"transactions":{"booked":[{"transactionId":"t2"}]}}'
      local t = stub_transport({ { json_res(200, page1) }, { json_res(200, page2) } })
      local c = new_client(t)
      local list = assert(assert(c:consent("c1")):transaction_list("a1"))
      assert.equal(2, #list)
      assert.equal(2, #t.sent)
    end)
  end)

  describe("hole 5: secrets", function()
    it("5a: scrubs a token the bank echoes from the error text and the log", function()
      local secret = "AT-very-secret-0123456789"
      local t = stub_transport({ { json_res(400, '{"tppMessages":[{"category":"ERROR","code":"FORMAT_ERROR",'
        .. '"text":"bad token ' .. secret .. '"}]}', { ["x-echo"] = secret }) } })
      local events = {}
      local c = new_client(t, { log = function(level, event, fields)
        events[#events + 1] = { level, event, fields }
      end })
      assert(oauth.set_record(c, "consent:c1", { access_token = secret, expires_at = oauth.now() + 600 }))
      local consent = assert(c:consent("c1"))
      local ok, err = consent:status()
      assert.is_nil(ok)
      assert.equal(1, #t.sent)
      assert.is_nil(tostring(err):find(secret, 1, true))
      for _, m in ipairs(err.messages) do assert.is_nil(tostring(m.text):find(secret, 1, true)) end
      local dump = {}
      local function walk(v, depth)
        if depth > 20 then return end
        if type(v) == "table" then for k, x in pairs(v) do walk(k, depth + 1) walk(x, depth + 1) end
        elseif type(v) == "string" then dump[#dump + 1] = v end
      end
      walk(events, 0)
      assert.is_true(#dump > 0)
      assert.is_nil(table.concat(dump, "\n"):find(secret, 1, true))
    end)

    it("5b: keeps no secret reachable from the client table", function()
      local t = stub_transport({ { json_res(200, "{}") } })
      local c = new_client(t, { qwac = { cert = helper.pki("qwac.pem"), key = helper.pki("qwac-enc.key"),
        passphrase = "test-passphrase" } })
      local found = {}
      local seen = {}
      local function walk(v, path, depth)
        if depth > 30 then return end
        if type(v) == "string" then
          if v:find("test-passphrase", 1, true) or v:find("PRIVATE KEY", 1, true) then found[#found + 1] = path end
        elseif type(v) == "table" and not seen[v] then
          seen[v] = true
          for k, x in pairs(v) do walk(x, path .. "." .. tostring(k), depth + 1) end
          local mt = getmetatable(v)
          if type(mt) == "table" then walk(mt, path .. ".<mt>", depth + 1) end
        end
      end
      walk(c, "client", 0)
      assert.same({}, found)
    end)
  end)

  describe("hole 7 (Lua side): the bank's signed responses are pinned, never trusted from ca_file", function()
    local t = stub_transport({ { json_res(200, "{}") } })
    local function georgia(extra)
      local opts = {
        profile = "paysera-georgia", base_url = "https://bank.test", ca_file = helper.pki("ca.pem"),
        qwac = { cert = helper.pki("qwac.pem"), key = helper.pki("qwac.key") },
        qseal = { cert = helper.pki("qseal.pem"), key = helper.pki("qseal.key") },
        transport = t, profile_overrides = { verify_responses = "required" },
      }
      for k, v in pairs(extra or {}) do opts[k] = v end
      return xs2a.client(opts)
    end

    it("refuses a client whose only anchor would be ca_file (the TPP's own QSealC chains to it)", function()
      local c, err = georgia()
      assert.is_nil(c)
      assert.equal("config", err.kind)
      assert.equal("RESPONSE_CERT_MISSING", err.code)
    end)

    it("refuses a CA as response_cert without the bank's organizationIdentifier", function()
      local c, err = georgia{ response_cert = helper.pki("ca.pem") }
      assert.is_nil(c)
      assert.equal("RESPONSE_CERT_MISSING", err.code)
      assert.truthy(georgia{ response_cert = helper.pki("ca.pem"), response_org_id = "PSDLT-BOL-ASPSP1" })
    end)

    it("pins the signer to the organisation of the bank's own certificate", function()
      local c = assert(georgia{ response_cert = helper.pki("aspsp-seal.pem") })
      assert.equal("PSDLT-BOL-ASPSP1", c.response_org_id)
    end)
  end)

  describe("hole 8: every option is checked at construction", function()
    local t = stub_transport({ { json_res(200, "{}") } })
    for _, case in ipairs({
      { "retry.max_attempts", { retry = { max_attempts = "x" } } },
      { "retry.base_delay", { retry = { base_delay = "x" } } },
      { "retry.max_delay", { retry = { max_delay = -1 } } },
      { "retry", { retry = { max_attemps = 3 } } },
      { "timeouts", { timeouts = "x" } },
      { "timeouts.connect", { timeouts = { connect = "5" } } },
      { "nok_redirect_uri", { nok_redirect_uri = 42 } },
      { "client_id", { client_id = {} } },
      { "max_body", { max_body = "big" } },
      { "limits", { limits = 7 } },
      { "limits.per_second", { limits = { per_second = "ten" } } },
      { "limits.concurrent", { limits = { concurrent = 2.5 } } },
      { "ca_file", { ca_file = 1 } },
      { "allow_http", { allow_http = "yes" } },
      { "profile_overrides", { profile_overrides = "x" } },
      { "response_cert", { response_cert = 5 } },
      { "unknown option", { retyr = { max_attempts = 1 } } },
    }) do
      it("refuses " .. case[1], function()
        local opts = {
          profile = "paysera-berlin", base_url = "https://bank.test",
          qwac = { cert = helper.pki("qwac.pem"), key = helper.pki("qwac.key") },
          qseal = { cert = helper.pki("qseal.pem"), key = helper.pki("qseal.key") },
          transport = t,
        }
        for k, v in pairs(case[2]) do opts[k] = v end
        local c, err = xs2a.client(opts)
        assert.is_nil(c)
        assert.equal("config", err.kind)
        local name = case[1] == "unknown option" and "retyr" or case[1]
        assert.truthy(tostring(err):find(name, 1, true), tostring(err))
      end)
    end
  end)

  it("hole 8: accepts the options as documented (false switches a limit off)", function()
    local t = stub_transport({ { json_res(200, "{}") } })
    assert.truthy(new_client(t, { limits = { per_second = false, per_hour = false, concurrent = 4, margin = 0.02 },
      timeouts = { connect = 1000, total = 5000 }, max_body = 1024, nok_redirect_uri = "https://tpp.example/nok",
      client_id = "PSDLT-BOL-TPP001", services = { "AIS", "PIS" }, allow_http = false }))
  end)

  it("hole 9a: a refused refresh deletes the token record only on invalid_grant", function()
    local answers = {
      { json_res(401, '{"tppMessages":[{"category":"ERROR","code":"TOKEN_EXPIRED"}]}') },
      { json_res(400, '{"error":"invalid_request","error_description":"try later"}') },
    }
    local t = stub_transport(answers)
    local c = new_client(t)
    assert(oauth.set_record(c, "consent:c1", { access_token = "OLD", refresh_token = "RT1",
      expires_at = oauth.now() + 600, token_endpoint = "https://bank.test/oauth/token" }))
    local consent = assert(c:consent("c1"))
    local ok, err = consent:status()
    assert.is_nil(ok)
    assert.equal(401, err.status)
    assert.equal(2, #t.sent)
    local rec = oauth.read_record(c, "consent:c1")
    assert.is_table(rec, "the record was deleted on a 400 that is not invalid_grant")
    assert.equal("RT1", rec.refresh_token)
    -- invalid_grant: the refresh token is dead, the record goes
    answers[3] = { json_res(401, '{"tppMessages":[{"category":"ERROR","code":"TOKEN_EXPIRED"}]}') }
    answers[4] = { json_res(400, '{"error":"invalid_grant"}') }
    assert.is_nil((consent:status()))
    assert.is_nil(oauth.read_record(c, "consent:c1"))
  end)
end)
