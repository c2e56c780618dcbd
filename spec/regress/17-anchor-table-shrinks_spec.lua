-- Issue 17: after a burst of tasks at once, the Lua heap stayed at the burst's size (16.5 MB
-- after a million tasks): luaL_ref's table of anchors kept a slot per task ever anchored.
-- The anchor table now shrinks when its highest live slot falls low.
local corio = require "corio"
local support = require "support"

local function heap_kb()
  collectgarbage()
  collectgarbage()
  return collectgarbage("count")
end

-- spawn n tasks at once (each anchored until done) and await them all
local function burst(n)
  local ts = {}
  for i = 1, n do ts[i] = corio.spawn(function() corio.sleep(0) return i end) end
  for i = 1, n do assert(ts[i]:await() == i) end
end

describe("the anchor table after a burst of 100,000 tasks", function()
  after_each(support.assert_clean)

  it("gives its memory back", function()
    corio.run(function() burst(1000) end)  -- warm up what stays
    local before = heap_kb()
    corio.run(function() burst(100000) end)
    local grown = heap_kb() - before
    -- 100,000 slots would be 2 MiB (a 131072-slot array part)
    assert.is_true(grown < 256, ("the heap grew by %.0f KiB"):format(grown))
  end)

  it("gives it back while an older task is still anchored", function()
    corio.run(function()
      local ev = corio.Event()
      local waiter = corio.spawn(function() ev:wait() return "woken" end)
      corio.sleep(0)
      local before = heap_kb()
      burst(100000)
      local grown = heap_kb() - before
      assert.is_true(grown < 256, ("the heap grew by %.0f KiB"):format(grown))
      ev:set()
      assert.equal("woken", waiter:await())
    end)
  end)
end)
