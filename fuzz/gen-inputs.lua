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

---------------------------------------------------------------- json
-- byte 0: bit 0 mark, bit 1 floats, bit 2 JSON text follows (else a value
-- program, see fuzz/json.c), bit 3 a cycle of (byte 0 >> 4) + 1 tables too
local function jtext(flags, text) return string.char(4 | flags) .. text end
local function nest(n, open, close, inner) return open:rep(n) .. inner .. close:rep(n) end
local xs2a = {
  transactions = '{"account":{"iban":"DE89370400440532013000","currency":"EUR"},"transactions":{'
    .. '"booked":[{"transactionId":"1234567","bookingDate":"2024-03-01","valueDate":"2024-03-01",'
    .. '"transactionAmount":{"currency":"EUR","amount":"-256.67"},"creditorName":"Miete GmbH",'
    .. '"creditorAccount":{"iban":"DE67100100101306118605"},"remittanceInformationUnstructured":"Miete Maerz",'
    .. '"bankTransactionCode":"PMNT-RCDT-ESCT","entryReference":"E2E-1","balanceAfterTransaction":'
    .. '{"balanceType":"interimBooked","balanceAmount":{"currency":"EUR","amount":1243.5}}},'
    .. '{"transactionId":"1234568","bookingDate":"2024-03-02","valueDate":"2024-03-02",'
    .. '"transactionAmount":{"currency":"EUR","amount":"343.01"},"debtorName":"Paul Simpson",'
    .. '"debtorAccount":{"iban":"NL76RABO0359400371"},"remittanceInformationStructuredArray":'
    .. '[{"reference":"RF18539007547034","referenceType":"SCOR"}],"exchangeRate":[{"rate":1.0,'
    .. '"unitCurrency":"EUR","sourceCurrency":"EUR"}]}],"pending":[],"information":[{"standingOrderDetails":'
    .. '{"frequency":"Monthly","dayOfExecution":"01","executionRule":"following","monthsOfExecution":["1","4"]}}],'
    .. '"_links":{"account":{"href":"/v1/accounts/3dc3d5b3-7023-4848-9853-f5400a64e80f"},'
    .. '"next":{"href":"/v1/accounts/3dc3d5b3/transactions?page[number]=2&page[size]=50"}}},'
    .. '"balances":[{"balanceType":"closingBooked","balanceAmount":{"currency":"EUR","amount":"500.00"},'
    .. '"referenceDate":"2024-03-01"}],"page":{"number":1,"size":50.0,"totalElements":9007199254740993}}',
  error = '{"tppMessages":[{"category":"ERROR","code":"FORMAT_ERROR","path":"transactionAmount.amount",'
    .. '"text":"amount has more than 2 decimals"},{"category":"WARNING","code":"CONSENT_INVALID"}],'
    .. '"_links":{"self":{"href":"/v1/payments/sepa-credit-transfers"}},"status":400}',
  error_401 = '{"type":"https://berlingroup.com/error-codes/CERTIFICATE_INVALID","title":"Certificate invalid",'
    .. '"detail":"QWAC expired","code":"CERTIFICATE_INVALID","additionalErrors":[]}',
  accounts = '{"accounts":[{"resourceId":"3dc3d5b3-7023-4848-9853-f5400a64e80f","iban":"DE2310010010123456789",'
    .. '"currency":"EUR","product":"Girokonto","cashAccountType":"CACC","name":"Main Account",'
    .. '"balances":[{"balanceAmount":{"currency":"EUR","amount":"500.00"},"balanceType":"closingBooked",'
    .. '"referenceDate":"2024-03-01"},{"balanceAmount":{"currency":"EUR","amount":-0.0},'
    .. '"balanceType":"expected","creditLimitIncluded":false}],'
    .. '"_links":{"balances":{"href":"/v1/accounts/3dc/balances"},'
    .. '"transactions":{"href":"/v1/accounts/3dc/transactions"}}}]}',
  consent = '{"consentStatus":"received","consentId":"1234-wertiq-983","scaMethods":[{"authenticationType":"SMS_OTP",'
    .. '"authenticationMethodId":"myAuthenticationID"},{"authenticationType":"PUSH_OTP","authenticationMethodId":"p"}],'
    .. '"frequencyPerDay":4,"recurringIndicator":true,"validUntil":"2024-12-31","combinedServiceIndicator":false,'
    .. '"_links":{"scaRedirect":{"href":"https://www.testbank.com/asdfasdfasdf"},"self":{"href":"/v1/consents/1234"},'
    .. '"status":{"href":"/v1/consents/1234/status"},"scaStatus":{"href":"/v1/consents/1234/authorisations/123"}}}',
  payment = '{"transactionStatus":"RCVD","paymentId":"1234-wertiq-983","transactionFees":{"currency":"EUR",'
    .. '"amount":0.5},"transactionFeeIndicator":true,"psuMessage":null,"_links":{"scaOAuth":'
    .. '{"href":"https://www.testbank.com/oauth/.well-known/oauth-authorization-server"}}}',
}
for _, name in ipairs({ "transactions", "error", "error_401", "accounts", "consent", "payment" }) do
  put("seeds", "json", name, jtext(3, xs2a[name]))
end
put("seeds", "json", "transactions-mark", jtext(1, xs2a.transactions))
put("seeds", "json", "transactions-floats", jtext(2, xs2a.transactions))
put("seeds", "json", "transactions-none", jtext(0, xs2a.transactions))
put("seeds", "json", "numbers", jtext(3, "[1e400,-0,9007199254740993,1.0,-1e400,0.5,1e300,2.5e-1,1E2,-1.5e1,"
  .. "9223372036854775807,9223372036854775808,-9223372036854775808,-9223372036854775809,"
  .. "18446744073709551616,4.9e-324,nan,inf,-inf,0x10,[-0.0,1.0]]"))
put("seeds", "json", "numbers-object", jtext(2, '{"a":1.0,"b":-0,"c":1e400,"d":9007199254740993,"e":0.1,"1":2.0}'))
put("seeds", "json", "empties", jtext(3, '[[],{},[[]],{"a":[]},[{}],[null],[null,1.0],[false],""]'))
for i, s in ipairs({ "1.0", "-0", "2.5", '"text"', "null", "true", "9007199254740993", "1e400" }) do
  put("seeds", "json", "top-" .. i, jtext(3, s))
end
put("seeds", "json", "deep-1000", jtext(3, nest(1000, "[", "]", "1.0")))
put("seeds", "json", "deep-1000-objects", jtext(3, nest(1000, '{"a":', "}", "-0")))

-- value programs (tags: 0 int8, 1 int64, 2 edge float, 3 float64, 4 float8,
-- 5 string, 6 boolean, 7 null, 8 array, 9 object, 10 holes, 11 chain)
local P = {}
function P.edge(i) return "\2" .. string.char(i) end        -- index into edge_floats
function P.int(n) return "\1" .. string.pack(">i8", n) end
function P.float(x) return "\3" .. string.pack(">d", x) end
function P.str(s) return "\5" .. string.char(#s) .. s end
function P.arr(...) return "\8" .. string.char(select("#", ...)) .. table.concat({ ... }) end
function P.holes(first, step, ...)
  return "\10" .. string.char(select("#", ...), first & 255, step - 1) .. table.concat({ ... })
end
function P.obj(...)          -- key, value, key, value, ...
  return "\9" .. string.char(select("#", ...) // 2) .. table.concat({ ... })
end
function P.kint(n) return "\0" .. string.char(n & 255) end
function P.kedge(i) return "\2" .. string.char(i) end
function P.kstr(s) return "\3" .. string.char(#s) .. s end
function P.kfloat(x) return "\5" .. string.pack(">d", x) end
function P.chain(d, shape, inner) return "\11" .. be16(d) .. string.char(shape) .. inner end
local function prog(flags, v) return string.char(flags) .. v end
local edges = {}
for i = 0, 29 do edges[#edges + 1] = P.edge(i) end
local all_edges = P.arr(table.unpack(edges))
put("seeds", "json", "edge-floats", prog(3, all_edges))
put("seeds", "json", "edge-floats-mark", prog(1, all_edges))
put("seeds", "json", "edge-floats-none", prog(0, all_edges))
put("seeds", "json", "kinds", prog(3, P.arr(P.int(math.mininteger), P.int(math.maxinteger), "\0\xff",
  P.float(2^53), P.float(-0.0), "\4\3", "\x84\3", P.str("x"), "\6", "\x86", "\7", P.arr(), P.obj())))
put("seeds", "json", "holes", prog(3, P.holes(2, 2, P.edge(0), P.edge(3), P.edge(22))))
put("seeds", "json", "holes-from-0", prog(1, P.holes(0, 1, P.edge(0), P.edge(0))))
put("seeds", "json", "holes-negative", prog(2, P.holes(-3, 3, P.edge(0), P.edge(1), P.edge(23))))
put("seeds", "json", "keys", prog(3, P.obj(P.kedge(3), P.edge(0), P.kedge(22), P.edge(17), P.kedge(26),
  P.edge(1), P.kedge(0), P.edge(7), P.kint(-1), P.edge(0), P.kstr("1"), P.edge(0), "\4", P.edge(0), "\x84",
  P.edge(3), P.kfloat(1e300), P.edge(0), P.kfloat(0 / 0), P.edge(0))))
put("seeds", "json", "mixed", prog(3, P.obj(P.kint(1), P.edge(0), P.kstr("a"), P.arr(P.edge(0)),
  P.kint(2), P.holes(1, 3, P.edge(8), P.obj(P.kint(1), P.edge(1))))))
put("seeds", "json", "chain-100", prog(3, P.chain(100, 6, P.edge(0))))
put("seeds", "json", "cycle", prog(3 | 8, P.arr(P.edge(0))))
put("seeds", "json", "cycle-16", prog(0xf8 | 3, P.arr(P.edge(0))))

-- nesting at and past the C walk's bound (1100 levels; cjson's own limit is
-- raised to 1300 in the harness)
for _, n in ipairs({ 1100, 1101, 1200, 1300, 1301 }) do
  put("nasty", "json", "deep-arrays-" .. n, jtext(3, nest(n, "[", "]", "1.0")))
end
put("nasty", "json", "deep-objects-1101", jtext(3, nest(1101, '{"a":', "}", "1.0")))
put("nasty", "json", "deep-mixed-1101", jtext(3, "[" .. nest(550, '[{"a":', "}]", "0.5") .. "]"))
put("nasty", "json", "deep-mixed-1100", jtext(1, nest(550, '{"a":[', "]}", "-0")))
put("nasty", "json", "deep-sibling-1101", jtext(3, "[1.0," .. nest(1100, "[", "]", "2.0") .. ",3.0]"))
for _, d in ipairs({ 1099, 1100, 1101, 1200, 1399 }) do
  for _, shape in ipairs({ 0, 1, 6, 13 }) do
    put("nasty", "json", "chain-" .. d .. "-" .. shape, prog(3, P.chain(d, shape, P.edge(0))))
  end
end
-- two chains whose sum crosses the bound, one under an array
put("nasty", "json", "chains-sum", prog(3, P.chain(600, 1, P.chain(501, 0, P.edge(0)))))
put("nasty", "json", "chain-in-array", prog(2, P.arr(P.edge(0), P.chain(1100, 5, P.edge(3)))))
put("nasty", "json", "chains-too-many", prog(3, P.arr(table.unpack((function()
  local t = {}
  for i = 1, 40 do t[i] = P.chain(1399, i % 16, P.edge(i % 30)) end
  return t
end)()))))
put("nasty", "json", "cycle-deep-mark", prog(0x19, P.chain(1050, 1, P.edge(0))))
put("nasty", "json", "wide", prog(3, "\8\255" .. string.rep("\8\255" .. string.rep("\2\0", 255), 255)))
put("nasty", "json", "truncated-program", prog(3, "\9\255\2"))
put("nasty", "json", "header-only", "\3")
put("nasty", "json", "empty", "")
put("nasty", "json", "bad-json", jtext(3, '{"a":[1.0,'))
put("nasty", "json", "bad-json-nul", jtext(3, '["a\0b"]'))
