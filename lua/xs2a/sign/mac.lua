--- Paysera MAC access authentication (OAuth 2.0 MAC Tokens draft,
-- hmac-sha-256): `Authorization: MAC id, ts, nonce, mac, ext="body_hash=..."`.
-- The MAC key lives in a closure that `tostring` and table walks cannot reach.
-- @module xs2a.sign.mac
local core = require "xs2a.core"
local url = require "xs2a.net.url"
local headers_mod = require "xs2a.net.headers"
local common = require "xs2a.sign.common"

local type, pairs, ipairs, tostring, error, setmetatable = type, pairs, ipairs, tostring, error, setmetatable
local str_upper, str_format, str_match, str_sub, str_byte = string.upper, string.format, string.match,
  string.sub, string.byte
local tconcat, tsort = table.concat, table.sort
local os_time = os.time
local b64encode, digest = core.b64encode, core.digest
local header_set = headers_mod.set
local check_req = common.check_req
local urlencode = url.escape

local _M = {}

local NONCE_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

local function random_nonce()
  local bytes = core.random(32)
  local out = {}
  for i = 1, 32 do
    -- 62 symbols: rejection-free mapping would bias; 256 % 62 bias is tiny
    -- but avoidable, so draw again for the top values
    local b = str_byte(bytes, i)
    while b >= 248 do b = str_byte(core.random(1)) end
    local j = b % 62 + 1
    out[i] = str_sub(NONCE_CHARS, j, j)
  end
  return tconcat(out)
end

local mac_mt = {}
mac_mt.__index = mac_mt
mac_mt.__tostring = function(self) return "xs2a.sign.mac (id=" .. self.id .. ")" end
mac_mt.__metatable = false

--- Paysera MAC signer (OAuth 2.0 MAC Tokens draft, hmac-sha-256).
-- @tparam table opts `id` (MAC id / client id), `key` (MAC key, secret),
--  `now` (function -> epoch seconds), `nonce` (function -> nonce string),
--  `ext` (table of extra ext parameters, encoded after body_hash).
-- @return signer with `signer:sign(req)` adding `Authorization`
function _M.new(opts)
  if type(opts) ~= "table" then error("sign.mac: options table needed", 2) end
  if type(opts.id) ~= "string" or opts.id == "" then error("sign.mac: id must be a non-empty string", 2) end
  if type(opts.key) ~= "string" or opts.key == "" then error("sign.mac: key must be a non-empty string", 2) end
  local key = opts.key                       -- only this closure sees it
  local now, nonce_fn = opts.now or os_time, opts.nonce or random_nonce
  local extra = {}
  if opts.ext then
    for k, v in pairs(opts.ext) do extra[#extra + 1] = { tostring(k), tostring(v) } end
    tsort(extra, function(x, y) return x[1] < y[1] end)
  end
  local id = opts.id
  local function mac(normalized)
    return b64encode(core.hmac("sha256", key, normalized))
  end
  local self = { id = id }
  -- scrubs the key from a text (the bank knows it and might echo it)
  function self.scrub(_, text)
    if type(text) ~= "string" then return text end
    local a, b = text:find(key, 1, true)
    while a do
      text = text:sub(1, a - 1) .. "[redacted]" .. text:sub(b + 1)
      a, b = text:find(key, a + 10, true)
    end
    return text
  end
  function self.sign(_, req)
    check_req(req)
    local u = url.parse(req.url)
    if not u then return nil, "sign.mac: request url is not absolute" end
    local host, port, target = u.ipv6 and ("[" .. u.host .. "]") or u.host, u.port, u.target
    local ext = {}
    if req.body and req.body ~= "" then
      ext[1] = "body_hash=" .. urlencode(b64encode(digest("sha256", req.body)))
    end
    for _, kv in ipairs(extra) do ext[#ext + 1] = urlencode(kv[1]) .. "=" .. urlencode(kv[2]) end
    ext = tconcat(ext, "&")
    local ts = str_format("%d", now())
    local nonce = tostring(nonce_fn())
    if str_match(nonce, '["\\%c]') or nonce == "" then return nil, "sign.mac: invalid nonce" end
    local normalized = ts .. "\n" .. nonce .. "\n" .. str_upper(req.method or "GET") .. "\n" ..
      target .. "\n" .. host .. "\n" .. port .. "\n" .. ext .. "\n"
    local value = str_format('MAC id="%s", ts="%s", nonce="%s", mac="%s"', id, ts, nonce, mac(normalized))
    if ext ~= "" then value = value .. ', ext="' .. ext .. '"' end
    header_set(req.headers, "Authorization", value)
    return req
  end
  return setmetatable(self, mac_mt)
end

return _M
