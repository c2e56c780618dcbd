-- Idle connections, corio server: `server PORT` keeps every connection, each handler waiting in
-- read; `client PORT N` opens N connections and holds them.
local corio = require "corio"
local net = require "corio.net"
local mode, port, n = arg[1], tonumber(arg[2]), tonumber(arg[3])
if mode == "server" then
  corio.run(function()
    local srv = assert(net.serve(function(s) s:read() end,
                                 {host = "127.0.0.1", port = port, backlog = 4096}))
    print("ready")
    io.stdout:flush()
    srv:wait_closed()
  end)
else
  corio.run(function()
    local held = {}
    corio.map(function(i) held[i] = assert(net.connect("127.0.0.1", port)) end,
              (function() local t = {} for i = 1, n do t[i] = i end return t end)(),
              {concurrency = 200})
    print("connected")
    io.stdout:flush()
    corio.sleep(3600)
  end)
end
