-- Follow a growing log file, like `tail -f`, woken by fs.watch instead of polling.
--   corio examples/follow_log.lua FILE [MAX_LINES]
-- Prints each line appended to FILE from now on; stops after MAX_LINES lines if given, or when
-- the file is removed or renamed away.
local corio = require "corio"
local fs = require "corio.fs"

local path = arg[1] or error("usage: follow_log.lua FILE [MAX_LINES]")
local max = tonumber(arg[2]) or math.huge

corio.run(function()
  local f <close> = assert(fs.open(path))
  f:seek("end")  -- only what is written from now on
  local watcher <close> = assert(fs.watch(path))
  print("following " .. path)
  io.stdout:flush()
  local seen, partial = 0, ""
  for _, what in watcher do
    -- read everything appended since the last event (events may be coalesced)
    while true do
      local chunk, err = f:read()
      if chunk == nil then  -- nil at the end of what was written so far
        if err then error(err, 0) end
        break
      end
      partial = partial .. chunk
      for line in partial:gmatch("([^\n]*)\n") do
        print(line)
        seen = seen + 1
        if seen >= max then return end
      end
      partial = partial:match("[^\n]*$")
    end
    io.stdout:flush()
    if what == "rename" then
      print("file moved or removed: stopping")
      return
    end
  end
end)
