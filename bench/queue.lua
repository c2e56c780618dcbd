-- Messaging throughput: a Queue(1000) between one producer and one consumer, a Bus with one
-- publisher and ten subscribers, and a publish that reaches nobody.
-- Usage: corio bench/queue.lua [items] [messages] [publishes]; prints one line per workload:
--   <name> <count> <seconds>
local corio = require "corio"
local N = tonumber(arg[1]) or 1000000
local M = tonumber(arg[2]) or 200000
local P = tonumber(arg[3]) or 2000000
local clock = os.clock

local function queue_pass()
  local q = corio.Queue(1000)
  local t0 = clock()
  corio.run(function()
    local consumer = corio.spawn(function()
      local sum, get = 0, q.get
      for _ = 1, N do sum = sum + get(q) end
      return sum
    end)
    local put = q.put
    for i = 1, N do put(q, i) end
    assert(consumer:await() == N * (N + 1) // 2)
  end)
  return clock() - t0
end

local function bus_fanout()
  local bus = corio.Bus()
  local SUBS = 10
  local t0 = clock()
  corio.run(function()
    local subs, tasks = {}, {}
    for i = 1, SUBS do
      local sub = bus:subscribe("prices.eur")
      subs[i] = sub
      tasks[i] = corio.spawn(function()
        local n = 0
        for _, msg in sub do n = n + 1 end
        return n
      end)
    end
    for i = 1, M do bus:publish("prices.eur", i) end
    bus:close()
    for i = 1, SUBS do assert(tasks[i]:await() == M) end
  end)
  return clock() - t0, M * SUBS
end

local function publish_nobody()
  local bus = corio.Bus()
  bus:subscribe("other.topic")
  local publish = bus.publish
  local t0 = clock()
  for i = 1, P do publish(bus, "nobody.listens", i) end
  return clock() - t0
end

print(("queue %d %.4f"):format(N, queue_pass()))
local s, d = bus_fanout()
print(("bus %d %.4f"):format(d, s))
print(("nobody %d %.4f"):format(P, publish_nobody()))
