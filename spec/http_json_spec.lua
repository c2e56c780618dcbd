local corio = require "corio"
local json = require("corio.http").json

-- The client encodes and decodes with corio.json, the server's rules.
describe("corio.http JSON", function()
  it("keeps integers integers and floats floats", function()
    local v = json.decode('[0, -1, 9223372036854775807, -9223372036854775808, 1.0, 2.5e3, 1E2]')
    assert.equal("integer", math.type(v[1]))
    assert.equal(-1, v[2])
    assert.equal(math.maxinteger, v[3])
    assert.equal(math.mininteger, v[4])
    assert.equal("float", math.type(v[5]))
    assert.equal(2500.0, v[6])
    assert.equal("float", math.type(v[7]))
    -- past 64 bits: a float, not a wrapped integer
    local big = json.decode("18446744073709551616")
    assert.equal("float", math.type(big))
    assert.equal(2.0 ^ 64, big)
  end)

  it("decodes strings, escapes and surrogate pairs", function()
    assert.equal('a"b\\c/\b\f\n\r\t', json.decode('"a\\"b\\\\c\\/\\b\\f\\n\\r\\t"'))
    assert.equal("é€😀", json.decode('"\\u00e9\\u20ac\\ud83d\\ude00"'))
    assert.equal("raw é", json.decode('"raw é"'))
    assert.same({a = {b = {}}, c = json.null, d = false},
                json.decode(' {"a":{"b":[]},"c":null,"d":false} '))
  end)

  it("is corio.json", function()
    assert.equal(require "corio.json", json)
  end)

  it("raises on malformed input, saying where", function()
    for _, bad in ipairs {"", "[1,]", "{\"a\" 1}", "01", "1.", "1e", "-", "[1] x", "\"a",
                          "\"\\x\"", "\"\\ud800\"", "tru", "1-2", "[1+2]", "{1: 2}", "\"a\nb\"",
                          "nul"} do
      local ok, e = pcall(json.decode, bad)
      assert.is_false(ok, bad)
      assert.matches("^json: ", e)
      assert.is_truthy(e:find("at position %d") or e:find("at the end of the input"), e)
    end
    assert.has_error(function() json.decode(("["):rep(2000)) end)
  end)

  it("encodes without losing digits", function()
    assert.equal("12345678901234567", json.encode(12345678901234567))
    assert.equal("0.1", json.encode(0.1))
    assert.equal(0.1, json.decode(json.encode(0.1)))
    assert.equal("1.0", json.encode(1.0))
    assert.equal('"a\\"\\n\\u0001"', json.encode('a"\n\1'))
    local doc = {c = true, a = {1, 2, {b = json.null}}}
    assert.same(doc, json.decode(json.encode(doc)))
    assert.equal("{}", json.encode({}))
    assert.equal("[]", json.encode(json.array()))
    assert.has_error(function() json.encode({[true] = 1}) end)
    assert.has_error(function() json.encode(0 / 0) end)
    assert.has_error(function() json.encode(print) end)
    local t = {}
    t.self = t
    assert.has_error(function() json.encode(t) end, "json.encode: a table contains itself")
  end)
end)
