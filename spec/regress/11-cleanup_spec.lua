-- Issue 11: cleanup that can await. A failing or cancelled task's <close> handlers may call
-- async functions, as `finally: await ...` does after CancelledError in asyncio.
local corio = require "corio"
local support = require "support"

local function closer(fn)
  return setmetatable({}, {__close = fn})
end

describe("cleanup that can await (issue 11)", function()
  it("a <close> handler awaits after the task was cancelled", function()
    local log = {}
    local q = corio.Queue()
    local t = corio.spawn(function()
      local _ <close> = closer(function()
        corio.sleep(0.01)
        q:put("flushed")
        log[#log + 1] = corio.timeout(1, function() corio.sleep(0); return "timed" end)
      end)
      corio.sleep(10)
    end)
    corio.sleep(0)
    t:cancel()
    local ok, e = pcall(t.await, t)
    assert.is_false(ok)
    assert.is_true(corio.is_cancelled(e), tostring(e))
    assert.equal("flushed", q:get())
    assert.same({"timed"}, log)
  end)

  it("a <close> handler awaits after the task failed, and the error is kept", function()
    local closed = false
    local t = corio.spawn(function()
      local _ <close> = closer(function(_, err)
        corio.sleep(0.01)
        closed = err
      end)
      error("boom", 0)
    end)
    local ok, e = pcall(t.await, t)
    assert.is_false(ok)
    assert.equal("boom", e)
    assert.equal("boom", closed)
  end)

  it("an error in an awaiting <close> handler replaces the task's error, as in Lua", function()
    local t = corio.spawn(function()
      local _ <close> = closer(function() corio.sleep(0); error("close failed", 0) end)
      error("boom", 0)
    end)
    local ok, e = pcall(t.await, t)
    assert.is_false(ok)
    assert.equal("close failed", e)
  end)

  it("a top-level TaskGroup cancels the body at once when a child fails", function()
    local out, err, code = support.run_corio("-", [[
      local corio = require "corio"
      local t0 = corio.now()
      local ok, e = pcall(function()
        local g <close> = corio.TaskGroup()
        g:spawn(function() corio.sleep(0.05); error("child failed", 0) end)
        corio.sleep(5)
      end)
      print(ok, corio.is_task_group_error(e), corio.now() - t0 < 1)
    ]])
    assert.equal(0, code, err)
    assert.equal("false\ttrue\ttrue\n", out)
  end)

  describe("corio.run", function()
    it("cancels only the tasks its own task started", function()
      local bg = corio.spawn(function()
        local grandchild = corio.spawn(function() corio.sleep(0.05); return "gc done" end)
        corio.sleep(0.05)
        return "bg done", grandchild:await()
      end)
      local left
      corio.run(function()
        left = corio.spawn(corio.sleep, 10)   -- left running: run's cleanup cancels it
        corio.sleep(0.01)
      end)
      assert.is_true(left:cancelled())
      assert.is_false(bg:done())
      assert.same({"bg done", "gc done"}, {bg:await()})
    end)
  end)
end)
