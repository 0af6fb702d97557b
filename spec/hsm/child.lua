-- Runs one HSM scenario in a process of its own (spec/hsm/hsm_spec.lua starts
-- it under the interpreter busted runs in): SoftHSM2 reads SOFTHSM2_CONF
-- from the environment, which plain Lua cannot set, and each PKCS#11 login
-- state belongs to a process. Prints one line "RESULT <json>".
--   lua child.lua <case>   env: SOFTHSM2_CONF, XS2A_HSM_* (see hsm_spec.lua)
local jit_build = rawget(_G, "jit") ~= nil
package.path = "./lua/?.lua;./lua/?/init.lua;./spec/?.lua;" .. package.path
package.cpath = (jit_build and "./build/luajit/?.so;" or "./build/lua5.4/?.so;") .. package.cpath
require "helper"
local cjson = require "cjson"
local core = require "xs2a.core"
local identity = require "xs2a.identity"

local env = os.getenv
local MODULE, TOKEN, PIN = env("XS2A_HSM_MODULE"), env("XS2A_HSM_TOKEN"), env("XS2A_HSM_PIN")
local PKI = env("XS2A_PKI") or "build/pki"
local function uri(label, kind)
  return "pkcs11:token=" .. TOKEN .. ";object=" .. label .. ";type=" .. (kind or "private")
end
local function pem(name) return PKI .. "/" .. name .. ".pem" end
local function certdata(name)
  local f = assert(io.open(pem(name), "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function hsm(label, extra)
  local o = { cert = pem(label), key = uri(label), pin = PIN, module = MODULE }
  for k, v in pairs(extra or {}) do o[k] = v end
  if o.pin == false then o.pin = nil end
  if o.module == false then o.module = nil end
  return identity.new(o)
end

local cases = {}

-- identities from the token: facts, tostring, signatures checked by OpenSSL
function cases.identity()
  local qseal = assert(hsm("qseal", { cert = uri("qseal", "cert") }))   -- certificate from the token too
  local qwac = assert(hsm("qwac"))
  local ec = assert(hsm("qseal-ec", { pin = function() return PIN end }))
  local info = qseal:info()
  local sig = assert(ec:sign("hello", { ec_format = "raw" }))
  return {
    key_store = info.key_store, token = info.token, key_type = info.key_type, key_bits = info.key_bits,
    fingerprint = info.fingerprint,
    file_fingerprint = assert(core.cert_info(certdata("qseal"))).fingerprint,
    tostring = tostring(qseal), tostring_ec = tostring(ec), qwac_roles = qwac:info().roles,
    rsa_ok = core.verify(certdata("qseal"), "hello", assert(qseal:sign("hello"))),
    pss_ok = core.verify(certdata("qseal"), "x", assert(qseal:sign("x", { padding = "pss", hash = "sha512" })),
      { padding = "pss", hash = "sha512" }),
    ec_ok = core.verify(certdata("qseal-ec"), "hello", sig, { ec_format = "raw" }),
    ec_bad = core.verify(certdata("qseal-ec"), "hellO", sig, { ec_format = "raw" }),
  }
end

-- the signers of the library, unchanged, with token keys; verified independently
function cases.signers()
  local sign = require "xs2a.sign"
  local ca = certdata("ca")
  local out = {}
  for _, label in ipairs({ "qseal", "qseal-ec" }) do
    local id = assert(hsm(label))
    local req = { method = "POST", url = "https://bank.example/v1/payments/sepa-credit-transfers",
      headers = { ["X-Request-ID"] = core.uuid4(), ["PSU-ID"] = "alice" }, body = '{"a":1}' }
    assert(sign.berlin(id):sign(req))
    out["berlin_" .. label] = sign.verify_berlin(req, { cert = ca })
    local jreq = { method = "POST", url = "https://bank.example/v1/payments/domestic",
      headers = { ["X-Request-ID"] = core.uuid4() }, body = '{"a":1}' }
    assert(sign.jws(id):sign(jreq))
    out["jws_" .. label] = sign.verify_jws(jreq, { cert = ca, request = true }) == true
  end
  return out
end

-- consent and payment end to end against the sandbox, both keys in the token
function cases.e2e()
  local support = require "support.client"
  local sb = { base_url = env("XS2A_SANDBOX_URL"), pki = PKI }
  local PSU = { psu_ip = "198.51.100.7" }
  local out = {}
  local qwac = assert(hsm("qwac", { pin_env = "XS2A_HSM_PIN", pin = false }))
  for _, v in ipairs({ { "berlin", "qseal", "sepa-credit-transfers" }, { "georgia", "qseal", "domestic" },
                       { "berlin", "qseal-ec", "sepa-credit-transfers" } }) do
    local variant, seal, product = v[1], v[2], v[3]
    local client = support.new_client(variant, { qwac = qwac, qseal = assert(hsm(seal)) }, sb)
    local consent = assert(client:create_consent(support.consent_body(), PSU))
    assert(support.authorise(consent))
    local key = variant .. "_" .. seal
    out[key .. "_consent"] = assert(consent:status())
    out[key .. "_accounts"] = #assert(consent:accounts(PSU))
    local debtor, creditor, cur = env("XS2A_HSM_IBANS"):match(variant .. "=([^,]+),([^,]+),(%u+)")
    local p = assert(client:initiate_payment(product, {
      debtorAccount = { iban = debtor, currency = cur },
      instructedAmount = { currency = cur, amount = "1.00" },
      creditorAccount = { iban = creditor }, creditorName = "Bob",
      remittanceInformationUnstructured = "lua-xs2a HSM spec" }, PSU))
    local step = assert(support.authorise(p))
    out[key .. "_payment"] = step.status
    out[key .. "_payment_status"] = assert(p:status())
  end
  return out
end

-- every typed error; nothing secret in any message or tostring
function cases.errors()
  local out = {}
  local function try(name, opts)
    local id, err, code = hsm("qseal", opts)
    out[name] = { ok = id ~= nil, err = err, code = code }
    if id then id:close() end
  end
  try("wrong_pin", { pin = "99" .. PIN })
  try("no_pin", { pin = false })
  try("pin_env_unset", { pin = false, pin_env = "XS2A_HSM_NO_SUCH_VARIABLE" })
  try("pin_cb_raises", { pin = function() error("secret " .. PIN) end })
  try("pin_in_uri", { key = uri("qseal") .. ";pin-value=" .. PIN })
  try("module_missing", { module = "/nonexistent/libpkcs11.so" })
  try("token_missing", { key = "pkcs11:token=no-such-token;object=qseal;type=private" })
  try("object_missing", { key = uri("no-such-key") })
  try("cert_missing", { cert = uri("qwac", "cert") })
  try("mismatch", { cert = pem("qwac") })
  try("other_module", { module = "/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-trust.so" })
  return out
end

-- the engine missing: run with OPENSSL_ENGINES pointing at an empty directory
function cases.no_engine()
  local id, err, code = hsm("qseal")
  return { ok = id ~= nil, err = err, code = code }
end

-- a handle opened before fork() is refused in the child; a child that opens
-- its own identity signs (LuaJIT: fork through the ffi)
function cases.fork()
  local ffi = require "ffi"
  ffi.cdef [[ int fork(void); int waitpid(int pid, int *status, int options); void _exit(int status); ]]
  local parent_id = assert(hsm("qseal"))
  assert(parent_id:sign("before fork"))
  local r = os.tmpname()
  local pid = ffi.C.fork()
  if pid == 0 then
    local res = {}
    local s, err, code = parent_id:sign("in the child")
    res.inherited = { ok = s ~= nil, err = err, code = code }
    local hok, h, herr = pcall(parent_id._pkey_handle, parent_id)
    res.inherited_handle = hok and h ~= nil
    res.inherited_handle_err = herr
    local mine = hsm("qseal")
    res.own = mine ~= nil and core.verify(certdata("qseal"), "child", assert(mine:sign("child"))) or false
    local w = io.open(r, "w")
    w:write(cjson.encode(res))
    w:close()
    ffi.C._exit(0)
  end
  local st = ffi.new("int[1]")
  ffi.C.waitpid(pid, st, 0)
  local f = io.open(r, "rb")
  local res = cjson.decode(f:read("a"))
  f:close()
  os.remove(r)
  res.parent_after = core.verify(certdata("qseal"), "parent", assert(parent_id:sign("parent")))
  return res
end

-- the token's sessions vanish mid-run (C_CloseAllSessions on the module, as a
-- removed token does): the next signature re-opens once, then fails cleanly
function cases.lost()
  local ffi = require "ffi"
  ffi.cdef [[
    typedef struct { unsigned char major, minor; void *f[68]; } xs2a_ck_function_list;
    unsigned long C_GetFunctionList(xs2a_ck_function_list **list);
    typedef unsigned long (*xs2a_ck_slots)(unsigned char present, unsigned long *list, unsigned long *count);
    typedef unsigned long (*xs2a_ck_close_all)(unsigned long slot);
  ]]
  local fn_id = assert(hsm("qseal", { pin = function() return PIN end }))
  local str_id = assert(hsm("qseal-ec"))
  assert(fn_id:sign("before") and str_id:sign("before"))
  local lib = ffi.load(MODULE)
  local pp = ffi.new("xs2a_ck_function_list *[1]")
  assert(lib.C_GetFunctionList(pp) == 0)
  local n, slots = ffi.new("unsigned long[1]", 16), ffi.new("unsigned long[16]")
  assert(ffi.cast("xs2a_ck_slots", pp[0].f[4])(1, slots, n) == 0)          -- C_GetSlotList
  for i = 0, tonumber(n[0]) - 1 do ffi.cast("xs2a_ck_close_all", pp[0].f[14])(slots[i]) end  -- C_CloseAllSessions
  local out = {}
  for name, id in pairs({ callback = fn_id, string = str_id }) do
    local s, err, code = id:sign("after")
    local s2, err2, code2 = id:sign("again")
    out[name] = { ok = s ~= nil, err = err, code = code, ok2 = s2 ~= nil, code2 = code2, err2 = err2 }
  end
  return out
end

local name = arg[1]
local ok, res = pcall(cases[name])
io.write("RESULT ", cjson.encode({ ok = ok, result = ok and res or nil, err = not ok and tostring(res) or nil }),
  "\n")
