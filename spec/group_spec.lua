local corio = require "corio"
local support = require "support"

local turns, errors_with = support.turns, support.errors_with

describe("corio.group / TaskGroup", function()
  it("waits for every child before returning the body's results", function()
    corio.run(function()
      local done = {}
      local a, b = corio.group(function(g, x)
        assert.equal("corio.TaskGroup", getmetatable(g).__name)
        for i = 1, 3 do
          g:spawn(function() corio.sleep(0.001 * i); done[#done + 1] = i end)
        end
        -- a child may spawn more children into the group
        g:spawn(function()
          corio.sleep(0)
          g:spawn(function() corio.sleep(0.005); done[#done + 1] = 4 end)
        end)
        return x, "b"
      end, "a")
      assert.equal("a", a)
      assert.equal("b", b)
      assert.same({1, 2, 3, 4}, done)
    end)
  end)

  it("works from top-level code", function()
    local n = 0
    corio.group(function(g)
      for _ = 1, 3 do g:spawn(function() corio.sleep(0); n = n + 1 end) end
    end)
    assert.equal(3, n)
  end)

  it("cancels the siblings and the body at the first failure, and lists every failure", function()
    corio.run(function()
      local sibling_cleaned, body_reached_end = false, false
      local err = errors_with(corio.is_task_group_error, corio.group, function(g)
        g:spawn(function() corio.sleep(0.001); error("first failure") end)
        g:spawn(function()
          -- fails a second time while being cancelled
          local ok = pcall(corio.sleep, 10)
          assert(not ok)
          error({code = 2})
        end)
        g:spawn(function()
          local _ <close> = setmetatable({}, {__close = function() sibling_cleaned = true end})
          corio.sleep(10)
        end)
        corio.sleep(10)
        body_reached_end = true
      end)
      assert.equal(corio.TaskGroupError, getmetatable(err))
      assert.equal(2, #err.errors)
      assert.matches("first failure", err.errors[1])
      assert.same({code = 2}, err.errors[2])
      assert.is_true(corio.is_task(err.tasks[1]))
      assert.matches("stack traceback", err.tracebacks[1])
      assert.is_true(sibling_cleaned)
      assert.is_false(body_reached_end)
      local text = tostring(err)
      assert.matches("2 of the group's tasks failed", text)
      assert.matches("%[1%] Task%-%d+: .*first failure", text)
      assert.matches("stack traceback", text)
    end)
  end)

  it("an error in the body cancels the children and is listed first", function()
    corio.run(function()
      local child
      local err = errors_with(corio.is_task_group_error, corio.group, function(g)
        child = g:spawn(corio.sleep, 10)
        error("body failed", 0)
      end)
      assert.is_true(child:cancelled())
      assert.equal("body failed", err.errors[1])
      assert.is_nil(err.tasks[1])
    end)
  end)

  it("a cancellation from outside cancels the children and is re-raised", function()
    corio.run(function()
      local children = {}
      local outer = corio.spawn(function()
        corio.group(function(g)
          for i = 1, 3 do children[i] = g:spawn(corio.sleep, 10) end
        end)
      end)
      turns()
      outer:cancel()
      errors_with(corio.is_cancelled, outer.await, outer)
      for i = 1, 3 do assert.is_true(children[i]:cancelled()) end
    end)
  end)

  it("counts error(nil) and table errors as failures, in children and in the body", function()
    corio.run(function()
      local err = errors_with(corio.is_task_group_error, corio.group, function(g)
        g:spawn(function() error(nil) end)
      end)
      assert.equal("(error object is a nil value)", err.errors[1])
      local obj = setmetatable({}, {__tostring = function() return "custom failure" end})
      err = errors_with(corio.is_task_group_error, corio.group, function(g)
        g:spawn(function() corio.sleep(0) error(obj) end)
        g:spawn(corio.sleep, 10)
      end)
      assert.equal(obj, err.errors[1])
      assert.matches("custom failure", tostring(err))
      local child
      err = errors_with(corio.is_task_group_error, corio.group, function(g)
        child = g:spawn(corio.sleep, 10)
        error(nil)
      end)
      assert.is_true(child:cancelled())
      assert.equal("(error object is a nil value)", err.errors[1])
    end)
  end)

  it("has a to-be-closed form", function()
    corio.run(function()
      local n = 0
      do
        local g <close> = corio.TaskGroup()
        for _ = 1, 2 do g:spawn(function() corio.sleep(0.001); n = n + 1 end) end
      end
      assert.equal(2, n)
      local ok, err = pcall(function()
        local g <close> = corio.TaskGroup()
        g:spawn(function() error("inside", 0) end)
        corio.sleep(1)
      end)
      assert.is_false(ok)
      assert.is_true(corio.is_task_group_error(err))
      assert.equal("inside", err.errors[1])
    end)
  end)

  it("refuses to spawn after it finished, or a non-function", function()
    corio.run(function()
      local kept
      corio.group(function(g) kept = g end)
      assert.has_error(function() kept:spawn(function() end) end,
                       "spawn: the task group is finished")
      local err = errors_with(corio.is_task_group_error, corio.group,
                              function(g) g:spawn(1) end)
      assert.matches("spawn: expected a function, got number", err.errors[1])
      assert.has_error(function() corio.group("x") end, "group: expected a function, got string")
    end)
  end)
end)

describe("corio.map and gather's concurrency", function()
  it("returns the results in order and never runs more than `concurrency` at once", function()
    corio.run(function()
      local running, peak = 0, 0
      local items = {}
      for i = 1, 20 do items[i] = i end
      local results = corio.map(function(item, i)
        assert.equal(item, i)
        running = running + 1
        peak = math.max(peak, running)
        corio.sleep(0.001 * (item % 3))
        running = running - 1
        return item * 10
      end, items, {concurrency = 4})
      assert.equal(4, peak)
      assert.equal(20, results.n)
      for i = 1, 20 do assert.equal(i * 10, results[i]) end
    end)
  end)

  it("cancels the calls in flight at the first error and waits for them", function()
    corio.run(function()
      local cleaned = 0
      local ok, err = pcall(corio.map, function(item)
        if item == 2 then corio.sleep(0.001); error("bad item", 0) end
        local _ <close> = setmetatable({}, {__close = function() cleaned = cleaned + 1 end})
        corio.sleep(10)
      end, {1, 2, 3, 4, 5}, {concurrency = 3})
      assert.is_false(ok)
      assert.equal("bad item", err)
      assert.equal(2, cleaned)   -- items 1 and 3 were running, 4 and 5 never started
      assert.equal(0, #corio.all_tasks() - 1)
    end)
  end)

  it("keeps errors in place with return_errors", function()
    corio.run(function()
      local results, errors = corio.map(function(item)
        if item % 2 == 0 then error("even " .. item, 0) end
        return item
      end, {1, 2, 3, 4}, {concurrency = 2, return_errors = true})
      assert.same({1, "even 2", 3, "even 4", n = 4}, results)
      assert.same({[2] = "even 2", [4] = "even 4"}, errors)
    end)
  end)

  it("handles an empty list and validates its arguments", function()
    corio.run(function()
      assert.same({n = 0}, (corio.map(function() end, {})))
      assert.error_matches(function() corio.map(1, {}) end, "map: expected a function, got number")
      assert.error_matches(function() corio.map(print, 1) end,
                           "map: expected a list of items, got number")
      assert.error_matches(function() corio.map(print, {1}, {concurrency = 0}) end,
                           "map: concurrency must be a positive integer, got 0")
    end)
  end)

  it("cancelling the caller cancels every call in flight", function()
    corio.run(function()
      local started = 0
      local t = corio.spawn(corio.map, function() started = started + 1; corio.sleep(10) end,
                            {1, 2, 3, 4}, {concurrency = 2})
      turns()
      assert.equal(2, started)
      t:cancel()
      errors_with(corio.is_cancelled, t.await, t)
      assert.equal(2, started)
    end)
  end)

  it("gather limits how many functions run at once", function()
    corio.run(function()
      local running, peak = 0, 0
      local fns = {}
      for i = 1, 6 do
        fns[i] = function()
          running = running + 1
          peak = math.max(peak, running)
          corio.sleep(0.001)
          running = running - 1
          return i
        end
      end
      local results = corio.gather(fns, {concurrency = 2})
      assert.equal(2, peak)
      assert.same({1, 2, 3, 4, 5, 6, n = 6}, results)
    end)
  end)
end)

describe("progress monitoring", function()
  it("as_completed gives tasks as they finish, done callbacks count them", function()
    corio.run(function()
      local finished = 0
      local gates, tasks = {}, {}
      for i = 1, 3 do
        gates[i] = corio.Future()
        tasks[i] = corio.spawn(function() gates[i]:await() return i end)
        tasks[i]:add_done_callback(function() finished = finished + 1 end)
      end
      local order = {}
      local reader = corio.spawn(function()
        for t in corio.as_completed(tasks) do
          order[#order + 1] = t:result()
          assert.equal(#order, finished)
        end
      end)
      turns()
      for _, i in ipairs {2, 3, 1} do
        gates[i]:set_result()
        turns()
      end
      reader:await()
      assert.same({2, 3, 1}, order)
    end)
  end)
end)
