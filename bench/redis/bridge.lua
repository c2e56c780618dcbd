-- The Bus bridge benchmark: two processes, each with a corio.Bus bridged through Redis.
--   corio bridge.lua recv PORT N         prints "ready", then receives N messages on its Bus;
--                                        prints "recv <t_last> p50 <ms> p99 <ms> lost <k>"
--   corio bridge.lua send PORT N [RATE]  publishes N messages {t = publish time} on its Bus, as
--                                        fast as the bridge takes them or at RATE msgs/s;
--                                        prints "start <t>"
-- Latency is one way, publish -> delivered to the subscriber of the other process's Bus
-- (corio.now() is the system-wide monotonic clock). Driven by bridge.sh.
local corio = require "corio"
local redis = require "corio.redis"

local mode, port, n, rate = arg[1], tonumber(arg[2]), tonumber(arg[3]), tonumber(arg[4])

corio.run(function()
  local r = assert(redis.connect{port = port})
  local bus = corio.Bus()
  local bridge = assert(redis.bridge(bus, r, {patterns = {"bench.#"}, size = 4096}))
  if mode == "recv" then
    local sub = bus:subscribe("bench.#", {size = 65536})
    print("ready")
    io.stdout:flush()
    local lat, got, last = {}, 0, 0
    local ok = pcall(corio.wait_for, function()
      while got < n do
        local _, m = sub:get()
        got = got + 1
        last = corio.now()
        lat[got] = last - m.t
      end
    end, 60)
    table.sort(lat)
    print(("recv %.6f p50 %.3f p99 %.3f lost %d%s"):format(last, lat[math.ceil(got * 0.5)] * 1e3,
      lat[math.ceil(got * 0.99)] * 1e3, n - got, ok and "" or " (timed out)"))
    sub:close()
  else
    local t0 = corio.now()
    print(("start %.6f"):format(t0))
    for i = 1, n do
      if rate then
        local due = t0 + (i - 1) / rate
        local wait = due - corio.now()
        if wait > 0.001 then corio.sleep(wait) end
      elseif i % 256 == 0 then
        corio.sleep(0)   -- let the bridge's forwarder run (publish blocks only when it is full)
      end
      bus:publish("bench.msg", {t = corio.now(), i = i})
    end
    while bridge.forwarded < n do corio.sleep(0.001) end
    corio.sleep(0.2)   -- the last PUBLISH replies
  end
  bridge:close()
  r:close()
end)
