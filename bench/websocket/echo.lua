-- bench/websocket/run.sh's corio server: a WebSocket echo on 127.0.0.1:PORT.
local web = require "corio.web"
local app = web.Application()
app:websocket("/", function(ws)
  for message, kind in ws:messages() do ws:send(message, kind) end
end)
web.run_app(app, {port = tonumber(arg[1]), print = false, max_connections = 100000})
