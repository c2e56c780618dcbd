-- The core: sleep, tasks, await, cancellation, futures, done callbacks, introspection.
local corio = require "corio"

describe("corio.sleep", function()
  it("suspends only the calling task", function()
    local log = {}
    corio.run(function()
      local t = corio.spawn(function()
        for i = 1, 3 do log[#log + 1] = "bg" .. i; corio.sleep(0.05) end
      end)
      -- let the task take its first step, so both clocks start together: main then wakes
      -- 25 ms after bg2 and 25 ms before bg3, however late the machine runs the first step
      corio.sleep(0)
      corio.sleep(0.075)
      log[#log + 1] = "main"
      t:await()
    end)
    assert.same({"bg1", "bg2", "main", "bg3"}, log)
  end)

  it("sleep(0) lets every ready task run, in FIFO order", function()
    local log = {}
    corio.run(function()
      local tasks = {}
      for i = 1, 3 do
        tasks[i] = corio.spawn(function()
          log[#log + 1] = "a" .. i
          corio.sleep(0)
          log[#log + 1] = "b" .. i
        end)
      end
      corio.gather(tasks)
    end)
    assert.same({"a1", "a2", "a3", "b1", "b2", "b3"}, log)
  end)

  it("never returns early", function()
    corio.run(function()
      for _ = 1, 20 do
        local t0 = corio.now()
        corio.sleep(0.02)
        assert.is_true(corio.now() - t0 >= 0.02)
      end
    end)
  end)

  it("works at top level while tasks run", function()
    local ticks = 0
    local t = corio.spawn(function()
      while true do ticks = ticks + 1; corio.sleep(0.005) end
    end)
    -- the ticks advance only while top-level code sleeps; on a loaded machine a tick can take
    -- longer than its 5 ms, so wait for three of them with a wide deadline instead
    local deadline = corio.now() + 5
    while ticks < 3 and corio.now() < deadline do corio.sleep(0.01) end
    t:cancel()
    assert.is_true(ticks >= 3, ticks .. " ticks")
    assert.error(function() t:await() end)
    assert.is_true(t:cancelled())
  end)

  it("rejects a bad argument", function()
    assert.error_matches(function() corio.sleep("x") end, "number expected")
    assert.error_matches(function() corio.sleep(0 / 0) end, "NaN")
  end)

  it("treats a negative time as zero", function()
    local t0 = corio.now()
    corio.sleep(-5)
    assert.is_true(corio.now() - t0 < 1)
  end)

  it("five 2-second sleeps gathered finish in under 3 seconds", function()
    local t0 = corio.now()
    corio.run(function()
      local fs = {}
      for i = 1, 5 do fs[i] = function() corio.sleep(2) return i end end
      local r = corio.gather(table.unpack(fs))
      assert.same({1, 2, 3, 4, 5, n = 5}, r)
    end)
    local elapsed = corio.now() - t0
    assert.is_true(elapsed >= 2 and elapsed < 3, "took " .. elapsed)
  end)
end)

describe("tasks", function()
  it("pass arguments and return every result through await", function()
    local t = corio.spawn(function(a, b) corio.sleep(0) return a + b, "x", nil, 4 end, 1, 2)
    local r = table.pack(t:await())
    assert.same({3, "x", nil, 4, n = 4}, r)
    assert.is_true(t:done())
    assert.same({3, "x", nil, 4, n = 4}, table.pack(t:result()))
  end)

  it("accept callable tables", function()
    local callable = setmetatable({}, {__call = function(_, x) return x * 2 end})
    assert.equal(42, corio.spawn(callable, 21):await())
  end)

  it("reject what cannot be called", function()
    assert.error_matches(function() corio.spawn(42) end, "function expected")
  end)

  it("re-raise the task's error object as it was, strings, tables and nil alike", function()
    local obj = setmetatable({code = 7}, {__tostring = function() return "custom" end})
    local t1 = corio.spawn(function() error(obj) end)
    local ok, e = pcall(t1.await, t1)
    assert.is_false(ok)
    assert.equal(obj, e)
    local t2 = corio.spawn(function() error(nil) end)
    ok, e = pcall(t2.await, t2)
    assert.is_false(ok)
    assert.is_nil(e)
    local t3 = corio.spawn(function() error("boom") end)
    ok, e = pcall(t3.await, t3)
    assert.is_false(ok)
    assert.matches("core_spec.lua:%d+: boom", e)
    assert.matches("in function", t3.traceback or "")
  end)

  it("keep the traceback of a failure and the spawn site", function()
    local t = corio.spawn(function() corio.sleep(0); error("deep") end)
    pcall(t.await, t)
    assert.matches("in function", t.traceback)
    assert.matches("core_spec.lua:%d+", t.spawned_at)
  end)

  it("awaiting a finished task returns at once, again and again", function()
    local t = corio.spawn(function() return 5 end)
    assert.equal(5, t:await())
    assert.equal(5, t:await())
  end)

  it("cannot await themselves", function()
    local t
    t = corio.spawn(function() return t:await() end)
    assert.error_matches(function() t:await() end, "cannot await itself")
  end)

  it("have names, ids, states and a place where they wait", function()
    local t = corio.spawn(function() corio.sleep(10) end)
    assert.matches("^Task%-%d+$", t.name)
    t.name = "sleeper"
    assert.equal("sleeper", t.name)
    assert.equal("sleeper", t:get_name())
    assert.equal("ready", t.state)
    corio.sleep(0)
    assert.equal("waiting", t.state)
    assert.matches("^sleep at .*core_spec.lua:%d+$", t.where)
    local listed = corio.all_tasks()
    assert.equal(1, #listed)
    assert.equal(t, listed[1])
    assert.matches("sleeper", tostring(t))
    assert.error_matches(function() t.state = "x" end, "no settable field")
    t:cancel()
    pcall(t.await, t)
    assert.equal("cancelled", t.state)
  end)

  it("current_task is the running task, nil at top level", function()
    assert.is_nil(corio.current_task())
    local t
    t = corio.spawn(function() return corio.current_task() end)
    assert.equal(t, t:await())
  end)

  it("result() before done and error() report state", function()
    local t = corio.spawn(function() corio.sleep(0) error("x") end)
    assert.error_matches(function() t:result() end, "not done")
    pcall(t.await, t)
    assert.matches("x$", t:error())
    local ok = corio.spawn(function() return 1 end)
    ok:await()
    assert.is_nil(ok:error())
  end)

  it("a plain coroutine.yield with no resumer fails the task clearly", function()
    local t = corio.spawn(function() coroutine.yield(1) end)
    local ok, e = pcall(t.await, t)
    assert.is_false(ok)
    assert.matches("outside a coroutine", e)
  end)
end)

describe("cancellation", function()
  it("interrupts a sleep and runs <close> and pcall cleanup", function()
    local closed, caught = false, nil
    local t = corio.spawn(function()
      local guard <close> = setmetatable({}, {__close = function() closed = true end})
      local ok, e = pcall(corio.sleep, 10)
      caught = e
      if not ok then error(e, 0) end
    end)
    corio.sleep(0)
    assert.is_true(t:cancel("stop now"))
    local ok, e = pcall(t.await, t)
    assert.is_false(ok)
    assert.is_true(corio.is_cancelled(e))
    assert.equal("stop now", e.message)
    assert.equal("cancelled: stop now", tostring(e))
    assert.is_true(closed)
    assert.is_true(corio.is_cancelled(caught))
    assert.is_true(t:cancelled())
  end)

  it("after completion has no effect", function()
    local t = corio.spawn(function() return 1 end)
    t:await()
    assert.is_false(t:cancel())
    assert.is_false(t:cancelled())
    assert.equal(1, t:await())
  end)

  it("before a task starts means it never runs", function()
    local ran = false
    local t = corio.spawn(function() ran = true end)
    t:cancel()
    assert.error(function() t:await() end)
    assert.is_false(ran)
    assert.is_true(t:cancelled())
  end)

  it("of a task awaiting another cancels the other too", function()
    local inner = corio.spawn(corio.sleep, 10)
    local outer = corio.spawn(function() return inner:await() end)
    corio.sleep(0)
    outer:cancel()
    pcall(outer.await, outer)
    pcall(inner.await, inner)
    assert.is_true(inner:cancelled())
  end)

  it("can be caught and survived", function()
    local t = corio.spawn(function()
      local ok, e = pcall(corio.sleep, 10)
      assert(corio.is_cancelled(e) and not ok)
      corio.sleep(0)
      return "survived"
    end)
    corio.sleep(0)
    t:cancel()
    assert.equal("survived", t:await())
  end)

  it("of a running task arrives at its next suspension", function()
    local t
    t = corio.spawn(function()
      t:cancel()
      local x = 1 + 1  -- still running
      corio.sleep(0)
      return x
    end)
    assert.error(function() t:await() end)
    assert.is_true(t:cancelled())
  end)

  it("uncancel counts requests", function()
    local t = corio.spawn(corio.sleep, 10)
    corio.sleep(0)
    t:cancel()
    assert.equal(1, t:cancelling())
    pcall(t.await, t)
  end)
end)

describe("gather", function()
  it("returns first values in argument order, functions spawned", function()
    local r = corio.gather(
      function() corio.sleep(0.02) return "slow" end,
      function() return "fast", "ignored" end,
      corio.spawn(function() return nil end))
    assert.equal("slow", r[1])
    assert.equal("fast", r[2])
    assert.is_nil(r[3])
    assert.equal(3, r.n)
  end)

  it("accepts a list", function()
    local list = {}
    for i = 1, 10 do list[i] = function() corio.sleep(0) return i * i end end
    local r = corio.gather(list)
    for i = 1, 10 do assert.equal(i * i, r[i]) end
  end)

  it("raises the first error as soon as it happens", function()
    local slow = corio.spawn(corio.sleep, 0.5)
    local t0 = corio.now()
    local ok, e = pcall(corio.gather, slow, function() corio.sleep(0.01) error("bad") end)
    assert.is_false(ok)
    assert.matches("bad", e)
    assert.is_true(corio.now() - t0 < 0.4)
    slow:cancel()
    pcall(slow.await, slow)
  end)

  it("keeps errors in place with return_errors", function()
    local r, errs = corio.gather(function() return 1 end, function() error({x = 1}) end,
                                 {return_errors = true})
    assert.equal(1, r[1])
    assert.same({x = 1}, r[2])
    assert.same({x = 1}, errs[2])
    assert.is_nil(errs[1])
  end)

  it("cancelling the gather cancels its children", function()
    local children = {corio.spawn(corio.sleep, 10), corio.spawn(corio.sleep, 10)}
    local g = corio.spawn(corio.gather, children)
    corio.sleep(0)
    g:cancel()
    pcall(g.await, g)
    corio.sleep(0)
    assert.is_true(children[1]:cancelled())
    assert.is_true(children[2]:cancelled())
  end)

  it("rejects what is not awaitable", function()
    assert.error_matches(function() corio.gather(1, 2) end, "expected a task or a function")
  end)
end)

describe("timeouts", function()
  it("wait_for raises Timeout and cancels the inner task", function()
    local inner = corio.spawn(corio.sleep, 10)
    local ok, e = pcall(corio.wait_for, inner, 0.02)
    assert.is_false(ok)
    assert.is_true(corio.is_timeout(e))
    assert.matches("timed out", tostring(e))
    assert.is_true(inner:cancelled())
  end)

  it("wait_for runs a function with a limit and returns its results", function()
    assert.same({1, 2}, {corio.wait_for(function() corio.sleep(0.001) return 1, 2 end, 1)})
    local cleaned = false
    local ok, e = pcall(corio.wait_for, function()
      local _ <close> = setmetatable({}, {__close = function() cleaned = true end})
      corio.sleep(5)
    end, 0.01)
    assert.is_false(ok)
    assert.is_true(corio.is_timeout(e))
    assert.is_true(cleaned)
  end)

  it("timeout is scoped: an inner Timeout does not leak past an outer deadline", function()
    corio.run(function()
      local r = corio.timeout(1, function()
        local ok, e = pcall(corio.timeout, 0.01, corio.sleep, 1)
        assert(corio.is_timeout(e) and not ok)
        return "outer fine"
      end)
      assert.equal("outer fine", r)
      assert.equal(0, corio.current_task():cancelling())
    end)
  end)

  it("a task cancelled from outside during a timeout gets Cancelled, not Timeout", function()
    local t = corio.spawn(corio.timeout, 5, corio.sleep, 10)
    corio.sleep(0)
    t:cancel()
    local ok, e = pcall(t.await, t)
    assert.is_false(ok)
    assert.is_true(corio.is_cancelled(e))
  end)
end)

describe("wait, as_completed, shield", function()
  it("wait FIRST_COMPLETED returns done and pending", function()
    local a = corio.spawn(corio.sleep, 0.01)
    local b = corio.spawn(corio.sleep, 5)
    local done, pending = corio.wait({a, b}, {return_when = "FIRST_COMPLETED"})
    assert.same({a}, done)
    assert.same({b}, pending)
    b:cancel()
    pcall(b.await, b)
  end)

  it("wait FIRST_ERROR stops at a failure, timeout returns what is done", function()
    local bad = corio.spawn(function() corio.sleep(0.01) error("x") end)
    local slow = corio.spawn(corio.sleep, 5)
    local done, pending = corio.wait({bad, slow}, {return_when = "FIRST_ERROR"})
    assert.same({bad}, done)
    assert.equal(1, #pending)
    bad:error()
    done, pending = corio.wait({slow}, {timeout = 0.01})
    assert.same({}, done)
    assert.same({slow}, pending)
    slow:cancel()
    pcall(slow.await, slow)
    assert.error_matches(function() corio.wait({}, {return_when = "SOMETIMES"}) end, "unknown")
  end)

  it("as_completed yields tasks in completion order", function()
    local order = {}
    local list = {}
    for _, d in ipairs({0.03, 0.01, 0.02}) do
      list[#list + 1] = function() corio.sleep(d) return d end
    end
    corio.run(function()
      for t in corio.as_completed(list) do order[#order + 1] = t:await() end
    end)
    assert.same({0.01, 0.02, 0.03}, order)
  end)

  it("shield keeps the inner task alive when the outer wait is cancelled", function()
    local inner = corio.spawn(function() corio.sleep(0.02) return "kept" end)
    local waiter = corio.spawn(function() return corio.shield(inner):await() end)
    corio.sleep(0)
    waiter:cancel()
    pcall(waiter.await, waiter)
    assert.equal("kept", inner:await())
  end)
end)

describe("futures and done callbacks", function()
  it("a Future wakes its awaiters with its result", function()
    local f = corio.Future()
    local t = corio.spawn(function() return f:await() end)
    corio.sleep(0)
    f:set_result("a", "b")
    assert.same({"a", "b"}, {t:await()})
    assert.error_matches(function() f:set_result(1) end, "already done")
  end)

  it("a Future can fail or be cancelled", function()
    local f = corio.Future()
    f:set_error("nope")
    assert.error_matches(function() f:await() end, "nope")
    local g = corio.Future()
    g:cancel("why")
    local ok, e = pcall(g.await, g)
    assert.is_false(ok)
    assert.is_true(corio.is_cancelled(e))
    assert.equal("why", e.message)
  end)

  it("tasks cannot be completed from outside", function()
    local t = corio.spawn(function() end)
    assert.error_matches(function() t:set_result(1) end, "only a Future")
    t:await()
  end)

  it("done callbacks run after completion, in order, and cannot suspend", function()
    local log = {}
    local t = corio.spawn(function() corio.sleep(0) return 1 end)
    t:add_done_callback(function(x) log[#log + 1] = x:result() end)
    t:add_done_callback(function() log[#log + 1] = "second" end)
    t:add_done_callback(function()
      local ok, e = pcall(corio.sleep, 0)
      log[#log + 1] = (not ok) and e:match("done callback") and "refused" or "?"
    end)
    t:await()
    corio.sleep(0)
    assert.same({1, "second", "refused"}, log)
    local late
    t:add_done_callback(function() late = true end)
    corio.sleep(0)
    assert.is_true(late)
  end)
end)

describe("user coroutines inside tasks", function()
  it("a generator that sleeps suspends the whole task and resumes in place", function()
    local gen = coroutine.wrap(function()
      for i = 1, 3 do
        corio.sleep(0.001)
        coroutine.yield(i)
      end
    end)
    local other = 0
    local ticker = corio.spawn(function() for _ = 1, 5 do other = other + 1; corio.sleep(0) end end)
    local got = corio.spawn(function() return {gen(), gen(), gen()} end):await()
    assert.same({1, 2, 3}, got)
    ticker:await()
    assert.equal(5, other)
  end)

  it("nested generators and coroutine.resume pass the suspension through", function()
    local inner = coroutine.create(function(a)
      corio.sleep(0.001)
      local b = coroutine.yield(a + 1)
      corio.sleep(0.001)
      return b * 2
    end)
    local outer = coroutine.wrap(function()
      local ok, v = coroutine.resume(inner, 1)
      coroutine.yield(v)
      local ok2, w = coroutine.resume(inner, 10)
      return ok and ok2 and w
    end)
    local r = corio.spawn(function() return outer(), outer() end)
    assert.same({2, 20}, {r:await()})
  end)

  it("a generator that sleeps at top level drives the loop", function()
    local gen = coroutine.wrap(function() corio.sleep(0.001) coroutine.yield("x") end)
    assert.equal("x", gen())
  end)

  it("coroutine.resume keeps its error behaviour", function()
    local co = coroutine.create(function() error("e1") end)
    local ok, e = coroutine.resume(co)
    assert.is_false(ok)
    assert.matches("e1", e)
    ok, e = coroutine.resume(co)
    assert.is_false(ok)
    assert.equal("cannot resume dead coroutine", e)
    local w = coroutine.wrap(function() error("e2") end)
    assert.error_matches(w, "e2")
  end)
end)

describe("calling where Lua cannot suspend", function()
  it("fails clearly inside table.sort, gsub and require in a task", function()
    local t = corio.spawn(function()
      local errs = {}
      errs[1] = select(2, pcall(table.sort, {3, 1, 2}, function(a, b) corio.sleep(0) return a < b end))
      errs[2] = select(2, pcall(string.gsub, "ab", "a", function() corio.sleep(0) end))
      package.preload["spec_sleepy_module"] = function() corio.sleep(0) return {} end
      errs[3] = select(2, pcall(require, "spec_sleepy_module"))
      package.preload["spec_sleepy_module"] = nil
      return errs
    end)
    local errs = t:await()
    for i = 1, 3 do assert.matches("sleep: cannot suspend here", errs[i]) end
  end)

  it("fails clearly inside a __gc finalizer run in a task", function()
    local t = corio.spawn(function()
      local err
      setmetatable({}, {__gc = function() err = select(2, pcall(corio.sleep, 0)) end})
      collectgarbage()
      collectgarbage()
      return err
    end)
    assert.matches("sleep: cannot suspend here", t:await())
  end)
end)

describe("corio.run", function()
  it("returns results, raises errors, and cancels tasks left running", function()
    local closed = false
    assert.same({1, 2}, {corio.run(function(a) return a, 2 end, 1)})
    assert.error_matches(function() corio.run(function() error("run failed") end) end, "run failed")
    corio.run(function()
      corio.spawn(function()
        local _ <close> = setmetatable({}, {__close = function() closed = true end})
        corio.sleep(100)
      end)
      corio.sleep(0)
    end)
    assert.is_true(closed)
    assert.error_matches(function() corio.run(5) end, "expected a function")
  end)

  it("waiting on something nobody can complete fails instead of hanging", function()
    local f = corio.Future()
    assert.error_matches(function() f:await() end, "would wait forever")
  end)
end)
