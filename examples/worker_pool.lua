-- A worker pool: a bounded priority queue of jobs, a fixed number of workers (the
-- concurrency limit), and progress on stderr while it runs (a live bar when stderr is a
-- terminal). Urgent jobs overtake queued ones; the producer waits when the queue is full.
-- Run: corio examples/worker_pool.lua [jobs] [workers]
local corio = require "corio"

local NJOBS = tonumber(arg and arg[1]) or 24
local NWORKERS = tonumber(arg and arg[2]) or 3
local LEVELS = {[1] = "urgent", [5] = "normal", [9] = "batch"}
local STOP = {99, 0}   -- the stop signal sorts after every real job

-- Jobs are {priority, id, cost}: PriorityQueue gives the smallest priority first and keeps
-- submission order among equals.
local function make_jobs()
  local jobs = {}
  for id = 1, NJOBS do
    local priority = (id % 6 == 0) and 1 or (id % 3 == 0) and 9 or 5
    jobs[id] = {priority, id, 0.01 + (id % 4) * 0.005}
  end
  return jobs
end

local tty = os.execute("[ -t 2 ]") == true

local stats = {done = 0, running = 0, peak = 0, waited = {}}

local function draw(final)
  if not tty then return end
  local width = 30
  local filled = math.floor(width * stats.done / NJOBS)
  io.stderr:write(("\r[%s%s] %d/%d jobs, %d running%s"):format(
    ("#"):rep(filled), ("."):rep(width - filled), stats.done, NJOBS, stats.running,
    final and "\n" or ""))
  io.stderr:flush()
end

local function worker(n, queue)
  while true do
    local job = queue:get()
    if job == STOP then return end
    local priority, id, cost = job[1], job[2], job[3]
    stats.running = stats.running + 1
    stats.peak = math.max(stats.peak, stats.running)
    local level = LEVELS[priority]
    local w = stats.waited[level] or {0, 0}
    w[1], w[2] = w[1] + (corio.now() - job.submitted), w[2] + 1
    stats.waited[level] = w
    corio.sleep(cost)                               -- the work
    stats.running = stats.running - 1
    stats.done = stats.done + 1
    print(("done job %02d [%s] by worker %d"):format(id, level, n))
    queue:task_done()
  end
end

corio.run(function()
  local queue = corio.PriorityQueue(6)              -- bounded: backpressure on the producer
  -- The progress reporter runs at a low task priority: when it and a worker are ready in
  -- the same round, the worker goes first.
  local reporter = corio.spawn({function()
    while true do draw(false); corio.sleep(0.05) end
  end, priority = -1, name = "progress"})

  corio.group(function(g)
    for n = 1, NWORKERS do g:spawn(worker, n, queue) end
    for _, job in ipairs(make_jobs()) do
      job.submitted = corio.now()
      queue:put(job)                                -- waits while 6 jobs are queued
    end
    queue:join()                                    -- every job done
    for _ = 1, NWORKERS do queue:put(STOP) end
  end)

  reporter:cancel()
  draw(true)
  local function avg(level)
    local w = stats.waited[level]
    return w and (w[1] / w[2] * 1000) or 0
  end
  print(("summary: %d jobs, %d workers, peak concurrency %d"):format(stats.done, NWORKERS,
                                                                     stats.peak))
  print(("average wait in queue: urgent %.0f ms, normal %.0f ms, batch %.0f ms")
        :format(avg("urgent"), avg("normal"), avg("batch")))
end)
