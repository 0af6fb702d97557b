--- TPP identities: an eIDAS certificate (QWAC or QSealC) with its private key.
--
--     local identity = require "xs2a.identity"
--     local qwac = assert(identity{ cert = "qwac.pem", key = "qwac.key" })
--     local qseal = assert(identity.new{ p12 = "qseal.p12", passphrase = pass })
--
-- The key lives inside OpenSSL, or inside a PKCS#11 token (an HSM):
--
--     local qseal = assert(identity{ cert = "qseal.pem",
--       key = "pkcs11:token=tpp;object=qseal;type=private", pin_env = "TPP_PIN" })
--
-- `tostring(id)` shows the subject and key type only. Close with `id:close()`
-- (or let a `<close>` variable / the GC do it). No method returns the private
-- key as bytes.
-- @module xs2a.identity
local core = require "xs2a.core"

local _M = {}

--- Loads an identity.
-- @tparam table opts `{ cert = path_or_pem_or_der, key = path_or_pem_or_der,
--   passphrase = string }` or `{ p12 = path_or_der, passphrase = string }`, or a
--   key in a PKCS#11 token: `{ cert = path_or_pem_or_der or "pkcs11:...;type=cert",
--   key = "pkcs11:token=...;object=...;type=private", pin = string or function()
--   returning it, or pin_env = "VARIABLE", module = "/path/to/module.so" }`
--   (module default: p11-kit-proxy). The PIN is wiped after login and never
--   part of the URI. Open a token identity in the process that uses it (after
--   fork: in nginx, in init_worker_by_lua); elsewhere it refuses to work.
-- @treturn Identity|nil the identity
-- @treturn string error naming the cause (unreadable file, wrong passphrase or
--   PIN, key does not match certificate, unsupported key, not PEM/DER, token or
--   key not found, engine or module missing)
-- @treturn string a stable code: "io", "passphrase", "mismatch", "unsupported",
--   "parse", "not_found", "config"
function _M.new(opts)
  if type(opts) ~= "table" then error("identity options must be a table", 2) end
  return core.identity(opts)
end

--- Facts of a certificate without a key (same table as `identity:info()`).
-- @tparam string pem_or_der
-- @treturn table|nil info
-- @treturn string error
function _M.cert_info(pem_or_der)
  if type(pem_or_der) ~= "string" then error("certificate must be a string", 2) end
  return core.cert_info(pem_or_der)
end

--- True when `v` is an identity (open or closed).
function _M.is_identity(v)
  if type(v) ~= "userdata" then return false end
  local mt = getmetatable(v)
  return type(mt) == "table" and mt.__name == "xs2a.Identity"
end

--- An identity: a certificate with its private key, held by the C core.
-- @type Identity

--- The facts of the certificate.
-- @treturn table `{ subject, issuer, serial, common_name, not_before, not_after
--   (epoch seconds UTC), expired, organization_identifier, roles (list, from the
--   PSD2 QCStatement's role OIDs), nca_name, nca_id, key_type, key_bits,
--   fingerprint (SHA-256 hex of the DER) }`
-- @function Identity:info

--- Signs `data` with the private key.
-- @tparam string data
-- @tparam[opt] table opts `{ hash = "sha256"|"sha384"|"sha512", padding = "pss"|"pkcs1",
--   ec_format = "raw"|"der" }`
-- @treturn string|nil the signature
-- @treturn string error
-- @function Identity:sign

--- The certificate as PEM.
-- @treturn string
-- @function Identity:cert_pem

--- The certificate as DER.
-- @treturn string
-- @function Identity:cert_der

--- The extra certificates (the chain after the leaf) as a list of DER strings.
-- @treturn table
-- @function Identity:chain_der

--- Wipes the key and frees the identity (also done by the GC and `<close>`).
-- @function Identity:close

return setmetatable(_M, { __call = function(_, opts) return _M.new(opts) end })
