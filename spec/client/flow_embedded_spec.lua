-- SCA flows against the sandbox: the embedded approach (password, method
-- choice, OTP) and the decoupled approach (the PSU approves in an app), for
-- consents on Berlin and for signed payment authorisations on both variants.
local fs = require "client.flow_support"

describe("xs2a.flow #network", function()
  local sb
  setup(function() sb = fs.sandbox() end)
  after_each(function() fs.restore() end)

  describe("embedded approach", function()
    before_each(function() fs.configure{ sca = { approach = "embedded" } } end)

    it("walks credentials, method choice and a wrong then right OTP to a valid consent", function()
      local client = fs.client_any("berlin")
      local consent = assert(client:create_consent(fs.consent_body(), { psu_ip = fs.PSU_IP }))
      local flow = assert(consent:authorise())
      local step = assert(flow:next())
      assert.equal("credentials", step.kind)
      assert.equal("embedded", flow:approach())

      -- a wrong password is an error that leaves the flow waiting for credentials
      local bad, err = flow:next{ psu_id = "alice", password = "wrong" }
      assert.is_nil(bad)
      assert.equal(401, err.status)
      assert.equal("PSU_CREDENTIALS_INVALID", err.code)
      assert.equal("active", flow:state())

      step = assert(flow:next{ psu_id = "alice", password = "alice-pass" })
      assert.equal("choose_method", step.kind)
      assert.is_true(#step.methods >= 2)
      local ids = {}
      for _, m in ipairs(step.methods) do ids[m.authenticationMethodId] = true end
      assert.is_true(ids.sms)

      step = assert(flow:next{ method = "sms" })
      assert.equal("otp", step.kind)
      assert.equal("sms", step.method.authenticationMethodId)
      assert.equal(6, step.challenge.otpMaxLength)

      local no, oerr = flow:next{ otp = "000000" }
      assert.is_nil(no)
      assert.equal("SCA_INVALID", oerr.code)
      assert.equal("active", flow:state())
      -- without input the flow repeats the question
      assert.equal("otp", assert(flow:next()).kind)

      step = assert(flow:next{ otp = "123456" })
      assert.equal("done", step.kind)
      assert.equal("valid", step.status)
      assert.equal("done", flow:state())
      -- a finished flow keeps answering done
      assert.equal("valid", assert(flow:next()).status)
      assert.equal("valid", (consent:current_status()))
    end)

    it("ends with a typed SCA error after too many wrong OTPs", function()
      local client = fs.client_any("berlin")
      local consent = assert(client:create_consent(fs.consent_body(), { psu_ip = fs.PSU_IP }))
      local flow = assert(consent:authorise())
      assert(flow:next())
      assert(flow:next{ psu_id = "alice", password = "alice-pass" })
      assert(flow:next{ method = "app" })
      local step, err
      for _ = 1, 5 do
        step, err = flow:next{ otp = "999999" }
        if flow:state() == "failed" then break end
      end
      assert.is_nil(step)
      assert.equal("failed", flow:state())
      assert.equal("sca", err.kind)
      assert.equal("SCA_FAILED", err.code)
      assert.equal("rejected", (consent:current_status()))
    end)
  end)

  describe("decoupled approach", function()
    before_each(function() fs.configure{ sca = { approach = "decoupled" } } end)

    it("polls by itself until the PSU's app approves (auto-approval after a delay)", function()
      fs.configure{ sca = { approach = "decoupled", decoupled_delay = 1 } }
      local client = fs.client_any("berlin")
      local consent = assert(client:create_consent(fs.consent_body(),
        { psu_ip = fs.PSU_IP, psu_id = "alice" }))
      local flow = assert(consent:authorise{ poll_interval = 0.2 })
      local step = assert(flow:next())
      assert.equal("done", step.kind)
      assert.equal("valid", step.status)
      assert.equal("decoupled", flow:approach())
    end)

    it("hands out wait steps with poll = false, and finishes after an approval", function()
      local client = fs.client_any("berlin")
      local consent = assert(client:create_consent(fs.consent_body(),
        { psu_ip = fs.PSU_IP, psu_id = "alice" }))
      local flow = assert(consent:authorise{ poll = false, poll_interval = 0.1 })
      local step = assert(flow:next())
      assert.equal("wait", step.kind)
      assert.is_string(step.message)
      assert.is_string(step.authorisation_id)
      assert.is_true(step.after > 0)
      local status = sb:control("POST", "/decoupled/" .. step.authorisation_id, { decision = "approve" })
      assert.equal(200, status)
      step = assert(flow:next())
      assert.equal("done", step.kind)
      assert.equal("valid", step.status)
    end)

    it("identifies the PSU when the consent was created without PSU-ID, then is denied", function()
      local client = fs.client_any("berlin")
      local consent = assert(client:create_consent(fs.consent_body(), { psu_ip = fs.PSU_IP }))
      local flow = assert(consent:authorise{ poll = false, poll_interval = 0.1 })
      local step = assert(flow:next())
      assert.equal("credentials", step.kind)
      assert.equal("psu_id", step.need)
      step = assert(flow:next{ psu_id = "alice" })
      assert.equal("wait", step.kind)
      local status = sb:control("POST", "/decoupled/" .. step.authorisation_id, { decision = "deny" })
      assert.equal(200, status)
      local done, err = flow:next()
      assert.is_nil(done)
      assert.equal("sca", err.kind)
      assert.equal("SCA_FAILED", err.code)
      assert.is_true(err.terminal)
      assert.equal("failed", flow:state())
      assert.equal("rejected", (consent:current_status()))
    end)

    it("times out with a typed error instead of hanging", function()
      local client = fs.client_any("berlin")
      local consent = assert(client:create_consent(fs.consent_body(),
        { psu_ip = fs.PSU_IP, psu_id = "alice" }))
      local flow = assert(consent:authorise{ timeout = 0.6, poll_interval = 0.1 })
      local step, err = flow:next()
      assert.is_nil(step)
      assert.equal("sca", err.kind)
      assert.equal("SCA_TIMEOUT", err.code)
      assert.equal("failed", flow:state())
    end)

    it("reports the bank's own expiry of an unanswered authorisation", function()
      fs.configure{ sca = { approach = "decoupled", auth_timeout = 1, consent_auth_timeout = 1 } }
      local client = fs.client_any("berlin")
      local consent = assert(client:create_consent(fs.consent_body(),
        { psu_ip = fs.PSU_IP, psu_id = "alice" }))
      local flow = assert(consent:authorise{ poll_interval = 0.2, timeout = 10 })
      local step, err = flow:next()
      assert.is_nil(step)
      assert.equal("SCA_FAILED", err.code)
    end)
  end)

  -- payments on both variants: every authorisation call of PIS is signed
  -- (Berlin HTTP signature, Georgian JWS) and the ledger must move once
  describe("payments", function()
    local function money(x) return ("%.2f"):format(tonumber(x)) end
    local function balance(id) return money(fs.bank_accounts()[id].balance) end

    for _, variant in ipairs({ "berlin", "georgia" }) do
      it(variant .. ": embedded SCA of a payment with signed PUTs ends in ACSC, the ledger moves once", function()
        fs.configure{ sca = { approach = "embedded" } }
        local client, events = fs.client_any(variant, { capture_log = true })
        local product, body, debtor, creditor = fs.payment(variant, "6.40")
        local payment = assert(client:initiate_payment(product, body, { psu_ip = fs.PSU_IP }))
        local flow = assert(payment:authorise())
        assert.equal("credentials", assert(flow:next()).kind)
        assert.equal("choose_method", assert(flow:next{ psu_id = "alice", password = "alice-pass" }).kind)
        assert.equal("otp", assert(flow:next{ method = "sms" }).kind)
        local step = assert(flow:next{ otp = "123456" })
        assert.equal("done", step.kind)
        assert.equal("ACSC", step.status)
        assert.equal(money(tonumber(debtor.balance) - 6.4), balance(debtor.resourceId))
        assert.equal(money(tonumber(creditor.balance) + 6.4), balance(creditor.resourceId))
        -- the start with the password and the two PUTs carried the variant's signature
        local sig = variant == "georgia" and "x-jws-signature" or "Signature"
        local calls = 0
        for _, e in ipairs(events) do
          local f = e.fields
          if e.event == "request" and (f.method == "PUT" or f.url:find("/authorisations$")) then
            calls = calls + 1
            local found = false
            for k in pairs(e.fields.headers) do if k:lower() == sig:lower() then found = true end end
            assert.is_true(found, f.method .. " without " .. sig)
          end
        end
        assert.equal(3, calls)
      end)

      it(variant .. ": decoupled SCA of a payment is polled to ACSC after the PSU's app approves", function()
        fs.configure{ sca = { approach = "decoupled", decoupled_delay = 1 } }
        local client = fs.client_any(variant)
        local product, body, debtor = fs.payment(variant, "0.75")
        local payment = assert(client:initiate_payment(product, body, { psu_ip = fs.PSU_IP, psu_id = "alice" }))
        local step = assert(assert(payment:authorise{ poll_interval = 0.2 }):next())
        assert.equal("done", step.kind)
        assert.equal("ACSC", step.status)
        assert.equal(money(tonumber(debtor.balance) - 0.75), balance(debtor.resourceId))
      end)
    end
  end)
end)

