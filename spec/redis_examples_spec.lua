-- The corio.redis examples run as real processes (each starts its own redis-server on a
-- temporary Unix socket) and print what they promise.
local support = require "support"
local RS = require "redis_support"

if not RS.available() then
  describe("corio.redis examples", function()
    pending("redis-server is not installed")
  end)
  return
end

describe("corio.redis examples", function()
  it("redis_workers.lua: a producer and two consumers, one killed, every message processed",
     function()
    local out, err, code = support.run_corio("examples/redis_workers.lua 30")
    assert.equal("", err)
    assert.equal(0, code)
    local processed, by = {}, {}
    for name, n in out:gmatch("%[(consumer%-%a)%] Message processed successfully: %a+ #(%d+)\n") do
      processed[tonumber(n)] = true
      by[name] = (by[name] or 0) + 1
    end
    for i = 1, 30 do assert.is_true(processed[i], "message " .. i .. " was not processed") end
    -- both consumers worked, and consumer-b was killed while it held a message ...
    assert.is_true(by["consumer-a"] > 0 and by["consumer-b"] > 0)
    local killed = out:find("[launcher] killed consumer-b in the middle of a message", 1, true)
    assert.is_truthy(killed)
    assert.is_nil(out:find("[consumer-b]", killed, true), "consumer-b printed after its death")
    -- ... which consumer-a got again, with its attempt counted (unless consumer-b, slower to
    -- die than the 0.2 s a message takes, had finished it)
    local before = out:sub(1, killed)
    local held = before:match(".*%[consumer%-b%] Processing message: (%a+ #%d+)")
    assert.is_truthy(held)
    local esc = held:gsub("#", "%%#")
    if not before:find("[consumer-b] Message processed successfully: " .. held .. "\n", 1, true) then
      assert.matches("%[consumer%-a%] Processing message: " .. esc .. " %(attempt 2%)", out)
    end
    assert.matches("%[producer%] sent 30 messages\n", out)
    assert.matches("summary: 30 messages, 30 processed %(consumer%-a %d+, consumer%-b %d+%), "
                   .. "%d+ redelivered, 0 left in the queue\n$", out)
  end)

  it("redis_services.lua: services in separate processes through a bridged Bus", function()
    local out, err, code = support.run_corio("examples/redis_services.lua")
    assert.equal("", err)
    assert.equal(0, code)
    assert.matches("%[payment%] ready\n", out)
    assert.matches("%[shipping%] ready\n", out)
    -- the services' own output, from their processes
    for _, id in ipairs {1, 2, 4, 5} do
      assert.matches("%[payment%] order " .. id .. ": orders.paid\n", out)
      assert.matches("%[shipping%] order " .. id .. ": shipped\n", out)
    end
    assert.matches("%[payment%] order 3: orders.declined\n", out)
    assert.is_nil(out:find("[shipping] order 3", 1, true))
    -- the shop's audit log saw every event, in order per order
    local stage = {}
    for topic, id in out:gmatch("%[audit%] (orders%.%a+)%s+order (%d+):") do
      stage[id] = stage[id] or {}
      table.insert(stage[id], topic)
    end
    for _, id in ipairs {"1", "2", "4", "5"} do
      assert.same({"orders.created", "orders.paid", "orders.shipped"}, stage[id])
    end
    assert.same({"orders.created", "orders.declined"}, stage["3"])
    -- 4 paid + 1 declined from payment, 4 shipped from shipping
    assert.matches("summary: 5 orders, 4 shipped, 1 declined, revenue 265.90, "
                   .. "9 events received from other processes\n$", out)
  end)
end)
