-- SCA flows against the sandbox: the OAuth approach (Paysera's), for both
-- variants, plus the redirect approach with a confirmation code, multilevel
-- SCA with two PSUs, and save/resume in a fresh client.
local fs = require "client.flow_support"
local oauth = require "xs2a.sca.oauth"
local json = require "xs2a.codec.json"
local xs2a = require "xs2a"

-- runs the redirect step in the PSU's browser and returns the callback URL
local function browse(step, psu)
  assert.equal("redirect", step.kind)
  local callback = fs.authorize(step.url, psu)
  assert.is_string(callback, "the PSU's browser did not come back")
  return callback
end

local function new_consent(client, opts)
  return assert(client:create_consent(fs.consent_body(), opts or { psu_ip = fs.PSU_IP }))
end

describe("xs2a.flow (OAuth) #network", function()
  setup(function() fs.sandbox() end)

  for _, variant in ipairs({ "berlin", "georgia" }) do
    describe(variant, function()
      it("authorises a consent with PKCE and state, stores the token, and the token reads accounts", function()
        local client = fs.client(variant)
        local consent = new_consent(client)
        local flow = assert(consent:authorise())
        local step = assert(flow:next())
        assert.equal("redirect", step.kind)
        assert.equal("oauth", step.approach)
        local q = oauth.parse_query(step.url)
        assert.equal("code", q.response_type)
        assert.equal("AIS:" .. consent.id, q.scope)
        assert.equal(client.client_id, q.client_id)
        assert.equal("S256", q.code_challenge_method)
        assert.equal(43, #q.code_challenge)
        assert.is_true(#q.state >= 32)
        assert.equal(fs.REDIRECT_URI, q.redirect_uri)
        -- no token before the PSU approved
        assert.is_nil(oauth.access_token(client, consent.token_key))

        step = assert(flow:next{ callback = browse(step, fs.ALICE) })
        assert.equal("done", step.kind)
        assert.equal("valid", step.status)
        assert.equal(1, step.authorisations)
        local rec = oauth.read_record(client, consent.token_key)
        assert.is_string(rec.access_token)
        assert.is_string(rec.refresh_token)
        assert.is_true(rec.expires_at > oauth.now())
        local accounts = assert(consent:accounts())
        assert.is_true(#accounts > 0)
      end)

      it("initiates a payment, authorises it and polls it to ACSC; the ledger moves", function()
        local client = fs.client(variant)
        local product, body, debtor, creditor = fs.payment(variant, "2.50")
        local payment = assert(client:initiate_payment(product, body, { psu_ip = fs.PSU_IP }))
        local flow = assert(payment:authorise())
        local step = assert(flow:next())
        assert.equal("PIS:" .. payment.id, oauth.parse_query(step.url).scope)
        step = assert(flow:next{ callback = browse(step, fs.ALICE) })
        assert.equal("done", step.kind)
        assert.equal("ACSC", step.status)
        local after = fs.bank_accounts()
        assert.equal(tonumber(debtor.balance) - 2.5, tonumber(after[debtor.resourceId].balance))
        assert.equal(tonumber(creditor.balance) + 2.5, tonumber(after[creditor.resourceId].balance))
      end)
    end)
  end

  it("ends with SCA_DENIED when the PSU denies on the page", function()
    local client = fs.client("berlin")
    local consent = new_consent(client)
    local flow = assert(consent:authorise())
    local callback = browse(assert(flow:next()), { username = "alice", password = "alice-pass", decision = "deny" })
    assert.equal("access_denied", oauth.parse_query(callback).error)
    local step, err = flow:next{ callback = callback }
    assert.is_nil(step)
    assert.equal("sca", err.kind)
    assert.equal("SCA_DENIED", err.code)
    assert.is_true(err.terminal)
    assert.equal("failed", flow:state())
    -- stays failed
    local again, err2 = flow:next{ callback = callback }
    assert.is_nil(again)
    assert.equal("SCA_DENIED", err2.code)
    assert.is_nil(oauth.access_token(client, consent.token_key))
  end)

  it("rejects a callback whose state does not match, and still takes the right one", function()
    local client = fs.client("berlin")
    local consent = new_consent(client)
    local flow = assert(consent:authorise())
    local callback = browse(assert(flow:next()), fs.ALICE)
    local q = oauth.parse_query(callback)
    local forged = fs.REDIRECT_URI .. "?code=" .. q.code .. "&state=" .. q.state:sub(1, -2) .. "x"
    local step, err = flow:next{ callback = forged }
    assert.is_nil(step)
    assert.equal("STATE_MISMATCH", err.code)
    assert.is_false(err.terminal)
    -- a callback without state is refused too; an error without state cannot end the flow
    assert.equal("STATE_MISMATCH", select(2, flow:next{ callback = fs.REDIRECT_URI .. "?code=" .. q.code }).code)
    assert.equal("STATE_MISMATCH", select(2, flow:next{ callback = fs.REDIRECT_URI .. "?error=access_denied" }).code)
    assert.equal("active", flow:state())
    -- the forged attempt did not spend the code
    step = assert(flow:next{ callback = callback })
    assert.equal("valid", step.status)
  end)

  it("saves at the redirect and resumes in a fresh client sharing the token store", function()
    local store = fs.store
    local client1 = fs.client("berlin", { store = store })
    local consent = new_consent(client1)
    local flow = assert(consent:authorise())
    local step = assert(flow:next())
    local saved = flow:save()
    -- JSON-safe and free of secrets we do not need
    local text = assert(json.encode(saved))
    assert.is_nil(text:find("alice-pass", 1, true))
    flow = nil -- luacheck: ignore 311

    local callback = browse(step, fs.ALICE)
    -- another process: a new client, the saved table read back from JSON
    local client2 = fs.client("berlin", { store = store })
    local resumed = assert(xs2a.resume(client2, assert(json.decode(text))))
    assert.equal("oauth", resumed:approach())
    step = assert(resumed:next{ callback = callback })
    assert.equal("done", step.kind)
    assert.equal("valid", step.status)
    -- the token landed in the shared store: the first client reads accounts with it
    assert.is_true(#assert(consent:accounts()) > 0)
    local done_saved = resumed:save()
    local tok = oauth.read_record(client2, consent.token_key).access_token
    assert.is_nil(assert(json.encode(done_saved)):find(tok, 1, true))
  end)

  it("resumes in a client with a brand-new store (the saved table is enough)", function()
    -- two stores are two limiters: let the bank take both budgets at once
    fs.configure{ rate = { per_second = 20 } }
    finally(fs.restore)
    local client1 = fs.client("georgia")
    local consent = new_consent(client1)
    local flow = assert(consent:authorise())
    local step = assert(flow:next())
    local text = assert(json.encode(flow:save()))
    local callback = browse(step, fs.ALICE)
    local client2 = fs.client("georgia", { store = xs2a.store.memory() })
    local resumed = assert(xs2a.resume(client2, json.decode(text)))
    step = assert(resumed:next{ callback = callback })
    assert.equal("valid", step.status)
    local consent2 = client2:consent(consent.id)
    assert.is_true(#assert(consent2:accounts()) > 0)
  end)

  for _, variant in ipairs({ "berlin", "georgia" }) do
    it("cancels a future-dated payment through a cancellation authorisation, resumed mid-way (" .. variant .. ")",
        function()
      local client = fs.client(variant)
      local product, body = fs.payment(variant, "3.00")
      body.requestedExecutionDate = os.date("!%Y-%m-%d", os.time() + 7 * 86400)
      local payment = assert(client:initiate_payment(product, body, { psu_ip = fs.PSU_IP }))
      local flow = assert(payment:authorise())
      local step = assert(flow:next{ callback = browse(assert(flow:next()), fs.ALICE) })
      assert.equal("ACTC", step.status)

      local c = assert(payment:cancel())
      assert.is_true(c.cancellation_required)
      local cflow = assert(payment:authorise_cancellation())
      step = assert(cflow:next())
      assert.equal("PIS:" .. payment.id, oauth.parse_query(step.url).scope)
      local text = assert(json.encode(cflow:save()))
      local callback = browse(step, fs.ALICE)
      local resumed = assert(xs2a.resume(fs.client(variant), json.decode(text)))
      step = assert(resumed:next{ callback = callback })
      assert.equal("done", step.kind)
      assert.equal("CANC", step.status)
      assert.equal("CANC", (payment:current_status()))
    end)
  end

  it("refuses to resume something that is not a saved flow", function()
    local client = fs.client("berlin")
    local f, err = xs2a.resume(client, { hello = "world" })
    assert.is_nil(f)
    assert.equal("FLOW_SAVED_INVALID", err.code)
  end)

  describe("redirect approach", function()
    before_each(function() fs.configure{ sca = { approach = "redirect" } } end)
    after_each(function() fs.restore() end)

    it("sends state along, checks it and PUTs the confirmation code", function()
      local client = fs.client_any("berlin")
      local consent = new_consent(client)
      local flow = assert(consent:authorise())
      local step = assert(flow:next())
      assert.equal("redirect", step.approach)
      local state = oauth.parse_query(step.url).state
      assert.is_string(state)
      local callback = browse(step, fs.ALICE)
      local q = oauth.parse_query(callback)
      assert.equal(state, q.state)
      assert.is_string(q.confirmationCode)
      -- a callback with a forged state is refused before anything is sent
      local forged = fs.REDIRECT_URI .. "?state=forged&confirmationCode=" .. q.confirmationCode
      local bad, err = flow:next{ callback = forged }
      assert.is_nil(bad)
      assert.equal("STATE_MISMATCH", err.code)
      step = assert(flow:next{ callback = callback })
      assert.equal("done", step.kind)
      assert.equal("valid", step.status)
    end)

    it("ends with SCA_DENIED when the PSU denies", function()
      local client = fs.client_any("berlin")
      local product, body = fs.payment("berlin", "1.00")
      local payment = assert(client:initiate_payment(product, body, { psu_ip = fs.PSU_IP }))
      local flow = assert(payment:authorise())
      local callback = browse(assert(flow:next()), { username = "alice", password = "alice-pass", decision = "deny" })
      local step, err = flow:next{ callback = callback }
      assert.is_nil(step)
      assert.equal("SCA_DENIED", err.code)
    end)
  end)

  describe("multilevel SCA", function()
    before_each(function() fs.configure{ sca = { approach = "oauth", multilevel = 2 } } end)
    after_each(function() fs.restore() end)

    it("needs a second PSU: partiallyAuthorised after alice, valid after bob", function()
      local client = fs.client("berlin")
      local consent = new_consent(client)
      local flow = assert(consent:authorise())
      local step = assert(flow:next())
      local first_state = oauth.parse_query(step.url).state
      step = assert(flow:next{ callback = browse(step, fs.ALICE) })
      -- the flow opened the second authorisation by itself, with fresh PKCE and state
      assert.equal("redirect", step.kind)
      assert.not_equal(first_state, oauth.parse_query(step.url).state)
      assert.equal("partiallyAuthorised", (consent:current_status()))
      -- the same PSU cannot authorise twice
      local again = fs.authorize(step.url, fs.ALICE)
      assert.is_nil(again)
      step = assert(flow:next{ callback = browse(step, fs.BOB) })
      assert.equal("done", step.kind)
      assert.equal("valid", step.status)
      assert.equal(2, step.authorisations)
    end)
  end)
end)
