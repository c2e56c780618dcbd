local corio = require "corio"
local thread = require "corio.thread"
local json = require "corio.json"
local support = require "support"

local errors_with = support.errors_with

-- Wait until the pool has nothing in flight (a cancelled job's worker finishes on its own).
local function drain(pool)
  pool = pool or thread.default()
  local deadline = corio.now() + 5
  while pool:stats().inflight > 0 do
    assert(corio.now() < deadline, "the pool did not drain")
    corio.sleep(0.001)
  end
end

local function echo(...) return ... end

describe("corio.thread", function()
  after_each(function()
    drain()
    support.assert_clean()
  end)

  describe("values", function()
    it("copies every plain type both ways, integers staying integers", function()
      local big = ("x"):rep(100000) .. "\0end"
      local a, b, c, d, e, f, g, h, i, j = thread.run(echo, nil, true, false, 42,
        math.maxinteger, math.mininteger, 1.5, 1 / 0, "a\0b", big)
      assert.is_nil(a)
      assert.is_true(b)
      assert.is_false(c)
      assert.equal("integer", math.type(d))
      assert.equal(42, d)
      assert.equal(math.maxinteger, e)
      assert.equal(math.mininteger, f)
      assert.equal("float", math.type(g))
      assert.equal(1.5, g)
      assert.equal(math.huge, h)
      assert.equal("a\0b", i)
      assert.equal(big, j)
      local nan, negz, two = thread.run(function() return 0 / 0, -0.0, 2.0 end)
      assert.is_true(nan ~= nan)
      assert.equal("-0.0", tostring(negz))
      assert.equal("float", math.type(two))
    end)

    it("keeps the number of values, trailing nils included", function()
      assert.equal(4, select("#", thread.run(function(...) return ... end, 1, nil, nil, nil)))
      assert.equal(0, select("#", thread.run(function() end)))
      assert.equal(3, thread.run(function(...) return select("#", ...) end, nil, nil, nil))
    end)

    it("copies nested tables, with shared sub-tables and cycles preserved", function()
      local shared = {1, 2, 3}
      local t = {a = shared, b = shared, list = {{x = 1}, {x = 2}}, [1.5] = "f", [true] = "t"}
      t.self = t
      t[shared] = "table key"
      local r, same, cyc = thread.run(function(t)
        return t, t.a == t.b, t.self == t
      end, t)
      assert.is_true(same)
      assert.is_true(cyc)
      assert.not_equal(t, r)
      assert.equal(r, r.self)
      assert.equal(r.a, r.b)
      assert.same({1, 2, 3}, r.a)
      assert.equal(2, r.list[2].x)
      assert.equal("f", r[1.5])
      assert.equal("t", r[true])
      assert.equal("table key", r[r.a])
    end)

    it("keeps corio.json's array and object marks, and corio.json works in workers", function()
      local doc = json.decode('{"list": [], "obj": {}, "n": 12345678901234567}')
      local r, s = thread.run(function(d)
        local json = require "corio.json"
        return d, json.encode(d.list) .. json.encode(d.obj) .. math.type(d.n)
      end, doc)
      assert.equal("[]{}integer", s)
      assert.is_true(json.is_array(r.list))
      assert.equal("{}", json.encode(r.obj))
      assert.equal(12345678901234567, r.n)
    end)

    it("sends functions without upvalues both ways", function()
      local square = function(x) return x * x end
      local f = thread.run(function(g, x)
        local h = function(y) return g(y) + 1 end  -- captures g: stays in the worker
        return function(z) return z * 10 end, h(x)
      end, square, 3)
      assert.equal(70, f(7))
      local tbl = thread.run(function(t) return t.fn(2) end, {fn = function(x) return x + 40 end})
      assert.equal(42, tbl)
    end)

    it("gives a worker's globals, not the caller's, to a function sent there", function()
      ANSWER = 1
      local v = thread.run(function() return ANSWER, type(string.format) end)
      ANSWER = nil
      assert.is_nil(v)
    end)
  end)

  describe("refusals", function()
    local pool
    before_each(function() pool = thread.pool{size = 1} end)
    after_each(function() pool:close() end)

    local function refused(pattern, ...)
      local err = errors_with(function(e) return type(e) == "string" end, pool.run, pool, ...)
      assert.matches(pattern, err)
      return err
    end

    it("names the value and its path, before any work starts", function()
      local up = 1
      local err = refused("", echo, 1, {config = {callback = function() return up end}})
      assert.equal("arg 3 .config.callback: cannot send a function with upvalues to a thread "
        .. "(it captures 'up')", err)
      assert.equal(0, pool:stats().inflight)
      refused("^arg 1: cannot send a function with upvalues", function() return up end)
    end)

    it("refuses C functions, coroutines, userdata and tables with metatables", function()
      refused("^arg 2: cannot send a C function to a thread$", echo, print)
      refused("^arg 2 %[3%]: cannot send a coroutine to a thread$", echo,
        {1, 2, coroutine.create(print)})
      refused("^arg 2 %.f: cannot send a userdata to a thread$", echo, {f = io.stdout})
      refused('^arg 2 %["a b"%]%.x: cannot send a table with a metatable to a thread$', echo,
        {["a b"] = {x = setmetatable({}, {})}})
      refused("^arg 2 %[key%]: cannot send a coroutine", echo, {[coroutine.create(print)] = 1})
      refused("^arg 1: cannot send a C function", print)
    end)

    it("binds _ENV to the worker's globals, whatever it was here", function()
      local f
      do
        local _ENV = {x = 1, type = type}
        f = function() return x, type(string) end
      end
      local x, s = pool:run(f)
      assert.is_nil(x)
      assert.equal("table", s)
    end)

    it("refuses tables nested too deeply", function()
      local t = {}
      for _ = 1, 300 do t = {t} end
      refused("cannot send a table nested this deep", echo, t)
    end)

    it("raises in the task when a result cannot be sent back", function()
      refused("^result 1: cannot send a coroutine from a thread\n",
        function() return coroutine.create(print) end)
      refused("^result 2 %.f: cannot send a function with upvalues from a thread",
        function() local u = 1; return 1, {f = function() return u end} end)
      assert.equal(1, pool:run(function() return 1 end)) -- still healthy
    end)

    it("checks arguments", function()
      assert.has_error(function() pool:run("nope") end)
      assert.has_error(function() thread.call(1) end)
      assert.has_error(function() thread.pool{size = 0} end)
      assert.has_error(function() thread.Channel(0) end)
    end)
  end)

  describe("errors", function()
    it("come back as the task's error with the worker's traceback", function()
      local err = errors_with(function(e) return type(e) == "string" end, thread.run,
        function()
          local function inner() error("boom") end
          inner()
        end)
      assert.matches("thread_spec.lua:%d+: boom", err)
      assert.matches("stack traceback:", err)
      assert.matches("in %a+ 'inner'", err)
    end)

    it("survive nil and table error values", function()
      local err = errors_with(function() return true end, thread.run, function() error(nil) end)
      assert.matches("^nil", err)
      err = errors_with(function() return true end, thread.run,
        function() error(setmetatable({}, {__tostring = function() return "custom" end})) end)
      assert.matches("^custom", err)
    end)

    it("leave the pool healthy after out of memory", function()
      local p <close> = thread.pool{size = 1, memory_limit = 8 * 1024 * 1024}
      local err = errors_with(function() return true end, p.run, p, function()
        local t = {}
        for i = 1, 1e8 do t[i] = ("x"):rep(100) .. i end
      end)
      assert.matches("not enough memory", err)
      assert.equal(6, p:run(function() return 2 * 3 end))
    end)

    it("report a missing module or function of thread.call", function()
      errors_with(function(e) return (e):find("module 'no.such.module' not found", 1, true) ~= nil end,
        thread.call, "no.such.module", "f")
      errors_with(function(e)
        return (e):find("module 'string' has no function 'nope'", 1, true) ~= nil
      end, thread.call, "string", "nope")
    end)

    it("cannot be sent from where a task cannot suspend", function()
      local t = corio.spawn(function()
        table.sort({2, 1}, function(a, b) return thread.run(function(x, y) return x < y end, a, b) end)
      end)
      local ok, err = pcall(t.await, t)
      assert.is_false(ok)
      assert.matches("thread.run", tostring(err))
    end)
  end)

  describe("cancellation", function()
    it("returns at once and interrupts a running Lua loop; the pool stays usable", function()
      local p <close> = thread.pool{size = 1}
      local started = corio.now()
      local t = corio.spawn(function() return p:run(function() while true do end end) end)
      corio.sleep(0.05)
      assert.equal(1, p:stats().running)
      t:cancel()
      local ok, err = pcall(t.await, t)
      assert.is_false(ok)
      assert.is_true(corio.is_cancelled(err))
      assert.is_true(corio.now() - started < 1)
      drain(p)
      assert.equal(0, p:stats().running)
      assert.equal("ok", p:run(function() return "ok" end))
    end)

    it("cannot be caught by a pcall in the worker", function()
      local p <close> = thread.pool{size = 1}
      local t = corio.spawn(function()
        return p:run(function()
          while true do pcall(function() while true do end end) end
        end)
      end)
      corio.sleep(0.05)
      t:cancel()
      assert.is_false(pcall(t.await, t))
      drain(p)
      assert.equal(1, p:run(function() return 1 end))
    end)

    it("reaches a loop inside a coroutine (resume and wrap)", function()
      local p <close> = thread.pool{size = 1}
      for _, body in ipairs {
        function() coroutine.resume(coroutine.create(function() while true do end end)) end,
        function() coroutine.wrap(function() while true do end end)() end,
        function()
          local inner = coroutine.wrap(function() while true do end end)
          while true do coroutine.resume(coroutine.create(inner)) end
        end,
      } do
        local t = corio.spawn(function() return p:run(body) end)
        corio.sleep(0.03)
        t:cancel()
        assert.is_false(pcall(t.await, t))
        drain(p)
        assert.equal(0, p:stats().running)
      end
      assert.same({true, 2}, p:run(function()
        local co = coroutine.wrap(function(x) coroutine.yield(x + 1) end)
        return {coroutine.resume(coroutine.create(function() return 1 end)), co(1)}
      end))
    end)

    it("drops a queued job before it runs", function()
      local p <close> = thread.pool{size = 1}
      local ch = thread.Channel(1)
      local busy = corio.spawn(function()
        return p:run(function(ch) return ch:get() end, ch)
      end)
      local queued = corio.spawn(function()
        return p:run(function(ch) ch:put("ran") end, ch)
      end)
      corio.sleep(0.02)
      assert.equal(1, p:stats().queued)
      queued:cancel()
      corio.sleep(0)
      assert.equal(0, p:stats().queued)
      ch:put("first")
      assert.equal("first", busy:await())
      assert.equal(0, #ch)
    end)

    it("interrupts a worker blocked on a channel", function()
      local p <close> = thread.pool{size = 1}
      local ch = thread.Channel()
      local t = corio.spawn(function() return p:run(function(ch) return ch:get() end, ch) end)
      corio.sleep(0.05)
      t:cancel()
      assert.is_false(pcall(t.await, t))
      drain(p)
      assert.equal(2, p:run(function() return 2 end))
    end)

    it("by the task's deadline (corio.wait_for)", function()
      local ok, err = pcall(corio.wait_for,
        corio.spawn(function() return thread.run(function() while true do end end) end), 0.05)
      assert.is_false(ok)
      assert.is_true(corio.is_timeout(err))
    end)
  end)

  describe("pools", function()
    it("default to one worker per core", function()
      assert.equal(thread.cores(), thread.default():size())
      assert.is_true(thread.cores() >= 1)
      local p <close> = thread.pool{size = 3}
      assert.equal(3, p:size())
      assert.matches("corio.thread.Pool %(3 threads%)", tostring(p))
    end)

    it("run jobs on every worker at once", function()
      local p <close> = thread.pool{size = 2}
      local ch = thread.Channel(2)
      -- each job waits for the other's message: only possible if both run at once
      local a = corio.spawn(function()
        return p:run(function(ch) ch:put("a"); local t0 = os.clock()
          while #ch > 0 and os.clock() - t0 < 5 do end return "done" end, ch)
      end)
      local b = corio.spawn(function() return p:run(function(ch) return ch:get() end, ch) end)
      assert.equal("a", b:await())
      assert.equal("done", a:await())
    end)

    it("run 10,000 small jobs", function()
      local tasks, sum = {}, 0
      for w = 1, 16 do
        tasks[w] = corio.spawn(function()
          for i = w, 10000, 16 do
            local r = thread.run(function(x) return x * 2 end, i) -- before the read of sum
            sum = sum + r
          end
        end)
      end
      corio.gather(table.unpack(tasks))
      assert.equal(10000 * 10001, sum)
    end)

    it("require their init module and the caller's package.path in every worker", function()
      local dir = os.tmpname()
      os.remove(dir)
      assert(os.execute("mkdir -p " .. dir))
      local f = assert(io.open(dir .. "/thread_init_mod.lua", "w"))
      f:write("INITIALISED = (INITIALISED or 0) + 1\n",
        "return {twice = function(x) return 2 * x end, count = function() return INITIALISED end}")
      f:close()
      local saved = package.path
      package.path = dir .. "/?.lua;" .. package.path
      local p <close> = thread.pool{size = 2, init = "thread_init_mod"}
      package.path = saved
      assert.equal(14, p:call("thread_init_mod", "twice", 7))
      assert.equal(1, p:call("thread_init_mod", "count"))
      os.remove(dir .. "/thread_init_mod.lua")
      os.remove(dir)
    end)

    it("fail every job when the init module fails", function()
      local p <close> = thread.pool{size = 1, init = "no.such.init"}
      errors_with(function(e) return (e):find("thread pool init: ", 1, true) ~= nil end,
        p.run, p, function() end)
    end)

    it("fail queued jobs and interrupt running ones when closed", function()
      local p = thread.pool{size = 1}
      local running = corio.spawn(function() return p:run(function() while true do end end) end)
      local queued = corio.spawn(function() return p:run(function() return 1 end) end)
      corio.sleep(0.05)
      p:close()
      for _, t in ipairs {running, queued} do
        local ok, err = pcall(t.await, t)
        assert.is_false(ok)
        assert.matches("thread: the pool was closed", err)
      end
      errors_with(function(e) return (e):find("the pool is closed", 1, true) ~= nil end,
        p.run, p, function() end)
      p:close() -- idempotent
    end)

    it("close with <close> and are collected with their threads", function()
      local weak = setmetatable({}, {__mode = "v"})
      do
        local p <close> = thread.pool{size = 2}
        weak[1] = p
        assert.equal(3, p:run(function() return 3 end))
      end
      collectgarbage()
      collectgarbage()
      assert.is_nil(weak[1])
    end)

    it("map a function over items on every core, in order", function()
      local items = {}
      for i = 1, 100 do items[i] = i end
      local r = thread.map(function(x, i) return x * x + i end, items)
      assert.equal(100, r.n)
      for i = 1, 100 do assert.equal(i * i + i, r[i]) end
      errors_with(function(e) return tostring(e):find("boom 7", 1, true) ~= nil end, thread.map,
        function(x) if x == 7 then error("boom " .. x) end return x end, items)
    end)
  end)

  describe("channels", function()
    it("stream values from a worker to a task, with backpressure on the worker", function()
      local ch = thread.Channel(2)
      local t = thread.spawn(function(ch, n)
        for i = 1, n do ch:put({i = i}) end
        ch:close()
        return "producer done"
      end, ch, 50)
      local got = {}
      corio.sleep(0.05)
      assert.equal(2, #ch) -- the worker is blocked: the channel is full
      while true do
        local v = ch:get()
        if v == nil then break end
        got[#got + 1] = v.i
        if #got % 10 == 0 then corio.sleep(0.001) end
      end
      assert.equal(50, #got)
      for i = 1, 50 do assert.equal(i, got[i]) end
      assert.equal("producer done", t:await())
    end)

    it("carry values from tasks to a worker, suspending the task while full", function()
      local ch, out = thread.Channel(1), thread.Channel(1)
      local worker = thread.spawn(function(ch, out)
        local sum = 0
        while true do
          local v = ch:get()
          if v == nil then break end
          sum = sum + v
        end
        out:put(sum)
      end, ch, out)
      local ticks = 0
      local ticker = corio.spawn(function() while true do ticks = ticks + 1; corio.sleep(0) end end)
      for i = 1, 200 do ch:put(i) end
      ch:close()
      assert.equal(200 * 201 // 2, out:get())
      worker:await()
      ticker:cancel()
      assert.is_true(ticks > 0)
    end)

    it("are shared by tasks on the loop", function()
      local ch = thread.Channel(1)
      local consumer = corio.spawn(function()
        local got = {}
        for _ = 1, 3 do got[#got + 1] = ch:get() end
        return got
      end)
      for i = 1, 3 do ch:put(i) end
      assert.same({1, 2, 3}, consumer:await())
    end)

    it("refuse nil and puts after close; get drains then returns nil", function()
      local ch = thread.Channel(4)
      assert.equal(4, ch:capacity())
      assert.has_error(function() ch:put(nil) end)
      ch:put("x")
      ch:close()
      errors_with(function(e) return (e):find("the channel is closed", 1, true) ~= nil end, ch.put, ch, 1)
      assert.equal("x", ch:get())
      assert.is_nil(ch:get())
      errors_with(function(e)
        return (e):find("value 1: cannot send a coroutine through a channel", 1, true) ~= nil
      end, thread.Channel().put, thread.Channel(), coroutine.create(print))
    end)

    it("keep their identity when sent inside tables", function()
      local ch = thread.Channel()
      local same = thread.run(function(t) t.a:put("via a"); return t.a == t.b end, {a = ch, b = ch})
      assert.is_true(same)
      assert.equal("via a", ch:get())
    end)

    it("cancel a task waiting on them", function()
      local ch = thread.Channel(1)
      local t = corio.spawn(function() return ch:get() end)
      corio.sleep(0)
      t:cancel()
      assert.is_false(pcall(t.await, t))
      ch:put(1)
      local full = corio.spawn(function() return ch:put(2) end)
      corio.sleep(0)
      full:cancel()
      assert.is_false(pcall(full.await, full))
      assert.equal(1, ch:get())
      assert.equal(0, #ch)
    end)
  end)

  describe("examples/primes_threads.lua", function()
    it("counts the primes on every core while the ticker ticks and the endpoint answers",
      function()
        local out, err, code = support.run_corio("examples/primes_threads.lua 1000000 32")
        assert.equal("", err)
        assert.equal(0, code)
        assert.matches("primes below 1000000: 78498 %(32 pieces on %d+ threads", out)
        assert.matches("ticker: %d+ of %d+ ticks", out)
        assert.is_true(tonumber(out:match("web: (%d+) requests")) >= 1, out)
      end)
  end)
end)
