-- 100,000 tasks, each sleep(0) once and return a number; gathered and summed.
local corio = require "corio"
local N = tonumber(arg[1]) or 100000
local function work(i) corio.sleep(0) return i end
local t0 = os.clock()
local sum = corio.run(function()
  local tasks = {}
  for i = 1, N do tasks[i] = corio.spawn(work, i) end
  local res = corio.gather(tasks)
  local s = 0
  for i = 1, N do s = s + res[i] end
  return s
end)
assert(sum == N * (N + 1) // 2)
print(("corio spawn+sleep(0)+gather %d: %.3f s"):format(N, os.clock() - t0))
