-- The messaging examples run with the built binary and print what they promise.
local corio = require "corio"
local support = require "support"

local function lines(s)
  local out = {}
  for line in s:gmatch("[^\n]+") do out[#out + 1] = line end
  return out
end

describe("examples", function()
  it("messaging.lua prints the post's output, one message a second", function()
    local t0 = os.time()
    local out, err, code = support.run_corio("examples/messaging.lua")
    local elapsed = os.time() - t0
    assert.equal("", err)
    assert.equal(0, code)
    assert.same({
      "Processing message: Hello", "Message processed successfully",
      "Processing message: World", "Message processed successfully",
      "Processing message: Asyncio", "Message processed successfully",
    }, lines(out))
    assert.is_true(elapsed >= 2 and elapsed <= 10, "took " .. elapsed .. " s")
  end)

  it("pipeline.lua moves every order through payment and shipping", function()
    local out, err, code = support.run_corio("examples/pipeline.lua")
    assert.equal("", err)
    assert.equal(0, code)
    local stage = {}   -- order id -> list of topics in the order the audit log saw them
    for topic, id in out:gmatch("%[audit%] (orders%.%a+)%s+order (%d+):") do
      stage[id] = stage[id] or {}
      table.insert(stage[id], topic)
    end
    for _, id in ipairs {"1", "2", "4", "5"} do
      assert.same({"orders.created", "orders.paid", "orders.shipped"}, stage[id])
    end
    assert.same({"orders.created", "orders.declined"}, stage["3"])
    assert.matches("summary: 5 orders, 4 shipped, 1 declined, revenue 265.90\n$", out)
  end)

  it("worker_pool.lua runs every job once, at most `workers` at a time", function()
    local out, err, code = support.run_corio("examples/worker_pool.lua 30 4")
    assert.equal(0, code)
    assert.equal("", err)   -- stderr is not a terminal here: no progress bar
    local seen, count = {}, 0
    for id in out:gmatch("done job (%d+) %[%a+%] by worker [1-4]\n") do
      assert.is_nil(seen[id])
      seen[id], count = true, count + 1
    end
    assert.equal(30, count)
    assert.matches("summary: 30 jobs, 4 workers, peak concurrency 4\n", out)
    local urgent, normal, batch = out:match("urgent (%d+) ms, normal (%d+) ms, batch (%d+) ms")
    assert.is_truthy(urgent)
    -- priorities at work: batch jobs wait behind everything else
    assert.is_true(tonumber(batch) > tonumber(urgent))
  end)
end)
