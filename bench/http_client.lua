-- corio.http side of bench/http_client.sh: GET `url` `n` times, at most `c` in flight, bodies
-- read. Prints "requests seconds req/s connects".
local corio = require "corio"
local http = require "corio.http"

local url, n, c = arg[1], tonumber(arg[2] or 10000), tonumber(arg[3] or 100)
local session = http.Session {max_per_host = c}
local items = {}
for i = 1, n do items[i] = i end
local bytes = 0
local t0 = corio.now()
corio.map(function()
  local r = assert(session:get(url))
  assert(r.status == 200)
  bytes = bytes + #r.body
end, items, {concurrency = c})
local dt = corio.now() - t0
local st = session:stats()
session:close()
print(("%d %.3f %.0f %d %d"):format(n, dt, n / dt, st.connects, bytes))
