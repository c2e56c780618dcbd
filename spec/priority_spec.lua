local corio = require "corio"

describe("task priorities", function()
  it("run the ready tasks of a round by decreasing priority, equal ones FIFO", function()
    corio.run(function()
      local order = {}
      local tasks = {}
      local spec = {{"low", -5}, {"a0", 0}, {"high", 10}, {"b0", nil}, {"mid", 3},
                    {"high2", 10}, {"c0", 0}}
      for i, s in ipairs(spec) do
        tasks[i] = corio.spawn({function(tag) order[#order + 1] = tag end, priority = s[2]},
                               s[1])
      end
      corio.gather(tasks)
      assert.same({"high", "high2", "mid", "a0", "b0", "c0", "low"}, order)
    end)
  end)

  it("apply to tasks woken by a queue, a lock or a timer, round by round", function()
    corio.run(function()
      local ev = corio.Event()
      local order = {}
      local tasks = {}
      for i, p in ipairs {1, 5, 3} do
        tasks[i] = corio.spawn({function() ev:wait(); order[#order + 1] = p end, priority = p})
      end
      corio.sleep(0)
      ev:set()
      corio.gather(tasks)
      assert.same({5, 3, 1}, order)
    end)
  end)

  it("never starve a low-priority task", function()
    corio.run(function()
      local stop = false
      local spins = 0
      local busy = {}
      for i = 1, 3 do
        busy[i] = corio.spawn({function()
          while not stop do spins = spins + 1; corio.sleep(0) end
        end, priority = 100})
      end
      local low = corio.spawn({function()
        for _ = 1, 5 do corio.sleep(0) end
        return "ran"
      end, priority = -100})
      assert.equal("ran", low:await())
      stop = true
      corio.gather(busy)
      assert.is_true(spins > 0)
    end)
  end)

  it("are readable and settable on a task, and validated", function()
    corio.run(function()
      local order = {}
      local a = corio.spawn(function() order[#order + 1] = "a" end)
      local b = corio.spawn({function() order[#order + 1] = "b" end, name = "bee"})
      assert.equal(0, a.priority)
      assert.equal("bee", b.name)
      b.priority = 7     -- b is in the ready queue: it now runs first
      assert.equal(7, b.priority)
      corio.gather {a, b}
      assert.same({"b", "a"}, order)
      local t = corio.spawn({function(x, y) return x + y end, priority = 2}, 40, 2)
      assert.equal(42, t:await())
      assert.error_matches(function() corio.spawn {priority = 1} end,
                           "the options table needs the function at %[1%], got nil")
      assert.error_matches(function() corio.spawn {print, priority = 1.5} end,
                           "priority must be an integer")
      assert.error_matches(function() corio.spawn {print, name = 3} end,
                           "name must be a string, got number")
      assert.error_matches(function() a.priority = "x" end, "priority must be an integer")
    end)
  end)
end)
