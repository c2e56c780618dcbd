-- Concurrent API calls (Example 4 of the seed post, from aiohttp to corio.http): three
-- endpoints fetched at once and gathered.
--
--   corio examples/api_calls.lua [url ...]
--
-- With URLs as arguments it fetches those. Without, it has no internet to count on: it
-- serves three small JSON files from a temporary directory with `python3 -m http.server` on
-- a free port of 127.0.0.1, fetches them, and stops the server.
local corio = require "corio"
local http = require "corio.http"

local function fetch_data(url)
  local resp, err = http.get(url)
  if not resp then error(err, 0) end   -- connection refused, DNS, TLS, timeout...
  return resp:raise_for_status():text()
end

-- A throwaway local server: returns its base URL and a function that stops it.
local function local_server()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir " .. dir))
  for i = 1, 3 do
    local f = assert(io.open(("%s/data%d"):format(dir, i), "w"))
    f:write(('{"endpoint": %d, "value": %d}\n'):format(i, i * 111))
    f:close()
  end
  local p = assert(io.popen(("cd %s && sh -c 'exec 2>/dev/null; /usr/bin/python3 -u -m http.server "
    .. "--bind 127.0.0.1 0 & echo $!; wait'"):format(dir)))
  local pid = p:read("l")
  local port = assert(p:read("l"), "python3 -m http.server did not start"):match("port (%d+)")
  return "http://127.0.0.1:" .. port, function()
    os.execute("kill " .. pid)
    p:close()
    os.execute("rm -rf " .. dir)
  end
end

local urls, stop = {...}, nil
if #urls == 0 then
  local base
  base, stop = local_server()
  urls = {base .. "/data1", base .. "/data2", base .. "/data3"}
end

local tasks = {}
for i, url in ipairs(urls) do tasks[i] = function() return fetch_data(url) end end
local ok, results = pcall(corio.gather, tasks)
if stop then stop() end
if not ok then
  io.stderr:write("api_calls: ", tostring(results), "\n")
  os.exit(1)
end
for i = 1, results.n do io.write(results[i]) end
