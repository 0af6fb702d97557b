-- The generated API reference (`make docs`: scripts/docs, LDoc over lua/,
-- config.ld):
-- it builds without a single warning, and every public function of xs2a.*
-- has an entry in it: the functions of the facade and of the modules it
-- offers, and the methods of the objects users hold (client, consent,
-- payment, basket, flow, identity, error, stores). A function counts as
-- documented when the page of a module that holds it (the same function
-- value) has an entry for it, or the page of its class names it.
-- Runs once (under Lua 5.4).
if rawget(_G, "jit") then return end

local helper = require "helper"
local proc = require "support.proc"

-- methods that exist but are not part of the public API, with the reason
local NOT_PUBLIC = {
  ["identity:export_key_pem"] = "the ngx transport's private way to the key; issue 8 removes it",
}

local function anchors_of(html)
  local set = {}
  for name in html:gmatch('<a name = "([^"]+)"') do set[name] = true end
  return set
end

describe("API reference (LDoc)", function()
  local dir, pages

  setup(function()
    local ok, out = proc.run("mktemp -d /tmp/xs2a-ldoc-XXXXXX")
    assert(ok, out)
    dir = out:gsub("%s+$", "")
  end)
  teardown(function() if dir then proc.run("rm -rf " .. proc.quote(dir)) end end)

  it("builds with zero warnings", function()
    local ok, out = proc.run("sh scripts/docs " .. proc.quote(dir))
    assert(ok, out)
    assert.equal("docs: " .. dir .. "/index.html\n", out)
    pages = {}
    for _, name in ipairs(assert(require("xs2a.core").fs_list(dir .. "/modules"))) do
      local mod = name:match("^(.+)%.html$")
      if mod then pages[mod] = anchors_of(helper.read(dir .. "/modules/" .. name)) end
    end
    assert.is_table(pages["xs2a"])
  end)

  it("documents every public function", function()
    assert.is_table(pages, "needs the build of the previous case")
    local xs2a = require "xs2a"
    -- where each function value is documented: module pages, by field name
    local documented = {}
    local function note(fn, page, name)
      if type(fn) == "function" and page and (page[name] or page["_M." .. name]) then documented[fn] = true end
    end
    for mod, page in pairs(pages) do
      local ok, m = pcall(require, mod)
      if ok and type(m) == "table" then
        for k, v in pairs(m) do
          if type(k) == "string" then
            note(v, page, k)
            if type(v) == "table" and not pages[mod .. "." .. k] then
              for k2, v2 in pairs(v) do if type(k2) == "string" then note(v2, page, k2) end end
            end
          end
        end
      end
    end
    -- class pages: "Class:method" anywhere
    local class_doc = {}
    for _, page in pairs(pages) do
      for a in pairs(page) do class_doc[a] = true end
    end

    local missing, seen = {}, {}
    local function check(label, fn, class, name)
      if type(fn) ~= "function" or seen[fn] or name:sub(1, 1) == "_" then return end
      seen[fn] = true
      if documented[fn] then return end
      if class and (class_doc[class .. ":" .. name] or class_doc[class .. "." .. name]) then return end
      if NOT_PUBLIC[label] then return end
      missing[#missing + 1] = label
    end
    local function check_table(prefix, t, class)
      local names = {}
      for k in pairs(t) do if type(k) == "string" then names[#names + 1] = k end end
      table.sort(names)
      for _, k in ipairs(names) do check(prefix .. k, t[k], class, k) end
    end
    local function methods_of(obj)
      local mt = getmetatable(obj)
      return type(mt) == "table" and type(mt.__index) == "table" and mt.__index or {}
    end

    -- the facade and the modules it offers
    check_table("xs2a.", xs2a)
    for _, name in ipairs({ "identity", "store", "crypto", "errors", "json", "profile", "transport", "oauth",
        "flow", "limiter", "sign", "status" }) do
      local m = xs2a[name] or require("xs2a." .. name)
      assert.is_table(m, "xs2a." .. name)
      check_table("xs2a." .. name .. ".", m)
    end
    check_table("xs2a.parallel.", require "xs2a.parallel")

    -- the objects users hold
    local pki = helper.pki_dir
    local client = assert(xs2a.client{ profile = "berlin-group", base_url = "https://bank.example",
      qwac = { cert = pki .. "/qwac.pem", key = pki .. "/qwac.key" },
      qseal = { cert = pki .. "/qseal.pem", key = pki .. "/qseal.key" },
      redirect_uri = "https://tpp.example/callback", store = xs2a.store.memory() })
    check_table("client:", methods_of(client), "Client")
    local consent = client:consent("c1")
    check_table("consent:", methods_of(consent), "Consent")
    local payment = client:payment("payments", "sepa-credit-transfers", "p1")
    check_table("payment:", methods_of(payment), "Payment")
    local basket = assert(client:signing_basket("b1"))
    check_table("basket:", methods_of(basket), "Basket")
    local flow = assert(consent:authorise())
    check_table("flow:", methods_of(flow), "Flow")
    check_table("identity:", methods_of(client.qwac or assert(xs2a.identity{ cert = pki .. "/qwac.pem",
      key = pki .. "/qwac.key" })), "Identity")
    check_table("err:", methods_of(xs2a.errors.new("config", { code = "X", text = "x" })), "Error")
    check_table("store:", methods_of(xs2a.store.memory()), "Store")
    local fdir = dir .. "/store"
    check_table("store:", methods_of(assert(xs2a.store.file(fdir))), "Store")

    table.sort(missing)
    assert.same({}, missing)
  end)
end)
