-- Issue 11: cancellation that always propagates (asyncio 3.13 is the reference), and the two
-- bugs found with it: a crash on cancelling an await cycle and a wrong task list.
local corio = require "corio"
local support = require "support"

local function outcome(t)
  local r = table.pack(pcall(t.await, t))
  return r
end

describe("cancellation (issue 11)", function()

  describe("an await cycle", function()
    it("cancelling one task of the cycle ends both cancelled, without a crash", function()
      local a, b
      a = corio.spawn(function() corio.sleep(0); return b:await() end)
      b = corio.spawn(function() corio.sleep(0); return a:await() end)
      support.turns(3)
      a:cancel()
      local ra, rb = outcome(a), outcome(b)
      assert.is_false(ra[1])
      assert.is_false(rb[1])
      assert.is_true(a:cancelled())
      assert.is_true(b:cancelled())
    end)

    it("left to corio.run's final cleanup does not crash the process", function()
      local out, err, code = support.run_corio("-", [[
        local corio = require "corio"
        local a, b
        corio.run(function()
          a = corio.spawn(function() corio.sleep(0); return b:await() end)
          b = corio.spawn(function() corio.sleep(0); return a:await() end)
          corio.sleep(0.01)
        end)
        print("survived", a:cancelled(), b:cancelled())
      ]])
      assert.equal(0, code, err)
      assert.equal("survived\ttrue\ttrue\n", out)
    end)
  end)

  it("all_tasks() lists every live task exactly once inside wait_for's function", function()
    local seen
    corio.wait_for(function()
      local child = corio.spawn(corio.sleep, 0.01)
      local count, me = {}, corio.current_task()
      for _, t in ipairs(corio.all_tasks()) do count[t] = (count[t] or 0) + 1 end
      seen = {child = count[child], me = count[me]}
      child:await()
    end, 1)
    assert.same({child = 1, me = 1}, seen)
  end)

  describe("a cancelled awaiter", function()
    it("waits for what it awaits to finish its cleanup (1)", function()
      local log = {}
      local inner = corio.spawn(function()
        local ok, e = pcall(corio.sleep, 10)
        log[#log + 1] = "inner cleanup starts"
        corio.sleep(0.02)
        log[#log + 1] = "inner cleanup ends"
        error(e, 0)
      end)
      local outer = corio.spawn(function() return inner:await() end)
      corio.sleep(0)
      outer:cancel()
      local r = outcome(outer)
      log[#log + 1] = "outer done"
      assert.is_false(r[1])
      assert.is_true(corio.is_cancelled(r[2]))
      assert.is_true(inner:done())
      assert.same({"inner cleanup starts", "inner cleanup ends", "outer done"}, log)
    end)

    it("ends with the error the awaited task's cleanup raised (1)", function()
      local inner = corio.spawn(function()
        pcall(corio.sleep, 10)
        corio.sleep(0.01)
        error("cleanup failed", 0)
      end)
      local outer = corio.spawn(function() return inner:await() end)
      corio.sleep(0)
      outer:cancel()
      local r = outcome(outer)
      assert.is_false(r[1])
      assert.equal("cleanup failed", r[2])
      assert.equal("cleanup failed", inner:error())
    end)

    it("ends with the value if the awaited task swallowed the cancel (1)", function()
      local inner = corio.spawn(function()
        pcall(corio.sleep, 10)
        return "swallowed"
      end)
      local outer = corio.spawn(function() return inner:await() end)
      corio.sleep(0)
      outer:cancel()
      local r = outcome(outer)
      assert.same({true, "swallowed", n = 2}, r)
    end)

    it("of a task group receives the group's TaskGroupError (1)", function()
      local outer = corio.spawn(function()
        corio.group(function(g)
          g:spawn(function()
            pcall(corio.sleep, 10)
            error("child cleanup failed", 0)
          end)
          corio.sleep(10)
        end)
      end)
      support.turns(2)
      outer:cancel()
      local r = outcome(outer)
      assert.is_false(r[1])
      assert.is_true(corio.is_task_group_error(r[2]), tostring(r[2]))
    end)
  end)

  it("a cancel requested before an await is passed down to the awaited task (2)", function()
    local inner = corio.spawn(corio.sleep, 10)
    local outer = corio.spawn(function()
      corio.current_task():cancel()
      return inner:await()
    end)
    local r = outcome(outer)
    assert.is_false(r[1])
    assert.is_true(corio.is_cancelled(r[2]))
    pcall(inner.await, inner)
    assert.is_true(inner:cancelled())
  end)

  it("an outside cancel is not lost when a task group aborts at the same moment (3)", function()
    local after_group, outer
    outer = corio.spawn(function()
      local ok, err = pcall(corio.group, function(g)
        g:spawn(function()
          corio.sleep(0.01)
          outer:cancel()        -- an outside cancel, at the moment the group aborts
          error("boom", 0)
        end)
        corio.sleep(10)
      end)
      assert(not ok and corio.is_task_group_error(err), tostring(err))
      local ok2, err2 = pcall(corio.sleep, 0)
      after_group = {ok2, corio.is_cancelled(err2), corio.current_task():cancelling()}
      if not ok2 then error(err2, 0) end
    end)
    local r = outcome(outer)
    assert.same({false, true, 1}, after_group)
    assert.is_false(r[1])
    assert.is_true(outer:cancelled())
  end)

  describe("timeout after a caught cancellation (4)", function()
    it("still raises Timeout when it expires", function()
      local got
      local t = corio.spawn(function()
        pcall(corio.sleep, 10)  -- a cancel caught, not uncancelled: cancelling() is 1
        local ok, e = pcall(corio.timeout, 0.02, corio.sleep, 1)
        got = {ok, corio.is_timeout(e), corio.is_cancelled(e)}
      end)
      corio.sleep(0)
      t:cancel()
      t:await()
      assert.same({false, true, false}, got)
    end)

    it("works inside cleanup code after a cancel", function()
      local got
      local t = corio.spawn(function()
        local ok, e = pcall(corio.sleep, 10)
        got = corio.timeout(1, function() corio.sleep(0.01); return "cleaned" end)
        error(e, 0)
      end)
      corio.sleep(0)
      t:cancel()
      pcall(t.await, t)
      assert.equal("cleaned", got)
      assert.is_true(t:cancelled())
    end)
  end)

  it("wait_for(task, s) surfaces an error raised during the task's cancellation (5)", function()
    local t = corio.spawn(function()
      pcall(corio.sleep, 10)
      error("failed while cancelled", 0)
    end)
    local ok, e = pcall(corio.wait_for, t, 0.02)
    assert.is_false(ok)
    assert.equal("failed while cancelled", e)
  end)

  it("cancelling a task that waits on a Future cancels the Future (6)", function()
    local f = corio.Future()
    local t = corio.spawn(function() return f:await() end)
    corio.sleep(0)
    t:cancel()
    pcall(t.await, t)
    assert.is_true(f:cancelled())
  end)

  it("a task that cancels itself and then returns ends cancelled (7)", function()
    local t = corio.spawn(function()
      corio.current_task():cancel()
      return "returned"
    end)
    local r = outcome(t)
    assert.is_false(r[1])
    assert.is_true(corio.is_cancelled(r[2]))
    assert.is_true(t:cancelled())
  end)

  it("wait_for(fn, 0) or a negative timeout raises Timeout without starting fn (8)", function()
    for _, s in ipairs {0, -1} do
      local started = false
      local ok, e = pcall(corio.wait_for, function() started = true end, s)
      assert.is_false(ok)
      assert.is_true(corio.is_timeout(e), tostring(e))
      assert.is_false(started)
    end
  end)

  it("a Semaphore release then re-acquire does not overtake an earlier waiter (9)", function()
    local sem, order = corio.Semaphore(1), {}
    local holder = corio.spawn(function()
      sem:acquire()
      corio.sleep(0)          -- the waiter queues up meanwhile
      sem:release()           -- hands the unit to the waiter ...
      sem:acquire()           -- ... so this must wait its turn
      order[#order + 1] = "holder again"
      sem:release()
    end)
    local waiter = corio.spawn(function()
      sem:acquire()
      order[#order + 1] = "waiter"
      sem:release()
    end)
    holder:await()
    waiter:await()
    assert.same({"waiter", "holder again"}, order)
  end)

  describe("Barrier's draining phase (10)", function()
    local function draining(after)
      local b = corio.Barrier(3)
      local results = {}
      local parties = {}
      for i = 1, 2 do
        parties[i] = corio.spawn(function()
          local ok, e = pcall(b.wait, b)
          results[i] = ok and "index" or (corio.is_broken_barrier(e) and "broken" or tostring(e))
        end)
      end
      corio.sleep(0)
      local last = corio.spawn(function()
        b:wait()          -- fills the barrier: the other two are still draining
        after(b)
      end)
      last:await()
      for i = 1, 2 do parties[i]:await() end
      return results, b
    end

    it("abort() while parties drain gives them BrokenBarrier", function()
      local results, b = draining(function(b) b:abort() end)
      assert.same({"broken", "broken"}, results)
      assert.is_true(b:broken())
    end)

    it("reset() while parties drain gives them BrokenBarrier and does not hang", function()
      local results, b = draining(function(b) b:reset() end)
      assert.same({"broken", "broken"}, results)
      assert.is_false(b:broken())
      -- usable again
      local ts = {}
      for i = 1, 3 do ts[i] = corio.spawn(function() return b:wait() end) end
      local got = {}
      for i = 1, 3 do got[#got + 1] = ts[i]:await() end
      table.sort(got)
      assert.same({0, 1, 2}, got)
    end)
  end)

  it("as_completed with the same task twice yields it once (11)", function()
    local t = corio.spawn(corio.sleep, 0.01)
    local n = 0
    for done in corio.as_completed({t, t}) do
      assert.equal(t, done)
      n = n + 1
    end
    assert.equal(1, n)
  end)
end)
