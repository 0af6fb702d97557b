--- Payment and consent statuses in words, for people: the `xs2a` command
-- and the example TPP app show them next to the bank's code.
--
--     local status = require "xs2a.status"
--     print(status.payment("ACSC"))   --> settled: the payer's account has been debited ...
--
-- Payment codes are ISO 20022 ExternalPaymentTransactionStatus1Code as the
-- Berlin Group uses them; consent statuses are the Berlin Group's.
-- @module xs2a.status
local tables = require "xs2a.tables"

local _M = {}

local PAYMENT = {
  RCVD = "received by the bank, not yet authorised by the payer",
  PATC = "authorised by some of the required signers; more authorisations are needed",
  ACTC = "authorised and technically valid; not executed yet (a future date, or waiting for execution)",
  ACCP = "accepted: technical and customer profile checks passed",
  ACFC = "accepted: the funds were checked and are available",
  ACWC = "accepted with a change (for example a different execution date)",
  ACWP = "accepted, but not posted to the payer's account yet",
  ACSP = "accepted: settlement is in progress",
  ACSC = "settled: the payer's account has been debited (settlement completed)",
  ACCC = "settled on the creditor's account",
  PDNG = "pending: the bank has not decided yet",
  PART = "partially accepted: some payments of the batch were rejected",
  RJCT = "rejected by the bank; the payment will not be executed",
  CANC = "cancelled; the payment will not be executed",
}

-- The payment statuses after which the bank changes nothing any more: the
-- one list, also the one payment resources poll to (`xs2a.api.payment`).
local PAYMENT_FINAL = tables.set({ "RJCT", "CANC", "ACSC", "ACCC" })
_M.PAYMENT_FINAL = PAYMENT_FINAL

--- True when a payment in status `code` will not change any more.
-- @tparam string code an ISO 20022 status such as "ACSC"
-- @treturn boolean
function _M.final(code)
  return PAYMENT_FINAL[code] == true
end

--- A payment status (`transactionStatus`) in words.
-- @tparam string code an ISO 20022 status such as "ACSC"
-- @tparam[opt] string reason the bank's reason text or code, added for RJCT
-- @treturn string the meaning ("unknown status CODE" for a code we do not know)
function _M.payment(code, reason)
  local text = PAYMENT[code] or ("unknown status " .. tostring(code))
  if code == "RJCT" and reason and reason ~= "" then text = text .. " (reason: " .. reason .. ")" end
  return text
end

local CONSENT = {
  received = "received by the bank, not yet authorised by the account holder",
  partiallyAuthorised = "authorised by some of the required account holders; more are needed",
  valid = "valid: accounts may be read",
  rejected = "rejected: the account holder or the bank refused it",
  revokedByPsu = "revoked by the account holder",
  expired = "expired",
  terminatedByTpp = "ended by us (the TPP deleted it)",
}

--- A consent status (`consentStatus`) in words.
-- @tparam string code such as "valid"
-- @treturn string
function _M.consent(code)
  return CONSENT[code] or ("unknown status " .. tostring(code))
end

return _M
