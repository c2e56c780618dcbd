-- A deadline that was stopped (wait_for finished in time) must not keep the loop alive:
-- the script used to exit only when the abandoned deadline would have fired.
local corio = require "corio"
local support = require "support"

describe("a stopped deadline", function()
  it("does not delay the end of a script", function()
    local script = support.script([[
      local corio = require "corio"
      local q = corio.Queue()
      q:put("ready")
      print(corio.wait_for(function() return q:get() end, 30))
    ]])
    local t0 = os.time()
    local out, err, code = support.run_corio(script)
    os.remove(script)
    assert.equal("ready\n", out)
    assert.equal("", err)
    assert.equal(0, code)
    assert.is_true(os.time() - t0 < 10, "the script waited for the stopped 30 s deadline")
    assert.is_true(corio.wait_for(function() return true end, 30))
  end)
end)
