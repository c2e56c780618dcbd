-- Search many files at once: one `grep -c` subprocess per file, at most N running together.
--   corio examples/concurrent_grep.lua [-j N] PATTERN FILE...
-- Prints "count file" for every file with a match (in argument order), then a summary.
local corio = require "corio"
local process = require "corio.process"

local jobs, i = 8, 1
if arg[1] == "-j" then jobs, i = assert(tonumber(arg[2]), "-j needs a number"), 3 end
local pattern = arg[i] or error("usage: concurrent_grep.lua [-j N] PATTERN FILE...")
local files = table.move(arg, i + 1, #arg, 1, {})

corio.run(function()
  local running, peak = 0, 0
  local counts = corio.map(function(file)
    running = running + 1
    peak = math.max(peak, running)
    -- grep exits 1 for "no match" and 2 for trouble: only 2 is an error here
    local r = assert(process.run{"grep", "-c", "--", pattern, file})
    running = running - 1
    if r.code == 2 then error("grep " .. file .. ": " .. r.stderr, 0) end
    return tonumber(r.stdout)
  end, files, {concurrency = jobs})
  local total, matched = 0, 0
  for k, file in ipairs(files) do
    if counts[k] > 0 then
      print(counts[k], file)
      total, matched = total + counts[k], matched + 1
    end
  end
  print(("%d matching lines in %d of %d files, at most %d greps at a time"):format(total, matched,
    #files, peak))
end)
