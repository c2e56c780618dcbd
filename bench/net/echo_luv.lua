-- TCP echo, raw luv callbacks (lua5.4 + lua-luv): server PORT | client PORT CONNS SECONDS.
local uv = require "luv"
local mode, port, conns, secs = arg[1], tonumber(arg[2]), tonumber(arg[3]), tonumber(arg[4])

if mode == "server" then
  local server = uv.new_tcp()
  assert(server:bind("127.0.0.1", port))
  assert(server:listen(1024, function()
    local c = uv.new_tcp()
    server:accept(c)
    c:read_start(function(err, data)
      if err or not data then c:close() return end
      c:write(data)
    end)
  end))
  print("ready")
  io.stdout:flush()
  uv.run()
else
  local msg = ("m"):rep(64)
  local count, stop = 0, false
  for _ = 1, conns do
    local c = uv.new_tcp()
    c:connect("127.0.0.1", port, function(err)
      assert(not err, err)
      local got = 0
      c:read_start(function(e, data)
        if e or not data then c:close() return end
        got = got + #data
        while got >= 64 do
          got = got - 64
          count = count + 1
          if stop then c:close() return end
          c:write(msg)
        end
      end)
      c:write(msg)
    end)
  end
  local t = uv.new_timer()
  local n
  t:start(secs * 1000, 0, function() n = count; stop = true; t:close() end)
  uv.run()
  print(("%.0f"):format(n / secs))
end
