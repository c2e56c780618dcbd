-- luv's new_work (libuv's shared thread pool): N trivial calls, 64 in flight.
local uv = require "luv"
local N, INFLIGHT = tonumber(arg[1]) or 100000, 64
local sent, done = 0, 0
local work
work = uv.new_work(function(x) return x end, function()
  done = done + 1
  if sent < N then sent = sent + 1; work:queue(sent) end
end)
local t0 = uv.hrtime()
for _ = 1, INFLIGHT do sent = sent + 1; work:queue(sent) end
uv.run()
local dt = (uv.hrtime() - t0) / 1e9
print(("luv new_work %d calls/s"):format(math.floor(done / dt)))
