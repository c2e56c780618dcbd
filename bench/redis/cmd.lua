-- 50 tasks doing SET/GET in a loop on one client (auto-pipelining); prints ops/s.
-- corio bench/redis/cmd.lua PATH_OR_PORT SECONDS
local corio = require "corio"
local redis = require "corio.redis"
local target, secs = arg[1], tonumber(arg[2] or 10)
corio.run(function()
  local o = target:find("/") and {path = target} or {port = tonumber(target)}
  local r = assert(redis.connect(o))
  local n, stop = 0, false
  local tasks = {}
  for i = 1, 50 do
    tasks[i] = corio.spawn(function()
      local k = "key:" .. i
      while not stop do
        r:call("SET", k, "xxx")
        r:call("GET", k)
        n = n + 2
      end
    end)
  end
  local t0 = corio.now()
  corio.sleep(secs)
  stop = true
  local dt = corio.now() - t0
  corio.gather(tasks)
  print(("%.0f"):format(n / dt))
  r:close()
end)
