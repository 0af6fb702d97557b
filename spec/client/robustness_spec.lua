-- Answers the sandbox bank cannot give (valid JSON of the wrong shape, links
-- to another host, non-JSON error bodies, a page loop), served over real mTLS
-- by a local nginx test server: every one ends as a typed error, never as a
-- Lua error. Also: path segments percent-encoded on the wire, CR/LF refused
-- in header values, empty arrays kept in request bodies. #network
local tlsserver = require "support.tlsserver"
local support = require "support.client"
local errors = require "xs2a.errors"
local json = require "xs2a.codec.json"

local ROOT = "/xs2a/berlin/1.3"

-- location -> status, body, extra headers (nginx `return` text may use $server_port)
local ROUTES = {
  { "/v1/accounts", 200, [[{"accounts":{"a":1}}]] },
  { "/v1/accounts/list-of-strings", 200, [[{"account":"x"}]] },
  { "/v1/accounts/a2/balances", 200, [[{"balances":[1,"x"]}]] },
  { "/v1/accounts/a3", 200, [[{"account":[1,2]}]] },
  { "/v1/accounts/a3/transactions/t1", 200, [[{"transactionsDetails":"none"}]] },
  { "/v1/accounts/foreign/transactions", 200,
    [[{"transactions":{"booked":[{"transactionId":"f1"}],"_links":{"next":{"href":]]
      .. [["https://evil.example/xs2a/berlin/1.3/v1/accounts/foreign/transactions?page=2"}}}}]] },
  { "/v1/accounts/shape/transactions", 200, [[{"transactions":{"booked":"x"}}]] },
  { "/v1/accounts/arr/transactions", 200, [[{"transactions":[1,2]}]] },
  -- pages of one list differ by their query (a next link is followed only
  -- within the same list: same path); page 2 links to itself: a loop
  { "/v1/accounts/loop/transactions", 200,
    [[{"transactions":{"booked":[{"transactionId":"l1"}],"_links":{"next":{"href":]]
      .. [["/v1/accounts/loop/transactions?page=2"}}}}]],
    pages = { ["2"] = [[{"transactions":{"booked":[{"transactionId":"l2"}],"_links":{"next":{"href":]]
      .. [["/v1/accounts/loop/transactions?page=2"}}}}]] } },
  -- three pages: a relative href without the root, then an absolute one
  { "/v1/accounts/pages/transactions", 200,
    [[{"transactions":{"booked":[{"transactionId":"p1"}],"_links":{"next":{"href":]]
      .. [["/v1/accounts/pages/transactions?page=2"}}}}]],
    pages = {
      ["2"] = [[{"transactions":{"booked":[{"transactionId":"p2"}],"pending":{},"_links":{"next":{"href":]]
        .. [["https://127.0.0.1:$server_port/xs2a/berlin/1.3/v1/accounts/pages/transactions?page=3"}}}}]],
      ["3"] = [[{"transactions":{"booked":[{"transactionId":"p3"}],"pending":[{"transactionId":"p3p"}],]]
        .. [["_links":{}}}]],
    } },
  -- a next link to another account's list: not followed
  { "/v1/accounts/other/transactions", 200,
    [[{"transactions":{"booked":[{"transactionId":"o1"}],"_links":{"next":{"href":]]
      .. [["/v1/accounts/pages/transactions?page=2"}}}}]] },
  { "/v1/consents/html/status", 500, [[<html><body><h1>Internal oops</h1></body></html>]], "text/html" },
  { "/v1/consents/shape/status", 400, [[{"tppMessages":"oops","code":5,"_links":[]}]] },
  { "/v1/consents/null/status", 200, [[null]] },
  { "/v1/consents/num/status", 200, [[{"consentStatus":5}]] },
  { "/v1/consents/empty/status", 200, "" },
  { "/v1/consents/token/status", 401,
    [[{"tppMessages":[{"category":"ERROR","code":"TOKEN_INVALID",]]
      .. [["text":"The token\nis not valid for LT203500000010001101"}]}]] },
  { "/v1/payments/sepa-credit-transfers", 201, [[{"paymentId":7,"transactionStatus":"RCVD","_links":"x"}]] },
  { "/v1/consents", 201, [[{"consentId":"odd","consentStatus":"received","_links":"oops"}]] },
  { "/v1/consents/odd/authorisations", 201, "[]" },
  { "/v1/consents/odd/status", 200, [[{"consentStatus":"received"}]] },
}

local function extra()
  local out = {}
  for _, r in ipairs(ROUTES) do
    local ctype = r[4] or "application/json"
    local pages = {}
    for page, body in pairs(r.pages or {}) do
      pages[#pages + 1] = ("if ($arg_page = %s) { return %d '%s'; } "):format(page, r[2], body)
    end
    out[#out + 1] = ("        location = %s%s { default_type %s; %sreturn %d '%s'; }")
      :format(ROOT, r[1], ctype, table.concat(pages), r[2], r[3])
  end
  return table.concat(out, "\n")
end

describe("robustness against odd bank answers #network", function()
  local srv, client

  setup(function()
    srv = tlsserver.start{ extra = extra(), http2 = false }
    client = support.new_client("berlin", { base_url = srv.url, limits = false,
      retry = { max_attempts = 1 }, store = require("xs2a.store").memory() })
  end)
  teardown(function() if srv then srv:stop() end end)

  -- calls f in protected mode: a Lua error fails the test; returns f's results
  local function safely(f, ...)
    local function pack(...) return { n = select("#", ...), ... } end
    local r = pack(pcall(f, ...))
    assert.is_true(r[1], "raised: " .. tostring(r[2]))
    return (table.unpack or unpack)(r, 2, r.n)
  end

  local function typed(err, kind, code)
    assert.is_true(errors.is_error(err), "not an xs2a error: " .. tostring(err))
    assert.equal(kind, err.kind, tostring(err))
    if code then assert.equal(code, err.code, tostring(err)) end
    local line = tostring(err)
    assert.is_nil(line:find("\n", 1, true))
    return err
  end

  it("refuses lists that are not lists and objects that are not objects", function()
    local consent = client:consent("c1")
    local v, err = safely(consent.accounts, consent)
    assert.is_nil(v)
    typed(err, "protocol", "BAD_RESPONSE")
    v, err = safely(consent.balances, consent, "a2")
    assert.is_nil(v)
    typed(err, "protocol", "BAD_RESPONSE")
    v, err = safely(consent.account, consent, "a3")
    assert.is_nil(v)
    typed(err, "protocol", "BAD_RESPONSE")
    v, err = safely(consent.account, consent, "list-of-strings")
    assert.is_nil(v)
    typed(err, "protocol", "BAD_RESPONSE")
    v, err = safely(consent.transaction, consent, "a3", "t1")
    assert.is_nil(v)
    typed(err, "protocol")
  end)

  it("follows relative and absolute next links on the bank's origin", function()
    local consent = client:consent("c1")
    local ids = {}
    for tx, err in consent:transactions("pages") do
      assert.is_not_false(tx, tostring(err))
      ids[#ids + 1] = tx.transactionId .. ":" .. tx._status
    end
    assert.same({ "p1:booked", "p2:booked", "p3:booked", "p3p:pending" }, ids)
  end)

  it("stops a transaction listing with a typed error on a foreign link, a bad shape or a loop", function()
    local consent = client:consent("c1")
    local cases = { foreign = "FOREIGN_LINK", shape = "BAD_RESPONSE", arr = "BAD_RESPONSE",
      loop = "PAGINATION_LOOP", other = "FOREIGN_PAGE_LINK" }
    for account, code in pairs(cases) do
      local got, failure, after = {}, nil, 0
      safely(function()
        for tx, err in consent:transactions(account) do
          if failure then after = after + 1 end
          if tx == false then failure = err else got[#got + 1] = tx.transactionId end
        end
      end)
      typed(failure, "protocol", code)
      assert.equal(0, after)
    end
    local list, err = safely(consent.transaction_list, consent, "foreign")
    assert.is_nil(list)
    typed(err, "protocol", "FOREIGN_LINK")
  end)

  it("turns non-JSON, wrong-shape, null and empty answers into typed errors", function()
    local s, err = safely(client:consent("html").status, client:consent("html"))
    assert.is_nil(s)
    typed(err, "http")
    assert.equal(500, err.status)
    assert.matches("non%-JSON error body %(text/html%)", err.text)
    assert.matches("Internal oops", tostring(err))

    s, err = safely(client:consent("shape").status, client:consent("shape"))
    assert.is_nil(s)
    typed(err, "http")
    assert.equal(400, err.status)
    assert.same({}, err.messages)

    for _, id in ipairs({ "null", "num", "empty" }) do
      local c = client:consent(id)
      s, err = safely(c.status, c)
      assert.is_nil(s)
      typed(err, "protocol")
    end
  end)

  it("prints the bank's code and text on one line, IBAN masked", function()
    local c = client:consent("token")
    local _, err = safely(c.status, c)
    typed(err, "http", "TOKEN_INVALID")
    local line = tostring(err)
    assert.matches("^xs2a: 401 TOKEN_INVALID: The token is not valid for ", line)
    assert.is_nil(line:find("LT203500000010001101", 1, true))
    assert.matches("GET /v1/consents/token/status", line, 1, true)
    assert.matches("X%-Request%-ID %x+%-", line)
  end)

  it("reports a payment answer without a usable paymentId as outcome unknown", function()
    local p, err = safely(client.initiate_payment, client, "sepa-credit-transfers", {
      instructedAmount = { currency = "EUR", amount = "1.00" } }, { psu_ip = "198.51.100.7" })
    assert.is_nil(p)
    typed(err, "protocol", "BAD_RESPONSE")
    assert.equal("unknown", err.outcome)
  end)

  it("survives odd links and bodies in an SCA flow and ends it with a typed error", function()
    local consent = safely(client.create_consent, client, { access = { allPsd2 = "allAccounts" } },
      { psu_ip = "198.51.100.7" })
    assert.equal("odd", consent.id)
    local flow = assert(consent:authorise{ timeout = 0.3, poll_interval = 0.05 })
    local step, err
    for _ = 1, 5 do
      step, err = safely(flow.next, flow)
      if not step or step.kind == "done" then break end
    end
    assert.is_nil(step)
    typed(err, "sca", "SCA_TIMEOUT")
  end)

  it("percent-encodes path segments (/, ?, %, space) on the wire", function()
    local consent = client:consent("c1")
    local v, err = safely(consent.account, consent, "a/b?c%d e")
    assert.is_nil(v)
    typed(err, "http")
    -- nginx writes the log line after the answer: look for up to 2 s
    local found = false
    for _ = 1, 40 do
      for _, e in ipairs(srv:log()) do
        if e.request:find(ROOT .. "/v1/accounts/a%2Fb%3Fc%25d%20e HTTP", 1, true) then found = true end
      end
      if found then break end
      require("xs2a.parallel").sleep(0.05)
    end
    assert.is_true(found, "encoded path not in the access log")
  end)

  it("refuses CR/LF in header values before anything is sent", function()
    local before = #srv:log()
    local consent = client:consent("c1")
    for _, bad in ipairs({ "198.51.100.7\r\nX-Evil: 1", "198.51.100.7\nX-Evil: 1" }) do
      local v, err = safely(consent.accounts, consent, { psu_ip = bad })
      assert.is_nil(v)
      typed(err, "config", "HEADER_INVALID")
    end
    local _, err = safely(client.request, client, { method = "GET", path = "/v1/accounts",
      headers = { ["X-Custom"] = "a\r\nb" } })
    typed(err, "config", "HEADER_INVALID")
    assert.equal(before, #srv:log())
  end)

  it("keeps empty arrays as arrays in request bodies", function()
    local res = assert(client:request{ method = "POST", url = srv.url .. "/echo", raw = true,
      body = { access = { accounts = json.array(), balances = {}, transactions = {} },
        paymentIds = {}, other = json.array() }, shape = { access = { balances = "array", transactions = "array" },
        paymentIds = "array" } })
    local text = json.decode(res.body).body
    for _, f in ipairs({ "accounts", "balances", "transactions", "paymentIds", "other" }) do
      assert.truthy(text:find('"' .. f .. '":[]', 1, true), f)
    end
  end)
end)
