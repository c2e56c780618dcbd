-- Issue 17: under a memory limit (ulimit -v) the command aborted with "PANIC: unprotected
-- error in call to Lua API (not enough memory)": corio_close cancelled the tasks left when
-- the script died of it, and the scheduler's bookkeeping around a task (its traceback, its
-- cancellation error) ran out of memory outside any protected call. Out of memory must end
-- in Lua's "not enough memory" and a plain non-zero exit, whatever the allocator.
local support = require "support"

local corio_bin = os.getenv("CORIO") or "build/corio"

local function sanitized()
  -- ASan reserves terabytes of address space: no ulimit -v
  return support.run("ldd " .. corio_bin):find("libasan") ~= nil
end

describe("out of memory", function()
  it("ends with Lua's memory error and exit code 1, not a panic or a signal", function()
    if sanitized() then return end
    -- tasks sleeping and ready while the main task fills memory
    local script = support.script([[
      local corio = require "corio"
      local keep = {}
      corio.run(function()
        while true do
          corio.spawn(function() local x = {}; corio.sleep(0.001); keep[#keep + 1] = x end)
          keep[#keep + 1] = {}
        end
      end)
    ]])
    for _, case in ipairs {{"pool", 100000}, {"trim", 100000}, {"trim", 200000},
                           {"system", 100000}} do
      local mode, kib = case[1], case[2]
      local _, err, code = support.run(("ulimit -v %d; CORIO_ALLOC=%s exec timeout 120 %s %s")
                                       :format(kib, mode, corio_bin, script))
      local what = ("%s under %d KiB: exit %s, stderr %q"):format(mode, kib, code, err)
      assert.is_nil(err:find("PANIC", 1, true), what)
      assert.equal(1, code, what)
      assert.truthy(err:find("not enough memory", 1, true), what)
    end
    os.remove(script)
  end)
end)
