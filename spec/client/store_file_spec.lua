-- xs2a.store.file: the shared store contract (spec/support/store_cases.lua)
-- on a fake clock, the directory and file modes, refusal of unsafe
-- directories, reclaim of expired records, OS processes sharing one
-- directory (counters, locks, and a single-flight token refresh against the
-- sandbox), and writers killed mid-write (no corrupt record).
local store = require "xs2a.store"
local cases = require "support.store_cases"
local proc = require "support.proc"
local helper = require "helper"
local core = require "xs2a.core"

local LUA = rawget(_G, "jit") and "luajit" or "lua5.4"
local CPATH = rawget(_G, "jit") and "build/luajit/?.so;" or "build/lua5.4/?.so;"

local function tmpdir()
  local ok, out = proc.run("mktemp -d /tmp/xs2a-filestore-XXXXXX")
  assert(ok, out)
  return (out:gsub("%s+$", ""))
end

local dirs = {}
local function fresh_dir()
  local d = tmpdir()
  dirs[#dirs + 1] = d
  return d .. "/store"
end

local function mode_of(path)
  return string.format("%o", assert(core.fs_stat(path)).mode)
end

-- Runs `code` in `n` other OS processes with `...` as arguments; the
-- prelude makes the tree's modules loadable. Returns their outputs.
local function children(n, code, ...)
  local file = os.tmpname()
  local f = assert(io.open(file, "w"))
  f:write("local root, cpath = ...\n",
    "package.path = root .. '/lua/?.lua;' .. root .. '/lua/?/init.lua;' .. root .. '/spec/?.lua;' .. package.path\n",
    "package.cpath = root .. '/' .. cpath .. package.cpath\n",
    "local arg = { select(3, ...) }\n", code)
  f:close()
  local args = { helper.root, CPATH, ... }
  for i, a in ipairs(args) do args[i] = proc.quote(a) end
  local ps = {}
  for i = 1, n do ps[i] = assert(io.popen(LUA .. " " .. file .. " " .. table.concat(args, " ") .. " 2>&1")) end
  local outs = {}
  for i = 1, n do
    outs[i] = ps[i]:read("*a")
    ps[i]:close()
  end
  os.remove(file)
  return outs
end

describe("xs2a.store.file", function()
  teardown(function()
    for _, d in ipairs(dirs) do proc.run("rm -rf " .. proc.quote(d)) end
  end)

  describe("contract", function()
    local now = 1000
    local env = {
      T = 10,
      new = function() return assert(store.file(fresh_dir(), { clock = function() return now end })) end,
      advance = function(seconds) now = now + seconds end,
    }
    for _, case in ipairs(cases) do
      it(case.name, function() case.run(env.new(), env) end)
    end

    it("expires on the real clock too", function()
      local s = assert(store.file(fresh_dir()))
      assert.is_true(s:set("short", "v", 0.2))
      assert.equal("v", s:get("short"))
      core.sleep(300)
      assert.is_nil(s:get("short"))
    end)
  end)

  it("keeps 0600 records in a 0700 directory, and a value survives a new store object", function()
    local dir = fresh_dir()
    local s = assert(store.file(dir))
    assert.equal("700", mode_of(dir))
    assert.is_true(s:set("xs2a:token:a/b c", "secret"))
    local names = assert(core.fs_list(dir))
    local records = 0
    for _, name in ipairs(names) do
      if name:sub(1, 2) == "k." then
        records = records + 1
        assert.equal("600", mode_of(dir .. "/" .. name))
        assert.is_nil(name:find("/", 1, true))
      end
    end
    assert.equal(1, records)
    assert.equal("secret", assert(store.file(dir)):get("xs2a:token:a/b c"))
    -- a key too long for a file name still works
    local long = string.rep("x", 400)
    assert.is_true(s:set(long, "l"))
    assert.equal("l", s:get(long))
  end)

  it("refuses a directory that others can write, a symbolic link, and a file", function()
    local base = tmpdir()
    dirs[#dirs + 1] = base
    assert(proc.run("mkdir -m 0777 " .. proc.quote(base .. "/open")))
    local s, err = store.file(base .. "/open")
    assert.is_nil(s)
    assert.matches("can be written by others", err, 1, true)
    assert(proc.run("mkdir -m 0770 " .. proc.quote(base .. "/group")))
    assert.is_nil((store.file(base .. "/group")))
    assert(proc.run("mkdir -m 0700 " .. proc.quote(base .. "/real")
      .. " && ln -s real " .. proc.quote(base .. "/link")))
    s, err = store.file(base .. "/link")
    assert.is_nil(s)
    assert.matches("symbolic link", err, 1, true)
    assert(proc.run("touch " .. proc.quote(base .. "/plain")))
    s, err = store.file(base .. "/plain")
    assert.is_nil(s)
    assert.matches("not a directory", err, 1, true)
    assert.is_nil((store.file("")))
  end)

  it("reclaims expired records: on read, and by sweep for keys nobody reads", function()
    local now = 5000
    local dir = fresh_dir()
    local s = assert(store.file(dir, { clock = function() return now end }))
    s:set("read-me", "1", 10)
    s:set("forgotten", "2", 10)
    s:set("kept", "3")
    local function count()
      local n = 0
      for _, name in ipairs(assert(core.fs_list(dir))) do if name:sub(1, 2) == "k." then n = n + 1 end end
      return n
    end
    assert.equal(3, count())
    now = now + 20
    assert.is_nil(s:get("read-me"))
    assert.equal(2, count())
    assert.is_true(s:sweep())
    assert.equal(1, count())
    assert.equal("3", s:get("kept"))
  end)

  it("answers a record that is not one with nil, err (never a Lua error)", function()
    local dir = fresh_dir()
    local s = assert(store.file(dir))
    assert.is_true(s:set("k", "v"))
    local f = assert(io.open(dir .. "/k.k", "wb"))
    f:write("garbage")
    f:close()
    local v, err = s:get("k")
    assert.is_nil(v)
    assert.matches("corrupt record", err, 1, true)
    v, err = s:incr("k", 1)
    assert.is_nil(v)
    assert.is_string(err)
  end)

  it("keeps counters and locks exact across two racing OS processes", function()
    local dir = fresh_dir()
    assert(store.file(dir))
    local outs = children(2, [[
local s = assert(require("xs2a.store").file(arg[1]))
local core = require "xs2a.core"
for _ = 1, 150 do assert(s:incr("hits", 1)) end
-- a read-modify-write under the store's lock: lost updates show a broken lock
local done = 0
while done < 40 do
  local unlock = s:lock("rmw", 5)
  if unlock then
    local v = tonumber(s:get("rmw-count") or "0")
    core.sleep(1)
    assert(s:set("rmw-count", tostring(v + 1)))
    unlock()
    done = done + 1
  else
    core.sleep(1)
  end
end
io.write("DONE\n")
]], dir)
    assert.equal("DONE\n", outs[1])
    assert.equal("DONE\n", outs[2])
    local s = assert(store.file(dir))
    assert.equal("300", s:get("hits"))
    assert.equal("80", s:get("rmw-count"))
  end)

  it("never leaves a partial record when a writer is killed mid-write", function()
    local dir = fresh_dir()
    local s = assert(store.file(dir))
    local size = 4 * 1024 * 1024
    assert.is_true(s:set("big", string.rep("a", size)))
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write(string.format([[
package.path = %q .. "/lua/?.lua;" .. %q .. "/lua/?/init.lua;" .. package.path
package.cpath = %q .. "/" .. %q .. package.cpath
local s = assert(require("xs2a.store").file(%q))
local vals = { string.rep("b", %d), string.rep("c", %d) }
local i = 0
while true do i = i + 1; assert(s:set("big", vals[i %% 2 + 1])) end
]], helper.root, helper.root, helper.root, CPATH, dir, size, size))
    f:close()
    for round = 1, 4 do
      local pid = proc.output("sh -c " .. proc.quote(LUA .. " " .. script .. " >/dev/null 2>&1 & echo $!")):match("%d+")
      assert.is_truthy(pid)
      core.sleep(150 + round * 37)
      assert(proc.run("kill -9 " .. pid))
      while proc.alive(pid) do core.sleep(10) end
      local v = assert(s:get("big"))
      assert.equal(size, #v)
      local c = v:sub(1, 1)
      assert.is_nil(v:find("[^" .. c .. "]"), "mixed record after kill in round " .. round)
    end
    os.remove(script)
    -- the temporary files the killed writers left are reclaimed by a sweep once stale
    local later = assert(store.file(dir, { clock = function() return os.time() + 3600 end }))
    assert.is_true(later:sweep())
    for _, name in ipairs(assert(core.fs_list(dir))) do
      assert.is_nil(name:find(".tmp.", 1, true), "left over: " .. name)
    end
  end)

  describe("with a client #network", function()
    local sandbox = require "support.sandbox"
    local support = require "support.client"
    local PRESENT = { psu_ip = "198.51.100.7" }
    local sb

    setup(function()
      sb = sandbox.start{ config = { token_ttl = 30 } }
    end)
    teardown(function() if sb then sb:stop() end end)

    it("lets exactly one of two processes refresh a token kept in the directory", function()
      local dir = fresh_dir()
      local client = support.new_client("berlin", { store = assert(store.file(dir)), limits = false }, sb)
      local consent = assert(client:create_consent(support.consent_body(), PRESENT))
      assert.equal("valid", assert(support.authorise(consent)).status)
      -- the access token lives 30 s; move its clock on so that it is inside
      -- the client's refresh margin (a quarter of its life) by the time the
      -- two processes use it: the next use refreshes
      local oauth = require "xs2a.sca.oauth"
      local rec = assert(oauth.read_record(client, consent.token_key))
      rec.obtained_at, rec.expires_at = core.now() - 25, core.now() + 5
      assert(oauth.set_record(client, consent.token_key, rec))
      local mark = #sb:access_log()
      local go_at = core.now() + 1.5
      local outs = children(2, [[
require "helper"
local support = require "support.client"
local core = require "xs2a.core"
local dir, base_url, pki, consent_id, go_at = arg[1], arg[2], arg[3], arg[4], tonumber(arg[5])
local client = support.new_client("berlin", { store = assert(require("xs2a.store").file(dir)), limits = false },
  { base_url = base_url, pki = pki })
while core.now() < go_at do core.sleep(2) end
local accounts, err = client:consent(consent_id):accounts({ psu_ip = "198.51.100.7" })
io.write(accounts and ("OK " .. #accounts) or ("ERR " .. tostring(err)), "\n")
]], dir, sb.base_url, sb.pki, consent.id, string.format("%.3f", go_at))
      for i = 1, 2 do assert.matches("^OK %d+", outs[i]) end
      local posts, refused = 0, 0
      local lines = sb:access_log()
      for i = mark + 1, #lines do
        if lines[i]:find("oauth/token", 1, true) then
          posts = posts + 1
          if not lines[i]:find(" 200$") then refused = refused + 1 end
        end
      end
      assert.equal(1, posts)
      assert.equal(0, refused)
    end)
  end)
end)
