-- Bulk transfer, corio: `server PORT` (reads and discards, then acks) or `client PORT MIB`.
local corio = require "corio"
local net = require "corio.net"
local mode, port, mib = arg[1], tonumber(arg[2]), tonumber(arg[3])
if mode == "server" then
  corio.run(function()
    local srv = assert(net.serve(function(s)
      local n = 0
      while true do
        local d = s:read(1 << 20)
        if not d then break end
        n = n + #d
      end
      s:write(tostring(n))
      s:close()
    end, {host = "127.0.0.1", port = port}))
    print("ready")
    io.stdout:flush()
    srv:wait_closed()
  end)
else
  corio.run(function()
    local chunk = ("b"):rep(65536)
    local c = assert(net.connect("127.0.0.1", port))
    local t0 = corio.now()
    for _ = 1, mib * 16 do c:write(chunk) end
    c:close_write()
    local n = tonumber(c:read())
    assert(n == mib * 1048576, n)
    print(("%.0f"):format(mib / (corio.now() - t0)))
    c:close()
  end)
end
