-- 1,000 runs of `/bin/echo x` with captured stdout, 8 at a time. Prints runs/s.
local corio = require "corio"
local process = require "corio.process"
local N, J = tonumber(arg[1]) or 1000, tonumber(arg[2]) or 8
corio.run(function()
  local t0 = corio.now()
  local items = {}
  for i = 1, N do items[i] = i end
  corio.map(function()
    local r = process.run{"/bin/echo", "x"}
    assert(r.stdout == "x\n")
  end, items, {concurrency = J})
  print(("%.0f"):format(N / (corio.now() - t0)))
end)
