-- Every error code of the "Update PSU Data for consents" page that the
-- sandbox did not produce before (xs2a-reference 7.3), produced by the
-- sandbox at its status on both variants and read by the client as a typed
-- error: kind, status, code, retryable. A private sandbox, because these
-- specs revoke and block the shared QWAC and switch services off.
local support = require "support.client"
local sandbox = require "support.sandbox"
local proc = require "support.proc"

local VARIANTS = { "berlin", "georgia" }
local PSU = { ip = "192.0.2.10" }

local function product(variant)
  return variant == "berlin" and "sepa-credit-transfers" or "domestic"
end

describe("error codes #network", function()
  local sb

  setup(function()
    sb = sandbox.start{ config = { rate = { per_second = 1000, per_hour = 100000, concurrent = 50 } } }
  end)
  teardown(function() if sb then sb:stop() end end)
  after_each(function() sb:reset() end)

  local function client(variant)
    return support.new_client(variant, { limits = false, profile_overrides = support.ANY_APPROACH }, sb)
  end

  local function payment_body(variant)
    local accounts = select(2, sb:control("GET", "/accounts")).accounts
    local debtor, creditor
    for _, a in ipairs(accounts) do
      if a.variant == variant and a.owner == "alice" and not debtor then debtor = a.iban end
      if a.variant == variant and a.owner == "bob" and not creditor then creditor = a.iban end
    end
    return {
      debtorAccount = { iban = debtor },
      instructedAmount = { currency = variant == "berlin" and "EUR" or "GEL", amount = "1.00" },
      creditorAccount = { iban = creditor }, creditorName = "Bob Example",
      remittanceInformationUnstructured = "error codes spec",
    }
  end

  local function typed(err, status, code)
    assert.is_table(err, "expected an error value")
    assert.equal("http", err.kind)
    assert.equal(status, err.status)
    assert.equal(code, err.code)
    assert.is_false(err.retryable)
    assert.is_nil(err.outcome)
  end

  local function each_variant(fn)
    for _, v in ipairs(VARIANTS) do fn(v, client(v)) end
  end

  it("400 PARAMETER_NOT_SUPPORTED for a parameter the bank does not support", function()
    sb:config{ unsupported_parameters = { "PSU-Geo-Location" } }
    each_variant(function(_, c)
      local consent, err = c:create_consent(support.consent_body(),
        { psu = { ip = PSU.ip, geo_location = "GEO:52.506931;13.144558" } })
      assert.is_nil(consent)
      typed(err, 400, "PARAMETER_NOT_SUPPORTED")
      -- without it the same call goes through
      assert.truthy(c:create_consent(support.consent_body(), { psu = PSU }))
    end)
  end)

  it("400 SERVICE_INVALID for PSU data the authorisation's approach does not take", function()
    each_variant(function(_, c)
      -- an OAuth authorisation takes no password (the authorisation API)
      local consent = assert(c:create_consent(support.consent_body(), { psu = PSU }))
      local ids = assert(consent:authorisations())
      local auth = assert(consent:authorisation(ids[1]))
      local res, err = auth:authenticate("alice-pass", { psu = { ip = PSU.ip, id = "alice" } })
      assert.is_nil(res)
      typed(err, 400, "SERVICE_INVALID")
    end)
  end)

  local function fingerprint(name)
    local out = proc.output("openssl x509 -noout -fingerprint -sha256 -in " .. proc.quote(sb.pki .. "/" .. name))
    return (out:match("=([%x:]+)"):gsub(":", ""))
  end
  local function qwac_fingerprint() return fingerprint("qwac.pem") end

  it("401 CERTIFICATE_REVOKED for a signed payment whose QSealC is on the revoked list", function()
    sb:config{ certificates = { revoked = { fingerprint("qseal.pem") } } }
    each_variant(function(v, c)
      local p, err = c:initiate_payment(product(v), payment_body(v), { psu = PSU })
      assert.is_nil(p)
      typed(err, 401, "CERTIFICATE_REVOKED")
      -- AIS is not signed: the QWAC still works
      assert.truthy(c:create_consent(support.consent_body(), { psu = PSU }))
    end)
  end)

  for _, case in ipairs{ { "revoked", "CERTIFICATE_REVOKED" }, { "blocked", "CERTIFICATE_BLOCKED" } } do
    it("401 " .. case[2] .. " for a QWAC on the configured " .. case[1] .. " list", function()
      sb:config{ certificates = { [case[1]] = { qwac_fingerprint() } } }
      each_variant(function(_, c)
        local consent, err = c:create_consent(support.consent_body(), { psu = PSU })
        assert.is_nil(consent)
        typed(err, 401, case[2])
      end)
      -- another certificate of the same TPP is not affected
      local other = support.new_client("berlin", { limits = false, qwac = "qwac-ai" }, sb)
      assert.truthy(other:create_consent(support.consent_body(), { psu = PSU }))
    end)
  end

  it("401 CORPORATE_ID_INVALID for a PSU-Corporate-ID the bank does not know", function()
    sb:config{ corporate_ids = { "ACME-001" } }
    each_variant(function(_, c)
      local consent, err = c:create_consent(support.consent_body(),
        { psu = { ip = PSU.ip, corporate_id = "NOBODY-9" } })
      assert.is_nil(consent)
      typed(err, 401, "CORPORATE_ID_INVALID")
      assert.truthy(c:create_consent(support.consent_body(), { psu = { ip = PSU.ip, corporate_id = "ACME-001" } }))
    end)
  end)

  it("403 SERVICE_BLOCKED for a service the bank blocked", function()
    sb:config{ blocked_services = { "AIS" } }
    each_variant(function(v, c)
      local consent, err = c:create_consent(support.consent_body(), { psu = PSU })
      assert.is_nil(consent)
      typed(err, 403, "SERVICE_BLOCKED")
      -- PIS is not blocked
      assert.truthy(c:initiate_payment(product(v), payment_body(v), { psu = PSU }))
    end)
  end)

  it("403 RESOURCE_EXPIRED for PSU data sent to an authorisation that timed out", function()
    sb:config{ sca = { approach = "embedded", auth_timeout = 1, consent_auth_timeout = 1 } }
    local pending = {}
    each_variant(function(_, c)
      local consent = assert(c:create_consent(support.consent_body(), { psu = PSU }))
      pending[#pending + 1] = assert(consent:start_authorisation{ psu = { ip = PSU.ip, id = "alice" } })
    end)
    os.execute("sleep 1.3")
    for _, auth in ipairs(pending) do
      local res, err = auth:authenticate("alice-pass", { psu = { ip = PSU.ip, id = "alice" } })
      assert.is_nil(res)
      typed(err, 403, "RESOURCE_EXPIRED")
    end
  end)

  it("403 PRODUCT_INVALID for a payment product the bank does not offer to the TPP", function()
    sb:config{ invalid_products = { "sepa-credit-transfers", "domestic" } }
    each_variant(function(v, c)
      local p, err = c:initiate_payment(product(v), payment_body(v), { psu = PSU })
      assert.is_nil(p)
      typed(err, 403, "PRODUCT_INVALID")
    end)
  end)
end)
