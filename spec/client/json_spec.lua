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

    it("returns nil and an error for bad JSON and non-strings", function()
      for _, s in ipairs({ "{bad", "", "[1,", '{"a":}' }) do
        local v, err = json.decode(s)
        assert.is_nil(v)
        assert.matches("^json.decode: ", err)
      end
      assert.is_nil((json.decode(nil)))
    end)
  end)
end)
