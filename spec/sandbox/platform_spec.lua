-- The sandbox platform: process control, client certificates, request
-- checks, rate limits, signatures, error formats, control API and faults.
-- Driven over real TLS on loopback with the curl and openssl CLIs; the
-- platform's test routes (config platform_test_routes) echo what it saw.
local sandbox = require "support.sandbox"
local json = sandbox.json
local q = sandbox.shell_quote

local sh = require("support.proc").output

local function write(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

local tmpdir = sh("mktemp -d /tmp/xs2a-platform-spec-XXXXXX"):gsub("%s+$", "")

local function b64(data)
  write(tmpdir .. "/b64.in", data)
  return (sh("openssl base64 -A -in " .. q(tmpdir .. "/b64.in")):gsub("%s+$", ""))
end

local function b64url(data)
  return (b64(data):gsub("+", "-"):gsub("/", "_"):gsub("=+$", ""))
end

local function b64url_decode(s)
  s = s:gsub("-", "+"):gsub("_", "/")
  s = s .. string.rep("=", (4 - #s % 4) % 4)
  write(tmpdir .. "/b64d.in", s)
  return sh("openssl base64 -d -A -in " .. q(tmpdir .. "/b64d.in"))
end

local function digest_header(body, alg)
  alg = alg or "sha256"
  write(tmpdir .. "/body", body)
  local raw = sh("openssl dgst -" .. alg .. " -binary " .. q(tmpdir .. "/body"))
  return (alg == "sha256" and "SHA-256=" or "SHA-512=") .. b64(raw)
end

-- signs `data` with a PKI key using the openssl CLI; returns raw signature bytes
local function sign(pki, keyname, data, opts)
  opts = opts or {}
  write(tmpdir .. "/tbs", data)
  local sigopt = ""
  if opts.pss then sigopt = "-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:-1 " end
  return sh("openssl dgst -" .. (opts.hash or "sha256") .. " " .. sigopt .. "-sign " .. q(pki .. "/" .. keyname)
    .. " " .. q(tmpdir .. "/tbs"))
end

local cache = {}

local function cert_b64(pki, name)
  local key = "b64:" .. name
  cache[key] = cache[key]
    or (sh("openssl x509 -in " .. q(pki .. "/" .. name) .. " -outform DER | openssl base64 -A"):gsub("%s+$", ""))
  return cache[key]
end

local function serial_and_issuer(pki, name)
  local key = "si:" .. name
  cache[key] = cache[key]
    or sh("openssl x509 -in " .. q(pki .. "/" .. name) .. " -noout -serial -issuer -nameopt RFC2253")
  local out = cache[key]
  return out:match("serial=(%x+)"), out:match("issuer=([^\n]+)")
end

-- DER ECDSA signature -> raw r||s (n bytes each), with the sandbox's own DER reader
local der = dofile("sandbox/lua/sandbox/der.lua")
local function der_to_raw(sig, n)
  local _, a, b = der.tlv(sig, 1, #sig)
  local _, ra, rb, nxt = der.tlv(sig, a, b)
  local _, sa, sb_ = der.tlv(sig, nxt, b)
  local function fix(x)
    x = x:gsub("^%z+", "")
    return string.rep("\0", n - #x) .. x
  end
  return fix(sig:sub(ra, rb)) .. fix(sig:sub(sa, sb_))
end

local function uuid()
  return (sh("cat /proc/sys/kernel/random/uuid"):gsub("%s+$", ""))
end

-- A Berlin Group signed request (headers table) for `body`.
local function berlin_headers(pki, body, opts)
  opts = opts or {}
  local seal = opts.seal or "qseal"
  local rid = opts.request_id or uuid()
  local h = {
    ["X-Request-ID"] = rid,
    ["PSU-IP-Address"] = "192.0.2.10",
    ["Digest"] = digest_header(opts.digest_body or body),
  }
  for k, v in pairs(opts.extra or {}) do h[k] = v end
  local names = opts.names or { "digest", "x-request-id" }
  local lines = {}
  for i, n in ipairs(names) do
    local v
    for k, val in pairs(h) do if k:lower() == n then v = val end end
    lines[i] = n .. ": " .. tostring(v)
  end
  local serial, issuer = serial_and_issuer(pki, seal .. ".pem")
  if opts.lower_serial then serial = serial:lower() end
  local sig = sign(pki, seal .. ".key", table.concat(lines, "\n"), { pss = opts.pss })
  h["Signature"] = string.format('keyId="SN=%s,CA=%s",algorithm="%s",headers="%s",signature="%s"',
    serial, (issuer:gsub(" ", "%%20")), opts.algorithm or "rsa-sha256", table.concat(names, " "), b64(sig))
  h["TPP-Signature-Certificate"] = cert_b64(pki, seal .. ".pem")
  return h
end

local function psu_body()
  return '{"instructedAmount":{"currency":"EUR","amount":"12.30"},"creditorName":"Shop"}'
end

describe("sandbox platform", function()
  local sb

  setup(function()
    sb = sandbox.shared()
  end)

  before_each(function()
    sb:reset()
    sb:config{ platform_test_routes = true }
  end)

  teardown(function()
    sh("rm -rf " .. q(tmpdir))
  end)

  local function ais(opts)
    opts = opts or {}
    local headers = opts.headers or { ["X-Request-ID"] = uuid() }
    return sb:request{ path = (opts.root or "/xs2a/berlin/1.3") .. "/v1/_platform/ais", cert = opts.cert,
      headers = headers }
  end

  describe("process control", function()
    it("starts a private instance and stops it leaving no process behind", function()
      local own = sandbox.start{ workers = 2, config = { platform_test_routes = true, rate = { per_hour = 3 } } }
      assert.is_true(own:running())
      local workers = {}
      for pid in sh("ps -o pid= --ppid " .. own.pid):gmatch("%d+") do workers[#workers + 1] = pid end
      assert.are.equal(2, #workers)
      local res = own:request{ path = "/_sandbox/ping", cert = false }
      assert.are.equal(200, res.status)
      assert.are.equal(own.port, res.json.port)
      -- the rate counters are shared by the workers (each curl is a new connection)
      local statuses = {}
      for i = 1, 5 do
        statuses[i] = own:request{ path = "/xs2a/berlin/1.3/v1/_platform/ais",
          headers = { ["X-Request-ID"] = uuid() } }.status
      end
      assert.are.same({ 200, 200, 200, 429, 429 }, statuses)
      own:stop()
      assert.is_false(own:running())
      for _, pid in ipairs(workers) do
        assert.is_false(sandbox.alive(pid), "worker " .. pid .. " still runs")
      end
      assert.is_nil(io.open(own.prefix .. "/logs/nginx.pid"))
    end)

    it("writes the access log in the documented format", function()
      local rid = uuid()
      ais{ headers = { ["X-Request-ID"] = rid } }
      local lines = sb:access_log()
      local last = lines[#lines]
      local pattern = '^127%.0%.0%.1 %d+ %d+ "GET /xs2a/berlin/1%.3/v1/_platform/ais HTTP/[%d%.]+" 200$'
      assert.truthy(last:match(pattern), last)
    end)
  end)

  describe("client certificates", function()
    it("accepts the QWAC and hands its organization id and roles to the handler", function()
      local res = ais()
      assert.are.equal(200, res.status, res.body)
      assert.are.equal("PSDLT-BOL-TPP001", res.json.org_id)
      table.sort(res.json.roles)
      assert.are.same({ "PSP_AI", "PSP_IC", "PSP_PI" }, res.json.roles)
    end)

    it("answers 401 CERTIFICATE_MISSING without a certificate, also on unknown API paths", function()
      local res = ais{ cert = false }
      assert.are.equal(401, res.status)
      assert.are.equal("CERTIFICATE_MISSING", res.json.code)
      assert.are.equal("application/problem+json", res.headers["content-type"])
      res = sb:request{ path = "/xs2a/georgia/0.8/v1/no-such-thing", cert = false,
        headers = { ["X-Request-ID"] = uuid() } }
      assert.are.equal(401, res.status)
      assert.are.equal("CERTIFICATE_MISSING", res.json.code)
    end)

    it("answers 401 CERTIFICATE_EXPIRED for an expired QWAC", function()
      local res = ais{ cert = "qwac-expired" }
      assert.are.equal(401, res.status)
      assert.are.equal("CERTIFICATE_EXPIRED", res.json.code)
    end)

    it("answers 401 CERTIFICATE_INVALID for a QWAC from a foreign CA", function()
      local res = ais{ cert = "qwac-foreign" }
      assert.are.equal(401, res.status)
      assert.are.equal("CERTIFICATE_INVALID", res.json.code)
    end)

    it("answers 401 ROLE_INVALID when the QWAC lacks the service's role", function()
      local res = sb:request{ method = "POST", path = "/xs2a/berlin/1.3/v1/_platform/pis", cert = "qwac-ai",
        body = psu_body(), headers = berlin_headers(sb.pki, psu_body()) }
      assert.are.equal(401, res.status)
      assert.are.equal("ROLE_INVALID", res.json.code)
      res = ais{ cert = "qwac-ai" }
      assert.are.equal(200, res.status)
      assert.are.equal("PSDLT-BOL-TPP002", res.json.org_id)
      res = sb:request{ path = "/xs2a/berlin/1.3/v1/_platform/piis/acc-1", cert = "qwac-ai",
        headers = { ["X-Request-ID"] = uuid() } }
      assert.are.equal(401, res.status)
      assert.are.equal("ROLE_INVALID", res.json.code)
    end)

    it("guards the bank's payment initiation: role first, then the signature", function()
      local url = "/xs2a/berlin/1.3/v1/payments/sepa-credit-transfers"
      local h = { ["X-Request-ID"] = uuid(), ["PSU-IP-Address"] = "192.0.2.10" }
      local res = sb:request{ method = "POST", path = url, cert = "qwac-ai", body = psu_body(), headers = h }
      assert.are.equal(401, res.status)
      assert.are.equal("ROLE_INVALID", res.json.code)
      res = sb:request{ method = "POST", path = url, body = psu_body(), headers = h }
      assert.are.equal(401, res.status)
      assert.are.equal("SIGNATURE_MISSING", res.json.code)
    end)

    it("serves browser pages without a certificate", function()
      local res = sb:request{ path = "/xs2a/berlin/1.3/_platform/page", cert = false }
      assert.are.equal(200, res.status)
      assert.are.equal(json.null, res.json.org_id)
    end)

    it("answers in the tppMessages format when configured", function()
      sb:config{ error_format = "tppMessages" }
      local res = ais{ cert = false }
      assert.are.equal(401, res.status)
      assert.are.equal("application/json", res.headers["content-type"])
      assert.are.equal("ERROR", res.json.tppMessages[1].category)
      assert.are.equal("CERTIFICATE_MISSING", res.json.tppMessages[1].code)
      assert.is_string(res.json.tppMessages[1].text)
    end)
  end)

  describe("request checks", function()
    it("demands a UUID X-Request-ID and echoes it", function()
      local res = ais{ headers = {} }
      assert.are.equal(400, res.status)
      assert.are.equal("FORMAT_ERROR", res.json.code)
      res = ais{ headers = { ["X-Request-ID"] = "not-a-uuid" } }
      assert.are.equal(400, res.status)
      assert.are.equal("FORMAT_ERROR", res.json.code)
      assert.are.equal("not-a-uuid", res.headers["x-request-id"])
      local rid = uuid()
      res = ais{ headers = { ["X-Request-ID"] = rid } }
      assert.are.equal(200, res.status)
      assert.are.equal(rid, res.headers["x-request-id"])
    end)

    it("does not demand X-Request-ID on non-service routes such as a token endpoint", function()
      local res = sb:request{ method = "POST", path = "/xs2a/berlin/1.3/_platform/token",
        headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }, body = "grant_type=x&code=a%20b" }
      assert.are.equal(200, res.status, res.body)
      assert.are.same({ grant_type = "x", code = "a b" }, res.json.form)
    end)

    it("demands PSU-IP-Address where the route says so", function()
      local body = psu_body()
      local h = berlin_headers(sb.pki, body)
      h["PSU-IP-Address"] = nil
      local res = sb:request{ method = "POST", path = "/xs2a/berlin/1.3/v1/_platform/pis", body = body, headers = h }
      assert.are.equal(400, res.status)
      assert.are.equal("FORMAT_ERROR", res.json.code)
      h["PSU-IP-Address"] = "300.1.2.3"
      res = sb:request{ method = "POST", path = "/xs2a/berlin/1.3/v1/_platform/pis", body = body, headers = h }
      assert.are.equal(400, res.status)
    end)

    it("rejects a JSON body that does not parse", function()
      sb:config{ variants = { berlin = { signing = { required_for = {} } } } }
      local res = sb:request{ method = "POST", path = "/xs2a/berlin/1.3/v1/_platform/pis", body = "{nope",
        headers = { ["X-Request-ID"] = uuid(), ["PSU-IP-Address"] = "::1" } }
      assert.are.equal(400, res.status)
      assert.are.equal("FORMAT_ERROR", res.json.code)
    end)

    it("answers 404 and 405 for unknown endpoints and a handler crash with 500", function()
      local res = sb:request{ path = "/xs2a/berlin/1.3/v1/nothing-here", headers = { ["X-Request-ID"] = uuid() } }
      assert.are.equal(404, res.status)
      assert.are.equal("RESOURCE_UNKNOWN", res.json.code)
      res = sb:request{ method = "DELETE", path = "/xs2a/berlin/1.3/v1/_platform/ais",
        headers = { ["X-Request-ID"] = uuid() } }
      assert.are.equal(405, res.status)
      res = sb:request{ path = "/xs2a/berlin/1.3/v1/_platform/boom", headers = { ["X-Request-ID"] = uuid() } }
      assert.are.equal(500, res.status)
      assert.are.equal("INTERNAL_SERVER_ERROR", res.json.code)
    end)
  end)

  describe("rate limits", function()
    it("answers 429 ACCESS_EXCEEDED with Retry-After past the per-second limit", function()
      sb:config{ rate = { per_second = 2 } }
      local limited
      for _ = 1, 8 do
        local res = ais()
        if res.status == 429 then limited = res break end
        assert.are.equal(200, res.status)
      end
      assert.is_table(limited, "no 429 after 8 requests with a limit of 2/s")
      assert.are.equal("ACCESS_EXCEEDED", limited.json.code)
      assert.truthy(tostring(limited.headers["retry-after"]):match("^%d+$"))
      -- another TPP has its own budget
      assert.are.equal(200, ais{ cert = "qwac-ai" }.status)
    end)

    it("answers 429 past the per-hour limit with the seconds to wait", function()
      sb:config{ rate = { per_hour = 1 } }
      assert.are.equal(200, ais().status)
      local res = ais()
      assert.are.equal(429, res.status)
      local wait = tonumber(res.headers["retry-after"])
      assert.is_true(wait >= 1 and wait <= 3600)
    end)
  end)

  describe("Berlin Group signatures", function()
    local path = "/xs2a/berlin/1.3/v1/_platform/pis"

    local function post(body, headers, cert)
      return sb:request{ method = "POST", path = path, body = body, headers = headers, cert = cert }
    end

    it("accepts a valid RSA signature", function()
      local body = psu_body()
      local res = post(body, berlin_headers(sb.pki, body))
      assert.are.equal(200, res.status, res.body)
      assert.are.equal("berlin", res.json.signer.scheme)
      assert.are.equal("12.30", res.json.json.instructedAmount.amount)
    end)

    it("accepts RSA-PSS, ECDSA, SHA-512 digests and a lower-case serial", function()
      local body = psu_body()
      local res = post(body, berlin_headers(sb.pki, body, { pss = true, algorithm = "rsa-pss-sha256" }))
      assert.are.equal(200, res.status, res.body)
      res = post(body, berlin_headers(sb.pki, body, { seal = "qseal-ec", algorithm = "ecdsa-sha256" }))
      assert.are.equal(200, res.status, res.body)
      res = post(body, berlin_headers(sb.pki, body, { lower_serial = true }))
      assert.are.equal(200, res.status, res.body)
      local h = berlin_headers(sb.pki, body)
      h.Digest = digest_header(body, "sha512")
      -- the signature covers the old digest value, so re-sign
      local names = { "digest", "x-request-id" }
      local sig = sign(sb.pki, "qseal.key", "digest: " .. h.Digest .. "\nx-request-id: " .. h["X-Request-ID"])
      h.Signature = h.Signature:gsub('signature="[^"]*"', 'signature="' .. b64(sig):gsub("%%", "%%%%") .. '"')
      assert.are.equal(table.concat(names, " "), h.Signature:match('headers="([^"]*)"'))
      res = post(body, h)
      assert.are.equal(200, res.status, res.body)
    end)

    it("rejects a tampered body, a tampered signature and a missing signature", function()
      local body = psu_body()
      local h = berlin_headers(sb.pki, body)
      local res = post(body:gsub("12.30", "99.99"), h)
      assert.are.equal(401, res.status)
      assert.are.equal("SIGNATURE_INVALID", res.json.code)

      h = berlin_headers(sb.pki, body)
      local other = b64(sign(sb.pki, "other.key", "digest: x"))
      h.Signature = h.Signature:gsub('signature="[^"]*"', 'signature="' .. other:gsub("%%", "%%%%") .. '"')
      res = post(body, h)
      assert.are.equal(401, res.status)
      assert.are.equal("SIGNATURE_INVALID", res.json.code)

      h = berlin_headers(sb.pki, body)
      h.Signature = nil
      res = post(body, h)
      assert.are.equal(401, res.status)
      assert.are.equal("SIGNATURE_MISSING", res.json.code)
    end)

    it("rejects signatures whose header list or keyId or certificate is wrong", function()
      local body = psu_body()
      -- x-request-id not signed
      local res = post(body, berlin_headers(sb.pki, body, { names = { "digest" } }))
      assert.are.equal("SIGNATURE_INVALID", res.json.code)
      -- PSU-ID sent but not signed
      res = post(body, berlin_headers(sb.pki, body, { extra = { ["PSU-ID"] = "alice" } }))
      assert.are.equal("SIGNATURE_INVALID", res.json.code)
      res = post(body, berlin_headers(sb.pki, body,
        { extra = { ["PSU-ID"] = "alice" }, names = { "digest", "x-request-id", "psu-id" } }))
      assert.are.equal(200, res.status, res.body)
      -- keyId serial of another certificate
      local h = berlin_headers(sb.pki, body)
      h.Signature = h.Signature:gsub("SN=%x+", "SN=1234")
      res = post(body, h)
      assert.are.equal("SIGNATURE_INVALID", res.json.code)
      -- a seal certificate from a foreign CA
      h = berlin_headers(sb.pki, body)
      h["TPP-Signature-Certificate"] = cert_b64(sb.pki, "qwac-foreign.pem")
      res = post(body, h)
      assert.are.equal("SIGNATURE_INVALID", res.json.code)
      -- garbage certificate
      h = berlin_headers(sb.pki, body)
      h["TPP-Signature-Certificate"] = b64("garbage, not DER")
      res = post(body, h)
      assert.are.equal("SIGNATURE_INVALID", res.json.code)
    end)

    it("is not required for AIS by default", function()
      assert.are.equal(200, ais().status)
    end)
  end)

  describe("Georgian JWS signatures", function()
    local path = "/xs2a/georgia/0.8/v1/_platform/pis"

    local function jws_headers(body, opts)
      opts = opts or {}
      local rid = uuid()
      local h = {
        ["X-Request-ID"] = rid, ["PSU-IP-Address"] = "192.0.2.10",
        ["Digest"] = digest_header(body), ["Content-Type"] = "application/json",
      }
      -- the strict rule: content-type and content-length are sent, so signed
      local pars = opts.pars or { "(request-target)", "host", "x-request-id", "content-type", "content-length",
        "psu-ip-address", "digest" }
      local values = {
        ["(request-target)"] = "post " .. path, host = "127.0.0.1:" .. sb.port,
        ["x-request-id"] = rid, ["psu-ip-address"] = h["PSU-IP-Address"], digest = h.Digest,
        ["content-type"] = "application/json", ["content-length"] = tostring(#body),
      }
      local lines = {}
      for i, n in ipairs(pars) do lines[i] = n .. ": " .. values[n] end
      local seal = opts.ec and "qseal-ec" or "qseal"
      local protected = json.encode{
        alg = opts.ec and "ES256" or "RS256", b64 = false, crit = { "sigT", "sigD", "b64" },
        sigT = os.date("!%Y-%m-%dT%H:%M:%SZ", os.time() + (opts.skew or 0)),
        sigD = { pars = pars, mId = "http://uri.etsi.org/19182/HttpHeaders" },
        x5c = { cert_b64(sb.pki, seal .. ".pem") },
      }
      local ph = b64url(protected)
      local sig = sign(sb.pki, seal .. ".key", ph .. "." .. table.concat(lines, "\n"))
      if opts.ec then sig = der_to_raw(sig, 32) end
      h["x-jws-signature"] = ph .. ".." .. b64url(sig)
      return h
    end

    it("accepts a valid detached JWS and signs the response", function()
      local body = psu_body()
      local res = sb:request{ method = "POST", path = path, body = body, headers = jws_headers(body) }
      assert.are.equal(200, res.status, res.body)
      assert.are.equal("jws", res.json.signer.scheme)
      -- the response carries Digest and x-jws-signature by the bank's seal
      assert.are.equal(digest_header(res.body), res.headers["digest"])
      local ph, sig = res.headers["x-jws-signature"]:match("^([%w_%-]+)%.%.([%w_%-]+)$")
      assert.is_string(ph)
      local hdr = json.decode(b64url_decode(ph))
      assert.are.same({ "(response-status)", "x-request-id", "content-type", "content-length", "digest" },
        hdr.sigD.pars)
      assert.are.equal(tostring(#res.body), res.headers["content-length"])
      local lines = {
        "(response-status): 200", "x-request-id: " .. res.headers["x-request-id"],
        "content-type: " .. res.headers["content-type"], "content-length: " .. res.headers["content-length"],
        "digest: " .. res.headers["digest"],
      }
      write(tmpdir .. "/resp.tbs", ph .. "." .. table.concat(lines, "\n"))
      write(tmpdir .. "/resp.sig", b64url_decode(sig))
      sh("openssl x509 -in " .. q(sb.pki .. "/aspsp-seal.pem") .. " -pubkey -noout > " .. q(tmpdir .. "/seal.pub"))
      local out = sh("openssl dgst -sha256 -verify " .. q(tmpdir .. "/seal.pub") .. " -signature "
        .. q(tmpdir .. "/resp.sig") .. " " .. q(tmpdir .. "/resp.tbs"))
      assert.truthy(out:find("Verified OK", 1, true), out)
    end)

    it("accepts ES256 with a raw r||s signature", function()
      local body = psu_body()
      local res = sb:request{ method = "POST", path = path, body = body, headers = jws_headers(body, { ec = true }) }
      assert.are.equal(200, res.status, res.body)
    end)

    it("rejects a tampered body, an old sigT and missing signed headers", function()
      local body = psu_body()
      local res = sb:request{ method = "POST", path = path, body = body:gsub("Shop", "Shoq"),
        headers = jws_headers(body) }
      assert.are.equal(401, res.status)
      assert.are.equal("SIGNATURE_INVALID", res.json.code)
      res = sb:request{ method = "POST", path = path, body = body, headers = jws_headers(body, { skew = -3600 }) }
      assert.are.equal("SIGNATURE_INVALID", res.json.code)
      res = sb:request{ method = "POST", path = path, body = body,
        headers = jws_headers(body, { pars = { "(request-target)", "x-request-id", "digest" } }) }
      assert.are.equal("SIGNATURE_INVALID", res.json.code)   -- psu-ip-address sent but not signed
      local h = jws_headers(body)
      h["x-jws-signature"] = nil
      res = sb:request{ method = "POST", path = path, body = body, headers = h }
      assert.are.equal("SIGNATURE_MISSING", res.json.code)
    end)
  end)

  describe("Paysera MAC", function()
    local path = "/xs2a/berlin/1.3/v1/_platform/pis"
    local key = "sandbox-mac-key-0123456789abcdef"

    local function mac_headers(body, opts)
      opts = opts or {}
      local ts = tostring(os.time())
      local nonce = opts.nonce or uuid():gsub("%-", "")
      write(tmpdir .. "/body", body)
      local hash = b64(sh("openssl dgst -sha256 -binary " .. q(tmpdir .. "/body")))
      local ext = "body_hash=" .. hash:gsub("[+/=]", function(c) return string.format("%%%02X", c:byte()) end)
      local normalized = table.concat({ ts, nonce, "POST", path, "127.0.0.1", tostring(sb.port), ext }, "\n") .. "\n"
      write(tmpdir .. "/mac.in", normalized)
      local mac = b64(sh("openssl dgst -sha256 -binary -hmac " .. q(opts.key or key) .. " " .. q(tmpdir .. "/mac.in")))
      return {
        ["X-Request-ID"] = uuid(), ["PSU-IP-Address"] = "192.0.2.10",
        ["Authorization"] = string.format('MAC id="tpp-mac-id", ts="%s", nonce="%s", mac="%s", ext="%s"',
          ts, nonce, mac, ext),
      }
    end

    it("accepts a valid MAC and rejects a wrong key, a tampered body and a replayed nonce", function()
      sb:config{ variants = { berlin = { signing = { scheme = "mac" } } } }
      local body = psu_body()
      local h = mac_headers(body)
      local res = sb:request{ method = "POST", path = path, body = body, headers = h }
      assert.are.equal(200, res.status, res.body)
      assert.are.equal("mac", res.json.signer.scheme)
      res = sb:request{ method = "POST", path = path, body = body, headers = h }
      assert.are.equal("SIGNATURE_INVALID", res.json.code)          -- replay
      res = sb:request{ method = "POST", path = path, body = body, headers = mac_headers(body, { key = "wrong" }) }
      assert.are.equal("SIGNATURE_INVALID", res.json.code)
      res = sb:request{ method = "POST", path = path, body = body .. " ", headers = mac_headers(body) }
      assert.are.equal("SIGNATURE_INVALID", res.json.code)
    end)
  end)

  describe("control API", function()
    it("merges configuration and resets it", function()
      local cfg = sb:config{ page_size = 7, sca = { approach = "embedded" } }
      assert.are.equal(7, cfg.page_size)
      assert.are.equal("embedded", cfg.sca.approach)
      assert.are.equal(1, cfg.sca.multilevel)        -- merged, not replaced
      sb:reset()
      local status, body = sb:control("GET", "/config")
      assert.are.equal(200, status)
      assert.are.equal(50, body.page_size)
      assert.are.equal("oauth", body.sca.approach)
      assert.is_nil(body.platform_test_routes)
    end)

    it("refuses faults on an instance started without them", function()
      local status = sb:control("POST", "/faults", { kind = "status", status = 503 })
      assert.are.equal(403, status)
      local res = ais{ headers = { ["X-Request-ID"] = uuid(), ["X-Sandbox-Fault"] = "kind=status; status=503" } }
      assert.are.equal(200, res.status)
    end)

    it("answers 404 for unknown control paths", function()
      assert.are.equal(404, (sb:control("GET", "/nope")))
    end)

    it("checks decoupled decisions and dumps the bank's accounts and payments", function()
      assert.are.equal(400, (sb:control("POST", "/decoupled/some-id", { decision = "maybe" })))
      local status, body = sb:control("GET", "/accounts")
      assert.are.equal(200, status)
      assert.is_table(body)
      status, body = sb:control("GET", "/payments")
      assert.are.equal(200, status)
      assert.is_table(body)
    end)
  end)
end)

describe("sandbox faults", function()
  local sb

  setup(function()
    sb = sandbox.start{ faults = true, config = { platform_test_routes = true } }
  end)

  teardown(function()
    sb:stop()
  end)

  local function ais(extra)
    local h = { ["X-Request-ID"] = uuid() }
    for k, v in pairs(extra or {}) do h[k] = v end
    return sb:request{ path = "/xs2a/berlin/1.3/v1/_platform/ais", headers = h, http1 = true }
  end

  it("answers a queued 503 with Retry-After once, then normally", function()
    sb:fault{ kind = "status", status = 503, retry_after = 7, path = "/_platform/ais$" }
    local res = ais()
    assert.are.equal(503, res.status)
    assert.are.equal("7", res.headers["retry-after"])
    assert.are.equal("SERVICE_UNAVAILABLE", res.json.code)
    assert.are.equal(200, ais().status)
  end)

  it("answers a queued 429 with its Retry-After and a 500 asked for by header", function()
    sb:fault{ kind = "status", status = 429, retry_after = 3 }
    local res = ais()
    assert.are.equal(429, res.status)
    assert.are.equal("3", res.headers["retry-after"])
    assert.are.equal("ACCESS_EXCEEDED", res.json.code)
    res = ais{ ["X-Sandbox-Fault"] = "kind=status; status=500" }
    assert.are.equal(500, res.status)
    assert.are.equal("INTERNAL_SERVER_ERROR", res.json.code)
    assert.are.equal(200, ais().status)
  end)

  it("matches the method and counts down", function()
    sb:fault{ kind = "status", status = 429, method = "POST", count = 1 }
    sb:fault{ kind = "status", status = 500, method = "GET", count = 2 }
    assert.are.equal(500, ais().status)
    assert.are.equal(500, ais().status)
    assert.are.equal(200, ais().status)
    local status, body = sb:control("GET", "/faults")
    assert.are.equal(200, status)
    assert.are.equal(1, #body.faults)
    assert.are.equal(200, (sb:control("DELETE", "/faults")))
  end)

  it("delays an answer, and a held request counts against the concurrency limit", function()
    sb:config{ rate = { concurrent = 1 } }
    local out = os.tmpname()
    os.remove(out)
    os.execute(table.concat({
      "curl -s -o /dev/null --max-time 10 --http1.1",
      "--cacert", q(sb.pki .. "/ca.pem"), "--cert", q(sb.pki .. "/qwac.pem"), "--key", q(sb.pki .. "/qwac.key"),
      "-H", q("X-Request-ID: " .. uuid()), "-H", q("X-Sandbox-Fault: kind=delay; seconds=1"),
      "-w", q("%{http_code} %{time_total}"), q(sb.roots.berlin .. "/v1/_platform/ais"),
      ">", q(out .. ".tmp"), "&& mv", q(out .. ".tmp"), q(out), "&",
    }, " "))
    os.execute("sleep 0.3")
    local res = ais()
    assert.are.equal(429, res.status)
    assert.are.equal("ACCESS_EXCEEDED", res.json.code)
    assert.are.equal("1", res.headers["retry-after"])
    local text
    for _ = 1, 100 do
      local f = io.open(out)
      if f then text = f:read("*a") f:close() break end
      os.execute("sleep 0.1")
    end
    local code, t = tostring(text):match("^(%d+) ([%d%.]+)")
    assert.are.equal("200", code)
    assert.is_true(tonumber(t) >= 0.9, "answered after " .. tostring(t))
    os.remove(out)
    assert.are.equal(200, ais().status)             -- the slot is free again
    sb:config{ rate = { concurrent = 20 } }
  end)

  it("holds 20 concurrent requests of one TPP by default and refuses the 21st", function()
    sb:config{ rate = { per_second = 0, per_hour = 0 } }
    assert.are.equal(20, select(2, sb:control("GET", "/config")).rate.concurrent)
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. q(dir)))
    for i = 1, 20 do
      os.execute(table.concat({
        "curl -s -o /dev/null --max-time 15 --http1.1",
        "--cacert", q(sb.pki .. "/ca.pem"), "--cert", q(sb.pki .. "/qwac.pem"), "--key", q(sb.pki .. "/qwac.key"),
        "-H", q("X-Request-ID: " .. uuid()), "-H", q("X-Sandbox-Fault: kind=delay; seconds=4"),
        "-w", q("%{http_code}"), q(sb.roots.berlin .. "/v1/_platform/ais"),
        ">", q(dir .. "/" .. i .. ".tmp"), "&& mv", q(dir .. "/" .. i .. ".tmp"), q(dir .. "/" .. i), "&",
      }, " "))
    end
    -- give the 20 time to get in (each holds its slot for 4 s), then probe
    os.execute("sleep 1")
    local refused
    for _ = 1, 20 do
      os.execute("sleep 0.1")
      local res = ais()
      if res.status == 429 then refused = res break end
    end
    assert.is_table(refused, "no 429 while 20 requests were held")
    assert.are.equal("ACCESS_EXCEEDED", refused.json.code)
    assert.truthy(tonumber(refused.headers["retry-after"]))
    local codes = {}
    for i = 1, 20 do
      local text
      for _ = 1, 150 do
        local f = io.open(dir .. "/" .. i)
        if f then text = f:read("*a") f:close() break end
        os.execute("sleep 0.1")
      end
      codes[#codes + 1] = text
    end
    os.execute("rm -rf " .. q(dir))
    for i = 1, 20 do assert.are.equal("200", codes[i], "held request " .. i) end
    assert.are.equal(200, ais().status)             -- every slot is free again
    sb:config{ rate = { per_second = 10, per_hour = 1000 } }
  end)

  it("answers malformed JSON", function()
    local res = ais{ ["X-Sandbox-Fault"] = "kind=malformed" }
    assert.are.equal(200, res.status)
    assert.is_nil(res.json)
    assert.truthy(res.body:match("^{"))
  end)

  it("drops the connection after running the handler", function()
    local res = ais{ ["X-Sandbox-Fault"] = "kind=drop" }
    assert.is_nil(res.status)
    assert.are.equal(52, res.curl_exit)               -- empty reply from server
    local lines = sb:access_log()
    assert.truthy(lines[#lines]:match(" 444$"), lines[#lines])
  end)

  it("truncates the body", function()
    local res = ais{ ["X-Sandbox-Fault"] = "kind=truncate" }
    assert.are.equal(18, res.curl_exit)               -- partial file
    local want = tonumber(res.headers["content-length"])
    assert.is_true(#res.body < want)
  end)

  it("sends an oversize body", function()
    local res = ais{ ["X-Sandbox-Fault"] = "kind=oversize; bytes=3000000" }
    assert.are.equal(200, res.status)
    assert.are.equal(3000000, #res.body)
    assert.are.equal(3000000 - 14, #res.json.padding)
  end)

  it("rejects malformed fault requests", function()
    assert.are.equal(400, (sb:control("POST", "/faults", { kind = "explode" })))
    assert.are.equal(400, (sb:control("POST", "/faults", { kind = "delay", seconds = "x" })))
    assert.are.equal(400, (sb:control("POST", "/faults", { kind = "status", path = "[" })))
  end)
end)
