-- The leak check that spec/helper.lua installs for every test of every spec file still fires:
-- a spec file that leaves a task running fails when busted runs it in a process of its own.
local support = require "support"

-- Run busted inside corio on one spec file (the code given), with our helper: out, code.
local function busted_on(code)
  local file = support.script(code)
  local busted = support.run("command -v busted"):gsub("%s+$", "")
  local out, err, status = support.run_corio(("%s --helper=spec/helper.lua -o plainTerminal %s")
                                             :format(busted, file))
  os.remove(file)
  return out .. err, status
end

describe("the global leak check", function()
  it("passes a spec that leaves nothing behind", function()
    local out, code = busted_on([[
      local corio = require "corio"
      describe("tidy", function()
        it("awaits its task", function() corio.spawn(corio.sleep, 0):await() end)
      end)]])
    assert.equal(0, code, out)
    assert.matches("1 success / 0 failures / 0 errors", out)
  end)

  it("fails a spec that leaves a task running, though the spec adds no hook", function()
    local out, code = busted_on([[
      local corio = require "corio"
      describe("leaky", function()
        it("forgets its task", function() corio.spawn(corio.sleep, 60) end)
      end)]])
    assert.not_equal(0, code)
    assert.matches("tasks left running after the test", out)
    assert.matches("1 error", out)
  end)
end)
