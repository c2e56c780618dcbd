-- Count the primes below N on every core while the loop stays responsive: a ticker task keeps
-- its 10 ms rate and a corio.web endpoint keeps answering (checked by a client task here).
-- Run: corio examples/primes_threads.lua [N = 3000000] [pieces = 64]
local corio = require "corio"
local thread = require "corio.thread"
local web = require "corio.web"
local http = require "corio.http"

local N, PIECES = tonumber(arg[1]) or 3000000, tonumber(arg[2]) or 64

-- Sent to the workers as bytecode: it may use globals (the worker's) but no upvalues.
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

corio.run(function()
  local ticks = 0
  local app = web.Application()
  app:get("/ticks", function() return tostring(ticks) end)
  local server = assert(app:listen{host = "127.0.0.1", port = 0})

  local ticker = corio.spawn(function()
    while true do corio.sleep(0.01); ticks = ticks + 1 end
  end)
  local answered, slowest = 0, 0
  local client = corio.spawn(function()
    local url = ("http://127.0.0.1:%d/ticks"):format(server.port)
    while true do
      local t0 = corio.now()
      local resp = assert(http.get(url))
      assert(resp.status == 200)
      answered = answered + 1
      slowest = math.max(slowest, corio.now() - t0)
      corio.sleep(0.05)
    end
  end)

  local ranges = {}
  for k = 1, PIECES do
    ranges[k] = {(k - 1) * N // PIECES + 1, k * N // PIECES}
  end
  local t0, ticks0 = corio.now(), ticks
  local counts = thread.map(count_primes, ranges)
  local elapsed = corio.now() - t0
  local total = 0
  for k = 1, PIECES do total = total + counts[k] end
  local expected = math.floor(elapsed / 0.01)

  ticker:cancel()
  client:cancel()
  server:close()
  print(("primes below %d: %d (%d pieces on %d threads, %.2f s)"):format(N, total, PIECES,
    thread.default():size(), elapsed))
  print(("ticker: %d of %d ticks (%d%%)"):format(ticks - ticks0, expected,
    math.floor(100 * (ticks - ticks0) / math.max(expected, 1) + 0.5)))
  print(("web: %d requests answered while counting, slowest %.1f ms"):format(answered,
    slowest * 1000))
end)
