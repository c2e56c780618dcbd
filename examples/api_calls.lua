-- Concurrent API calls (Example 4 of the seed post, from aiohttp to corio.http): three
-- endpoints fetched at once and gathered.
--
--   corio examples/api_calls.lua [url ...]
--
-- With URLs as arguments it fetches those. Without, it has no internet to count on: it
-- starts a corio.web server on a free port of 127.0.0.1 in the same process, whose three
-- endpoints each take half a second to answer, and fetches them: about 0.5 s in all, not 1.5.
local corio = require "corio"
local http = require "corio.http"

local function fetch_data(url)
  local resp, err = http.get(url)
  if not resp then error(err, 0) end   -- connection refused, DNS, TLS, timeout...
  return resp:raise_for_status():text()
end

-- A local API: /data1 .. /data3, each answering after 0.5 s. Returns its base URL and server.
local function local_api()
  local web = require "corio.web"
  local app = web.Application()
  app:get("/data{n:%d+}", function(request)
    corio.sleep(0.5)  -- a slow backend
    local n = math.tointeger(tonumber(request.params.n))
    return web.json({endpoint = n, value = n * 111})
  end)
  local server = app:listen{host = "127.0.0.1", port = 0}
  return ("http://127.0.0.1:%d"):format(server.port), server
end

local urls, server = {...}, nil
if #urls == 0 then
  local base
  base, server = local_api()
  urls = {base .. "/data1", base .. "/data2", base .. "/data3"}
end

local t0 = corio.now()
local tasks = {}
for i, url in ipairs(urls) do tasks[i] = function() return fetch_data(url) end end
local ok, results = pcall(corio.gather, tasks)
if server then server:close() end
if not ok then
  io.stderr:write("api_calls: ", tostring(results), "\n")
  os.exit(1)
end
for i = 1, results.n do print(results[i]) end
io.stderr:write(("fetched %d URLs in %.2f s\n"):format(results.n, corio.now() - t0))
