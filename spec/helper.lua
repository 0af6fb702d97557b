-- Loaded by busted before every spec file (see .busted).
-- Makes spec/support/*.lua requirable as "support.x", and knows where the
-- test PKI lives. The PKI is made by `make pki` (sandbox/bin/mkpki build/pki).
local helper = {}

local function abspath(p)
  if p:sub(1, 1) == "/" then return p end
  local pwd = os.getenv("PWD") or io.popen("pwd"):read("*l")
  return pwd .. "/" .. p
end

helper.root = abspath(".")
helper.pki_dir = os.getenv("XS2A_PKI") or abspath("build/pki")

function helper.pki(name)
  return helper.pki_dir .. "/" .. name
end

function helper.read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

-- make sure the PKI exists (idempotent and fast when it does)
do
  local f = io.open(helper.pki("qwac.pem"), "rb")
  if f then f:close() else
    assert(os.execute("sh sandbox/bin/mkpki " .. helper.pki_dir .. " >/dev/null"))
  end
end

package.loaded["helper"] = helper
return helper
