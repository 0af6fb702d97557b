-- The lua-xs2a client inside a real nginx worker (ngx transport, shdict
-- store) against the sandbox bank: consent + OAuth (the PSU is played from
-- the busted side, the saved flow resumes from the shared dict), accounts,
-- pagination, 429 handling, and keepalive (50 API calls, one TLS connection).
local helper = require "helper"
local harness = require "openresty.harness"
local sandbox = require "support.sandbox"
local psu = require "support.psu"

describe("#openresty xs2a client inside nginx", function()
  local ng, sb, base, consent_id, accounts

  local function call(fn, extra)
    local args = {}
    for k, v in pairs(base) do args[k] = v end
    for k, v in pairs(extra or {}) do args[k] = v end
    local r = ng:call("openresty.cases.client", fn, args, 90)
    assert.is_true(r.ok, r.err)
    return r.result
  end

  -- sandbox access log lines (after line `from`) whose request contains `text`
  local function log_lines(from, text)
    local out = {}
    for i, line in ipairs(sb:access_log()) do
      if i > from and (not text or line:find(text, 1, true)) then out[#out + 1] = line end
    end
    return out
  end

  lazy_setup(function()
    sb = sandbox.start{ faults = true, config = { rate = { per_second = 100, per_hour = 100000, concurrent = 20 } } }
    ng = harness.start{ workers = 2 }
    base = { base_url = sb.base_url, pki = helper.pki_dir,
      limits = { per_second = 100, per_hour = 100000, concurrent = 20 } }
  end)

  lazy_teardown(function()
    if ng then ng:stop() end
    if sb then sb:stop() end
  end)

  it("authorises a consent through OAuth and reads accounts and balances", function()
    local key = "consent-" .. os.time() .. "-" .. math.random(1, 1e9)
    local start = call("consent_start", { key = key })
    assert.equal("ngx", start.transport)
    assert.equal("redirect", start.kind)
    assert.matches("^" .. sb.base_url:gsub("%p", "%%%0") .. "/", start.url)
    -- the PSU logs in and approves in "the browser"
    local location, page = psu.authorize(start.url, { username = "alice", password = "alice-pass",
      decision = "approve" })
    assert.is_string(location, page and page.error)
    assert.matches("^https://tpp%.example/callback%?", location)
    assert.matches("code=", location)
    -- the callback lands in whichever worker; the saved flow comes from the shdict
    local done = call("consent_finish", { key = key, consent_id = start.consent_id, callback = location })
    assert.equal("done", done.kind)
    assert.equal("valid", done.status)
    assert.is_true(#done.accounts >= 2)
    for _, a in ipairs(done.accounts) do
      assert.is_string(a.id)
      assert.is_true(a.balances >= 1)
    end
    consent_id, accounts = start.consent_id, done.accounts
  end)

  it("follows transaction pages to the end", function()
    assert.is_string(consent_id, "needs the consent of the first test")
    local best, best_id = 0, nil
    local before = #sb:access_log()
    for _, a in ipairs(accounts) do
      local r = call("transactions", { consent_id = consent_id, account_id = a.id })
      assert.equal(0, r.duplicates)
      if r.count > best then best, best_id = r.count, a.id end
    end
    -- one account has 260+ booked transactions; pages hold 50
    assert.is_true(best > 250, "largest listing had " .. best .. " transactions")
    local pages = log_lines(before, "/accounts/" .. best_id .. "/transactions")
    assert.is_true(#pages >= 6, #pages .. " page requests")
    for _, line in ipairs(pages) do assert.matches('" 200', line) end
  end)

  it("waits out a 429 with Retry-After for a read", function()
    assert.is_string(consent_id, "needs the consent of the first test")
    sb:fault{ kind = "status", status = 429, retry_after = 1, method = "GET", path = "/v1/accounts$", count = 1 }
    local before = #sb:access_log()
    local r = call("accounts", { consent_id = consent_id, n = 1 })
    assert.equal(1, r.ok)
    assert.same({}, r.errors)
    local lines = log_lines(before, "/v1/accounts ")
    assert.equal(2, #lines)
    assert.matches('" 429', lines[1])
    assert.matches('" 200', lines[2])
  end)

  it("does not repeat a payment POST answered with 429", function()
    assert.is_table(accounts, "needs the accounts of the first test")
    sb:fault{ kind = "status", status = 429, retry_after = 1, method = "POST",
      path = "/v1/payments/sepa%-credit%-transfers$", count = 1 }
    local before = #sb:access_log()
    local r = call("initiate_payment", { debtor_iban = accounts[1].iban })
    assert.is_nil(r.id)
    assert.is_table(r.err)
    assert.equal(429, r.err.status)
    assert.equal(1, r.err.retry_after)
    assert.equal(1, #log_lines(before, "POST /xs2a/berlin/1.3/v1/payments/"))
  end)

  it("makes 50 sequential API calls from one worker over one TLS connection", function()
    assert.is_string(consent_id, "needs the consent of the first test")
    local before = #sb:access_log()
    local r = call("accounts", { consent_id = consent_id, n = 50 })
    assert.equal(50, r.ok)
    local lines = log_lines(before, "/v1/accounts ")
    assert.equal(50, #lines)
    local conns = {}
    for _, line in ipairs(lines) do
      local conn = line:match("^%S+ (%d+) ")
      assert.is_string(conn, "access log line without $connection: " .. line)
      conns[conn] = (conns[conn] or 0) + 1
    end
    local n = 0
    for _ in pairs(conns) do n = n + 1 end
    assert.equal(1, n)
  end)
end)
