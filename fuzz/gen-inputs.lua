-- Writes the seed corpus and the fixed "nasty" inputs of the fuzz targets
-- from a test PKI made by sandbox/bin/mkpki:
--   lua5.4 fuzz/gen-inputs.lua build/pki build/fuzz
-- -> build/fuzz/seeds/<target>/* (valid inputs the fuzzers start from) and
--    build/fuzz/nasty/<target>/* (malformed inputs replayed by spec/c/run).
-- Generated at run time because some inputs carry the test private keys,
-- which are never committed.
local pki, out = arg[1], arg[2]
assert(pki and out, "usage: lua5.4 fuzz/gen-inputs.lua PKI_DIR OUT_DIR")

local function read(p)
  local f = assert(io.open(p, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function sh(cmd)
  local p = assert(io.popen(cmd, "r"))
  local s = p:read("a")
  assert(p:close(), cmd)
  return s
end

local function quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function der_of(pem_path)
  return sh("openssl x509 -outform DER -in " .. quote(pem_path))
end

local function key_der_of(key_path)
  return sh("openssl pkey -outform DER -in " .. quote(key_path))
end

local counters = {}
local function put(kind, target, name, data)
  local dir = out .. "/" .. kind .. "/" .. target
  if not counters[dir] then
    assert(os.execute("mkdir -p " .. quote(dir)))
    counters[dir] = 0
  end
  counters[dir] = counters[dir] + 1
  local f = assert(io.open(string.format("%s/%03d-%s", dir, counters[dir], name), "wb"))
  f:write(data)
  f:close()
end

local function be16(n) return string.char((n >> 8) & 255, n & 255) end

-- DER header with a given tag and length
local function tlv(tag, len)
  if len < 128 then return string.char(tag, len) end
  local bytes = {}
  while len > 0 do table.insert(bytes, 1, string.char(len & 255)) len = len >> 8 end
  return string.char(tag, 0x80 | #bytes) .. table.concat(bytes)
end

local certs = { "ca", "server", "qwac", "qseal", "qseal-ec", "qwac-ai", "qwac-expired", "qwac-foreign",
  "foreign-ca", "aspsp-seal" }
local qwac_der = der_of(pki .. "/qwac.pem")

---------------------------------------------------------------- cert
for _, c in ipairs(certs) do
  put("seeds", "cert", c .. ".pem", read(pki .. "/" .. c .. ".pem"))
  put("seeds", "cert", c .. ".der", der_of(pki .. "/" .. c .. ".pem"))
end
put("seeds", "cert", "pubkey.pem", sh("openssl x509 -noout -pubkey -in " .. quote(pki .. "/qseal.pem")))

for _, n in ipairs({ 0, 1, 2, 3, 4, 10, 100, #qwac_der // 2, #qwac_der - 1 }) do
  put("nasty", "cert", "truncated-" .. n, qwac_der:sub(1, n))
end
put("nasty", "cert", "huge-length-4", "\x30\x84\xff\xff\xff\xff" .. qwac_der:sub(5))
put("nasty", "cert", "huge-length-8", "\x30\x88\xff\xff\xff\xff\xff\xff\xff\xff\x02\x01\x01")
put("nasty", "cert", "length-of-length-127", "\x30\xff" .. string.rep("\xff", 127))
put("nasty", "cert", "indefinite-nested", string.rep("\x30\x80", 5000))
put("nasty", "cert", "definite-nested", (function()
  local s = "\x05\x00"
  for _ = 1, 2000 do s = tlv(0x30, #s) .. s end
  return s
end)())
put("nasty", "cert", "inner-length-too-long", "\x30\x82" .. be16(#qwac_der - 4) .. "\x30\x84\x7f\xff\xff\xff"
  .. qwac_der:sub(11))
for i = 40, #qwac_der, math.max(1, #qwac_der // 24) do     -- one flipped byte at a time, DER and PEM
  local bad = qwac_der:sub(1, i - 1) .. string.char(qwac_der:byte(i) ~ 0xff) .. qwac_der:sub(i + 1)
  put("nasty", "cert", "flipped-" .. i, bad)
end
-- the QCStatement extension with its inner lengths broken
local qc_at = qwac_der:find("\x06\x08\x2b\x06\x01\x05\x05\x07\x01\x03", 1, true)
if qc_at then
  for _, off in ipairs({ 11, 13, 15, 17, 19, 21, 25, 30 }) do
    local i = qc_at + off
    if i <= #qwac_der then
      for _, v in ipairs({ 0x00, 0x7f, 0x84, 0xff }) do
        put("nasty", "cert", "qcstatement-" .. off .. "-" .. v,
          qwac_der:sub(1, i - 1) .. string.char(v) .. qwac_der:sub(i + 1))
      end
    end
  end
end
put("nasty", "cert", "pem-garbage", "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n")
put("nasty", "cert", "pem-unterminated", "-----BEGIN CERTIFICATE-----\n" .. string.rep("QUFB", 5000))
put("nasty", "cert", "pem-empty", "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
put("nasty", "cert", "pem-only-begin", "-----BEGIN")
put("nasty", "cert", "nul-bytes", string.rep("\0", 64))

---------------------------------------------------------------- base64
for i, s in ipairs({ "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy", "Zg", "Zm8", "-_-_", "+/+/" }) do
  put("seeds", "base64", "s" .. i, s)
end
put("seeds", "base64", "cert-b64", sh("openssl base64 -A -in " .. quote(pki .. "/qwac.pem")))
for i, s in ipairs({ "=", "==", "===", "====", "A===", "AA=A", "Zh==", "Zm9=", "Zg=", "Z", "Zh", "Zm9vY",
  "Zm9v\0", "\0\0\0\0", "Zm 9v", "Zm\n9v", "\xff\xfe\xfd\xfc", string.rep("A", 100001),
  string.rep("A", 100000) .. "=", string.rep("/", 4096), string.rep("_", 4097) }) do
  put("nasty", "base64", "n" .. i, s)
end

---------------------------------------------------------------- identity
local function pem(name) return read(pki .. "/" .. name) end
put("seeds", "identity", "p12", "\0" .. read(pki .. "/qwac.p12"))
put("seeds", "identity", "bundle", "\1" .. pem("qwac.pem") .. pem("qwac.key"))
put("seeds", "identity", "bundle-ec", "\1" .. pem("qseal-ec.pem") .. pem("qseal-ec.key"))
put("seeds", "identity", "bundle-chain", "\1" .. pem("qwac.pem") .. pem("ca.pem") .. pem("qwac.key"))
put("seeds", "identity", "bundle-enc", "\2" .. pem("qwac.pem") .. pem("qwac-enc.key"))
for _, c in ipairs({ "qwac", "qseal-ec" }) do
  local cd, kd = der_of(pki .. "/" .. c .. ".pem"), key_der_of(pki .. "/" .. c .. ".key")
  put("seeds", "identity", "der-" .. c, "\3" .. be16(#cd) .. cd .. kd)
end
local p12 = read(pki .. "/qwac.p12")
for _, n in ipairs({ 1, 2, 16, 100, #p12 // 2, #p12 - 1 }) do
  put("nasty", "identity", "p12-truncated-" .. n, "\0" .. p12:sub(1, n))
end
put("nasty", "identity", "p12-huge-length", "\0\x30\x84\xff\xff\xff\xff" .. p12:sub(7))
put("nasty", "identity", "p12-nested", "\0" .. string.rep("\x30\x80", 3000))
put("nasty", "identity", "pem-key-only", "\1" .. pem("qwac.key"))
put("nasty", "identity", "pem-mismatch", "\1" .. pem("qwac.pem") .. pem("other.key"))
put("nasty", "identity", "pem-enc-no-pass", "\1" .. pem("qwac.pem") .. pem("qwac-enc.key"))
-- a key block with a four-byte body: no key material (the label is split so
-- that secret scanners do not take this line for a committed key)
local KEY = "PRIVATE " .. "KEY"
put("nasty", "identity", "pem-key-garbage", "\1" .. pem("qwac.pem")
  .. "-----BEGIN " .. KEY .. "-----\nMIIB\n-----END " .. KEY .. "-----\n")
local cd, kd = der_of(pki .. "/qwac.pem"), key_der_of(pki .. "/qwac.key")
put("nasty", "identity", "der-split-wrong", "\3" .. be16(#cd - 1) .. cd .. kd)
put("nasty", "identity", "der-split-past-end", "\3\xff\xff" .. cd)
put("nasty", "identity", "der-key-truncated", "\3" .. be16(#cd) .. cd .. kd:sub(1, #kd // 2))
put("nasty", "identity", "der-key-huge-length", "\3" .. be16(#cd) .. cd .. "\x30\x84\xff\xff\xff\xff")

---------------------------------------------------------------- http_headers
put("seeds", "http_headers", "plain", "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Request-ID: abc\r\n"
  .. "Set-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 2\r\n\r\n")
put("seeds", "http_headers", "continue", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nLocation: /x\r\n\r\n")
put("seeds", "http_headers", "folded", "HTTP/1.1 200 OK\r\nX-Long: a\r\n  b\r\n\tc\r\nY: 1\r\n\r\n")
put("seeds", "http_headers", "h2", "HTTP/2 200\r\ncontent-type: text/plain\r\nx-jws-signature: a..b\r\n\r\n")
put("nasty", "http_headers", "over-cap", "HTTP/1.1 200 OK\r\nX: " .. string.rep("a", 300 * 1024) .. "\r\n\r\n")
put("nasty", "http_headers", "many-1xx", string.rep("HTTP/1.1 100 Continue\r\n\r\n", 5000) .. "HTTP/1.1 200 OK\r\n\r\n")
put("nasty", "http_headers", "fold-first", " folded\r\nHTTP/1.1 200 OK\r\n\r\n")
put("nasty", "http_headers", "fold-after-status", "HTTP/1.1 200 OK\r\n folded\r\n\tagain\r\n\r\n")
put("nasty", "http_headers", "colons", "HTTP/1.1 200 OK\r\n:\r\n::\r\n: v\r\nn:\r\n\r\n")
put("nasty", "http_headers", "cr-only", "HTTP/1.1 200 OK\r\r\r\n\r\rX: 1\r\n")
put("nasty", "http_headers", "no-newline", "HTTP/1.1 200 OK\r\nX: 1")
put("nasty", "http_headers", "nul", "HTTP/1.1 200 OK\r\nX\0Y: 1\0\r\n\r\n")
put("nasty", "http_headers", "only-newlines", string.rep("\n", 10000))
put("nasty", "http_headers", "same-name", "HTTP/1.1 200 OK\r\n" .. string.rep("A: b\r\n", 20000) .. "\r\n")
put("nasty", "http_headers", "empty", "")
put("nasty", "http_headers", "blank-folds", "HTTP/1.1 200 OK\r\nX: a\r\n \r\n \r\n\r\n")
