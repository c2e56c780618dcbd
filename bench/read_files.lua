-- Read 10,000 files of 4 KiB, 64 at a time (fs.read_file). Argument: the directory made by
-- bench/os.sh. Prints files/s.
local corio = require "corio"
local fs = require "corio.fs"
local dir, N, J = arg[1], tonumber(arg[2]) or 10000, tonumber(arg[3]) or 64
corio.run(function()
  local items = {}
  for i = 1, N do items[i] = ("%s/%d"):format(dir, i) end
  local t0 = corio.now()
  corio.map(function(p) assert(#assert(fs.read_file(p)) == 4096) end, items, {concurrency = J})
  print(("%.0f"):format(N / (corio.now() - t0)))
end)
