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

  -- Issue 17 (found again by fuzz/fuzz_json.c): decode must never produce a value that
  -- encode refuses, nor accept or write invalid UTF-8.
  describe("exactness", function()
    local function decode_error(text)
      local ok, e = pcall(json.decode, text)
      assert.is_false(ok)
      return e
    end

    it("refuses numbers beyond a float's range instead of making infinities", function()
      assert.equal("json: number out of range at position 7 near '1e400}'",
                   decode_error('{"a": 1e400}'))
      assert.matches("^json: number out of range at position 2 ", decode_error("[-1e400]"))
      assert.matches("^json: number out of range at position 1 ",
                     decode_error(("1"):rep(100000)))
      -- still fine: past 64 bits but within a float, and underflow to zero
      assert.equal(2^64, json.decode("18446744073709551616"))
      assert.equal(0.0, json.decode("1e-400"))
      assert.equal("1e+308", json.encode(json.decode("1e308")))
    end)

    it("refuses invalid UTF-8 in strings, with its position", function()
      assert.equal("json: invalid UTF-8 at position 2 near '\255\"'", decode_error('"\255"'))
      assert.matches("^json: invalid UTF%-8 at position 4 ", decode_error('"ab\192\128"'))
      assert.matches("^json: invalid UTF%-8 at position 6 ",
                     decode_error('["x\\n\237\160\128"]'))  -- after an escape
      assert.matches("^json: invalid UTF%-8 at position 8 ",
                     decode_error('{"k": "\244\144\128\128"}'))  -- past U+10FFFF
      assert.equal("caf\195\169 \240\159\152\128",
                   json.decode('"caf\195\169 \240\159\152\128"'))
    end)

    it("refuses to encode invalid UTF-8, in values and keys", function()
      assert.has_error(function() json.encode("a\255b") end,
                       "json.encode: invalid UTF-8 at position 2 of a string")
      assert.has_error(function() json.encode({["\192\128"] = 1}) end,
                       "json.encode: invalid UTF-8 at position 1 of a string")
      assert.has_error(function() json.encode({"\237\160\128"}) end)
    end)

    it("replaces invalid UTF-8 with U+FFFD on request", function()
      local r = {utf8 = "replace"}
      assert.equal("a\u{FFFD}b\u{FFFD}c\u{FFFD}d",
                   json.decode('"a\255b\192\128c\237\160\128d"', r))
      assert.equal('"a\u{FFFD}b"', json.encode("a\255b", r))
      assert.equal('"ok"', json.encode("ok", {utf8 = "strict"}))
      assert.has_error(function() json.decode("1", {utf8 = "lax"}) end,
                       'json.decode: utf8 must be "strict" or "replace"')
      -- the option holds for its call only
      assert.has_error(function() json.decode('"\255"') end)
    end)
  end)
end)
