-- Two bugs that stall a program, and how corio shows them (doc/observability.md).
-- A deadlock: "config" awaits "db" and "db" awaits "config". A CPU hog: "report" computes for
-- 0.3 s without suspending, and a "backup" task blocks the loop in a C call (os.execute):
-- nothing else runs meanwhile. Run it with the stall watchdog on, and send it SIGUSR1 while it
-- waits at the end for a task dump:
--   CORIO_DEBUG=slow=0.1 corio examples/stall.lua & sleep 1; kill -USR1 $!; wait
local corio = require "corio"
local net = require "corio.net"

local function spawn(name, fn, ...)
  local t = corio.spawn(fn, ...)
  t.name = name
  return t
end

-- A naive prime count: pure Lua that never suspends.
local function count_primes(n)
  local count = 0
  for i = 2, n do
    local prime = true
    for d = 2, math.floor(math.sqrt(i)) do
      if i % d == 0 then prime = false; break end
    end
    if prime then count = count + 1 end
  end
  return count
end

corio.run(function()
  local jobs = corio.Queue()
  jobs.name = "jobs"
  local worker = spawn("worker", function()
    while true do print("job", jobs:get()) end
  end)
  local server = assert(net.serve(function(s) s:read() end, {port = 0}))
  local config, db
  config = spawn("config", function()
    corio.sleep(0.01)
    return {db = db:await()}                -- the config needs the database...
  end)
  db = spawn("db", function()
    corio.sleep(0.01)
    return "connected to " .. config:await().db_url  -- ...and the database the config
  end)
  local startup = spawn("startup", corio.gather, {config, db})
  corio.sleep(0.05)

  local tree, cycles = corio.pstree()
  print(tree)
  print(#cycles .. " deadlock(s)")

  corio.stats(true)  -- a fresh lag measurement
  local ticker = spawn("ticker", function()
    for _ = 1, 10 do corio.sleep(0.01) end
  end)
  local report = spawn("report", function()
    local t0 = os.clock()
    local n = 0
    while os.clock() - t0 < 0.3 do n = n + count_primes(2000) end
    return n
  end)
  local backup = spawn("backup", function() os.execute("sleep 0.3") end)
  corio.gather({ticker, report, backup})
  local lag = corio.stats().lag
  print(("loop lag while they ran: max %.2f s"):format(lag.max))
  io.stdout:flush()  -- out before the wait, also when stdout is a file

  corio.sleep(2)  -- time for a `kill -USR1`
  for _, t in ipairs {worker, config, db, startup} do t:cancel() end
  server:close()
  print("done")
end)
