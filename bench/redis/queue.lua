-- The durable-queue benchmark, corio.redis side: one role per process.
--   corio queue.lua produce PORT N [RATE]  puts N jobs ({t = put time}) from 50 tasks, or at
--                                         RATE jobs/s; prints "start <t>" (monotonic seconds)
--   corio queue.lua consume PORT N         processes and acks N jobs (50 at a time); prints
--                                         "end <t> p50 <ms> p99 <ms>" (put -> acked latency)
-- corio.now() and node's process.hrtime are the same system-wide monotonic clock, so times
-- from the two processes compare. Driven by queue.sh.
local corio = require "corio"
local redis = require "corio.redis"

local mode, port, n, rate = arg[1], tonumber(arg[2]), tonumber(arg[3]), tonumber(arg[4])
local CONCURRENCY = 50

local function produce(q)
  local t0 = corio.now()
  print(("start %.6f"):format(t0))
  if not rate then
    local next_i = 0
    local tasks = {}
    for k = 1, CONCURRENCY do
      tasks[k] = corio.spawn(function()
        while next_i < n do
          next_i = next_i + 1
          assert(q:put({t = corio.now()}))
        end
      end)
    end
    corio.gather(tasks)
    return
  end
  -- Paced: each millisecond, put the jobs that are due, without waiting for their replies.
  local sent, inflight = 0, {}
  while sent < n do
    local due = math.min(n, math.floor((corio.now() - t0) * rate) + 1)
    while sent < due do
      sent = sent + 1
      inflight[#inflight + 1] = corio.spawn(q.put, q, {t = corio.now()})
    end
    if #inflight > 1000 then corio.gather(inflight) inflight = {} end
    corio.sleep(0.001)
  end
  corio.gather(inflight)
end

local function consume(q)
  local lat, done = {}, 0
  local all = corio.Event()
  local worker = corio.spawn(q.work, q, function(value, job)
    assert(job:ack())
    done = done + 1
    lat[done] = corio.now() - value.t
    if done == n then all:set() end
  end, {concurrency = CONCURRENCY})
  all:wait()
  local t_end = corio.now()
  table.sort(lat)
  print(("end %.6f p50 %.2f p99 %.2f"):format(t_end, lat[math.ceil(#lat * 0.5)] * 1e3,
                                               lat[math.ceil(#lat * 0.99)] * 1e3))
  q:close()
  worker:cancel()
end

corio.run(function()
  local r = assert(redis.connect{port = port})
  local q = assert(redis.queue(r, "bench", {batch = 100, block = 0.1}))
  if mode == "produce" then produce(q) else consume(q) end
  r:close()
end)
