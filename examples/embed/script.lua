-- Called by examples/embed/main.c: main() runs as a task on the application's loop.
local corio = require "corio"

function main()
  -- many tasks at once, each waiting on the thread pool
  local limits = {}
  for i = 1, 16 do limits[i] = i * 20000 end
  local t0 = corio.now()
  local counts = corio.map(corio.primes, limits)
  for i, n in ipairs(limits) do
    print(("primes below %6d: %5d"):format(n, counts[i]))
  end
  print(("16 computations in %.0f ms"):format((corio.now() - t0) * 1000))

  -- completions from threads of our own, while a timer task runs beside them
  local beats = 0
  local beat = corio.spawn(function()
    while true do corio.sleep(0.005) beats = beats + 1 end
  end)
  local sums = corio.gather(function() return corio.checksum("hello") end,
                            function() return corio.checksum("world") end,
                            function() return corio.checksum(("x"):rep(1000)) end)
  beat:cancel()
  print("checksums:", table.concat(sums, " "))

  -- cancelling a computation: wait_for gives up on it
  local ok, err = pcall(corio.wait_for, function() return corio.primes(100000000) end, 0.05)
  print("gave up on a long computation:", not ok and corio.is_timeout(err))
  return counts[16]
end
