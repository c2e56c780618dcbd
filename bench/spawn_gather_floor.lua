-- The floor: plain Lua coroutines driven by a hand-written round-robin loop.
local N = tonumber(arg[1]) or 100000
local t0 = os.clock()
local ready, results = {}, {}
local yield, resume, create, status = coroutine.yield, coroutine.resume, coroutine.create, coroutine.status
for i = 1, N do
  ready[#ready + 1] = {create(function() yield() return i end), i}
end
while #ready > 0 do
  local nxt = {}
  for _, e in ipairs(ready) do
    local ok, v = resume(e[1])
    if status(e[1]) == "dead" then results[e[2]] = v else nxt[#nxt + 1] = e end
  end
  ready = nxt
end
local s = 0
for i = 1, N do s = s + results[i] end
assert(s == N * (N + 1) // 2)
print(("lua coroutines round-robin %d: %.3f s"):format(N, os.clock() - t0))
