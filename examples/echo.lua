-- A TCP echo server and its clients in one program: the server echoes every line back; three
-- clients run at once, each sending a few lines and checking the echoes.
local corio = require "corio"
local net = require "corio.net"

corio.run(function()
  local server = assert(net.serve(function(stream)
    for line in stream:lines() do
      stream:write(line .. "\n")
    end
  end, {host = "127.0.0.1", port = 0}))
  print(("echo server on %s"):format(server.sockname))

  local function client(name)
    local conn <close> = assert(net.connect("127.0.0.1", server.port))
    for i = 1, 3 do
      local msg = ("%s says %d"):format(name, i)
      conn:write(msg .. "\n")
      assert(conn:read_line() == msg)
    end
    return name .. " got 3 echoes"
  end

  local results = corio.gather(function() return client("ann") end,
                               function() return client("bob") end,
                               function() return client("cid") end)
  for _, r in ipairs(results) do print(r) end

  server:close()
  server:wait_closed()
  print("server closed")
end)
