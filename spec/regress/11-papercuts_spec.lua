-- Issue 11: papercuts found by a new user, and lua's warning rules.
local corio = require "corio"
local support = require "support"

describe("papercuts (issue 11)", function()
  it("spawn{fn, 1, 2, name = 'x'} passes the positional arguments", function()
    local t = corio.spawn {function(a, b) return a + b end, 1, 2, name = "x"}
    assert.equal(3, t:await())
    assert.equal("x", t.name)
  end)

  it("Future:set_exception is asyncio's name for set_error", function()
    local f = corio.Future()
    f:set_exception("bad")
    local ok, e = pcall(f.await, f)
    assert.is_false(ok)
    assert.equal("bad", e)
  end)

  it("the debug report has a line break after 'spawned here:'", function()
    local _, err = support.run_corio("-", [[
      local corio = require "corio"
      corio.set_debug(true)
      corio.spawn(function() error("lost", 0) end)
    ]])
    assert.matches("spawned here:\n", err, 1, true)
  end)

  it("an error re-raised by corio.run keeps the failing frame's traceback", function()
    local script = support.script([[
local corio = require "corio"
local function fails()
  error("deep failure")
end
corio.run(function() fails() end)
]])
    local _, err, code = support.run_corio(script)
    os.remove(script)
    assert.equal(1, code)
    assert.matches(":3: deep failure", err, 1, true)
    assert.matches("in upvalue 'fails'", err, 1, true)
  end)

  it("a task error leaked by a spec names that spec", function()
    local dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p " .. dir)
    local f = assert(io.open(dir .. "/leaky_spec.lua", "w"))
    f:write([[
local corio = require "corio"
describe("suite", function()
  it("leaks a failing task", function()
    corio.spawn(function() error("leaked failure", 0) end)
  end)
end)
]])
    f:close()
    local busted = io.popen("command -v busted"):read("l")
    local _, out = support.run(("%s %s --helper=spec/helper.lua -o TAP %s/leaky_spec.lua 2>&1")
                               :format(os.getenv("CORIO") or "build/corio", busted, dir))
    os.execute("rm -rf " .. dir)
    -- the spec that leaked it fails, and its report carries the task's error
    local all = _ .. out
    assert.matches("not ok 1 - suite leaks a failing task", all, 1, true)
    assert.matches("leaked failure", all, 1, true)
  end)

  describe("warnings as lua prints them", function()
    it("a control message must be a single piece", function()
      local _, err = support.run_corio([[-W -e 'warn("@off", "XXX", "@off")']])
      assert.equal("Lua warning: @offXXX@off\n", err)
    end)

    it("@off and @on switch them", function()
      local _, err = support.run_corio([[-W -e 'warn("@off"); warn("a"); warn("@on"); warn("b", "c")']])
      assert.equal("Lua warning: bc\n", err)
    end)
  end)
end)
