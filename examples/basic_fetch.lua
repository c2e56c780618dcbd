-- Post 000, example 1: one asynchronous function. It suspends for 2 seconds (a stand-in for
-- I/O), then returns a table that the main task prints.
local corio = require "corio"

-- Print a flat table the way the post's Python prints a dict: {'data': 123}
local function repr(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = {}
  for i, k in ipairs(keys) do parts[i] = ("'%s': %s"):format(k, tostring(t[k])) end
  return "{" .. table.concat(parts, ", ") .. "}"
end

local function fetch_data()
  print("Start fetching")
  corio.sleep(2) -- simulating an I/O operation
  print("Done fetching")
  return {data = 123}
end

corio.run(function()
  local result = fetch_data()
  print(repr(result))
end)
