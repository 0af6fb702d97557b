-- The reading matrix (issue 13, docs/paysera.md): the client's Paysera
-- specs (consent, accounts with paging, payment, refresh, errors) against a
-- sandbox that plays each reading configuration of spec/readings/configs.lua,
-- for both variants. Runs under Lua 5.4 only (spec/run-suites excludes the
-- #readings tag from the LuaJIT run). #network #readings
local sandbox = require "support.sandbox"
local support = require "support.client"
local errors = require "xs2a.errors"
local configs = require "readings.configs"

local PSU = { psu_ip = "198.51.100.7" }
local PAGE_SIZE = 40
local CCY = { berlin = "EUR", georgia = "GEL" }
local PRODUCT = { berlin = "sepa-credit-transfers", georgia = "domestic" }

local function day(n) return os.date("!%Y-%m-%d", os.time() + n * 86400) end

local function consent_body(valid_until)
  return { access = { allPsd2 = "allAccounts" }, recurringIndicator = true, validUntil = valid_until or day(30),
    frequencyPerDay = 4, combinedServiceIndicator = false }
end

local function merge(dst, src)
  for k, v in pairs(src or {}) do
    if type(v) == "table" and type(dst[k]) == "table" then merge(dst[k], v) else dst[k] = v end
  end
  return dst
end

-- events named `name` (after index `from`, when given) that `pred` accepts
local function count(events, name, pred, from)
  local n = 0
  for i = (from or 0) + 1, #events do
    local e = events[i]
    if e.event == name and (not pred or pred(e.fields or {})) then n = n + 1 end
  end
  return n
end

for _, cfg in ipairs(configs) do
  describe("reading " .. cfg.name .. " #network #readings", function()
    local sb, accounts

    setup(function()
      local start = merge({ rate = { per_second = 1000, per_hour = 100000, concurrent = 50 }, page_size = PAGE_SIZE },
        cfg.sandbox)
      sb = sandbox.start{ config = start }
      local _, dump = sb:control("GET", "/accounts")
      accounts = {}
      for _, a in ipairs(dump.accounts) do accounts[a.resourceId] = a end
    end)
    teardown(function() if sb then sb:stop() end end)

    for _, variant in ipairs({ "berlin", "georgia" }) do
      local client, events, consent
      local profile = cfg.profile or {}
      local p = variant == "berlin" and "b" or "g"
      local main = p .. "-alice-" .. CCY[variant]:lower()

      local function new_client(extra)
        local o = { capture_log = true, store = require("xs2a.store").memory(),
          limits = { per_second = 1000, per_hour = 100000, concurrent = 50 }, profile_overrides = profile }
        for k, v in pairs(extra or {}) do o[k] = v end
        return support.new_client(variant, o, sb)
      end

      it(variant .. ": consent (longest validUntil, OAuth page, several consents)", function()
        client, events = new_client()
        local far = consent_body("9999-12-31")
        local max_days = client.profile.max_consent_days
        if client.profile.consent_over_max == "refuse" then
          local none, err = client:create_consent(far, PSU)
          assert.is_nil(none)
          assert.equal("config", err.kind)
          assert.equal("CONSENT_TOO_LONG", err.code)
          far = consent_body(day(max_days - 1))
        end
        local first = assert(client:create_consent(far, PSU))
        assert(support.authorise(first))
        assert.equal("valid", (assert(first:status())))
        if client.profile.consent_over_max == "cap" then
          assert.equal(1, count(events, "consent_capped"))
          assert.equal(day(max_days), assert(first:get()).validUntil)
        end
        consent = assert(client:create_consent(consent_body(), PSU))
        assert(support.authorise(consent))
        -- the older consent: kept, or ended by the new one (multiple_consents)
        local old = assert(first:status())
        -- (spec support starts sandboxes with "keep" unless the config says otherwise)
        if (cfg.sandbox.multiple_consents or "keep") == "replace" then
          assert.equal("terminatedByTpp", old)
          local acc, err = first:accounts(PSU)
          assert.is_nil(acc)
          assert.equal("http", err.kind)
          assert.is_true(errors.is(err, "CONSENT_INVALID"), tostring(err))
        else
          assert.equal("valid", old)
          assert(first:accounts(PSU))
        end
      end)

      it(variant .. ": accounts and transactions with paging, attended and unattended", function()
        assert.is_truthy(consent, "the consent spec runs first")
        local list = assert(consent:accounts(PSU))
        assert.is_true(#list >= 2)
        local want = accounts[main].transactions
        local all = assert(consent:transaction_list(main, { bookingStatus = "booked", dateFrom = "2026-01-01" }, PSU))
        assert.equal(want, #all)
        local pages = math.ceil(want / PAGE_SIZE)
        assert.is_true(pages > 4)
        -- no PSU: frequencyPerDay (4) applies as the profile counts it
        local n, stop = 0, nil
        for tx, err in consent:transactions(main, { bookingStatus = "booked", dateFrom = "2026-01-01" }) do
          if tx == false then stop = err break end
          n = n + 1
        end
        if client.profile.frequency_rule == "consent" then
          assert.is_table(stop)
          assert.equal("limit", stop.kind, tostring(stop))
          assert.equal("ACCESS_EXCEEDED", stop.code)
          assert.equal(4, stop.pages_read)
          assert.matches("after 4 pages", tostring(stop))
          assert.equal(4 * PAGE_SIZE, n)
        else
          assert.is_nil(stop, tostring(stop))
          assert.equal(want, n)
        end
        -- never the bank's 429
        assert.equal(0, count(events, "response", function(f) return f.status == 429 end))
      end)

      it(variant .. ": payment initiated, authorised on the page, settled", function()
        local acc = accounts
        local body = {
          debtorAccount = { iban = acc[main].iban }, creditorName = "Bob Example",
          creditorAccount = { iban = acc[p .. "-bob-" .. CCY[variant]:lower()].iban },
          instructedAmount = { currency = CCY[variant], amount = "1.10" },
          remittanceInformationUnstructured = "reading matrix",
        }
        local pay = assert(client:initiate_payment(PRODUCT[variant], body, PSU))
        assert(support.authorise(pay))
        assert.equal("ACSC", (assert(pay:status())))
        -- executed: not cancellable, the bank's typed 409 STATUS_INVALID
        local res, err = pay:cancel()
        assert.is_nil(res)
        assert.equal(409, err.status, tostring(err))
        assert.is_true(errors.is(err, "STATUS_INVALID"))
      end)

      it(variant .. ": an access token the bank let expire is refreshed once", function()
        local oauth = require "xs2a.sca.oauth"
        local k = assert(client:create_consent(consent_body(), PSU))
        sb:config{ token_ttl = 1 }
        local ok, aerr = support.authorise(k)
        sb:config{ token_ttl = 3600 }
        assert(ok, tostring(aerr))
        local rec = assert(oauth.read_record(client, k.token_key))
        rec.expires_at = os.time() + 3600
        oauth.set_record(client, k.token_key, rec)
        require("xs2a.parallel").sleep(1.2)
        local mark = #events
        assert(k:accounts(PSU))
        local statuses = {}
        for i = mark + 1, #events do
          local e = events[i]
          if e.event == "response" and e.fields.path == "/v1/accounts" then
            statuses[#statuses + 1] = e.fields.status
          end
        end
        assert.same({ cfg.sandbox.token_error_status or 401, 200 }, statuses)
        consent = k
      end)

      it(variant .. ": errors are typed", function()
        local acc, err = consent:account("no-such-account", PSU)
        assert.is_nil(acc)
        assert.equal(404, err.status)
        assert.is_true(errors.is(err, "RESOURCE_UNKNOWN"))
        -- a consent the TPP ended: the bank's refusal, no refresh tried
        local gone = assert(client:create_consent(consent_body(), PSU))
        assert(support.authorise(gone))
        assert(gone:delete())
        local mark = #events
        local none, gerr = gone:accounts(PSU)
        assert.is_nil(none)
        assert.equal("http", gerr.kind)
        assert.equal(0, count(events, "oauth.refresh", nil, mark))
        -- funds confirmation follows the profile's flag
        local ok, ferr = client:confirm_funds({ account = { iban = accounts[main].iban },
          instructedAmount = { currency = CCY[variant], amount = "1.00" } })
        if client.profile.funds_confirmation then
          assert.is_boolean(ok, tostring(ferr))
        else
          assert.is_nil(ok)
          assert.equal("SERVICE_UNSUPPORTED", ferr.code)
        end
      end)
    end
  end)
end
