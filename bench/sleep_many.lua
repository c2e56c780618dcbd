-- 100,000 concurrent tasks each sleeping 1 s, gathered: wall time and peak memory.
local corio = require "corio"
local N = tonumber(arg[1]) or 100000
local t0 = corio.now()
corio.run(function()
  local tasks = {}
  for i = 1, N do tasks[i] = corio.spawn(corio.sleep, 1) end
  corio.gather(tasks)
end)
local wall = corio.now() - t0
local rss
for line in io.lines("/proc/self/status") do
  rss = rss or tonumber(line:match("^VmHWM:%s+(%d+)"))
end
print(("corio %d tasks sleeping 1 s: %.3f s wall, peak RSS %.1f MiB, %.0f bytes/task"):format(
  N, wall, rss / 1024, rss * 1024 / N))
