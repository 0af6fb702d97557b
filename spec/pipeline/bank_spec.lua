-- Guarantees of issue 8 that need the bank: proven against the sandbox over
-- real mTLS. #network
local sandbox = require "support.sandbox"
local support = require "support.client"
local fs = require "client.flow_support"
local xs2a = require "xs2a"

local PSU = { psu_ip = "198.51.100.7" }
local PAYMENT = { instructedAmount = { currency = "EUR", amount = "1.00" },
  debtorAccount = { iban = "LT601010012345678901" }, creditorAccount = { iban = "LT121000011101001000" },
  creditorName = "Shop", remittanceInformationUnstructured = "issue 8" }

describe("issue 8 guarantees at the bank #network", function()
  describe("with a private sandbox that injects faults", function()
    local sb
    setup(function()
      sb = sandbox.start{ faults = true, config = { rate = { per_second = 50, per_hour = 100000, concurrent = 20 } } }
    end)
    teardown(function() if sb then sb:stop() end end)

    it("a frequencyPerDay unit whose request was sent but whose answer was lost stays spent", function()
      local client = support.new_client("berlin", { store = xs2a.store.memory(),
        retry = { max_attempts = 2, base_delay = 0.01, max_delay = 0.02 },
        limits = { per_second = 50, per_hour = 100000, concurrent = 20 } }, sb)
      local body = support.consent_body()
      body.frequencyPerDay = 2
      local consent = assert(client:create_consent(body, PSU))
      assert(support.authorise(consent))
      -- the bank receives the read, then the connection drops: the answer is lost
      sb:fault{ kind = "drop", method = "GET", path = "/v1/accounts$", count = 1 }
      local accounts = assert(consent:accounts())            -- lost, then retried: two accesses
      assert.is_true(#accounts > 0)
      local again, err = consent:accounts()                  -- a third would exceed 2 a day
      assert.is_nil(again)
      assert.equal("ACCESS_EXCEEDED", err.code, tostring(err))
      assert.equal("limit", err.kind)                        -- refused here: not sent
      local reads = 0
      for _ = 1, 40 do                                       -- nginx logs after the answer
        reads = 0
        for _, line in ipairs(sb:access_log()) do
          if line:find('"GET /xs2a/berlin/1.3/v1/accounts HTTP', 1, true) then reads = reads + 1 end
        end
        if reads >= 2 then break end
        require("xs2a.parallel").sleep(0.05)
      end
      assert.equal(2, reads)
    end)
  end)

  describe("with the shared sandbox", function()
    local sb
    setup(function() sb = fs.sandbox() end)
    after_each(function() fs.restore() end)

    it("a consent the bank marks expired while its flow polls ends the flow at once with SCA_FAILED", function()
      fs.configure{ sca = { approach = "decoupled" } }
      local client = fs.client_any("berlin")
      local consent = assert(client:create_consent(fs.consent_body(), { psu_ip = fs.PSU_IP, psu_id = "alice" }))
      local flow = assert(consent:authorise{ poll = false, poll_interval = 0.1, timeout = 600 })
      local step = assert(flow:next())
      assert.equal("wait", step.kind)
      assert.equal(200, (sb:control("POST", "/decoupled/" .. step.authorisation_id, { decision = "approve" })))
      -- the bank's clock passes validUntil: the consent it just made valid is expired
      fs.configure{ clock_offset = 800 * 86400 }
      local done, err = flow:next()
      assert.is_nil(done, "the flow went on: " .. tostring(done and done.kind))
      assert.equal("sca", err.kind)
      assert.equal("SCA_FAILED", err.code)
      assert.equal("expired", err.resource_status)
      assert.is_true(err.terminal)
      assert.equal("failed", flow:state())
    end)

    it("sends a bad signature through a raw request and gets the bank's 401", function()
      local client = fs.client("berlin")
      local real = client.signer
      client.signer = { sign = function(_, req)
        local r = assert(real:sign(req))
        -- flip the signature's first base64 character
        req.headers.Signature = req.headers.Signature:gsub('signature="(.)', function(c)
          return 'signature="' .. (c == "A" and "B" or "A")
        end)
        return r
      end }
      local res, err = client:request{ method = "POST", path = "/v1/payments/sepa-credit-transfers", body = PAYMENT,
        service = "PIS", psu = { ip = fs.PSU_IP }, idempotent = false }
      assert.is_nil(res)
      assert.equal(401, err.status)
      assert.equal("SIGNATURE_INVALID", err.code)
    end)

    it("reaches the bank with a QWAC that lacks the role through a raw request and gets its 401", function()
      local client = fs.client("berlin", { qwac = "qwac-ai", services = { "AIS" } })
      -- no service named: the client's own role check is out of the way, the bank's is not
      local res, err = client:request{ method = "POST", path = "/v1/payments/sepa-credit-transfers", body = PAYMENT,
        psu = { ip = fs.PSU_IP }, idempotent = false }
      assert.is_nil(res)
      assert.equal(401, err.status)
      assert.equal("ROLE_INVALID", err.code)
    end)

    it("hole 11: two decoupled flows inside xs2a.parallel overlap (polling yields)", function()
      fs.configure{ sca = { approach = "decoupled", decoupled_delay = 1 } }
      local order = {}
      local function tagged(tag)
        return fs.client_any("berlin", { log = function(_, event)
          if event == "request" then order[#order + 1] = tag end
        end })
      end
      local ca, cb = tagged("A"), tagged("B")
      local a = assert(ca:create_consent(fs.consent_body(), { psu_ip = fs.PSU_IP, psu_id = "alice" }))
      local b = assert(cb:create_consent(fs.consent_body(), { psu_ip = fs.PSU_IP, psu_id = "alice" }))
      order = {}
      local results = xs2a.parallel(
        function() return assert(a:authorise{ poll_interval = 0.2 }):next() end,
        function() return assert(b:authorise{ poll_interval = 0.2 }):next() end)
      for _, r in ipairs(results) do
        assert.is_true(r[1], tostring(r[2]))
        assert.equal("done", r[2].kind)
      end
      local first_b, last_a
      for i, tag in ipairs(order) do
        if tag == "B" and not first_b then first_b = i end
        if tag == "A" then last_a = i end
      end
      assert.is_truthy(first_b and last_a)
      assert.is_true(first_b < last_a, "flow B started only after flow A ended: " .. table.concat(order))
    end)
  end)
end)
