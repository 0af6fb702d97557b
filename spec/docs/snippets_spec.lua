-- The docs run as written: every code block of docs/openresty.md and
-- README.md marked `<!-- file: NAME -->` is extracted from the Markdown,
-- written out with only the documented install paths and the app's port
-- replaced (/opt/lua-xs2a, /opt/tpp, /etc/tpp, 9443), checked with
-- `nginx -t`, started, and walked through a consent against the sandbox bank:
-- /connect sends the browser to the bank, the PSU approves, /callback answers
-- the accounts; a callback without a query string gets a 400, not a Lua error.
-- And docs/api.md's snippets, which form one script, run in order against
-- the sandbox (less the three marked `<!-- not in the script: ... -->`).
-- Runs once (under Lua 5.4).
if rawget(_G, "jit") then return end

local helper = require "helper"
local sandbox = require "support.sandbox"
local proc = require "support.proc"
local psu = require "support.psu"
local json = require("xs2a").json

--- The marked blocks of a Markdown file: { name = text }.
local function marked_blocks(path)
  local text = helper.read(path)
  local out = {}
  for name, body in text:gmatch("<!%-%- file: ([%w%._%-]+) %-%->\n```%w*\n(.-)\n```") do
    assert(out[name] == nil, path .. " marks " .. name .. " twice")
    out[name] = body .. "\n"
  end
  return out
end

local function write(path, data)
  local f = assert(io.open(path, "w"))
  f:write(data)
  f:close()
end

local function plain(s) return (s:gsub("%p", "%%%0")) end

describe("docs/openresty.md #network", function()
  local sb, dir, port, blocks

  setup(function()
    sb = sandbox.shared()
    blocks = marked_blocks("docs/openresty.md")
    local ok, out = proc.run("mktemp -d /tmp/xs2a-docs-XXXXXX")
    assert(ok, out)
    dir = out:gsub("%s+$", "")
    -- workers run as nobody when nginx starts as root: the tree must be readable
    assert(proc.run("chmod 0755 " .. proc.quote(dir) .. " && mkdir -p " .. proc.quote(dir .. "/prefix/logs")
      .. " " .. proc.quote(dir .. "/etc") .. " " .. proc.quote(dir .. "/app")))
    -- /etc/tpp as the doc describes it, from the sandbox's test PKI
    for to, from in pairs({ ["qwac.pem"] = "qwac.pem", ["qwac.key"] = "qwac.key", ["qseal.pem"] = "qseal.pem",
        ["qseal.key"] = "qseal.key", ["server.pem"] = "server.pem", ["server.key"] = "server.key",
        ["bank-ca.pem"] = "ca.pem" }) do
      assert(proc.run("ln -s " .. proc.quote(sb.pki .. "/" .. from) .. " " .. proc.quote(dir .. "/etc/" .. to)))
    end
  end)

  teardown(function()
    if dir then
      proc.run("kill -QUIT $(cat " .. proc.quote(dir .. "/prefix/logs/nginx.pid") .. ") 2>/dev/null; sleep 0.3")
      proc.run("rm -rf " .. proc.quote(dir))
    end
  end)

  local function materialise(text)
    text = text:gsub(plain("/opt/lua-xs2a"), helper.root):gsub(plain("/opt/tpp"), dir .. "/app")
      :gsub(plain("/etc/tpp"), dir .. "/etc"):gsub("127%.0%.0%.1:9443", "127.0.0.1:" .. port)
    return text
  end

  local function curl(args)
    local ok, out = proc.run("curl -s -S --max-time 30 --cacert " .. proc.quote(sb.pki .. "/ca.pem") .. " " .. args)
    assert(ok, out)
    return out
  end

  it("holds a complete nginx.conf and app module", function()
    assert.is_string(blocks["nginx.conf"])
    assert.is_string(blocks["tpp.lua"])
    assert.matches("events%s*{", blocks["nginx.conf"])
    assert.matches("ssl_certificate%s", blocks["nginx.conf"])
  end)

  it("passes nginx -t and serves a consent end to end against the sandbox", function()
    local env = "XS2A_SANDBOX_URL=" .. proc.quote(sb.base_url) .. " "
    local nginx = env .. "nginx -p " .. proc.quote(dir .. "/prefix/") .. " -c nginx.conf"
    local ok, out
    for _ = 1, 5 do   -- another port when a random one is taken
      port = proc.random_port()
      write(dir .. "/prefix/nginx.conf", materialise(blocks["nginx.conf"]))
      write(dir .. "/app/tpp.lua", materialise(blocks["tpp.lua"]))
      ok, out = proc.run(nginx .. " -t")
      assert(ok, out)
      assert.matches("test is successful", out)
      ok, out = proc.run(nginx)
      if ok or not out:find("Address already in use", 1, true) then break end
    end
    assert(ok, out)
    local base = "https://127.0.0.1:" .. port
    for _ = 1, 50 do
      if proc.run("curl -s -o /dev/null --cacert " .. proc.quote(sb.pki .. "/ca.pem") .. " " .. base .. "/connect")
      then break end
      os.execute("sleep 0.1")
    end
    -- /connect: 303 to the bank's authorisation page, with a session cookie
    local head = curl("-o /dev/null -D - " .. base .. "/connect")
    assert.matches("^HTTP/1%.1 303", head)
    local location = assert(head:match("\n[Ll]ocation: ([^\r\n]+)"))
    local cookie = assert(head:match("\n[Ss]et%-[Cc]ookie: (tpp_session=[^;\r\n]+)"))
    assert.matches("HttpOnly; Secure; SameSite=Lax", head, 1, true)
    assert.equal(1, select(2, location:gsub("^" .. plain(sb.base_url) .. "/xs2a/berlin/1%.3/oauth/authorize%?", "")))
    -- the PSU approves; the bank sends the browser back to redirect_uri
    local back = assert(psu.authorize(location, { username = "alice", password = "alice-pass", decision = "approve" }))
    local query = assert(back:match("^https://tpp%.example/callback%?(.+)$"))
    -- the browser arrives at this app's /callback with the query
    local body = curl("-H " .. proc.quote("Cookie: " .. cookie) .. " " .. proc.quote(base .. "/callback?" .. query))
    local answer = assert(json.decode(body), body)
    assert.equal("valid", answer.status)
    assert.is_true(#answer.accounts >= 2)
    assert.matches("^LT%d+$", answer.accounts[1].iban)
    -- a callback without a query string: a 400 answer, no Lua error in the log
    local cookie2 = assert(curl("-o /dev/null -D - " .. base .. "/connect")
      :match("\n[Ss]et%-[Cc]ookie: (tpp_session=[^;\r\n]+)"))
    local status = curl("-o /dev/null -w '%{http_code}' -H " .. proc.quote("Cookie: " .. cookie2) .. " "
      .. base .. "/callback")
    assert.equal("400", status)
    assert.equal("400", curl("-o /dev/null -w '%{http_code}' " .. proc.quote(base .. "/callback?code=x&state=y")))
    local log = proc.read_all(dir .. "/prefix/logs/error.log") or ""
    assert.is_nil(log:find("[error]", 1, true), log)
    assert.is_nil(log:find("stack traceback", 1, true), log)
  end)
end)

describe("docs/api.md #network", function()
  it("runs its snippets as one script against the sandbox", function()
    local sb = sandbox.shared()
    local text = helper.read("docs/api.md")
    local code, skipped = {}, 0
    local pos = 1
    while true do
      local s, e, body = text:find("```lua\n(.-)\n```", pos)
      if not s then break end
      if text:sub(1, s - 1):match("<!%-%- not in the script: [^\n]- %-%->\n$") then
        skipped = skipped + 1
      else
        code[#code + 1] = body
      end
      pos = e + 1
    end
    assert.equal(3, skipped)
    assert.is_true(#code >= 10)
    local file = os.tmpname()
    write(file, table.concat(code, "\n"))
    local ok, out = proc.run(("cd %s && XS2A_SANDBOX_URL=%s XS2A_PKI=%s "
      .. "LUA_PATH='lua/?.lua;lua/?/init.lua;examples/?.lua;;' LUA_CPATH='build/lua5.4/?.so;;' lua5.4 %s")
      :format(proc.quote(helper.root), proc.quote(sb.base_url), proc.quote(sb.pki), proc.quote(file)))
    os.remove(file)
    assert(ok, out)
    -- what the guide says the snippets print
    assert.matches("ROLE_INVALID", out, 1, true)
    assert.matches("done\tvalid", out, 1, true)
    assert.matches("%d+ booked transactions", out)
    assert.matches("ACSC\tACSC", out, 1, true)
    assert.matches("\nCANC\n", out, 1, true)
    assert.matches("funds available:\tnil\tSERVICE_UNSUPPORTED", out, 1, true)
    assert.matches("config\tSERVICE_UNSUPPORTED", out, 1, true)
    assert.matches("http\t404\tRESOURCE_UNKNOWN\ttrue", out, 1, true)
  end)
end)
