local corio = require "corio"
local support = require "support"

local turns, errors_with = support.turns, support.errors_with

describe("corio.Event", function()
  after_each(support.assert_clean)

  it("wakes every waiter on set, returns at once while set, and clears", function()
    corio.run(function()
      local ev = corio.Event()
      assert.equal("corio.Event", getmetatable(ev).__name)
      assert.is_false(ev:is_set())
      local woke = 0
      local tasks = {}
      for i = 1, 3 do tasks[i] = corio.spawn(function() ev:wait(); woke = woke + 1 end) end
      turns()
      assert.equal(0, woke)
      ev:set()
      corio.gather(tasks)
      assert.equal(3, woke)
      assert.is_true(ev:wait())
      ev:clear()
      assert.is_false(ev:is_set())
      errors_with(corio.is_timeout, corio.wait_for, function() return ev:wait() end, 0.01)
    end)
  end)

  it("a cancelled waiter does not disturb the others", function()
    corio.run(function()
      local ev = corio.Event()
      local a = corio.spawn(function() ev:wait() end)
      local b = corio.spawn(function() ev:wait() return "b" end)
      turns()
      a:cancel()
      turns()
      ev:set()
      assert.equal("b", b:await())
      assert.is_true(a:cancelled())
      assert.matches("corio.Event %(set, 0 waiting%)", tostring(ev))
    end)
  end)
end)

describe("corio.Lock", function()
  after_each(support.assert_clean)

  it("excludes, and hands over to waiters first-come first-served", function()
    corio.run(function()
      local lock = corio.Lock()
      assert.equal("corio.Lock", getmetatable(lock).__name)
      assert.is_true(lock:acquire())
      assert.is_true(lock:locked())
      local order = {}
      local tasks = {}
      for i = 1, 4 do
        tasks[i] = corio.spawn(function()
          lock:acquire()
          order[#order + 1] = i
          corio.sleep(0)
          lock:release()
        end)
      end
      turns()
      assert.same({}, order)
      lock:release()
      -- handed to the first waiter: still locked, a newcomer must queue
      assert.is_true(lock:locked())
      corio.gather(tasks)
      assert.same({1, 2, 3, 4}, order)
      assert.is_false(lock:locked())
    end)
  end)

  it("raises on release when not acquired", function()
    local lock = corio.Lock()
    assert.has_error(function() lock:release() end, "release: the lock is not acquired")
  end)

  it("a waiter cancelled while waiting does not block those behind it", function()
    corio.run(function()
      local lock = corio.Lock()
      lock:acquire()
      local a = corio.spawn(function() lock:acquire() end)
      local b = corio.spawn(function() lock:acquire(); lock:release(); return "b" end)
      turns()
      a:cancel()
      turns()
      lock:release()
      assert.equal("b", b:await())
      assert.is_false(lock:locked())
    end)
  end)

  it("a waiter cancelled after being handed the lock passes it on", function()
    corio.run(function()
      local lock = corio.Lock()
      lock:acquire()
      local a = corio.spawn(function() lock:acquire() end)
      turns()
      lock:release()     -- handed to a
      a:cancel()         -- before a ran
      turns()
      assert.is_true(a:cancelled())
      assert.is_false(lock:locked())
      lock:acquire()
      lock:release()
    end)
  end)

  it("stays fair and small when many waiters time out", function()
    corio.run(function()
      local lock = corio.Lock()
      lock:acquire()
      local order = {}
      local a = corio.spawn(function() lock:acquire(); order[#order + 1] = "a"; lock:release() end)
      corio.sleep(0)
      for _ = 1, 200 do
        pcall(corio.wait_for, function() return lock:acquire() end, 0)
      end
      local b = corio.spawn(function() lock:acquire(); order[#order + 1] = "b"; lock:release() end)
      corio.sleep(0)
      local w = lock._waiters
      assert.is_true(w.tail - w.head + 1 <= 66, "tombstones were not swept")
      assert.equal(2, w.n)
      lock:release()
      corio.gather {a, b}
      assert.same({"a", "b"}, order)
      assert.is_false(lock:locked())
    end)
  end)

  it("composes with wait_for", function()
    corio.run(function()
      local lock = corio.Lock()
      lock:acquire()
      errors_with(corio.is_timeout, corio.wait_for, function() return lock:acquire() end, 0.01)
      lock:release()
      assert.is_false(lock:locked())
      assert.is_true(corio.wait_for(function() return lock:acquire() end, 1))
      lock:release()
    end)
  end)

  it("with(fn) releases after return, error and cancellation", function()
    corio.run(function()
      local lock = corio.Lock()
      assert.same({1, 2}, {lock:with(function(a, b) return a, b end, 1, 2)})
      assert.is_false(lock:locked())
      assert.has_error(function() lock:with(function() error("boom", 0) end) end, "boom")
      assert.is_false(lock:locked())
      local t = corio.spawn(function() lock:with(corio.sleep, 10) end)
      turns()
      assert.is_true(lock:locked())
      t:cancel()
      turns()
      assert.is_false(lock:locked())
      assert.has_error(function() lock:with(42) end, "with: expected a function, got number")
    end)
  end)

  it("hold() gives a to-be-closed guard", function()
    corio.run(function()
      local lock = corio.Lock()
      do
        local guard <close> = lock:hold()
        assert.is_true(lock:locked())
        assert.equal("corio.LockGuard", getmetatable(guard).__name)
      end
      assert.is_false(lock:locked())
      pcall(function()
        local _ <close> = lock:hold()
        error("x")
      end)
      assert.is_false(lock:locked())
      local t = corio.spawn(function()
        local _ <close> = lock:hold()
        corio.sleep(10)
      end)
      turns()
      assert.is_true(lock:locked())
      t:cancel()
      turns()
      assert.is_false(lock:locked())
    end)
  end)
end)

describe("corio.Semaphore", function()
  after_each(support.assert_clean)

  it("admits n at a time, FIFO", function()
    corio.run(function()
      local sem = corio.Semaphore(2)
      assert.equal("corio.Semaphore", getmetatable(sem).__name)
      local running, peak, order = 0, 0, {}
      local tasks = {}
      for i = 1, 6 do
        tasks[i] = corio.spawn(function()
          sem:with(function()
            order[#order + 1] = i
            running = running + 1
            peak = math.max(peak, running)
            corio.sleep(0.001)
            running = running - 1
          end)
        end)
      end
      corio.gather(tasks)
      assert.equal(2, peak)
      assert.same({1, 2, 3, 4, 5, 6}, order)
      assert.equal(2, sem:value())
    end)
  end)

  it("validates its value and tells when it is locked", function()
    assert.has_error(function() corio.Semaphore(-1) end)
    assert.has_error(function() corio.Semaphore("2") end)
    local sem = corio.Semaphore(1)
    assert.is_false(sem:locked())
    sem:acquire()
    assert.is_true(sem:locked())
    sem:release()
    sem:release()   -- a plain semaphore may grow
    assert.equal(2, sem:value())
  end)

  it("cancellation while waiting and after a hand-over keeps the count right", function()
    corio.run(function()
      local sem = corio.Semaphore(1)
      sem:acquire()
      local a = corio.spawn(function() sem:acquire() end)
      local b = corio.spawn(function() sem:acquire() end)
      local c = corio.spawn(function() sem:acquire(); sem:release(); return "c" end)
      turns()
      a:cancel()          -- cancelled while waiting
      turns()
      sem:release()       -- handed to b
      b:cancel()          -- b cancelled before it ran: passes the unit to c
      assert.equal("c", c:await())
      assert.equal(1, sem:value())
      errors_with(corio.is_timeout, corio.wait_for, function()
        sem:acquire(); sem:acquire()
      end, 0.01)
      assert.equal(0, sem:value())
      sem:release()
      assert.equal(1, sem:value())
    end)
  end)

  it("BoundedSemaphore raises when released too often", function()
    local sem = corio.BoundedSemaphore(2)
    assert.equal("corio.BoundedSemaphore", getmetatable(sem).__name)
    sem:acquire()
    sem:release()
    assert.has_error(function() sem:release() end,
                     "release: the semaphore was released more times than acquired (bound 2)")
    local guard <close> = sem:hold()
    assert.equal(1, sem:value())
  end)
end)

describe("corio.Condition", function()
  after_each(support.assert_clean)

  it("notifies waiters in order, and they hold the lock when they wake", function()
    corio.run(function()
      local cond = corio.Condition()
      assert.equal("corio.Condition", getmetatable(cond).__name)
      local items, got = {}, {}
      local consumers = {}
      for i = 1, 3 do
        consumers[i] = corio.spawn(function()
          cond:with(function()
            cond:wait_for(function() return #items > 0 end)
            assert.is_true(cond:locked())
            got[#got + 1] = i .. ":" .. table.remove(items, 1)
          end)
        end)
      end
      turns()
      for _, v in ipairs {"a", "b", "c"} do
        cond:with(function()
          items[#items + 1] = v
          cond:notify()
        end)
        turns()
      end
      corio.gather(consumers)
      assert.same({"1:a", "2:b", "3:c"}, got)
    end)
  end)

  it("notify_all wakes everybody; wait and notify need the lock", function()
    corio.run(function()
      local cond = corio.Condition(corio.Lock())
      assert.has_error(function() cond:notify() end, "notify: the condition's lock is not acquired")
      assert.has_error(function() cond:wait() end, "wait: the condition's lock is not acquired")
      local n = 0
      local tasks = {}
      for i = 1, 3 do
        tasks[i] = corio.spawn(function()
          cond:acquire(); cond:wait(); n = n + 1; cond:release()
        end)
      end
      turns()
      cond:acquire()
      assert.equal(3, cond:notify_all())
      cond:release()
      corio.gather(tasks)
      assert.equal(3, n)
      assert.has_error(function() corio.Condition({}) end,
                       "Condition: expected a corio.Lock or nothing")
    end)
  end)

  it("a cancelled wait re-acquires the lock, and passes a notification on", function()
    corio.run(function()
      local cond = corio.Condition()
      local held_when_cancelled
      local a = corio.spawn(function()
        cond:acquire()
        local ok, err = pcall(cond.wait, cond)
        held_when_cancelled = cond:locked()
        cond:release()
        error(err, 0)
      end)
      local b = corio.spawn(function()
        cond:acquire(); cond:wait(); cond:release(); return "b"
      end)
      turns()
      cond:acquire()
      cond:notify(1)    -- goes to a ...
      a:cancel()        -- ... which is cancelled before it runs: b gets it
      cond:release()
      assert.equal("b", b:await())
      assert.is_true(a:cancelled())
      assert.is_true(held_when_cancelled)
      errors_with(corio.is_timeout, corio.wait_for, function()
        cond:acquire()
        local ok, err = pcall(cond.wait, cond)
        assert.is_true(cond:locked())
        cond:release()
        error(err, 0)
      end, 0.01)
      assert.is_false(cond:locked())
    end)
  end)
end)

describe("corio.Barrier", function()
  after_each(support.assert_clean)

  it("releases the parties together, and is reusable", function()
    corio.run(function()
      local b = corio.Barrier(3)
      assert.equal("corio.Barrier", getmetatable(b).__name)
      for _ = 1, 2 do
        local idx = {}
        local tasks = {}
        for i = 1, 3 do
          tasks[i] = corio.spawn(function() idx[i] = b:wait() end)
          turns(1)
        end
        corio.gather(tasks)
        assert.same({0, 1, 2}, idx)
        assert.equal(0, b:n_waiting())
      end
    end)
  end)

  it("abort breaks it for waiters and newcomers; reset repairs it", function()
    corio.run(function()
      local b = corio.Barrier(2)
      local t = corio.spawn(function() return b:wait() end)
      turns()
      assert.equal(1, b:n_waiting())
      b:abort()
      errors_with(corio.is_broken_barrier, t.await, t)
      errors_with(corio.is_broken_barrier, b.wait, b)
      assert.is_true(b:broken())
      b:reset()
      assert.is_false(b:broken())
      local t2 = corio.spawn(function() return b:wait() end)
      turns()
      assert.equal(1, b:wait())
      assert.equal(0, t2:await())
    end)
  end)

  it("a cancelled waiter leaves as if it never came", function()
    corio.run(function()
      local b = corio.Barrier(2)
      local t = corio.spawn(function() return b:wait() end)
      turns()
      t:cancel()
      turns()
      assert.equal(0, b:n_waiting())
      errors_with(corio.is_timeout, corio.wait_for, function() return b:wait() end, 0.01)
      assert.equal(0, b:n_waiting())
      assert.has_error(function() corio.Barrier(0) end)
    end)
  end)
end)
