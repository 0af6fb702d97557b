-- Tokens against the sandbox: proactive refresh, single-flight refresh with
-- rotating refresh tokens across two clients at once, one refresh and one
-- retry on 401 TOKEN_EXPIRED, and no token in any log event.
local fs = require "client.flow_support"
local oauth = require "xs2a.sca.oauth"
local json = require "xs2a.codec.json"
local xs2a = require "xs2a"

local TOKEN_POST = '"POST /xs2a/berlin/1%.3/oauth/token '

-- an authorised consent (OAuth) and its client
local function authorised_consent(client)
  local consent = assert(client:create_consent(fs.consent_body(), { psu_ip = fs.PSU_IP }))
  local flow = assert(consent:authorise())
  local step = assert(flow:next())
  step = assert(flow:next{ callback = assert(fs.authorize(step.url, fs.ALICE)) })
  assert.equal("valid", step.status)
  return consent
end

-- marks the stored token as expiring now (as if time had passed)
local function age_token(client, key, expires_at)
  local rec = assert(oauth.read_record(client, key))
  rec.expires_at = expires_at
  oauth.set_record(client, key, rec)
  return rec
end

describe("xs2a.oauth tokens #network", function()
  local sb
  setup(function() sb = fs.sandbox() end)
  after_each(function() fs.restore() end)

  it("refreshes a token that is about to expire before using it, and rotates the refresh token", function()
    local client = fs.client("berlin")
    local consent = authorised_consent(client)
    local old = age_token(client, consent.token_key, oauth.now() + 5)
    local mark = fs.log_mark()
    local accounts = assert(consent:accounts())
    assert.is_true(#accounts > 0)
    assert.equal(1, fs.log_count(mark, TOKEN_POST))
    local new = oauth.read_record(client, consent.token_key)
    assert.not_equal(old.access_token, new.access_token)
    assert.not_equal(old.refresh_token, new.refresh_token)
    assert.is_true(new.expires_at > oauth.now() + 60)
    -- the rotated-away refresh token is dead at the bank: a second refresh
    -- with it is what single-flight prevents
    oauth.set_record(client, consent.token_key, old)
    local tok, err = oauth.refresh(client, consent.token_key, old.access_token)
    assert.is_nil(tok)
    assert.equal("invalid_grant", err.code)
    -- the dead record is dropped: callers see "authorise again", not a loop
    assert.is_nil(oauth.read_record(client, consent.token_key))
  end)

  it("lets exactly one of two clients refresh when both find the token expired at once", function()
    -- two clients (two workers of one TPP) sharing one store
    local c1 = fs.client("berlin")
    local c2 = fs.client("berlin")
    assert.equal(c1.store, c2.store)
    local consent = authorised_consent(c1)
    local old = age_token(c1, consent.token_key, oauth.now() - 1)
    local consent2 = c2:consent(consent.id)
    local mark = fs.log_mark()
    local results = xs2a.parallel(
      function() return consent:accounts() end,
      function() return consent2:accounts() end)
    for i = 1, 2 do
      assert.is_true(results[i][1], tostring(results[i][2]))
      assert.is_table(results[i][2], tostring(results[i][3]))
      assert.is_true(#results[i][2] > 0)
    end
    assert.equal(1, fs.log_count(mark, TOKEN_POST))
    assert.equal(0, fs.log_count(mark, '" 400$', 0))
    local rec = oauth.read_record(c2, consent.token_key)
    assert.not_equal(old.access_token, rec.access_token)
  end)

  it("on 401 TOKEN_EXPIRED refreshes once and retries once", function()
    fs.configure{ token_ttl = 1 }
    local client = fs.client("berlin")
    local consent = authorised_consent(client)
    -- the client believes the token is fresh; the bank knows it expired
    age_token(client, consent.token_key, oauth.now() + 3600)
    local deadline = oauth.now() + 1.3
    while oauth.now() < deadline do client:sleep(0.1) end
    -- the refreshed token lives long again, so nothing refreshes it proactively
    fs.configure{ token_ttl = 3600 }
    local mark = fs.log_mark()
    local accounts = assert(consent:accounts())
    assert.is_true(#accounts > 0)
    assert.equal(1, fs.log_count(mark, TOKEN_POST))
    assert.equal(1, fs.log_count(mark, '"GET /xs2a/berlin/1%.3/v1/accounts[^"]*" 401$'))
    assert.equal(1, fs.log_count(mark, '"GET /xs2a/berlin/1%.3/v1/accounts[^"]*" 200$'))
  end)

  it("does not loop when the refreshed token is refused too", function()
    fs.configure{ token_ttl = 1 }
    local client = fs.client("berlin")
    local consent = authorised_consent(client)
    fs.configure{ token_ttl = 0 }
    age_token(client, consent.token_key, oauth.now() + 3600)
    local deadline = oauth.now() + 1.3
    while oauth.now() < deadline do client:sleep(0.1) end
    local mark = fs.log_mark()
    local accounts, err = consent:accounts()
    if accounts then
      -- a bank that hands out tokens valid for 0 s may still accept them in the same second
      assert.is_true(fs.log_count(mark, TOKEN_POST) <= 1)
    else
      assert.equal(401, err.status)
      assert.equal("TOKEN_EXPIRED", err.code)
      -- one refresh for the 401, at most one more because the new token is
      -- already expiring; then the error, not another round
      local posts = fs.log_count(mark, TOKEN_POST)
      assert.is_true(posts >= 1 and posts <= 2)
      assert.equal(2, fs.log_count(mark, '"GET /xs2a/berlin/1%.3/v1/accounts[^"]*" 401$', 2))
    end
  end)

  it("never puts a token, code or verifier into a log event", function()
    local client, events = fs.client("berlin", { capture_log = true })
    assert.is_table(events)
    local consent = assert(client:create_consent(fs.consent_body(), { psu_ip = fs.PSU_IP }))
    local flow = assert(consent:authorise())
    local step = assert(flow:next())
    local saved = flow:save()
    local callback = assert(fs.authorize(step.url, fs.ALICE))
    assert(flow:next{ callback = callback })
    age_token(client, consent.token_key, oauth.now() + 1)
    assert(consent:accounts())
    local rec = oauth.read_record(client, consent.token_key)
    local secrets = { rec.access_token, rec.refresh_token, oauth.parse_query(callback).code, saved.verifier }
    local text = assert(json.encode(events))
    assert.is_true(#events > 5)
    for _, s in ipairs(secrets) do
      assert.is_string(s)
      assert.is_nil(text:find(s, 1, true), "a secret reached the log")
    end
    assert.is_nil(tostring(flow):find(rec.access_token, 1, true))
    -- and sb is still healthy
    assert.is_true(sb:running())
  end)
end)
