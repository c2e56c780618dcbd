-- The upload benchmark's corio server (bench/upload.sh): PUT or POST /up streams the body
-- into a new file under DIR with request:save, never holding it in Lua.
-- Run: corio bench/upload_server.lua DIR [port]
local web = require "corio.web"
local dir, port = assert(arg[1], "usage: upload_server.lua DIR [port]"), tonumber(arg[2])
local app = web.Application()
local n = 0
local function save(req)
  n = n + 1
  local written, err = req:save(("%s/upload-%d"):format(dir, n))
  if not written then error(err, 0) end
  return tostring(written)
end
app:put("/up", save)
app:post("/up", save)
web.run_app(app, {port = port or 8080, print = false, max_body = 4 * 1024 * 1024 * 1024})
