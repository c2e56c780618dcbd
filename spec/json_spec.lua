-- corio.json: integers stay integers, 64-bit values round-trip, null is a sentinel.
local corio = require "corio"
local json = require "corio.json"

describe("corio.json", function()
  it("decodes integers as integers and floats as floats", function()
    local v = json.decode('{"id": 1, "f": 1.5, "e": 1e3, "neg": -7, "z": 0}')
    assert.equal("integer", math.type(v.id))
    assert.equal(1, v.id)
    assert.equal("float", math.type(v.f))
    assert.equal("float", math.type(v.e))
    assert.equal(1000.0, v.e)
    assert.equal(-7, v.neg)
    assert.equal("integer", math.type(v.z))
  end)

  it("round-trips 64-bit integers exactly", function()
    for _, n in ipairs {math.maxinteger, math.mininteger, 9007199254740993, 123456789012345} do
      local s = json.encode({n = n})
      assert.equal('{"n":' .. string.format("%d", n) .. "}", s)
      assert.equal(n, json.decode(s).n)
      assert.equal("integer", math.type(json.decode(s).n))
    end
    -- beyond 64 bits: the nearest float, not a wrapped integer
    assert.equal("float", math.type(json.decode("18446744073709551616")))
  end)

  it("encodes floats in their shortest exact form, keeping them floats", function()
    for _, f in ipairs {0.1, 1 / 3, 1e300, -2.5e-300, 2.0, 123456789012345.6} do
      local s = json.encode(f)
      assert.equal(f, json.decode(s))
      assert.equal("float", math.type(json.decode(s)))
    end
    assert.has_error(function() json.encode(0 / 0) end)
    assert.has_error(function() json.encode(math.huge) end)
  end)

  it("keeps null distinct from a missing key", function()
    local v = json.decode('{"a": null}')
    assert.equal(json.null, v.a)
    assert.is_nil(v.b)
    assert.equal('{"a":null}', json.encode({a = json.null}))
    assert.equal("[1,null,3]", json.encode({1, json.null, 3}))
    assert.equal("null", tostring(json.null))
  end)

  it("round-trips strings with escapes and unicode", function()
    local s = 'quote " backslash \\ nl \n tab \t ctl \1 é 😀'
    assert.equal(s, json.decode(json.encode(s)))
    assert.equal("😀", json.decode('"\\ud83d\\ude00"'))
    assert.equal("é/", json.decode('"\\u00e9\\/"'))
    assert.equal("a\127b", json.decode('"a\127b"'))  -- DEL needs no escape
  end)

  it("keeps empty arrays and objects apart", function()
    local v = json.decode('{"a": [], "o": {}}')
    assert.equal('[]', json.encode(v.a))
    assert.equal('{}', json.encode(v.o))
    assert.equal('[]', json.encode(json.array()))
    assert.is_true(json.is_array(v.a))
  end)

  it("rejects invalid input with the position", function()
    for _, bad in ipairs {"", "{", "[1,]", '{"a" 1}', "01", "1.", "-", "tru", '"\\x"', '"a\nb"',
                          "[1] x", "{a:1}", '"\\ud800"', "1e", "NaN"} do
      local ok, err = pcall(json.decode, bad)
      assert.is_false(ok, bad)
      assert.truthy(tostring(err):find("^json: "), err)
    end
    local _, err = pcall(json.decode, '{"a": tru}')
    assert.truthy(err:find("position 7", 1, true), err)
  end)

  it("refuses what JSON cannot hold", function()
    local t = {}; t.self = t
    assert.has_error(function() json.encode(t) end, "json.encode: a table contains itself")
    assert.has_error(function() json.encode(print) end)
    assert.has_error(function() json.encode({[true] = 1}) end)
    local deep = "" .. ("["):rep(2000) .. ("]"):rep(2000)
    assert.is_false(pcall(json.decode, deep))
  end)

  it("encodes mixed and sparse tables as objects with string keys", function()
    local v = json.decode(json.encode({[1] = "a", [3] = "c"}))
    assert.same({["1"] = "a", ["3"] = "c"}, v)
  end)
end)
