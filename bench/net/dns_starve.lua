-- File reads while slow name lookups are in flight: does DNS on libuv's thread pool starve
-- corio.fs? `corio dns_starve.lua DIR LOOKUPS` reads DIR/1..10000 (4 KiB each, 64 at a time,
-- as bench/read_files.lua) three times: alone, then with LOOKUPS getaddrinfo calls of names
-- nobody answers started just before (bench/net/dns_starve.sh points the resolver at a
-- server that never replies), and prints files/s for both, how long those reads took, how long
-- a lookup of "localhost" (answered from /etc/hosts) waited meanwhile, and the slowest lookup.
local corio = require "corio"
local fs = require "corio.fs"
local net = require "corio.net"
local dir, lookups = arg[1], tonumber(arg[2]) or 64
local N, J = 10000, 64

local items = {}
for i = 1, N do items[i] = ("%s/%d"):format(dir, i) end

local function read_all()
  local t0 = corio.now()
  corio.map(function(p) assert(#assert(fs.read_file(p)) == 4096) end, items, {concurrency = J})
  return N / (corio.now() - t0)
end

corio.run(function()
  read_all() -- warm the page cache and the pool's threads
  local alone = read_all()
  local t0 = corio.now()
  local pending, slowest = {}, 0
  for i = 1, lookups do
    pending[i] = corio.spawn(function()
      local ok, msg, code = net.getaddrinfo(("slow-%d-%d.corio-bench.invalid"):format(i, os.time()))
      slowest = math.max(slowest, corio.now() - t0)
      return code
    end)
  end
  corio.sleep(0.05) -- the lookups reach the pool first
  local local_wait
  local quick = corio.spawn(function()
    local t1 = corio.now()
    assert(net.getaddrinfo("localhost"))
    local_wait = corio.now() - t1
  end)
  local busy = read_all()
  local during = corio.now() - t0
  corio.gather(pending)
  quick:await()
  print(("%.0f %.0f %.2f %.2f %.2f"):format(alone, busy, during, local_wait, slowest))
end)
