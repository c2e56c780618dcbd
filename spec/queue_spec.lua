local corio = require "corio"
local support = require "support"

local turns, errors_with = support.turns, support.errors_with

describe("corio.Queue", function()
  it("is FIFO and reports its size", function()
    local q = corio.Queue(3)
    assert.equal("corio.Queue", getmetatable(q).__name)
    assert.equal(3, q.maxsize)
    assert.is_true(q:empty())
    q:put_nowait("a")
    q:put("b")
    q:put_nowait(false)
    assert.equal(3, q:qsize())
    assert.is_true(q:full())
    assert.equal("a", q:get())
    assert.equal("b", q:get_nowait())
    assert.equal(false, q:get())
    assert.is_true(q:empty())
    assert.matches("corio.Queue %(0 items, maxsize 3%)", tostring(q))
  end)

  it("is unbounded without maxsize or with maxsize <= 0, and grows past its ring", function()
    for _, q in ipairs {corio.Queue(), corio.Queue(0), corio.Queue(-1)} do
      assert.is_false(q:full())
      -- interleave so that the ring wraps before it grows
      local expect, put = 1, 1
      for round = 1, 50 do
        for _ = 1, round do q:put_nowait(put); put = put + 1 end
        for _ = 1, round // 2 do assert.equal(expect, q:get_nowait()); expect = expect + 1 end
      end
      while not q:empty() do assert.equal(expect, q:get_nowait()); expect = expect + 1 end
      assert.equal(put, expect)
    end
  end)

  it("rejects a bad maxsize and nil items with clear errors", function()
    assert.has_error(function() corio.Queue("x") end, "Queue: maxsize must be an integer, got x")
    assert.has_error(function() corio.Queue(1.5) end)
    local q = corio.Queue()
    local ok, err = pcall(q.put_nowait, q, nil)
    assert.is_false(ok)
    assert.matches("cannot put nil in a queue", err)
    ok, err = pcall(q.put, q, nil)
    assert.matches("put: cannot put nil", err)
    assert.error_matches(function() q.put(5) end, "put: call it as a method, q:put%(v%)")
    assert.equal(0, q:qsize())
  end)

  it("raises recognisable QueueFull and QueueEmpty errors", function()
    local q = corio.Queue(1)
    local e = errors_with(corio.is_queue_empty, q.get_nowait, q)
    assert.equal(corio.QueueEmpty, getmetatable(e))
    assert.equal("corio.QueueEmpty: get_nowait: the queue is empty", tostring(e))
    q:put_nowait(1)
    e = errors_with(corio.is_queue_full, q.put_nowait, q, 2)
    assert.is_true(corio.QueueFull.is(e))
    assert.matches("corio.QueueFull: put_nowait: the queue is full %(maxsize 1%)", tostring(e))
    assert.is_false(corio.is_queue_full(corio.Cancelled))
    assert.is_false(corio.is_queue_empty("QueueEmpty"))
    assert.equal(1, q:get())
  end)

  it("makes put wait while full (backpressure) and get wait while empty", function()
    corio.run(function()
      local q = corio.Queue(2)
      local log = {}
      local producer = corio.spawn(function()
        for i = 1, 5 do q:put(i); log[#log + 1] = "put" .. i end
      end)
      turns()
      assert.same({"put1", "put2"}, log)
      assert.equal("waiting", producer.state)
      assert.equal(1, q:get())
      turns()
      assert.same({"put1", "put2", "put3"}, log)
      for i = 2, 5 do assert.equal(i, q:get()) end
      producer:await()
      local getter = corio.spawn(function() return q:get() end)
      turns()
      assert.equal("waiting", getter.state)
      q:put("late")
      assert.equal("late", getter:await())
    end)
  end)

  it("serves waiting getters first-come first-served, and newcomers cannot overtake", function()
    corio.run(function()
      local q = corio.Queue()
      local got = {}
      local tasks = {}
      for i = 1, 4 do
        tasks[i] = corio.spawn(function() got[i] = q:get() end)
      end
      turns()
      q:put("a")
      -- the item is promised to the first getter: a newcomer cannot take it
      errors_with(corio.is_queue_empty, q.get_nowait, q)
      assert.equal(1, q:qsize())
      q:put("b"); q:put("c"); q:put("d")
      corio.gather(tasks)
      assert.same({"a", "b", "c", "d"}, got)
    end)
  end)

  it("serves waiting putters first-come first-served", function()
    corio.run(function()
      local q = corio.Queue(1)
      q:put(0)
      local tasks = {}
      for i = 1, 4 do tasks[i] = corio.spawn(function() q:put(i) end) end
      turns()
      -- a newcomer cannot take the slot promised to the first waiting putter
      assert.equal(0, q:get())
      errors_with(corio.is_queue_full, q.put_nowait, q, 99)
      local got = {}
      for _ = 1, 4 do got[#got + 1] = q:get() end
      corio.gather(tasks)
      assert.same({1, 2, 3, 4}, got)
    end)
  end)

  describe("cancellation", function()
    it("of a waiting get leaves its place, and the getters behind it are served", function()
      corio.run(function()
        local q = corio.Queue()
        local a = corio.spawn(function() return q:get() end)
        local b = corio.spawn(function() return q:get() end)
        turns()
        a:cancel()
        turns()
        assert.is_true(a:cancelled())
        q:put("x")
        assert.equal("x", b:await())
        assert.equal(0, q:qsize())
      end)
    end)

    it("of a get that was already handed an item never loses the item", function()
      corio.run(function()
        local q = corio.Queue()
        local a = corio.spawn(function() return q:get() end)
        turns()
        q:put("x")          -- wakes a, the item is promised to it
        a:cancel()          -- ... but a is cancelled before it runs
        turns()
        assert.is_true(a:cancelled())
        assert.equal(1, q:qsize())
        assert.equal("x", q:get_nowait())
      end)
    end)

    it("of a woken get passes the item to the next getter", function()
      corio.run(function()
        local q = corio.Queue()
        local a = corio.spawn(function() return q:get() end)
        local b = corio.spawn(function() return q:get() end)
        turns()
        q:put("x")
        a:cancel()
        assert.equal("x", b:await())
        assert.is_true(a:cancelled())
        assert.is_true(q:empty())
      end)
    end)

    it("of a waiting put never inserts its item", function()
      corio.run(function()
        local q = corio.Queue(1)
        q:put("first")
        local p = corio.spawn(function() q:put("never") end)
        local p2 = corio.spawn(function() q:put("second") end)
        turns()
        p:cancel()
        turns()
        assert.equal("first", q:get())
        p2:await()
        assert.equal("second", q:get())
        assert.is_true(q:empty())
        assert.is_true(p:cancelled())
      end)
    end)

    it("of a put that was already given a slot never inserts, and frees the slot", function()
      corio.run(function()
        local q = corio.Queue(1)
        q:put("first")
        local p = corio.spawn(function() q:put("never") end)
        turns()
        assert.equal("first", q:get())   -- promises the free slot to p
        p:cancel()                        -- p never runs again
        turns()
        assert.is_true(p:cancelled())
        assert.is_true(q:empty())
        q:put_nowait("mine")              -- the slot was given back
        assert.equal("mine", q:get())
      end)
    end)

    it("of a woken put hands its slot to the next putter", function()
      corio.run(function()
        local q = corio.Queue(1)
        q:put(1)
        local p = corio.spawn(function() q:put("never") end)
        local p2 = corio.spawn(function() q:put(2) end)
        turns()
        assert.equal(1, q:get())
        p:cancel()
        p2:await()
        assert.equal(2, q:get())
        assert.is_true(q:empty())
      end)
    end)

    it("composes with wait_for around get and put", function()
      corio.run(function()
        local q = corio.Queue(1)
        errors_with(corio.is_timeout, corio.wait_for, function() return q:get() end, 0.01)
        q:put("kept")
        assert.equal("kept", corio.wait_for(function() return q:get() end, 1))
        q:put("full")
        errors_with(corio.is_timeout, corio.wait_for, function() q:put("no") end, 0.01)
        assert.equal(1, q:qsize())
        assert.equal("full", q:get())
        assert.is_true(q:empty())
        -- the timed-out waiters left no trace: a normal exchange still works
        local g = corio.spawn(function() return q:get() end)
        turns()
        q:put("ok")
        assert.equal("ok", g:await())
      end)
    end)
  end)

  describe("task_done and join", function()
    it("join returns at once with zero items", function()
      corio.run(function()
        local q = corio.Queue()
        q:join()
        q:put(1); q:get(); q:task_done()
        q:join()
      end)
    end)

    it("raises when task_done is called more times than items were put", function()
      local q = corio.Queue()
      assert.has_error(function() q:task_done() end,
                       "task_done: called more times than items were put in the queue")
      q:put(1)
      q:get()
      q:task_done()
      assert.has_error(function() q:task_done() end)
    end)

    it("join waits until every item is marked done", function()
      corio.run(function()
        local q = corio.Queue()
        for i = 1, 3 do q:put(i) end
        local joined = false
        local j = corio.spawn(function() q:join(); joined = true end)
        for _ = 1, 3 do
          q:get()
          turns()
          assert.is_false(joined)
          q:task_done()
        end
        j:await()
        assert.is_true(joined)
      end)
    end)

    it("join composes with wait_for", function()
      corio.run(function()
        local q = corio.Queue()
        q:put(1)
        errors_with(corio.is_timeout, corio.wait_for, function() q:join() end, 0.01)
        q:get(); q:task_done()
        corio.wait_for(function() q:join() end, 1)
      end)
    end)

    it("a cancelled join leaves the other joiners be", function()
      corio.run(function()
        local q = corio.Queue()
        q:put(1)
        local a = corio.spawn(function() q:join() end)
        local b = corio.spawn(function() q:join() return "b" end)
        turns()
        a:cancel()
        q:get(); q:task_done()
        assert.equal("b", b:await())
        assert.is_true(a:cancelled())
      end)
    end)
  end)

  describe("shutdown", function()
    it("wakes waiting getters and putters with QueueShutDown", function()
      corio.run(function()
        local empty, full = corio.Queue(), corio.Queue(1)
        full:put(1)
        local g = corio.spawn(function() return empty:get() end)
        local p = corio.spawn(function() full:put(2) end)
        turns()
        empty:shutdown()
        full:shutdown()
        errors_with(corio.is_queue_shut_down, g.await, g)
        errors_with(corio.is_queue_shut_down, p.await, p)
        errors_with(corio.is_queue_shut_down, full.put_nowait, full, 3)
        errors_with(corio.is_queue_shut_down, full.put, full, 3)
        -- without immediate, what is left can still be taken
        assert.equal(1, full:get())
        local e = errors_with(corio.is_queue_shut_down, full.get, full)
        assert.equal("corio.QueueShutDown: get: the queue is shut down", tostring(e))
        errors_with(corio.is_queue_shut_down, full.get_nowait, full)
        assert.is_true(full:is_shut_down())
      end)
    end)

    it("immediate drops the items, counts them done and releases join", function()
      corio.run(function()
        local q = corio.Queue()
        q:put(1); q:put(2)
        local j = corio.spawn(function() q:join() return "joined" end)
        turns()
        q:shutdown(true)
        assert.equal("joined", j:await())
        assert.equal(0, q:qsize())
        errors_with(corio.is_queue_shut_down, q.get, q)
      end)
    end)

    it("immediate also takes back items promised to woken getters", function()
      corio.run(function()
        local q = corio.Queue()
        local g = corio.spawn(function() return q:get() end)
        turns()
        q:put(1)
        q:shutdown(true)
        errors_with(corio.is_queue_shut_down, g.await, g)
      end)
    end)

    it("ends an iter() loop after the remaining items", function()
      corio.run(function()
        local q = corio.Queue()
        local seen = {}
        local c = corio.spawn(function()
          for v in q:iter() do seen[#seen + 1] = v end
          return "done"
        end)
        q:put(1); q:put(2)
        turns()
        q:put(3)
        q:shutdown()
        assert.equal("done", c:await())
        assert.same({1, 2, 3}, seen)
      end)
    end)
  end)

  it("carries every item exactly once between many producers and many consumers", function()
    corio.run(function()
      local q = corio.Queue(3)
      local seen, count = {}, 0
      local producers, consumers = {}, {}
      for p = 1, 5 do
        producers[p] = corio.spawn(function()
          for i = 1, 200 do
            q:put(p * 1000 + i)
            if i % 7 == 0 then corio.sleep(0) end
          end
        end)
      end
      for c = 1, 4 do
        consumers[c] = corio.spawn(function()
          while true do
            local v = q:get()
            if v == false then return end
            assert(not seen[v], "duplicate")
            seen[v], count = true, count + 1
            q:task_done()
          end
        end)
      end
      corio.gather(producers)
      q:join()
      assert.equal(1000, count)
      for _ = 1, 4 do q:put(false) end
      corio.gather(consumers)
    end)
  end)

  it("raises a clear error when top-level code would wait forever, and stays usable", function()
    local q = corio.Queue()
    local ok, err = pcall(q.get, q)
    assert.is_false(ok)
    assert.matches("would wait forever", err)
    q:put(1)
    assert.equal(1, q:get())
  end)

  it("cannot suspend where Lua cannot yield", function()
    corio.run(function()
      local q = corio.Queue()
      local ok, err = pcall(table.sort, {1, 2}, function() return q:get() end)
      assert.is_false(ok)
      assert.matches("cannot suspend here", err)
      q:put(1)
      assert.equal(1, q:get_nowait())
    end)
  end)
end)

describe("corio.PriorityQueue", function()
  it("gives the smallest first and is stable for equal priorities", function()
    local q = corio.PriorityQueue()
    assert.equal("corio.PriorityQueue", getmetatable(q).__name)
    local input = {{3, "c1"}, {1, "a1"}, {2, "b1"}, {1, "a2"}, {3, "c2"}, {1, "a3"}, {2, "b2"}}
    for _, item in ipairs(input) do q:put(item) end
    local out = {}
    while not q:empty() do out[#out + 1] = q:get()[2] end
    assert.same({"a1", "a2", "a3", "b1", "b2", "c1", "c2"}, out)
  end)

  it("keeps heap order under random operations", function()
    local q = corio.PriorityQueue()
    local model = {}
    math.randomseed(7)
    for _ = 1, 2000 do
      if math.random() < 0.6 then
        local v = math.random(1, 50)
        q:put(v)
        model[#model + 1] = v
      elseif #model > 0 then
        table.sort(model)
        assert.equal(table.remove(model, 1), q:get_nowait())
      end
      assert.equal(#model, q:qsize())
    end
  end)

  it("loses nothing when the order function raises", function()
    local q = corio.PriorityQueue()
    for _, v in ipairs {5, 3, 8, 1, 9, 2, 7} do q:put(v) end
    assert.error_matches(function() q:put("x") end, "attempt to compare")
    assert.equal(7, q:qsize())
    local out = {}
    while not q:empty() do out[#out + 1] = q:get() end
    assert.same({1, 2, 3, 5, 7, 8, 9}, out)
    -- a comparison failing while an item is taken leaves the heap whole too
    local fail = false
    local q2 = corio.PriorityQueue(function(a, b)
      if fail then error("broken order", 0) end
      return a < b
    end)
    for _, v in ipairs {4, 2, 6, 1, 3} do q2:put(v) end
    fail = true
    assert.has_error(function() q2:get() end, "broken order")
    fail = false
    assert.equal(5, q2:qsize())
    out = {}
    while not q2:empty() do out[#out + 1] = q2:get() end
    assert.same({1, 2, 3, 4, 6}, out)
  end)

  it("takes a custom order and a maxsize", function()
    local q = corio.PriorityQueue(2, function(a, b) return a > b end)
    q:put(1); q:put(5)
    errors_with(corio.is_queue_full, q.put_nowait, q, 3)
    assert.equal(5, q:get())
    local q2 = corio.PriorityQueue(function(a, b) return #a < #b end)
    q2:put("ccc"); q2:put("a"); q2:put("bb")
    assert.same({"a", "bb", "ccc"}, {q2:get(), q2:get(), q2:get()})
    assert.has_error(function() corio.PriorityQueue(1, "x") end,
                     "PriorityQueue: less must be a function, got string")
  end)

  it("serves a waiting getter", function()
    corio.run(function()
      local q = corio.PriorityQueue()
      local g = corio.spawn(function() return q:get() end)
      turns()
      q:put(2)
      assert.equal(2, g:await())
    end)
  end)
end)

describe("corio.LifoQueue", function()
  it("gives the last item first and blocks like the others", function()
    corio.run(function()
      local q = corio.LifoQueue(2)
      assert.equal("corio.LifoQueue", getmetatable(q).__name)
      q:put(1); q:put(2)
      local p = corio.spawn(function() q:put(3) end)
      turns()
      assert.equal(2, q:get())
      p:await()
      assert.equal(3, q:get())
      assert.equal(1, q:get())
      errors_with(corio.is_queue_empty, q.get_nowait, q)
    end)
  end)
end)
