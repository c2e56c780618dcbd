-- Post 000, example 2: five tasks run concurrently and are gathered. Each sleeps 2 seconds,
-- yet the whole program takes about 2 seconds, not 10.
local corio = require "corio"

local function repr(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = {}
  for i, k in ipairs(keys) do parts[i] = ("'%s': %s"):format(k, tostring(t[k])) end
  return "{" .. table.concat(parts, ", ") .. "}"
end

local function fetch_data(task_number)
  print(("Start fetching for task %d"):format(task_number))
  corio.sleep(2) -- simulating an I/O operation
  print(("Done fetching for task %d"):format(task_number))
  return {["task_" .. task_number] = 123}
end

corio.run(function()
  local tasks = {}
  for i = 0, 4 do tasks[#tasks + 1] = corio.spawn(fetch_data, i) end -- creating 5 tasks
  local results = corio.gather(tasks)
  for _, result in ipairs(results) do print(repr(result)) end
end)
