-- Overhead per call: N trivial corio.thread.run calls, 64 in flight (bench/thread.sh).
local corio = require "corio"
local thread = require "corio.thread"
local N, INFLIGHT = tonumber(arg[1]) or 100000, 64

corio.run(function()
  local f = function(x) return x end
  thread.map(f, {1, 2, 3, 4})  -- workers up, function cached
  local t0 = corio.now()
  local tasks = {}
  for w = 1, INFLIGHT do
    tasks[w] = corio.spawn(function()
      for i = w, N, INFLIGHT do thread.run(f, i) end
    end)
  end
  corio.gather(table.unpack(tasks))
  local dt = corio.now() - t0
  print(("corio thread.run %d calls/s"):format(math.floor(N / dt)))
end)
