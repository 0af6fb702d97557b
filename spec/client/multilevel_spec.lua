-- Multilevel SCA with two PSUs for the approaches where the TPP names the
-- PSU: decoupled (alice approves in her app, then the flow asks for the next
-- PSU and `flow:next{ psu_id = "bob" }` starts bob's authorisation) and
-- embedded. The first PSU's id is never sent for the second level (the
-- bank would answer 409 STATUS_INVALID: alice already approved). The OAuth
-- approach with two PSUs is in flow_oauth_spec.lua.
local fs = require "client.flow_support"

describe("multilevel SCA, next PSU named #network", function()
  local sb
  setup(function() sb = fs.sandbox() end)
  after_each(function() fs.restore() end)

  local function approve(step)
    assert.equal("wait", step.kind)
    assert.equal(200, (sb:control("POST", "/decoupled/" .. step.authorisation_id, { decision = "approve" })))
  end

  for _, variant in ipairs({ "berlin", "georgia" }) do
    it(variant .. ": decoupled, alice then bob", function()
      fs.configure{ sca = { approach = "decoupled", multilevel = 2, decoupled_delay = 0 } }
      local client = fs.client_any(variant)
      local consent = assert(client:create_consent(fs.consent_body(), { psu_ip = fs.PSU_IP, psu_id = "alice" }))
      local flow = assert(consent:authorise{ poll = false, poll_interval = 0.05 })
      local step = assert(flow:next())
      approve(step)
      -- alice's approval leaves the consent partially authorised: the flow asks who is next
      step = assert(flow:next())
      assert.equal("credentials", step.kind)
      assert.equal("psu_id", step.need)
      assert.equal(2, step.level)
      assert.equal("partiallyAuthorised", (consent:current_status()))
      step = assert(flow:next{ psu_id = "bob" })
      local bob_auth = step.authorisation_id
      approve(step)
      step = assert(flow:next())
      assert.equal("done", step.kind)
      assert.equal("valid", step.status)
      assert.equal(2, step.authorisations)
      -- the second authorisation belongs to bob
      local ids = assert(consent:authorisations())
      assert.equal(2, #ids)
      assert.equal(bob_auth, ids[2])
    end)
  end

  it("berlin: embedded, alice then bob (credentials name the next PSU)", function()
    fs.configure{ sca = { approach = "embedded", multilevel = 2 } }
    local client = fs.client_any("berlin")
    local consent = assert(client:create_consent(fs.consent_body(), { psu_ip = fs.PSU_IP, psu_id = "alice" }))
    local flow = assert(consent:authorise{ poll = false, poll_interval = 0.05 })
    local step = assert(flow:next())
    assert.equal("credentials", step.kind)
    assert(flow:next{ psu_id = "alice", password = "alice-pass" })
    assert(flow:next{ method = "sms" })
    step = assert(flow:next{ otp = "123456" })
    -- next level: the flow opened bob's authorisation without alice's PSU-ID
    for _ = 1, 5 do
      if step.kind == "credentials" then break end
      step = assert(flow:next())
    end
    assert.equal("credentials", step.kind)
    assert.equal(2, step.level)
    assert.equal("choose_method", assert(flow:next{ psu_id = "bob", password = "bob-pass" }).kind)
    assert.equal("otp", assert(flow:next{ method = "app" }).kind)
    step = assert(flow:next{ otp = "123456" })
    for _ = 1, 5 do
      if step.kind == "done" then break end
      step = assert(flow:next())
    end
    assert.equal("done", step.kind)
    assert.equal("valid", step.status)
    assert.equal(2, step.authorisations)
  end)
end)
