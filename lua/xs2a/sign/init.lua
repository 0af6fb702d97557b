--- Request signing and signature checks, one module per scheme:
-- `xs2a.sign.berlin` (cavage HTTP Signatures with a QSealC), `xs2a.sign.jws`
-- (the Georgian detached JWS), `xs2a.sign.mac` (Paysera's MAC access
-- authentication) and `xs2a.sign.verify`.
--
--     local sign = require "xs2a.sign"
--     local signer = sign.berlin(qseal)          -- qseal: an xs2a.identity
--     signer:sign{ method = "POST", url = url, headers = headers, body = body }
--     -- headers now carry Digest, Signature and TPP-Signature-Certificate
-- @module xs2a.sign
local berlin = require "xs2a.sign.berlin"
local jws = require "xs2a.sign.jws"
local mac = require "xs2a.sign.mac"
local verify = require "xs2a.sign.verify"
local common = require "xs2a.sign.common"
local headers = require "xs2a.net.headers"

return {
  berlin = berlin.new,
  jws = jws.new,
  mac = mac.new,
  verify_berlin = verify.verify_berlin,
  verify_jws = verify.verify_jws,
  parse_signature_header = verify.parse_signature_header,
  check_digest = common.check_digest,
  header_get = headers.value,
  header_set = headers.set,
}
