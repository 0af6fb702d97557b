local json = require "xs2a.codec.json"

describe("xs2a.json", function()
  describe(".encode()", function()
    it("writes empty marked arrays as [] and empty plain tables as {}", function()
      assert.equal('{"a":[],"b":{}}', json.encode({ a = json.array(), b = {} }))
    end)

    it("writes the fields a shape names as arrays as [] even when empty and unmarked", function()
      local shape = { access = { accounts = "array", balances = "array" },
        payments = { array = true, item = { monthsOfExecution = "array" } } }
      local s = assert(json.encode({
        access = { accounts = {}, balances = {}, transactions = {} },
        payments = { { monthsOfExecution = {} } },
        other = {},
      }, shape))
      assert.equal('{"access":{"accounts":[],"balances":[],"transactions":{}},"other":{},'
        .. '"payments":[{"monthsOfExecution":[]}]}', s)
    end)

    it("knows no field names of its own: without a shape an empty table is an object", function()
      assert.equal('{"access":{"accounts":{}},"paymentIds":{}}', json.encode({ access = { accounts = {} },
        paymentIds = {} }))
    end)

    it("the resource layer's shapes: consent access lists, payment arrays, bulk payments", function()
      local consent = require "xs2a.api.consent"
      local payment = require "xs2a.api.payment"
      assert.equal('{"access":{"accounts":[],"balances":[],"transactions":[]}}',
        json.encode({ access = { accounts = {}, balances = {}, transactions = {} } }, consent.SHAPE))
      assert.equal('{"payments":[{"remittanceInformationUnstructuredArray":[]}]}',
        json.encode({ payments = { { remittanceInformationUnstructuredArray = {} } } },
          payment.SHAPES["bulk-payments"]))
    end)

    it("sorts object keys", function()
      assert.equal('{"a":1,"b":2,"c":{"x":true,"y":false}}', json.encode({ c = { y = false, x = true }, b = 2, a = 1 }))
    end)

    it("writes null, integers, floats and escapes", function()
      assert.equal('[null,1,-2,1.5,"a\\"b\\\\c\\n\\u0001"]', json.encode({ json.null, 1, -2, 1.5, 'a"b\\c\n\1' }))
    end)

    it("returns an error value for NaN, infinity, functions, cycles, sparse and mixed tables", function()
      local cyc = {}
      cyc.self = cyc
      for _, v in ipairs({ { x = 0 / 0 }, { x = math.huge }, { f = print }, cyc, { 1, nil, 3 },
          { 1, a = 2 }, { [1.5] = 1 } }) do
        local s, err = json.encode(v)
        assert.is_nil(s)
        assert.matches("^json.encode: ", err)
      end
    end)
  end)

  describe(".decode()", function()
    it("marks arrays, keeps objects and null", function()
      local text = '{"a":[2],"b":{},"c":[1,[3],{"d":null}],"e":"[]"}'
      local v = assert(json.decode(text))
      assert.is_true(json.is_array(v.a))
      assert.is_true(json.is_array(v.c[2]))
      assert.is_false(json.is_array(v.b))
      assert.equal(json.null, v.c[3].d)
      assert.equal("[]", v.e)
      assert.equal('{"a":[2],"b":{},"c":[1,[3],{"d":null}],"e":"[]"}', json.encode(v))
    end)

    it("empty arrays: marked where cjson can (array_mt), else an empty table the shape re-encodes", function()
      local v = assert(json.decode('{"t":[],"s":"x\\"[ ]\\\\"}'))
      assert.equal('x"[ ]\\', v.s)
      assert.is_nil(next(v.t))
      assert.equal(json.NATIVE_ARRAYS, json.is_array(v.t))
      assert.equal('{"s":"x\\"[ ]\\\\","t":[]}', json.encode(v, { t = "array" }))
    end)

    it("decodes a big body: every nested array marked, integers kept", function()
      local parts = {}
      for i = 1, 2000 do parts[i] = '{"id":"' .. i .. '","a":[' .. i .. ']}' end
      local v = assert(json.decode("[" .. table.concat(parts, ",") .. "]"))
      assert.equal(2000, #v)
      assert.is_true(json.is_array(v[2000].a))
      assert.equal("2000", tostring(v[2000].a[1]))
    end)

    it("gives integers for integral numbers", function()
      local v = assert(json.decode('{"n":4,"f":1.25}'))
      assert.equal("4", tostring(v.n))
      assert.equal(1.25, v.f)
    end)

    it("a top-level integral number is an integer where Lua has them", function()
      assert.equal("7", tostring(json.decode("7")))
      assert.equal(2.5, json.decode("2.5"))
    end)

    it("1000 levels of nesting (cjson's limit) decode and are marked", function()
      local v = assert(json.decode(string.rep("[", 999) .. "1" .. string.rep("]", 999)))
      for _ = 1, 998 do
        assert.is_true(json.is_array(v))
        v = v[1]
      end
      assert.equal("1", tostring(v[1]))
    end)

    it("returns nil and an error for bad JSON and non-strings", function()
      for _, s in ipairs({ "{bad", "", "[1,", '{"a":}' }) do
        local v, err = json.decode(s)
        assert.is_nil(v)
        assert.matches("^json.decode: ", err)
      end
      assert.is_nil((json.decode(nil)))
    end)
  end)

  -- the pass over cjson's result exists twice: in C (csrc/json.c, used under
  -- PUC Lua) and in Lua (used under LuaJIT and without the core); both must
  -- give the same tables
  describe("the walk over a decoded value, C and Lua", function()
    local cjson = require "cjson"
    local W = json._walks

    -- a deep comparison that also compares metatables and number subtypes
    local function same(a, b, path)
      path = path or "$"
      if type(a) ~= type(b) then return false, path .. ": " .. type(a) .. " vs " .. type(b) end
      if type(a) == "number" then
        if math.type and math.type(a) ~= math.type(b) then
          return false, path .. ": " .. math.type(a) .. " vs " .. math.type(b)
        end
        return a == b or (a ~= a and b ~= b), path
      end
      if type(a) ~= "table" then return a == b, path end
      if getmetatable(a) ~= getmetatable(b) then return false, path .. ": metatable" end
      for k, v in pairs(a) do
        local ok, where = same(v, b[k], path .. "." .. tostring(k))
        if not ok then return false, where end
      end
      for k in pairs(b) do
        if a[k] == nil then return false, path .. "." .. tostring(k) .. " only in the second" end
      end
      return true
    end

    -- random JSON text from a seeded generator (objects, arrays, empty
    -- ones, integral and fractional numbers, strings, booleans, null)
    local seed = 12345
    local function rnd(n)
      seed = (seed * 1103515245 + 12345) % 2147483648
      return seed % n
    end
    local function gen(depth)
      local r = rnd(depth > 5 and 5 or 9)
      if r == 0 then return tostring(rnd(100000) - 50000) end
      if r == 1 then return tostring(rnd(1000) - 500) .. "." .. tostring(rnd(100)) end
      if r == 2 then return '"s' .. rnd(1000) .. '"' end
      if r == 3 then return ({ "true", "false", "null", "1e3", "-0", "0.0" })[rnd(6) + 1] end
      if r == 4 then return ({ "[]", "{}", '""' })[rnd(3) + 1] end
      local parts = {}
      for i = 1, rnd(6) do
        parts[i] = (r % 2 == 0) and gen(depth + 1) or ('"k' .. i .. '":' .. gen(depth + 1))
      end
      if r % 2 == 0 then return "[" .. table.concat(parts, ",") .. "]" end
      return "{" .. table.concat(parts, ",") .. "}"
    end

    it("is the C one under PUC Lua and the Lua one under LuaJIT", function()
      assert.is_function(W.c)
      if W.mark or W.floats then
        assert.equal(rawget(_G, "jit") and "lua" or "c", W.used)
      end
    end)

    it("gives the same tables from both on 500 random documents", function()
      for i = 1, 500 do
        local text = gen(0)
        local a = W.lua(cjson.decode("[" .. text .. "]"))
        local b = assert(W.c(cjson.decode("[" .. text .. "]"), json.array_mt, W.mark, W.floats))
        local ok, where = same(a, b)
        assert(ok, "document " .. i .. " differs at " .. tostring(where) .. ": " .. text)
      end
    end)

    it("marks arrays and converts numbers only as told", function()
      local v = assert(W.c(cjson.decode('{"a":[1,{"b":[2.0,2.5]}],"c":3}'), json.array_mt, true, false))
      assert.equal(json.array_mt, getmetatable(v.a))
      assert.equal(json.array_mt, getmetatable(v.a[2].b))
      assert.is_nil(getmetatable(v))
      v = assert(W.c(cjson.decode('{"a":[1]}'), json.array_mt, false, false))
      assert.is_nil(getmetatable(v.a))
      if math.type then
        v = assert(W.c({ 4.0, { x = 2.0, y = 2.5 }, "5" }, json.array_mt, false, true))
        assert.equal("integer", math.type(v[1]))
        assert.equal("integer", math.type(v[2].x))
        assert.equal("float", math.type(v[2].y))
        assert.equal("5", v[3])
        assert.equal("integer", math.type(W.c(6.0, json.array_mt, false, true)))
        -- floats without an integer of the same value stay floats
        v = assert(W.c({ 2^63, -2^63, 0/0, math.huge, 1e300 }, json.array_mt, false, true))
        assert.equal("float", math.type(v[1]))
        assert.equal("integer", math.type(v[2]))
        assert.equal("float", math.type(v[4]))
        assert.equal("float", math.type(v[5]))
      end
    end)

    it("refuses a value nested deeper than any cjson gives, without a crash", function()
      local deep = {}
      local t = deep
      for _ = 1, 5000 do
        t[1] = {}
        t = t[1]
      end
      local v, err = W.c(deep, json.array_mt, true, true)
      assert.is_nil(v)
      assert.equal("nesting too deep", err)
      -- a table that holds itself (never from cjson) ends the same way
      local loop = {}
      loop[1] = loop
      v, err = W.c(loop, json.array_mt, true, true)
      assert.is_nil(v)
      assert.equal("nesting too deep", err)
    end)
  end)
end)
