-- Every example response of the Berlin Group OpenAPI 1.3.11 file, read by
-- the client: a transport at the client's seam answers each request with
-- the example (status, JSON body) of the operation the client called, and
-- the client's public call must return its result without error. The one
-- known mismatch of the file (funds confirmation: "fundsAvailable": "true",
-- a string where the schema says boolean) must come back as a typed
-- protocol error; the two XML examples (pain.001 payment products) are not
-- JSON answers the client asks for. See spec/openapi/README.md.
local helper = require "helper"
local proc = require "support.proc"
local sandbox = require "support.sandbox"
local support = require "support.client"
local xs2a = require "xs2a"

local SPEC = helper.root .. "/spec/openapi/psd2-api_v1.3.11-2021-10-01v1.yaml"
local PSU = { psu_ip = "192.0.2.1" }

-- documented mismatches: "<METHOD> <path> <name>" -> why
local MISMATCH = {
  ["POST /v1/funds-confirmations Example"] = "fundsAvailable is the string \"true\", the schema says boolean",
}

-- the client call that makes each operation's request
local CALLS = {
  ["POST /v1/consents"] = function(c) return c:create_consent({ access = { allPsd2 = "allAccounts" },
    recurringIndicator = true, validUntil = "2030-01-01", frequencyPerDay = 4,
    combinedServiceIndicator = false }, PSU) end,
  ["GET /v1/consents/{consentId}"] = function(c) return c:consent("c1"):get() end,
  ["GET /v1/consents/{consentId}/status"] = function(c) return c:consent("c1"):status() end,
  ["GET /v1/accounts"] = function(c) return c:consent("c1"):accounts(PSU) end,
  ["GET /v1/accounts/{account-id}"] = function(c) return c:consent("c1"):account("a1", PSU) end,
  ["GET /v1/accounts/{account-id}/balances"] = function(c) return c:consent("c1"):balances("a1", PSU) end,
  ["GET /v1/accounts/{account-id}/transactions"] = function(c)
    return c:consent("c1"):transaction_list("a1", { dateFrom = "2020-01-01" }, PSU) end,
  ["GET /v1/accounts/{account-id}/transactions/{transactionId}"] = function(c)
    return c:consent("c1"):transaction("a1", "t1", PSU) end,
  ["GET /v1/card-accounts"] = function(c) return c:consent("c1"):card_accounts(PSU) end,
  ["GET /v1/card-accounts/{account-id}"] = function(c) return c:consent("c1"):card_account("k1", PSU) end,
  ["GET /v1/card-accounts/{account-id}/balances"] = function(c) return c:consent("c1"):card_balances("k1", PSU) end,
  ["POST /v1/{payment-service}/{payment-product}"] = function(c)
    return c:initiate_payment("sepa-credit-transfers", { instructedAmount = { currency = "EUR", amount = "1.00" },
      debtorAccount = { iban = "DE40100100103307118608" }, creditorAccount = { iban = "DE02100100109307118603" },
      creditorName = "Bob" }, PSU) end,
  ["GET /v1/{payment-service}/{payment-product}/{paymentId}"] = function(c)
    return c:payment("payments", "sepa-credit-transfers", "p1"):get() end,
  ["GET /v1/{payment-service}/{payment-product}/{paymentId}/status"] = function(c)
    return c:payment("payments", "sepa-credit-transfers", "p1"):status() end,
  ["DELETE /v1/{payment-service}/{payment-product}/{paymentId}"] = function(c)
    return c:payment("payments", "sepa-credit-transfers", "p1"):cancel() end,
  ["POST /v1/funds-confirmations"] = function(c)
    return c:confirm_funds({ account = { iban = "DE40100100103307118608" },
      instructedAmount = { currency = "EUR", amount = "1.00" } }) end,
  ["POST /v1/signing-baskets"] = function(c) return c:create_signing_basket({ paymentIds = { "p1" } }, PSU) end,
  ["GET /v1/signing-baskets/{basketId}"] = function(c) return assert(c:signing_basket("b1")):get() end,
}

-- the authorisation operations: the resource the path names, then the call
local function owner(c, path)
  if path:find("^/v1/consents") then return c:consent("c1") end
  if path:find("^/v1/signing%-baskets") then return assert(c:signing_basket("b1")) end
  local p = c:payment("payments", "sepa-credit-transfers", "p1")
  if path:find("/cancellation%-authorisations") then return p:cancellation() end
  return p
end

local UPDATE_FORMS = {
  { "identification", function(a) return a:identify{ psu_id = "alice" } end },
  { "PSU authentication", function(a) return a:authenticate("secret") end },
  { "Select PSU authentication", function(a) return a:select_method("sms") end },
  { "Transaction authorisation", function(a) return a:authorise_transaction("123456") end },
  { "Authorisation confirmation", function(a) return a:confirm("c0de") end },
}

local function authorisation_call(ex)
  local path = ex.path
  if not path:find("authorisations") then return nil end
  local id_path = path:find("{authorisationId}", 1, true)
  if ex.method == "POST" then return function(c) return owner(c, path):start_authorisation(PSU) end end
  if ex.method == "GET" and not id_path then return function(c) return owner(c, path):authorisations() end end
  if ex.method == "GET" then return function(c) return assert(owner(c, path):authorisation("a1")):status() end end
  for _, f in ipairs(UPDATE_FORMS) do
    if ex.name:find(f[1], 1, true) then
      return function(c) return f[2](assert(owner(c, path):authorisation("a1"))) end
    end
  end
end

describe("OpenAPI 1.3.11 example responses", function()
  local examples

  setup(function()
    local out = proc.output("/usr/bin/python3 " .. proc.quote(helper.root .. "/spec/openapi/validate.py")
      .. " --examples " .. proc.quote(SPEC))
    examples = assert(sandbox.json.decode(out), out)
  end)

  -- a client whose transport answers every request with `answer`
  local function client_answering(answer)
    local seen = {}
    local c = assert(xs2a.client{
      profile = "berlin-group", base_url = "https://bank.example", qwac = support.identity("qwac"),
      qseal = support.identity("qseal"),
      redirect_uri = "https://tpp.example/cb", limits = false,
      transport = { request = function(_, req)
        seen[#seen + 1] = req
        return { status = answer.status, headers = { ["content-type"] = "application/json",
          ["location"] = "https://bank.example/v1/x" }, body = answer.body }
      end },
    })
    return c, seen
  end

  it("are all read by the client, the documented mismatch as a typed error", function()
    local read, mismatched, xml, untested = 0, 0, 0, {}
    for _, ex in ipairs(examples) do
      local op = ex.method .. " " .. ex.path
      local call = CALLS[op] or authorisation_call(ex)
      if ex.media ~= "application/json" then
        xml = xml + 1
      elseif not call then
        untested[#untested + 1] = op .. " " .. ex.name
      else
        -- a few examples hold the JSON body as YAML text: that text is the body
        local body = type(ex.value) == "string" and ex.value or assert(sandbox.json.encode(ex.value))
        local c, seen = client_answering({ status = ex.status, body = body })
        local ok, res, err = pcall(call, c)
        assert.is_true(ok, op .. " " .. ex.name .. " raised: " .. tostring(res))
        assert.is_true(#seen >= 1, op .. ": no request was sent")
        local key = op .. " " .. ex.name
        if MISMATCH[key] then
          assert.is_nil(res, key)
          assert.equal("protocol", err.kind, key)
          mismatched = mismatched + 1
        else
          assert.is_not_nil(res, key .. ": " .. tostring(err))
          read = read + 1
        end
      end
    end
    io.stderr:write(string.format("\nOpenAPI examples: %d read, %d documented mismatch, %d XML (not asked for), "
      .. "%d not covered here\n", read, mismatched, xml, #untested))
    if os.getenv("XS2A_OPENAPI_LIST") then io.stderr:write(table.concat(untested, "\n"), "\n") end
    assert.equal(0, #untested, "examples without a client call:\n" .. table.concat(untested, "\n"))
    assert.equal(1, mismatched)
  end)
end)
