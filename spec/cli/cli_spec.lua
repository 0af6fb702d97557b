-- The `xs2a` command (bin/xs2a) as a person and a cron job use it, as real
-- processes against a private sandbox bank over mTLS: cert, consent create
-- with the loopback callback (RFC 8252) and with a pasted URL, consent
-- status/show/delete, accounts, balances, transactions in csv/json/ndjson
-- (every page, exact amounts), sync three times (new rows only, pending moved
-- to booked, the budget refusal with exit 75 and nothing sent), pay with the
-- status in words, configuration through a file, and the exit statuses.
-- The command runs under Lua 5.4 whatever runs busted, so the LuaJIT suite
-- skips this file.
if rawget(_G, "jit") then return end

local helper = require "helper"
local sandbox = require "support.sandbox"
local proc = require "support.proc"
local cli = require "support.cli"
local json = require("xs2a").json

local function tmpdir()
  local ok, out = proc.run("mktemp -d /tmp/xs2a-cli-XXXXXX")
  assert(ok, out)
  return (out:gsub("%s+$", ""))
end

local function lines(s)
  local out = {}
  for l in s:gmatch("[^\n]+") do out[#out + 1] = l end
  return out
end

-- RFC 4180 rows (fields may be quoted)
local function csv_rows(s)
  local rows = {}
  for line in s:gmatch("([^\r\n]*)\r\n") do
    local row, pos = {}, 1
    while pos <= #line + 1 do
      if line:sub(pos, pos) == '"' then
        local value, stop = "", pos + 1
        while true do
          local q = assert(line:find('"', stop, true))
          value = value .. line:sub(stop, q - 1)
          if line:sub(q + 1, q + 1) == '"' then value, stop = value .. '"', q + 2 else pos = q + 2 break end
        end
        row[#row + 1] = value
      else
        local c = line:find(",", pos, true) or #line + 1
        row[#row + 1] = line:sub(pos, c - 1)
        pos = c + 1
      end
    end
    rows[#rows + 1] = row
  end
  return rows
end

describe("xs2a command #network", function()
  local sb, dir, env, consent_id

  setup(function()
    -- The scenarios below keep their state in several directories (one per
    -- installation of the command), so their limiters do not share one
    -- budget while they talk to the bank as the same TPP, back to back: this
    -- bank allows more per second than Paysera's 10, or a 429 on a payment
    -- POST (never retried) would fail a scenario that is not about limits.
    sb = sandbox.start{ config = { rate = { per_second = 200, per_hour = 100000, concurrent = 20 } } }
    dir = tmpdir()
    env = cli.env(sb, dir .. "/state")
  end)
  teardown(function()
    if sb then sb:stop() end
    if dir then proc.run("rm -rf " .. proc.quote(dir)) end
  end)

  local function sent_since(mark, needle)
    local n = 0
    local log = sb:access_log()
    for i = mark + 1, #log do if log[i]:find(needle, 1, true) then n = n + 1 end end
    return n
  end

  describe("cert", function()
    it("shows a QWAC as PSD2 needs it and checks its key", function()
      local rc, out, err = cli.run({ "cert", helper.pki("qwac.pem"), "--key", helper.pki("qwac.key") }, env)
      assert.equal(0, rc, err)
      assert.matches("organizationIdentifier%s+PSDLT%-BOL%-TPP001", out)
      assert.matches("PSD2 roles%s+PSP_AI %(0%.4%.0%.19495%.1%.3%), PSP_PI %(0%.4%.0%.19495%.1%.2%), "
        .. "PSP_IC %(0%.4%.0%.19495%.1%.4%)", out)
      assert.matches("NCA%s+Bank of Lithuania %(LT%-BOL%)", out)
      assert.matches("%(%d+ days left%)", out)
      assert.matches("key%s+RSA 2048 bits", out)
      assert.matches("key matches%s+yes", out)
      assert.is_nil(out:find("warning", 1, true))
    end)

    it("exits 1 on what the bank would refuse, with the reason in words", function()
      local rc, out = cli.run({ "cert", helper.pki("qwac-expired.pem") }, env)
      assert.equal(1, rc)
      assert.matches("problem: the certificate has expired", out, 1, true)
      rc, out = cli.run({ "cert", helper.pki("qwac.pem"), "--key", helper.pki("other.key") }, env)
      assert.equal(1, rc)
      assert.matches("problem: the key does not match the certificate", out, 1, true)
      rc, out = cli.run({ "cert", helper.pki("server.pem") }, env)
      assert.equal(1, rc)
      assert.matches("not a PSD2 QWAC or QSealC", out, 1, true)
    end)

    it("warns about a missing role, in JSON too", function()
      local rc, out = cli.run({ "cert", helper.pki("qwac-ai.pem"), "--json" }, env)
      assert.equal(0, rc)
      local info = assert(json.decode(out))
      assert.equal("PSDLT-BOL-TPP002", info.organization_identifier)
      assert.same({ "PSP_AI" }, info.roles)
      assert.same({ "no PSP_PI role: payments will be refused" }, info.warnings)
      assert.is_number(info.days_left)
    end)
  end)

  describe("consent", function()
    it("creates a consent authorised through the loopback callback", function()
      local mark = #sb:access_log()
      local h = cli.start({ "consent", "create", "--recurring", "--frequency", "2" }, env)
      local rc, out, err, location = h:authorise()
      assert.equal(0, rc, err)
      assert.matches("^http://127%.0%.0%.1:%d+/callback%?", location)
      consent_id = out:match("^consent (%S+): valid %(valid: accounts may be read%)\n$")
      assert.is_string(consent_id, out)
      assert.matches("Open this URL in a browser to authorise:\nhttps://", err)
      -- the authorisation asked for the loopback redirect_uri
      assert.equal(1, sent_since(mark, "POST /xs2a/berlin/1.3/oauth/token"))
    end)

    it("ignores a stray request on the loopback with a wrong state, and takes the real callback", function()
      local h = cli.start({ "consent", "create", "--state-dir", dir .. "/stray" }, env)
      local url = assert(h:wait_for("\n(https://[^\n]+)\n", 30))
      local port = assert(url:match("redirect_uri=http%%3A%%2F%%2F127%.0%.0%.1%%3A(%d+)%%2Fcallback"))
      local ok, code = proc.run("curl -s -o /dev/null -w '%{http_code}' --max-time 10 "
        .. proc.quote("http://127.0.0.1:" .. port .. "/callback?code=forged&state=forged"))
      assert(ok, code)
      assert.equal("200", code)
      assert.truthy(h:wait_for("(Ignored a callback whose state does not match)", 10))
      local rc, out, err = h:authorise()
      assert.equal(0, rc, err)
      assert.matches("^consent %S+: valid ", out)
    end)

    it("limits a consent to the IBANs given with --accounts", function()
      local e = cli.env(sb, dir .. "/dedicated")
      local h = cli.start({ "consent", "create", "--accounts", "LT903500000010001102" }, e)
      local rc, _, err = h:authorise()
      assert.equal(0, rc, err)
      local out
      rc, out = cli.run({ "accounts", "--json" }, e)
      assert.equal(0, rc)
      local list = assert(json.decode(out))
      assert.equal(1, #list)
      assert.equal("LT903500000010001102", list[1].iban)
      rc, out = cli.run({ "consent", "show" }, e)
      assert.equal(0, rc)
      local body = assert(json.decode(out))
      assert.equal("LT903500000010001102", body.access.accounts[1].iban)
      assert.is_false(body.recurringIndicator)
      assert.equal(1, body.frequencyPerDay)
    end)

    it("shows the status in words, the consent as JSON, and uses it by default", function()
      local rc, out = cli.run({ "consent", "status" }, env)
      assert.equal(0, rc)
      assert.equal("consent " .. consent_id .. ": valid (valid: accounts may be read)\n", out)
      rc, out = cli.run({ "consent", "status", consent_id, "--json" }, env)
      assert.equal(0, rc)
      assert.same({ consentId = consent_id, consentStatus = "valid" }, json.decode(out))
      rc, out = cli.run({ "consent", "show" }, env)
      assert.equal(0, rc)
      local body = assert(json.decode(out))
      assert.equal(2, body.frequencyPerDay)
      assert.is_true(body.recurringIndicator)
    end)

    it("takes a pasted callback URL when the redirect is a registered https address", function()
      local h = cli.start({ "consent", "create", "--redirect-uri", "https://tpp.example/callback",
        "--state-dir", dir .. "/paste" }, env, { stdin = true })
      local url = assert(h:wait_for("\n(https://[^\n]+)\n", 30))
      local location = assert(require("support.psu").authorize(url, { username = "alice",
        password = "alice-pass", decision = "approve" }))
      assert.matches("^https://tpp%.example/callback%?code=", location)
      assert.truthy(h:wait_for("(paste the whole URL)", 10))
      h:type(location)
      local rc, out, err = h:finish()
      assert.equal(0, rc, err)
      assert.matches("^consent %S+: valid ", out)
    end)

    it("shows the PSU the TPP's organisation name from its QWAC on the bank's page", function()
      local h = cli.start({ "consent", "create", "--state-dir", dir .. "/page" }, env)
      local url = assert(h:wait_for("\n(https://[^\n]+)\n", 30))
      local page = require("support.psu").fetch("GET", url)
      assert.equal(200, page.status)
      assert.matches("Requested by Example TPP UAB (PSDLT-BOL-TPP001).", page.html, 1, true)
      -- the PSU says no: the command ends
      assert.equal(1, (h:authorise{ decision = "deny" }))
    end)

    it("exits 1 with one line when the PSU denies", function()
      local h = cli.start({ "consent", "create", "--state-dir", dir .. "/deny" }, env)
      local rc, out, err = h:authorise{ decision = "deny" }
      assert.equal(1, rc)
      assert.equal("", out)
      local last = err:match("\n(xs2a: [^\n]*)\n$")
      assert.matches("SCA_DENIED", last)
      assert.is_nil(err:find("traceback", 1, true))
    end)
  end)

  describe("accounts and transactions", function()
    it("lists accounts and balances for people and for scripts", function()
      local rc, out, err = cli.run({ "accounts" }, env)
      assert.equal(0, rc, err)
      assert.matches("^ID%s+IBAN%s+CURRENCY%s+NAME", out)
      assert.matches("b%-alice%-eur%s+LT203500000010001101%s+EUR%s+Alice main account", out)
      rc, out = cli.run({ "accounts", "--json" }, env)
      assert.equal(0, rc)
      local list = assert(json.decode(out))
      assert.is_true(#list >= 2)
      rc, out = cli.run({ "balances", "b-alice-eur", "--json" }, env)
      assert.equal(0, rc)
      local balances = assert(json.decode(out))
      assert.is_string(balances[1].balanceAmount.amount)
      rc, out = cli.run({ "balances", "b-alice-eur" }, env)
      assert.equal(0, rc)
      assert.matches("interimBooked%s+" .. balances[2].balanceAmount.amount:gsub("%p", "%%%0"), out)
    end)

    it("exports every page as CSV with the bank's exact amounts, and the same rows as json and ndjson", function()
      local from = os.date("!%Y-%m-%d", os.time() - 200 * 86400)
      local mark = #sb:access_log()
      local rc, out, err = cli.run({ "transactions", "b-alice-eur", "--from", from, "--status", "both" }, env)
      assert.equal(0, rc, err)
      assert.equal("", err)   -- no progress line: stderr is not a terminal
      local rows = csv_rows(out)
      assert.same({ "status", "transactionId", "entryReference", "endToEndId", "bookingDate", "valueDate", "amount",
        "currency", "creditorName", "creditorIban", "debtorName", "debtorIban", "remittanceInformation",
        "bankTransactionCode" }, rows[1])
      assert.is_true(#rows - 1 > 100, "expected several pages, got " .. (#rows - 1))
      assert.is_true(sent_since(mark, "/transactions") >= 3)
      local rc2, out2 = cli.run({ "transactions", "b-alice-eur", "--from", from, "--status", "both",
        "--format", "json" }, env)
      assert.equal(0, rc2)
      local list = assert(json.decode(out2))
      assert.equal(#rows - 1, #list)
      for i, tx in ipairs(list) do
        assert.equal(tx.transactionAmount.amount, rows[i + 1][7])
        assert.equal(tx.bookingStatus, rows[i + 1][1])
        assert.is_nil(tx._links)
      end
      local pending = 0
      for i = 2, #rows do if rows[i][1] == "pending" then pending = pending + 1 end end
      assert.equal(3, pending)
      local rc3, out3 = cli.run({ "transactions", "b-alice-eur", "--from", from, "--status", "both",
        "--format", "ndjson", "--output", dir .. "/tx.ndjson" }, env)
      assert.equal(0, rc3)
      assert.equal("", out3)
      local nd = lines(assert(proc.read_all(dir .. "/tx.ndjson")))
      assert.equal(#list, #nd)
      assert.same(list[1], json.decode(nd[1]))
      -- on a terminal (script(1) gives it one) stderr shows pages, transactions and seconds
      local envs = {}
      for k, v in pairs(env) do envs[#envs + 1] = k .. "=" .. proc.quote(v) end
      local ok, tty = proc.run("script -qec " .. proc.quote("env " .. table.concat(envs, " ") .. " lua5.4 "
        .. proc.quote(cli.BIN) .. " transactions b-alice-eur --status both --from " .. from .. " --output "
        .. proc.quote(dir .. "/tx.csv")) .. " /dev/null")
      assert(ok, tty)
      local pages, count = tty:match("(%d+) pages, (%d+) transactions, %d+ s[\r\n]+%d+ transactions written")
      assert.equal(#list, tonumber(count), tty)
      assert.is_true(tonumber(pages) >= 3)
    end)

    it("runs under Lua 5.1 and LuaJIT too (the rockspec installs it for them)", function()
      for lua, build in pairs({ ["lua5.1"] = "lua5.1", luajit = "luajit" }) do
        local e = {}
        for k, v in pairs(env) do e[k] = v end
        e.LUA_CPATH = helper.root .. "/build/" .. build .. "/?.so;;"
        local rc, out, err = cli.run({ "accounts", "--json" }, e, nil, lua)
        assert.equal(0, rc, lua .. ": " .. err)
        assert.equal("LT203500000010001101", assert(json.decode(out))[1].iban)
        rc, out = cli.run({ "transactions", "b-alice-eur", "--from", "2026-01-01" }, e, nil, lua)
        assert.equal(0, rc, lua)
        assert.matches("^status,transactionId,", out)
      end
    end)

    it("refuses a bad date as a usage error, and a wrong account with the bank's error on one line", function()
      local rc, out, err = cli.run({ "transactions", "b-alice-eur", "--from", "2026-13" }, env)
      assert.equal(2, rc)
      assert.equal("", out)
      assert.equal("xs2a: --from must be YYYY-MM-DD\n", err)
      rc, out, err = cli.run({ "transactions", "b-alice-eur" }, env)
      assert.equal("", out)
      assert.equal(2, rc)
      assert.matches("^xs2a: .*%-%-from", err)
      rc, out, err = cli.run({ "balances", "no-such-account" }, env)
      assert.equal(1, rc)
      assert.equal("", out)
      assert.equal(1, #lines(err))
      assert.matches("^xs2a: 404 RESOURCE_UNKNOWN", err)
    end)
  end)

  describe("sync", function()
    it("exports new rows only, moves pending to booked, and stops at the daily budget with 75", function()
      -- a fresh consent with frequencyPerDay = 2 for the cron job
      local cron = cli.env(sb, dir .. "/cron-state")
      local h = cli.start({ "consent", "create", "--recurring", "--frequency", "2" }, cron)
      assert.equal(0, (h:authorise()))
      local into = dir .. "/export"
      local since = os.date("!%Y-%m-%d", os.time() - 40 * 86400)
      -- 1: everything since --since
      local rc, out, err = cli.run({ "sync", "b-alice-eur", "--into", into, "--since", since }, cron)
      assert.equal(0, rc, err)
      local n1, p1 = out:match("^b%-alice%-eur: (%d+) new booked %(0 of them were pending%), (%d+) pending")
      assert.is_truthy(n1, out)
      assert.is_true(tonumber(n1) > 0)
      assert.equal("3", p1)
      local booked = lines(proc.read_all(into .. "/b-alice-eur.booked.ndjson"))
      assert.equal(tonumber(n1), #booked)
      local pending = lines(proc.read_all(into .. "/b-alice-eur.pending.ndjson"))
      assert.equal(3, #pending)
      -- the bank books the pending entries
      local status = sb:control("POST", "/book-pending", { variant = "berlin", account = "b-alice-eur" })
      assert.equal(200, status)
      -- 2: only the newly booked rows, found by their transactionId
      rc, out, err = cli.run({ "sync", "b-alice-eur", "--into", into }, cron)
      assert.equal(0, rc, err)
      assert.matches("^b%-alice%-eur: 3 new booked %(3 of them were pending%), 0 pending", out)
      local booked2 = lines(proc.read_all(into .. "/b-alice-eur.booked.ndjson"))
      assert.equal(#booked + 3, #booked2)
      for i = 1, #booked do assert.equal(booked[i], booked2[i]) end
      local seen = {}
      for _, l in ipairs(booked2) do
        local id = json.decode(l).transactionId
        assert.is_nil(seen[id], "duplicate " .. tostring(id))
        seen[id] = true
      end
      for _, l in ipairs(pending) do assert.is_true(seen[json.decode(l).transactionId]) end
      assert.equal("", proc.read_all(into .. "/b-alice-eur.pending.ndjson"))
      -- 3: the budget of 2 unattended reads is spent: nothing is sent
      local mark = #sb:access_log()
      rc, out, err = cli.run({ "sync", "b-alice-eur", "--into", into }, cron)
      assert.equal(75, rc)
      assert.equal("", out)
      assert.matches("^xs2a: b%-alice%-eur: not read: .*frequencyPerDay.* the next read is allowed after "
        .. "%d%d%d%d%-%d%d%-%d%dT00:00:00Z\n$", err)
      assert.equal(0, sent_since(mark, "/transactions"))
      assert.equal(#booked2, #lines(proc.read_all(into .. "/b-alice-eur.booked.ndjson")))
    end)
  end)

  describe("pay", function()
    it("initiates, authorises through the loopback and explains the final status", function()
      local file = dir .. "/payment.json"
      local f = assert(io.open(file, "w"))
      f:write((assert(json.encode{
        debtorAccount = { iban = "LT203500000010001101", currency = "EUR" },
        instructedAmount = { currency = "EUR", amount = "12.30" },
        creditorAccount = { iban = "LT023500000010002201" }, creditorName = "Bob",
        remittanceInformationUnstructured = "xs2a pay spec",
      })))
      f:close()
      local h = cli.start({ "pay", file }, env)
      local rc, out, err = h:authorise()
      assert.equal(0, rc, err)
      local id = out:match("^payment (%S+): ACSC %(settled: ")
      assert.is_string(id, out)
      assert.matches("initiated: RCVD %(received by the bank, not yet authorised by the payer%)", err)
      rc, out = cli.run({ "payment", "status", id, "--json" }, env)
      assert.equal(0, rc)
      local st = assert(json.decode(out))
      assert.equal("ACSC", st.transactionStatus)
      assert.matches("settled", st.meaning)
    end)

    it("sets up a standing order (periodic-payments) that ends accepted, and finds it again by id", function()
      local file = dir .. "/periodic.json"
      local f = assert(io.open(file, "w"))
      f:write((assert(json.encode{
        debtorAccount = { iban = "LT203500000010001101", currency = "EUR" },
        instructedAmount = { currency = "EUR", amount = "5.00" },
        creditorAccount = { iban = "LT023500000010002201" }, creditorName = "Bob",
        remittanceInformationUnstructured = "rent", frequency = "Monthly",
        startDate = os.date("!%Y-%m-%d", os.time() + 2 * 86400),
      })))
      f:close()
      local h = cli.start({ "pay", file, "--service", "periodic-payments" }, env)
      local rc, out, err = h:authorise()
      assert.equal(0, rc, err)
      local id = out:match("^payment (%S+): ACTC %(authorised and technically valid; not executed yet")
      assert.is_string(id, out)
      -- the service and product were kept in the store: no flags needed
      rc, out = cli.run({ "payment", "status", id }, env)
      assert.equal(0, rc)
      assert.matches("^payment " .. id:gsub("%p", "%%%0") .. ": ACTC ", out)
    end)

    it("explains a rejection with the bank's reason, and exits 1", function()
      local file = dir .. "/too-much.json"
      local f = assert(io.open(file, "w"))
      f:write((assert(json.encode{
        debtorAccount = { iban = "LT903500000010001102", currency = "EUR" },   -- Alice's pocket money
        instructedAmount = { currency = "EUR", amount = "99999.00" },
        creditorAccount = { iban = "LT023500000010002201" }, creditorName = "Bob",
      })))
      f:close()
      local h = cli.start({ "pay", file }, env)
      local rc, out, err = h:authorise()
      assert.equal(1, rc)
      assert.matches("^payment %S+: RJCT %(rejected by the bank; the payment will not be executed "
        .. "%(reason: Insufficient funds on the debtor account%.%)%)\n$", out)
      assert.matches("\nxs2a: [^\n]*RJCT\n$", err)
    end)

    it("refuses to pay without a QSealC, as a usage error", function()
      local no_seal = cli.env(sb, dir .. "/state", { XS2A_QSEAL_CERT = false, XS2A_QSEAL_KEY = false })
      local rc, _, err = cli.run({ "pay", dir .. "/payment.json" }, no_seal)
      assert.equal(2, rc)
      assert.matches("^xs2a: payments are signed", err)
    end)
  end)

  describe("configuration and usage", function()
    it("reads a config file, with flags over it, and refuses a passphrase in it", function()
      local conf = dir .. "/xs2a.conf"
      local f = assert(io.open(conf, "w"))
      f:write("# the sandbox\nbase_url = ", sb.base_url, "\nca-file = ", sb.pki, "/ca.pem\n",
        "qwac_cert = ", sb.pki, "/qwac.pem\nqwac_key = ", sb.pki, "/qwac.key\nstate_dir = ", dir, "/state\n")
      f:close()
      local bare = { LUA_PATH = env.LUA_PATH, LUA_CPATH = env.LUA_CPATH, XDG_CONFIG_HOME = dir .. "/none" }
      local rc, out, err = cli.run({ "--config", conf, "consent", "status" }, bare)
      assert.equal(0, rc, err)
      assert.matches(": valid ", out)
      rc, out, err = cli.run({ "--config", conf, "--base-url", "https://127.0.0.1:1", "consent", "status" }, bare)
      assert.equal(1, rc)
      assert.equal("", out)
      assert.matches("^xs2a: .*connect", err)
      f = assert(io.open(conf, "a"))
      f:write("qwac_passphrase = secret\n")
      f:close()
      rc, out, err = cli.run({ "--config", conf, "consent", "status" }, bare)
      assert.equal(2, rc)
      assert.equal("", out)
      assert.matches("passphrases come from the environment or a prompt", err, 1, true)
      assert.is_nil(err:find("secret", 1, true))
    end)

    it("takes an encrypted key's passphrase from the environment, never echoing it", function()
      local enc = cli.env(sb, dir .. "/state", { XS2A_QWAC_KEY = sb.pki .. "/qwac-enc.key" })
      -- no terminal to ask on and no variable: one line, exit 1
      local rc, out, err = cli.run({ "consent", "status" }, enc)
      assert.equal(1, rc)
      assert.equal("", out)
      assert.equal("xs2a: QWAC key is encrypted: set XS2A_QWAC_PASSPHRASE (no terminal to ask on)\n", err)
      enc.XS2A_QWAC_PASSPHRASE = "wrong-secret-words"
      rc, out, err = cli.run({ "consent", "status" }, enc)
      assert.equal(1, rc)
      assert.equal(1, #lines(err))
      assert.matches("^xs2a: QWAC: ", err)
      assert.is_nil((out .. err):find("wrong-secret-words", 1, true))
      enc.XS2A_QWAC_PASSPHRASE = "test-passphrase"
      rc, out, err = cli.run({ "consent", "status" }, enc)
      assert.equal(0, rc, err)
      assert.matches(": valid ", out)
      assert.is_nil((out .. err):find("test-passphrase", 1, true))
    end)

    it("takes everything from flags, and says what is missing", function()
      local bare = { LUA_PATH = env.LUA_PATH, LUA_CPATH = env.LUA_CPATH, XDG_CONFIG_HOME = dir .. "/none",
        XS2A_QWAC_CERT = false, XS2A_QWAC_KEY = false, XS2A_BASE_URL = false, XS2A_CA_FILE = false }
      local rc, out, err = cli.run({ "--base-url", sb.base_url, "--ca-file", sb.pki .. "/ca.pem",
        "--qwac", sb.pki .. "/qwac.pem", sb.pki .. "/qwac.key", "--state-dir", dir .. "/state",
        "--profile", "paysera-berlin", "consent", "status" }, bare)
      assert.equal(0, rc, err)
      assert.matches(": valid ", out)
      rc, out, err = cli.run({ "--base-url", sb.base_url, "consent", "status" }, bare)
      assert.equal(2, rc)
      assert.equal("", out)
      assert.matches("^xs2a: no QWAC: give %-%-qwac CERT KEY", err)
    end)

    it("has no passphrase flag, and answers usage errors with 2 and one line", function()
      local rc, _, err = cli.run({ "--qwac-passphrase", "x", "accounts" }, env)
      assert.equal(2, rc)
      assert.equal(1, #lines(err))
      rc, _, err = cli.run({ "frobnicate" }, env)
      assert.equal(2, rc)
      assert.equal("xs2a: unknown command 'frobnicate' (see xs2a --help)\n", err)
      rc, _, err = cli.run({ "consent", "create", "--frequency", "often" }, env)
      assert.equal(2, rc)
      assert.equal("xs2a: --frequency must be a whole number of reads per day (1 or more)\n", err)
      rc, _, err = cli.run({ "consent", "create", "--valid-until", "tomorrow" }, env)
      assert.equal(2, rc)
      assert.equal("xs2a: --valid-until must be YYYY-MM-DD\n", err)
    end)

    it("documents every command in --help", function()
      local rc, out = cli.run({ "--help" }, env)
      assert.equal(0, rc)
      for _, c in ipairs({ "cert", "consent", "accounts", "balances", "transactions", "sync", "pay", "payment" }) do
        assert.matches("\n   " .. c .. " ", out, 1, true)
      end
      assert.matches("Exit status: 0 success, 1 bank or runtime error", out, 1, true)
      local _, tx = cli.run({ "transactions", "--help" }, env)
      assert.matches("CSV columns, in order: status", tx, 1, true)
      local _, sync = cli.run({ "sync", "--help" }, env)
      assert.matches("exits 75", sync, 1, true)
    end)

    it("deletes the consent, and then reads fail with the bank's answer", function()
      local rc, out = cli.run({ "consent", "delete", consent_id }, env)
      assert.equal(0, rc)
      assert.equal("consent " .. consent_id .. ": deleted (terminatedByTpp)\n", out)
      local rc2, _, err = cli.run({ "accounts", "--consent", consent_id }, env)
      assert.equal(1, rc2)
      assert.equal(1, #lines(err))
    end)
  end)
end)
