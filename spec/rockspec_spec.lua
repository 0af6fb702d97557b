-- The rockspec lists its C sources and Lua modules by hand (LuaRocks users
-- never run make); these specs catch a file added to the tree but not to the
-- rockspec, and prove that `luarocks make` installs a module that loads.
local helper = require "helper"

local function load_rockspec()
  local env = {}
  local chunk = assert(loadfile("lua-xs2a-scm-1.rockspec", "t", env))
  if setfenv then setfenv(chunk, env) end
  chunk()
  return env
end

local function lines(cmd)
  local out = {}
  local p = assert(io.popen(cmd))
  for l in p:lines() do out[#out + 1] = l end
  p:close()
  return out
end

describe("lua-xs2a-scm-1.rockspec", function()
  local spec = load_rockspec()

  it("builds with the Makefile's rock target and needs curl and OpenSSL", function()
    assert.are.equal("make", spec.build.type)
    assert.are.equal("rock", spec.build.build_target)
    assert.is_false(spec.build.install_pass)
    assert.are.equal("build/rock/xs2a/core.so", spec.build.install.lib["xs2a.core"])
    assert.is_table(spec.external_dependencies.CURL)
    assert.is_table(spec.external_dependencies.OPENSSL)
  end)

  it("compiles every file in csrc/ into xs2a.core", function()
    local cmd = table.concat(lines("make -n -B rock BUILD=/tmp/xs2a-rock-dry"), "\n")
    local files = lines("ls csrc/*.c")
    assert.is_true(#files > 0)
    for _, f in ipairs(files) do
      assert.is_truthy(cmd:find(" " .. f .. " ", 1, true), f .. " is not compiled by make rock")
    end
    assert.is_nil(cmd:find("%.o[%s$]"), "make rock writes object files")
  end)

  it("installs every Lua file in lua/xs2a/ as a module", function()
    local by_file = {}
    for name, file in pairs(spec.build.install.lua) do by_file[file] = name end
    for _, f in ipairs(lines("find lua/xs2a -name '*.lua' | sort")) do
      local want = f:gsub("^lua/", ""):gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", ".")
      assert.are.equal(want, by_file[f], f .. " is missing from the rockspec (sh scripts/gen-rockspec-modules)")
    end
    for file in pairs(by_file) do
      assert.is_true(io.open(file) ~= nil, file .. " is listed but does not exist")
    end
    assert.are.equal("xs2a.sandbox.psu", by_file["examples/psu_browser.lua"])
    assert.are.equal("bin/xs2a", spec.build.install.bin.xs2a)
  end)

  it("`make install` installs the modules, the core, the command and the scripted PSU", function()
    local dest = os.tmpname()
    os.remove(dest)
    finally(function() os.execute("rm -rf '" .. dest .. "'") end)
    assert.is_truthy(os.execute("make -s install DESTDIR='" .. dest .. "' PREFIX=/usr/local > /dev/null 2>&1"))
    local root = dest .. "/usr/local"
    for _, f in ipairs({ "/bin/xs2a", "/lib/lua/5.4/xs2a/core.so", "/share/lua/5.4/xs2a/init.lua",
        "/share/lua/5.4/xs2a/store/file.lua", "/share/lua/5.4/xs2a/sandbox/psu.lua" }) do
      assert.is_true(io.open(root .. f) ~= nil, f .. " not installed")
    end
    local out = lines(("LUA_PATH='%s/share/lua/5.4/?.lua;%s/share/lua/5.4/?/init.lua;;' "
      .. "LUA_CPATH='%s/lib/lua/5.4/?.so;;' %s/bin/xs2a cert %s 2>&1"):format(root, root, root, root,
      helper.pki("qwac.pem")))
    assert.matches("^organisation%s+Example TPP UAB$", out[2] or "")
  end)

  it("`luarocks make` installs offline into a tree where require 'xs2a' loads #slow", function()
    local tree = os.tmpname()
    os.remove(tree)
    finally(function() os.execute("rm -rf '" .. tree .. "'") end)
    local arch = lines("gcc -dumpmachine")[1]
    -- lua-cjson comes from the OS here (Debian's lua-cjson), not from a rocks tree
    local cmd = ("luarocks --lua-version=5.4 --tree='%s' make --deps-mode=none lua-xs2a-scm-1.rockspec "
      .. "CURL_INCDIR=/usr/include/%s OPENSSL_INCDIR=/usr/include > '%s.log' 2>&1"):format(tree, arch, tree)
    local ok = os.execute(cmd)
    assert.is_truthy(ok == true or ok == 0, "luarocks make failed: " .. (io.open(tree .. ".log") and
      io.open(tree .. ".log"):read("*a") or ""))
    os.remove(tree .. ".log")
    local probe = ("lua5.4 -e \"package.path='%s/share/lua/5.4/?.lua;%s/share/lua/5.4/?/init.lua;'"
      .. "..package.path; package.cpath='%s/lib/lua/5.4/?.so;'..package.cpath; "
      .. "local x = require 'xs2a'; local id = assert(x.identity{cert='%s', key='%s'}); "
      .. "print(package.searchpath('xs2a.core', package.cpath) .. ' ' .. id:info().organization_identifier)\"")
      :format(tree, tree, tree, helper.pki("qwac.pem"), helper.pki("qwac.key"))
    local out = lines(probe .. " 2>&1")
    assert.matches("^" .. tree:gsub("%p", "%%%0") .. "/lib/lua/5%.4/xs2a/core%.so PSDLT%-BOL%-TPP001$", out[1] or "")
    -- the build left nothing in the checkout
    assert.same({}, lines("ls csrc/*.o xs2a/core.so 2>/dev/null"))
    -- the command and the scripted PSU came along
    assert.is_true(io.open(tree .. "/bin/xs2a") ~= nil)
    assert.is_true(io.open(tree .. "/share/lua/5.4/xs2a/sandbox/psu.lua") ~= nil)
  end)
end)
