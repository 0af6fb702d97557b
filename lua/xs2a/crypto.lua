--- Cryptographic primitives for OAuth and signing, all backed by OpenSSL
-- (randomness from its CSPRNG).
-- @module xs2a.crypto
local core = require "xs2a.core"

local _M = {}

local str_sub, str_format = string.sub, string.format
local b64url_encode = core.b64url_encode
local random = core.random
local digest = core.digest

--- `n` random bytes from OpenSSL's CSPRNG.
-- @function random
_M.random = random

--- A random RFC 4122 version 4 UUID, lowercase.
-- @treturn string
function _M.uuid()
  return core.uuid4()
end

--- Standard base64 with padding.
-- @function b64encode
_M.b64encode = core.b64encode
--- Strict standard base64 decoding.
-- @treturn string|nil the bytes
-- @treturn string error for bad input
-- @function b64decode
_M.b64decode = core.b64decode
--- base64url without padding (RFC 4648 §5).
-- @function b64url_encode
_M.b64url_encode = b64url_encode
--- Strict base64url decoding (no padding).
-- @treturn string|nil the bytes
-- @treturn string error for bad input
-- @function b64url_decode
_M.b64url_decode = core.b64url_decode
--- Constant-time string comparison (different lengths compare unequal).
-- @function ct_equal
_M.ct_equal = core.ct_equal
--- Lowercase hex of a byte string.
-- @function hex
_M.hex = core.hex

--- Raw digest: `alg` is "sha1", "sha256", "sha384" or "sha512".
-- @function digest
_M.digest = digest
--- Raw HMAC: `hmac(alg, key, data)`.
-- @function hmac
_M.hmac = core.hmac

--- Raw SHA-256 of `s`.
function _M.sha256(s) return digest("sha256", s) end
--- Raw SHA-512 of `s`.
function _M.sha512(s) return digest("sha512", s) end
--- Lowercase hex SHA-256 of `s`.
function _M.sha256_hex(s) return core.hex(digest("sha256", s)) end

--- A random URL-safe token of `bytes` random bytes (default 32), base64url.
-- @tparam[opt=32] integer bytes
-- @treturn string
function _M.token(bytes)
  bytes = bytes or 32
  if type(bytes) ~= "number" or bytes < 1 or bytes > 1024 then
    error("token size must be 1..1024 bytes", 2)
  end
  return b64url_encode(random(bytes))
end

--- A random OAuth `state` (URL-safe, 256 bits).
-- @treturn string
function _M.state()
  return b64url_encode(random(32))
end

--- A random nonce (URL-safe, 128 bits).
-- @treturn string
function _M.nonce()
  return b64url_encode(random(16))
end

--- The S256 PKCE challenge of a verifier (RFC 7636 §4.2).
-- @tparam string verifier
-- @treturn string challenge
function _M.pkce_challenge(verifier)
  return b64url_encode(digest("sha256", verifier))
end

--- A PKCE pair (RFC 7636): a verifier of `len` unreserved characters
-- (43..128, default 64) and its S256 challenge.
-- @tparam[opt=64] integer len
-- @treturn string verifier
-- @treturn string challenge
-- @treturn string method, always "S256"
function _M.pkce(len)
  len = len or 64
  if type(len) ~= "number" or len < 43 or len > 128 or len % 1 ~= 0 then
    error("PKCE verifier length must be an integer in 43..128", 2)
  end
  -- base64url characters are a subset of RFC 7636's unreserved set
  local bytes = math.floor((len * 3 + 3) / 4)
  local verifier = str_sub(b64url_encode(random(bytes)), 1, len)
  return verifier, _M.pkce_challenge(verifier), "S256"
end

--- Formats raw bytes as an RFC 3230 digest header value, e.g. `SHA-256=...`.
-- @tparam string alg "SHA-256", "SHA-384" or "SHA-512"
-- @tparam string body
-- @treturn string
function _M.digest_header(alg, body)
  local name = alg == "SHA-512" and "sha512" or alg == "SHA-384" and "sha384"
    or alg == "SHA-256" and "sha256"
  if not name then error(str_format("unsupported digest %q", tostring(alg)), 2) end
  return alg .. "=" .. core.b64encode(digest(name, body or ""))
end

return _M
