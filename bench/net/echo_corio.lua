-- TCP echo, corio: `corio echo_corio.lua server PORT` or `... client PORT CONNS SECONDS`.
local corio = require "corio"
local net = require "corio.net"
local mode, port, conns, secs = arg[1], tonumber(arg[2]), tonumber(arg[3]), tonumber(arg[4])

if mode == "server" then
  corio.run(function()
    local srv = assert(net.serve(function(s)
      while true do
        local d = s:read()
        if not d then return end
        s:write(d)
      end
    end, {host = "127.0.0.1", port = port, backlog = 1024}))
    print("ready")
    io.stdout:flush()
    srv:wait_closed()
  end)
else
  local msg = ("m"):rep(64)
  corio.run(function()
    local count, stop = 0, false
    local tasks = {}
    for i = 1, conns do
      tasks[i] = corio.spawn(function()
        local c = assert(net.connect("127.0.0.1", port))
        while not stop do
          c:write(msg)
          assert(c:read_exactly(64))
          count = count + 1
        end
        c:close()
      end)
    end
    corio.sleep(secs)
    stop = true
    local n = count
    corio.gather(tasks)
    print(("%.0f"):format(n / secs))
  end)
end
