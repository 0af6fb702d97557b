-- Runs the openssl command line tool on temporary files, as an independent
-- check of what xs2a.core produces. Test-only.
local M = {}

local function write(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

local function ok_status(a, _, c)
  if a == true then return true end
  if type(a) == "number" then return a == 0 end
  return a == nil and false or c == 0
end

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- true when `openssl dgst` verifies sig over data with the public key of cert_path
function M.verify(cert_path, data, sig, hash, sigopts)
  local base = os.tmpname()
  local pub, dat, sg = base .. ".pub", base .. ".data", base .. ".sig"
  write(dat, data)
  write(sg, sig)
  assert(ok_status(os.execute("openssl x509 -in " .. q(cert_path) .. " -pubkey -noout > " .. q(pub))))
  local cmd = "openssl dgst -" .. (hash or "sha256") .. " " .. (sigopts or "") .. " -verify " .. q(pub)
    .. " -signature " .. q(sg) .. " " .. q(dat) .. " >/dev/null 2>&1"
  local ok = ok_status(os.execute(cmd))
  os.remove(pub); os.remove(dat); os.remove(sg); os.remove(base)
  return ok
end

-- output of an openssl command (trimmed)
function M.run(args)
  local p = assert(io.popen("openssl " .. args .. " 2>/dev/null"))
  local out = p:read("*a")
  p:close()
  return (out:gsub("%s+$", ""))
end

M.quote = q
M.write = write
M.ok_status = ok_status
return M
