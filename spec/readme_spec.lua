-- README.md's usage example runs as written against the sandbox bank.
local helper = require "helper"
local sandbox = require "support.sandbox"

local function readme_example()
  local text = helper.read("README.md")
  local usage = assert(text:find("\n## Usage\n", 1, true), "README has no Usage section")
  local code = text:match("```lua\n(.-)\n```", usage)
  assert(code, "no lua block under Usage")
  return code
end

describe("README.md #network", function()
  it("runs the usage example against the sandbox and it ends with a settled payment", function()
    local sb = sandbox.shared()
    local file = os.tmpname()
    finally(function() os.remove(file); os.remove(file .. ".out") end)
    local f = assert(io.open(file, "w"))
    f:write(readme_example())
    f:close()
    local cmd = ("cd %s && XS2A_SANDBOX_URL=%s LUA_PATH='lua/?.lua;lua/?/init.lua;examples/?.lua;;' "
      .. "LUA_CPATH='build/lua5.4/?.so;;' lua5.4 %s > %s.out 2>&1; echo $?")
      :format(helper.root, sb.base_url, file, file)
    local p = assert(io.popen(cmd))
    local rc = p:read("*l")
    p:close()
    local out = helper.read(file .. ".out")
    assert.are.equal("0", rc, out)
    assert.matches("done%s+valid", out)
    assert.matches("%d+ booked transactions", out)
    assert.matches("payment%s+%S+%s+ACSC", out)
  end)
end)
