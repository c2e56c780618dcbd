-- corio.so in a stock lua5.4: run by CTest as `lua5.4 spec/shell/module_test.lua` with
-- LUA_CPATH pointing at the build directory. Fails (error -> exit 1) on any wrong result.
local early = coroutine.create(function(corio)  -- a coroutine that predates require "corio"
  corio.sleep(0.01)
  return "early"
end)

local corio = require "corio"
assert(package.loaded.corio == corio and require "corio" == corio)
assert(corio._VERSION:match("^corio "))

-- the issue's one-liner
corio.run(function() corio.sleep(0.1) print("ok") end)

-- top-level async calls drive the loop
local t0 = corio.now()
corio.sleep(0.02)
assert(corio.now() - t0 >= 0.02)

-- tasks, gather, timeouts, cancellation
local t = corio.spawn(function(x) corio.sleep(0.01) return x * 2 end, 21)
assert(t:await() == 42)
local r = corio.gather(function() corio.sleep(0.02) return "a" end, function() return "b" end)
assert(r[1] == "a" and r[2] == "b")
local ok, err = pcall(corio.wait_for, function() corio.sleep(5) end, 0.02)
assert(not ok and corio.is_timeout(err))
local slow = corio.spawn(corio.sleep, 10)
corio.sleep(0)
slow:cancel()
assert(not pcall(slow.await, slow) and slow:cancelled())

-- a user's generator that waits inside a task
local gen = coroutine.wrap(function() corio.sleep(0.01) coroutine.yield(1) return 2 end)
assert(select("#", corio.run(function() return gen(), gen() end)) == 2)

-- the coroutine created before require finds the runtime too
local okc, v = coroutine.resume(early, corio)
assert(okc and v == "early", tostring(v))

-- the bundled modules
assert(require("cjson").encode({1, 2}) == "[1,2]")

-- nothing left behind
local st = require("corio.core")._stats()
assert(st.tasks == 0 and st.timers == 0 and st.handles == 0, "leftovers")
print("module: ok")
