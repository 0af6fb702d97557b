local json = require "xs2a.codec.json"

describe("xs2a.json", function()
  describe(".encode()", function()
    it("writes empty marked arrays as [] and empty plain tables as {}", function()
      assert.equal('{"a":[],"b":{}}', json.encode({ a = json.array(), b = {} }))
    end)

    it("writes known Berlin Group array fields as [] even when empty and unmarked", function()
      local s = assert(json.encode({
        access = { accounts = {}, balances = {}, transactions = {} },
        payments = {},
        remittanceInformationUnstructuredArray = {},
        nested = { monthsOfExecution = {}, paymentIds = {}, consentIds = {} },
      }))
      assert.equal('{"access":{"accounts":[],"balances":[],"transactions":[]},"nested":{"consentIds":[],'
        .. '"monthsOfExecution":[],"paymentIds":[]},"payments":[],"remittanceInformationUnstructuredArray":[]}', s)
    end)

    it("keeps transactions an object outside access", function()
      assert.equal('{"transactions":{}}', json.encode({ transactions = {} }))
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
    it("round-trips empty arrays, empty objects and null", function()
      local text = '{"a":[],"b":{},"c":[1,[ ],{"d":null}],"e":"[]"}'
      local v = assert(json.decode(text))
      assert.is_true(json.is_array(v.a))
      assert.is_false(json.is_array(v.b))
      assert.equal(json.null, v.c[3].d)
      assert.equal("[]", v.e)
      assert.equal('{"a":[],"b":{},"c":[1,[],{"d":null}],"e":"[]"}', json.encode(v))
    end)

    it("does not take brackets inside strings for arrays", function()
      local v = assert(json.decode('{"s":"x\\"[ ]\\\\","t":[]}'))
      assert.equal('x"[ ]\\', v.s)
      assert.is_true(json.is_array(v.t))
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
