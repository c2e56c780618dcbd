-- Post 002: two tasks created explicitly and gathered; both "fetch" at once and finish
-- together after one second.
local corio = require "corio"

local function fetch_data(url)
  print("Fetching data from " .. url)
  corio.sleep(1)
  print("Data fetched from " .. url)
end

corio.run(function()
  local task1 = corio.spawn(fetch_data, "https://example.com")
  local task2 = corio.spawn(fetch_data, "https://example.org")
  corio.gather(task1, task2)
end)
