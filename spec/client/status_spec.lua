-- xs2a.status: the words for a status, and one list of final payment
-- statuses shared with the payment resources' polling.
local status = require "xs2a.status"
local payment = require "xs2a.api.payment"

describe("xs2a.status", function()
  it("calls a payment final exactly when the payment resources stop polling", function()
    for _, code in ipairs({ "RCVD", "PATC", "ACTC", "ACCP", "ACFC", "ACWC", "ACWP", "ACSP", "ACSC", "ACCC",
        "PDNG", "PART", "RJCT", "CANC", "XXXX" }) do
      assert.equal(payment.FINAL[code] == true, status.final(code), code)
    end
    assert.is_true(status.final("ACSC"))
    assert.is_false(status.final("PART"))   -- partially accepted: more may follow
  end)

  it("puts statuses in words, with the bank's reason for a rejection", function()
    assert.matches("debited", status.payment("ACSC"))
    assert.matches("reason: no funds", status.payment("RJCT", "no funds"), 1, true)
    assert.equal("unknown status XXXX", status.payment("XXXX"))
    assert.matches("accounts may be read", status.consent("valid"))
  end)
end)
