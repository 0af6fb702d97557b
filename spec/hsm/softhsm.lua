--- Spec support: a private SoftHSM2 token per test run, holding the test
-- PKI's QWAC and QSealC keys (RSA, and the EC seal) as sensitive,
-- non-extractable objects, plus the QSealC certificate.
--
--   local softhsm = require "hsm.softhsm"
--   local tok = softhsm.setup()      -- nil, why when SoftHSM2/opensc/the engine are missing
--   tok.env                          -- "SOFTHSM2_CONF=/tmp/..." for child processes
--   tok.uri("qseal")                 -- "pkcs11:token=xs2a-test;object=qseal;type=private"
--   softhsm.teardown(tok)
local proc = require "support.proc"
local helper = require "helper"

local M = {}

M.MODULE = "/usr/lib/softhsm/libsofthsm2.so"
M.TOKEN = "xs2a-test"
M.PIN = "246810"
M.SO_PIN = "13579111"
-- label -> { PKI base name, CKA_ID hex, with certificate on the token }
M.KEYS = {
  { label = "qwac", pki = "qwac", id = "01" },
  { label = "qseal", pki = "qseal", id = "02", cert = true },
  { label = "qseal-ec", pki = "qseal-ec", id = "03" },
}

local q = proc.quote

local function sh(cmd)
  local ok, out = proc.run(cmd)
  return ok, out
end

--- nil when everything needed is installed, else the reason.
function M.missing()
  for _, tool in ipairs({ "softhsm2-util", "pkcs11-tool" }) do
    if not sh("command -v " .. tool) then return tool .. " is not installed (Debian: softhsm2, opensc)" end
  end
  if not io.open(M.MODULE, "rb") then return M.MODULE .. " is missing (Debian: softhsm2)" end
  local f = io.open("/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so", "rb")
    or io.open("/usr/lib/aarch64-linux-gnu/engines-3/pkcs11.so", "rb")
  if not f then return "the OpenSSL pkcs11 engine is missing (Debian: libengine-pkcs11-openssl)" end
  f:close()
  return nil
end

--- Makes the token; returns a table or nil, why.
function M.setup()
  local why = M.missing()
  if why then return nil, why end
  local ok, dir = sh("mktemp -d /tmp/xs2a-softhsm.XXXXXX")
  assert(ok, dir)
  dir = dir:gsub("%s+$", "")
  local conf = dir .. "/softhsm2.conf"
  local f = assert(io.open(conf, "w"))
  f:write("directories.tokendir = " .. dir .. "/tokens\nobjectstore.backend = file\nlog.level = ERROR\n"
    .. "slots.removable = false\n")
  f:close()
  assert(os.execute("mkdir -p " .. q(dir .. "/tokens")))
  local env = "SOFTHSM2_CONF=" .. q(conf)
  local out
  ok, out = sh(env .. " softhsm2-util --init-token --free --label " .. M.TOKEN .. " --so-pin " .. M.SO_PIN
    .. " --pin " .. M.PIN)
  assert(ok, out)
  for _, k in ipairs(M.KEYS) do
    local p8 = dir .. "/" .. k.label .. ".p8"
    ok, out = sh("openssl pkcs8 -topk8 -nocrypt -in " .. q(helper.pki(k.pki .. ".key")) .. " -out " .. q(p8))
    assert(ok, out)
    ok, out = sh(env .. " softhsm2-util --import " .. q(p8) .. " --token " .. M.TOKEN .. " --label " .. k.label
      .. " --id " .. k.id .. " --pin " .. M.PIN)
    os.remove(p8)             -- the key now exists only inside the token
    assert(ok, out)
    if k.cert then
      local der = dir .. "/" .. k.label .. ".der"
      assert(sh("openssl x509 -in " .. q(helper.pki(k.pki .. ".pem")) .. " -outform DER -out " .. q(der)))
      ok, out = sh(env .. " pkcs11-tool --module " .. M.MODULE .. " --login --pin " .. M.PIN
        .. " --write-object " .. q(der) .. " --type cert --id " .. k.id .. " --label " .. k.label)
      os.remove(der)
      assert(ok, out)
    end
  end
  local tok = { dir = dir, conf = conf, env = env, module = M.MODULE, token = M.TOKEN, pin = M.PIN }
  function tok.uri(label, kind)
    return "pkcs11:token=" .. M.TOKEN .. ";object=" .. label .. ";type=" .. (kind or "private")
  end
  --- pkcs11-tool's listing of the token's objects (after login)
  function tok.objects()
    local _, listing = sh(env .. " pkcs11-tool --module " .. M.MODULE .. " --login --pin " .. M.PIN .. " -O")
    return listing
  end
  return tok
end

function M.teardown(tok)
  if tok and tok.dir then os.execute("rm -rf " .. q(tok.dir)) end
end

return M
