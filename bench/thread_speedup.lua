-- Speed-up: a CPU-bound job (counting primes) split into 64 pieces, computed on the loop
-- thread alone ("single") or on the default pool with thread.map ("threads") while a 10 ms
-- ticker task runs on the loop. Prints seconds and the ticker's share of its expected ticks.
-- usage: corio bench/thread_speedup.lua single|threads [N]
local corio = require "corio"
local thread = require "corio.thread"
local mode, N, PIECES = arg[1] or "threads", tonumber(arg[2]) or 2000000, 64

local function count_primes(range)
  local n = 0
  for i = math.max(range[1], 2), range[2] do
    local prime = true
    for d = 2, math.floor(math.sqrt(i)) do
      if i % d == 0 then prime = false; break end
    end
    if prime then n = n + 1 end
  end
  return n
end

local ranges = {}
for k = 1, PIECES do ranges[k] = {(k - 1) * N // PIECES + 1, k * N // PIECES} end

corio.run(function()
  if mode == "single" then
    local t0 = corio.now()
    local total = 0
    for k = 1, PIECES do total = total + count_primes(ranges[k]) end
    print(("single %.3f s, %d primes"):format(corio.now() - t0, total))
    return
  end
  thread.run(count_primes, {1, 10}) -- the workers are up
  local ticks = 0
  local ticker = corio.spawn(function()
    while true do corio.sleep(0.01); ticks = ticks + 1 end
  end)
  local t0, c0 = corio.now(), os.clock()
  local counts = thread.map(count_primes, ranges)
  local dt, cpu = corio.now() - t0, os.clock() - c0
  ticker:cancel()
  local total = 0
  for k = 1, PIECES do total = total + counts[k] end
  -- cpu/wall shows how many cores the machine actually gave the process meanwhile
  print(("threads %.3f s, %d primes, ticks %d of %d (%.0f%%), %d threads, cpu/wall %.2f"):format(
    dt, total, ticks, math.floor(dt / 0.01), 100 * ticks / math.floor(dt / 0.01),
    thread.default():size(), cpu / dt))
end)
