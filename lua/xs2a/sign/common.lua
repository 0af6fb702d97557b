--- What the signature schemes share: digests, argument checks, the request
-- target of a URL.
-- @module xs2a.sign.common
local core = require "xs2a.core"
local url = require "xs2a.net.url"

local type, pcall, error = type, pcall, error
local str_match, str_upper = string.match, string.upper
local b64encode, b64decode = core.b64encode, core.b64decode
local digest, ct_equal = core.digest, core.ct_equal

local _M = {}

local DIGESTS = { ["SHA-256"] = "sha256", ["SHA-384"] = "sha384", ["SHA-512"] = "sha512" }

local function digest_value(alg, body)
  return alg .. "=" .. b64encode(digest(DIGESTS[alg], body or ""))
end

local function check_digest(value, body)
  if type(value) ~= "string" then return false, "digest header missing" end
  local alg, b64 = str_match(value, "^%s*([%w%-]+)=(%S+)%s*$")
  local name = alg and DIGESTS[str_upper(alg)]
  if not name then return false, "digest algorithm not supported" end
  local want = b64decode(b64)
  if not want then return false, "digest is not base64" end
  if not ct_equal(want, digest(name, body or "")) then
    return false, "digest does not match the body"
  end
  return true
end
--- Checks a `Digest` header value against the body (constant time).
-- @tparam string value the header value, e.g. "SHA-256=..."
-- @tparam[opt] string body
-- @return true, or false and the reason
-- @function check_digest
_M.check_digest = check_digest

local function check_identity(id, who)
  if type(id) ~= "userdata" then error(who .. ": an xs2a identity (QSealC) is needed", 3) end
  local ok, info = pcall(id.info, id)
  if not ok then error(who .. ": the identity is closed", 3) end
  return info
end

local function check_req(req)
  if type(req) ~= "table" then error("sign: request must be a table", 3) end
  if req.headers == nil then req.headers = {} end
  if type(req.headers) ~= "table" then error("sign: request headers must be a table", 3) end
  if req.body ~= nil and type(req.body) ~= "string" then
    error("sign: request body must be a string", 3)
  end
end

_M.DIGESTS = DIGESTS
_M.digest_value = digest_value
_M.check_identity = check_identity
_M.check_req = check_req

--- The request target (`/path?query`) of an absolute URL, or nil.
function _M.target_of(u)
  local p = url.parse(u)
  return p and p.target
end

--- The Host header value of an absolute URL (port only when not the default), or nil.
function _M.host_of(u)
  local p = url.parse(u)
  return p and p.host_header
end

return _M
