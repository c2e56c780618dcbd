-- The producer/consumer of "Messaging and event-driven architecture with Asyncio" (seed post
-- 001) as separate processes sharing a durable queue on Redis: one producer and two consumers,
-- each a process of its own. Half-way through, one consumer is killed (SIGKILL, in the middle
-- of a message); the job it held is handed to the other consumer once its visibility window
-- (1 s) has passed, so every message is still processed.
--
-- Run: corio examples/redis_workers.lua [MESSAGES]   (needs redis-server; it starts its own on
-- a temporary Unix socket and removes it afterwards). The roles, started by the first one:
--   corio examples/redis_workers.lua producer SOCKET MESSAGES
--   corio examples/redis_workers.lua consumer SOCKET NAME
local corio = require "corio"
local redis = require "corio.redis"
local process = require "corio.process"
local fs = require "corio.fs"

local QUEUE = {group = "workers", visibility = 1, batch = 1, block = 0.2}
local WORDS = {"Hello", "World", "Asyncio"}

local function say(...)
  io.stdout:write(...)
  io.stdout:write("\n")
  io.stdout:flush()   -- the parent reads our lines as they come
end

-- ---- the two roles, as in the post ----------------------------------------------------------

local function process_message(name, job)
  say(("[%s] Processing message: %s (attempt %d)"):format(name, job.value.text, job.attempt))
  corio.sleep(0.2)
  say(("[%s] Message processed successfully: %s"):format(name, job.value.text))
end

local function consumer(path, name)
  local r = assert(redis.connect{path = path})
  local queue = assert(redis.queue(r, "messages", {group = QUEUE.group, consumer = name,
    visibility = QUEUE.visibility, batch = QUEUE.batch, block = QUEUE.block}))
  say(("[%s] ready"):format(name))
  for job in queue:jobs() do
    if job.value == "stop" then   -- the last message: this consumer is done
      job:ack()
      break
    end
    process_message(name, job)
    assert(job:ack())
  end
  queue:close()
  r:close()
end

local function producer(path, n)
  local r = assert(redis.connect{path = path})
  local queue = assert(redis.queue(r, "messages", {group = QUEUE.group}))
  for i = 1, n do
    assert(queue:put({text = ("%s #%d"):format(WORDS[(i - 1) % #WORDS + 1], i)}))
    corio.sleep(0.02)
  end
  say(("[producer] sent %d messages"):format(n))
  r:close()
end

-- ---- the launcher: a Redis server and the three processes -----------------------------------

-- A private redis-server on a Unix socket in a temporary directory: server, path, dir.
local function start_redis()
  local dir = assert(fs.mkdtemp("/tmp/corio-example-"))
  local path = dir .. "/redis.sock"
  local server = assert(process.spawn{"redis-server", "--port", "0", "--unixsocket", path,
    "--unixsocketperm", "700", "--dir", dir, "--save", "", "--appendonly", "no",
    stdout = "null"})
  for _ = 1, 500 do
    local r = redis.connect{path = path, timeout = 0.1}
    if r then r:close() return server, path, dir end
    corio.sleep(0.01)
  end
  error("redis-server did not start")
end

local function launch(n)
  local server, path, dir = start_redis()
  local self = {arg[-1] or "corio", arg[0]}
  local function role(...)
    local argv = {table.unpack(self)}
    for _, a in ipairs {...} do argv[#argv + 1] = a end
    argv.stdout = "pipe"
    return assert(process.spawn(argv))
  end

  local processed, redelivered, by = {}, 0, {}
  local count = 0
  local done = corio.Event()
  local victim_busy = corio.Event()   -- consumer-b has done some work and holds a message
  -- Echo a child's lines and keep the score.
  local function follow(p)
    for line in p.stdout:lines() do
      print(line)
      local name, text = line:match("^%[(%S+)%] Message processed successfully: (.+)$")
      if name then
        by[name] = (by[name] or 0) + 1
        if not processed[text] then processed[text], count = true, count + 1 end
        if count == n then done:set() end
      end
      local who, attempt = line:match("^%[(%S+)%] Processing message: .- %(attempt (%d+)%)$")
      if who == "consumer-b" and (by[who] or 0) >= 3 then victim_busy:set() end
      if attempt and tonumber(attempt) > 1 then redelivered = redelivered + 1 end
    end
  end

  local a, b = role("consumer", path, "consumer-a"), role("consumer", path, "consumer-b")
  local followers = {corio.spawn(follow, a), corio.spawn(follow, b)}
  local prod = role("producer", path, tostring(n))
  followers[3] = corio.spawn(follow, prod)

  corio.wait_for(function() victim_busy:wait() end, 30)
  b:kill("KILL")   -- mid-message: the job it holds is neither acked nor failed
  b:wait()
  corio.gather({followers[2]})   -- its last lines are printed before we say it is dead
  print("[launcher] killed consumer-b in the middle of a message")

  corio.wait_for(function() done:wait() end, 30)
  prod:wait()
  -- Only consumer-a is left to read the message that tells it to stop.
  local r = assert(redis.connect{path = path})
  local queue = assert(redis.queue(r, "messages", {group = QUEUE.group}))
  assert(queue:put("stop"))
  assert(a:wait() == 0, "consumer-a failed")
  corio.gather(followers)
  local stats = assert(queue:stats())
  r:close()
  print(("summary: %d messages, %d processed (consumer-a %d, consumer-b %d), "
         .. "%d redelivered, %d left in the queue")
        :format(n, count, by["consumer-a"] or 0, by["consumer-b"] or 0, redelivered,
                stats.pending + stats.in_flight))
  server:kill("TERM")
  server:wait()
  fs.remove(dir, true)
end

corio.run(function()
  local mode = arg[1]
  if mode == "consumer" then
    consumer(arg[2], arg[3])
  elseif mode == "producer" then
    producer(arg[2], tonumber(arg[3]))
  else
    launch(tonumber(mode) or 20)
  end
end)
