-- Single-flight token refresh across nginx workers: a 4-worker nginx gets a
-- burst of concurrent requests just after the access token entered its
-- refresh window. The token store (lua_shared_dict) and its lock are shared,
-- so exactly one worker refreshes (the bank rotates refresh tokens: a second
-- refresh with the old one would be an invalid_grant) and every request
-- succeeds with the new token.
local helper = require "helper"
local harness = require "openresty.harness"
local sandbox = require "support.sandbox"
local psu = require "support.psu"
local oauth_skew = 60      -- xs2a.oauth.SKEW: refresh when the token expires within this...
local token_ttl = 16       -- ...but at most within a quarter of the token's lifetime
local margin = math.min(oauth_skew, token_ttl * require("xs2a.sca.tokens").MARGIN_FRACTION)

describe("#openresty token refresh from several workers", function()
  local ng, sb, base, consent_id

  local function args_with(extra)
    local a = {}
    for k, v in pairs(base) do a[k] = v end
    for k, v in pairs(extra or {}) do a[k] = v end
    return a
  end

  local function call(fn, extra)
    local r = ng:call("openresty.cases.client", fn, args_with(extra), 90)
    assert.is_true(r.ok, r.err)
    return r.result
  end

  local function token_posts()
    local n = 0
    for _, line in ipairs(sb:access_log()) do
      if line:find("POST /xs2a/berlin/1.3/oauth/token", 1, true) then n = n + 1 end
    end
    return n
  end

  lazy_setup(function()
    sb = sandbox.start{ config = { token_ttl = token_ttl } }
    ng = harness.start{ workers = 4 }
    base = { base_url = sb.base_url, pki = helper.pki_dir }
  end)

  lazy_teardown(function()
    if ng then ng:stop() end
    if sb then sb:stop() end
  end)

  it("refreshes once for a burst of concurrent requests", function()
    assert.equal(oauth_skew, require("xs2a.sca.oauth").SKEW)
    local key = "refresh-" .. os.time() .. "-" .. math.random(1, 1e9)
    local start = call("consent_start", { key = key })
    local location, page = psu.authorize(start.url, { username = "alice", password = "alice-pass",
      decision = "approve" })
    assert.is_string(location, page and page.error)
    local issued = os.time()
    local done = call("consent_finish", { key = key, consent_id = start.consent_id, callback = location })
    assert.equal("valid", done.status)
    consent_id = start.consent_id
    assert.equal(1, token_posts())   -- the code exchange

    -- wait until the token is inside the refresh window (expires within the margin)
    repeat harness.sleep(0.25) until os.time() >= issued + (token_ttl - margin) + 1

    local n = 12
    local answers = ng:call_all("openresty.cases.client", "accounts",
      args_with{ consent_id = start.consent_id, n = 1 }, n, 60)
    local pids, ok = {}, 0
    for _, r in ipairs(answers) do
      assert.is_true(r.ok, r.err)
      assert.same({}, r.result.errors)
      ok = ok + r.result.ok
      pids[r.result.pid] = true
    end
    assert.equal(n, ok)
    local workers = 0
    for _ in pairs(pids) do workers = workers + 1 end
    assert.is_true(workers >= 2, "the burst reached only one worker")
    -- the exchange plus exactly one refresh; no invalid_grant anywhere
    assert.equal(2, token_posts())
    for _, line in ipairs(sb:access_log()) do
      if line:find("oauth/token", 1, true) then assert.matches('" 200', line) end
    end
  end)

  it("keeps a burst from all workers within the bank's rate limit", function()
    assert.is_string(consent_id, "needs the consent of the first test")
    local before = #sb:access_log()
    -- 40 calls from 20 concurrent requests spread over 4 workers; the bank
    -- allows 10 per second and the profile says the same
    local n = 20
    local answers = ng:call_all("openresty.cases.client", "accounts",
      args_with{ consent_id = consent_id, n = 2 }, n, 60)
    local ok = 0
    for _, r in ipairs(answers) do
      assert.is_true(r.ok, r.err)
      assert.same({}, r.result.errors)
      ok = ok + r.result.ok
    end
    assert.equal(2 * n, ok)
    local calls, limited = 0, 0
    for i, line in ipairs(sb:access_log()) do
      if i > before and line:find("/v1/accounts ", 1, true) then
        calls = calls + 1
        if line:find('" 429', 1, true) then limited = limited + 1 end
      end
    end
    assert.equal(2 * n, calls)
    assert.equal(0, limited)
  end)
end)
