-- Pure-Lua parts of the sandbox bank, outside nginx: amounts, standing-order
-- schedules, query/form helpers, HTML escaping and the PSU browser's form parser.
local helper = require "helper"
local psu = require "support.psu"

local saved = package.path
package.path = helper.root .. "/sandbox/lua/?.lua;" .. helper.root .. "/sandbox/lua/?/init.lua;" .. package.path
local common = require "sandbox.bank.common"
local payments = require "sandbox.bank.payments"
local pages = require "sandbox.bank.pages"
package.path = saved

describe("sandbox bank helpers", function()
  describe("amounts", function()
    it("parses BG amounts exactly and formats them back", function()
      local cases = { { "1", 1000, "1.00" }, { "1.5", 1500, "1.50" }, { "0.10", 100, "0.10" },
        { "1.005", 1005, "1.005" }, { "-3.2", -3200, "-3.20" }, { "00012.340", 12340, "12.34" },
        { "999999999999.999", 999999999999999, "999999999999.999" } }
      for _, c in ipairs(cases) do
        assert.equal(c[2], common.parse_amount(c[1]), c[1])
        assert.equal(c[3], common.format_amount(c[2]), c[1])
      end
    end)

    it("rejects what the BG pattern rejects", function()
      for _, s in ipairs({ "1.", ".5", "1,00", "1e5", "", "1.2345", "123456789012345", " 1", "0x10",
          "1000000000000" }) do
        assert.is_nil(common.parse_amount(s), s)
      end
      assert.is_nil(common.parse_amount(5))
      assert.is_nil(common.parse_amount(nil))
    end)
  end)

  describe("standing-order schedule", function()
    local function dates(b, n) return payments.schedule(b, n or 6) end

    it("keeps the day of month, clamps to month ends and moves weekends", function()
      -- 2026-01-31 is a Saturday, 2026-02-28 a Saturday, 2026-05-31 a Sunday
      assert.same({ "2026-02-02", "2026-03-02", "2026-03-31", "2026-04-30", "2026-06-01", "2026-06-30" },
        dates({ startDate = "2026-01-31", frequency = "Monthly" }))
      assert.same({ "2026-01-30", "2026-02-27", "2026-03-31" },
        dates({ startDate = "2026-01-31", frequency = "Monthly", executionRule = "preceding" }, 3))
    end)

    it("steps by days, honours endDate and MonthlyVariable months", function()
      assert.same({ "2026-11-25", "2026-12-09", "2026-12-23" },
        dates({ startDate = "2026-11-25", frequency = "EveryTwoWeeks", endDate = "2027-01-01" }))
      assert.same({ "2027-02-25", "2027-08-25", "2028-02-25" },
        dates({ startDate = "2026-11-25", frequency = "MonthlyVariable", monthsOfExecution = { "2", "8" } }, 3))
      assert.same({ "2026-11-30", "2027-11-30" },
        dates({ startDate = "2026-11-25", frequency = "Annual", dayOfExecution = "30" }, 2))
      assert.same({}, dates({ startDate = "2026-11-25", frequency = "Sometimes" }))
    end)
  end)

  describe("queries and forms", function()
    it("encodes queries in a stable order and appends to URLs with or without a query", function()
      assert.equal("a=1&b=x%20y&c=%26", common.query({ c = "&", a = 1, b = "x y" }))
      assert.equal("https://t.example/cb?code=c1&state=s",
        common.add_query("https://t.example/cb", { code = "c1", state = "s" }))
      assert.equal("https://t.example/cb?x=1&error=access_denied",
        common.add_query("https://t.example/cb?x=1", { error = "access_denied" }))
    end)

    it("decodes form bodies", function()
      assert.same({ a = "1 2", b = "x&y", c = "" }, common.form("a=1+2&b=x%26y&c=&a=ignored"))
      assert.same({}, common.form(nil))
    end)
  end)

  describe("pages", function()
    it("escapes everything it prints and the PSU browser reads it back", function()
      local _, html, headers = pages.authorise_form({ title = "T", lines = { "<b>x</b>" }, action = "/a?x=1&y=2",
        hidden = { state = '"><script>alert(1)</script>' }, error = "bad & worse", username = "al<i>ce" })
      assert.equal("text/html; charset=utf-8", headers["Content-Type"])
      assert.not_matches("<script>", html)
      assert.not_matches("<b>x", html)
      local form = psu.parse_form(html)
      assert.equal("/a?x=1&y=2", form.action)
      assert.equal("POST", form.method)
      assert.equal('"><script>alert(1)</script>', form.fields.state)
      assert.equal("bad & worse", psu.page_error(html))
      assert.equal("https://h:1/x/a?b", psu.resolve("https://h:1/x/page?q", "a?b"))
      assert.equal("https://h:1/abs", psu.resolve("https://h:1/x/page", "/abs"))
    end)
  end)
end)
