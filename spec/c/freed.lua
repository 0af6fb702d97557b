-- Run by spec/c/freed (spec/c/run builds it): what the C side of a request
-- leaves in freed memory. A marker stands for a secret: it goes out as a
-- bearer token and a PSU-ID header, in a form body (as a refresh token
-- does), and comes back in an answer's header and JSON body (as a token
-- endpoint's answer does). Over HTTP/1.1 and HTTP/2, on a reused and on a
-- fresh connection, no block the core, libcurl or OpenSSL gives back may
-- still hold it (nghttp2's copies of HTTP/2 header fields are the known
-- exception, counted apart). The same for private keys and passphrases,
-- from loading an identity to closing it, for a MAC key, and for a token
-- in the file store. The Lua strings themselves are not read (see
-- freed.c). Prints one line per case and "freed: ok"; raises on a failure.
-- luacheck: globals freed
package.path = "./lua/?.lua;./lua/?/init.lua;./spec/?.lua;" .. package.path
package.cpath = "./build/lua5.4/?.so;" .. package.cpath
local helper = require "helper"
local core = require "xs2a.core"
local tlsserver = require "support.tlsserver"

-- the control: a block freed with the marker in it is counted
local control = "control-" .. core.hex(core.random(12))
freed.scan(control)
freed.leak("before " .. control .. " after")
local _, found = freed.counts()
freed.scan(nil)
assert(found == 1, "the control block was not counted (" .. found .. ")")
print("control: a freed block holding the marker is counted")

assert(core.curl_wipes_memory == true, "libcurl does not use the core's wiping free()")

-- Ends a case: collects, stops counting, prints what was read and found,
-- and fails when a block still held the marker (`allowed` of them may be
-- nghttp2's, counted apart). Returns the counts.
local function finish(what, allowed)
  collectgarbage()
  collectgarbage()
  local read, held, by_nghttp2 = freed.counts()
  freed.scan(nil)
  print(("%s: %d freed blocks read, %d held the marker%s"):format(what, read, held,
    allowed and (" (%d of them given back by nghttp2)"):format(by_nghttp2) or ""))
  local left = held - (allowed and by_nghttp2 or 0)
  assert(left == 0, ("%s: %d freed blocks still held the marker"):format(what, left))
  return read, held, by_nghttp2
end

local srv   -- the loopback HTTPS server, started just before the cases that need it
local qwac = assert(core.identity{ cert = helper.pki("qwac.pem"), key = helper.pki("qwac.key") })

local function case(http2)
  local m = "secret-" .. core.hex(core.random(16))
  freed.scan(m)
  local s = assert(core.http_session{ identity = qwac, ca_file = helper.pki("ca.pem"), http2 = http2 })
  for _ = 1, 2 do   -- the second GET rides on the kept connection
    local res = assert(s:request{ url = srv.url .. "/echo",
      headers = { Authorization = "Bearer " .. m, ["PSU-ID"] = m } })
    assert(res.status == 200 and res.body:find(m, 1, true), "the echo lacks the marker")
  end
  local res = assert(s:request{ method = "POST", url = srv.url .. "/echo", idempotent = false,
    headers = { ["Content-Type"] = "application/x-www-form-urlencoded" },
    body = "grant_type=refresh_token&refresh_token=" .. m })
  assert(res.status == 200 and res.body:find(m, 1, true), "the echo lacks the form body")
  res = assert(s:request{ url = srv.url .. "/marked?marker=" .. m })
  assert(res.status == 200 and res.headers["x-marked"] == m and res.body:find(m, 1, true))
  local version = res.http_version
  res = nil   -- luacheck: ignore
  s:close()
  -- nghttp2 copies HTTP/2 header fields with the C library's own malloc and
  -- free, which libcurl gives no way to replace (README, "Secrets in freed
  -- memory"; the client option http2 = false avoids it): those copies are
  -- the one known exception, and only over HTTP/2
  local read, _, by_nghttp2 = finish("HTTP/" .. version, true)
  assert(read > 100, "too few blocks read: is free() ours?")
  assert(http2 or by_nghttp2 == 0)
end

-- keys and passphrases: a line from the middle of a private key's PEM text
-- (the file is read in C) through loading, Berlin signatures and close;
-- a passphrase through an encrypted PEM key, a PKCS#12 file and a refusal
local function key_case(what, marker, opts, signs)
  freed.scan(marker)
  local id, ierr = core.identity(opts)
  if signs then
    assert(id, ierr)
    local signer = require("xs2a.sign").berlin(id)
    local req = { method = "POST", url = "https://bank.example/v1/payments/sepa-credit-transfers",
      headers = { ["X-Request-ID"] = "r-1" }, body = "{}" }
    for _ = 1, 3 do assert(signer:sign(req)) end
  end
  if id then id:close() end
  id = nil   -- luacheck: ignore
  assert(finish(what) > 100, what .. ": too few blocks read")
end

local function pem_line(path)
  local lines = {}
  for l in io.lines(path) do
    if #l == 64 then lines[#lines + 1] = l end
  end
  return assert(lines[#lines // 2], "no 64-character line in " .. path)
end

local PASS = "test-passphrase"   -- sandbox/bin/mkpki's
for _, k in ipairs{ "qseal", "qseal-ec" } do
  key_case(k .. " key (PEM line)", pem_line(helper.pki(k .. ".key")),
    { cert = helper.pki(k .. ".pem"), key = helper.pki(k .. ".key") }, true)
end
key_case("encrypted PEM key (passphrase)", PASS,
  { cert = helper.pki("qwac.pem"), key = helper.pki("qwac-enc.key"), passphrase = PASS }, true)
key_case("PKCS12 file (passphrase)", PASS, { p12 = helper.pki("qwac.p12"), passphrase = PASS }, true)
key_case("a wrong passphrase", "wrong-" .. PASS,
  { cert = helper.pki("qwac.pem"), key = helper.pki("qwac-enc.key"), passphrase = "wrong-" .. PASS }, false)

-- a MAC key (Paysera's MAC scheme) through HMAC-SHA256, and a secret
-- through the encoders and the digest the signers and PKCE use
do
  local key = "mac-key-" .. core.hex(core.random(16))
  freed.scan(key)
  for _ = 1, 5 do
    core.hmac("sha256", key, "1700000000\nnonce\nPOST\n/v1/payments\nbank.example\n443\n\n")
    core.b64encode(key)
    core.b64url_encode(key)
    core.digest("sha256", key)
  end
  finish("MAC key and encoders")
end

-- a token kept in the file store: written, read back, counted, deleted
do
  local dir = os.tmpname()
  os.remove(dir)
  local token = "token-" .. core.hex(core.random(16))
  freed.scan(token)
  local fstore = assert(require("xs2a.store.file").new(dir))
  assert(fstore:set("tok", token, 60))
  for _ = 1, 3 do assert(fstore:get("tok") == token) end
  fstore:delete("tok")
  fstore = nil   -- luacheck: ignore
  local ok, err = pcall(finish, "file store")
  for _, name in ipairs(core.fs_list(dir) or {}) do os.remove(dir .. "/" .. name) end
  os.remove(dir)
  assert(ok, err)
end

-- the client certificate given as cert_file/key_file paths: the session
-- parses them once (libcurl would have OpenSSL read the key file through a
-- stdio buffer for every connection); two payment-like POSTs, each on a
-- fresh connection
local function key_file_case()
  local marker = pem_line(helper.pki("qwac.key"))
  freed.scan(marker)
  local s = assert(core.http_session{ cert_file = helper.pki("qwac.pem"), key_file = helper.pki("qwac.key"),
    ca_file = helper.pki("ca.pem"), http2 = false })
  for _ = 1, 2 do
    assert(assert(s:request{ method = "POST", url = srv.url .. "/echo", body = "{}", idempotent = false }).status
      == 200)
  end
  s:close()
  finish("cert_file/key_file session")
end

srv = tlsserver.start{ verify_client = true }
local ok, err = pcall(function()
  key_file_case()
  case(false)
  case(true)
end)
srv:stop()
qwac:close()
assert(ok, err)
print("freed: ok")
