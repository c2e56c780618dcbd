-- A chat server: every line a client sends goes to all the others. Each client has its own
-- outbox (a bounded queue) drained by its own writer task, so a slow client that stops reading
-- never stalls the others: its writes wait on backpressure, its outbox fills, and then it is
-- disconnected. The demo: ann talks a lot, bob and cid listen, and slow never reads.
local corio = require "corio"
local net = require "corio.net"

local MESSAGES, SIZE = 1000, 32 * 1024

local function chat_server()
  local clients = {}
  local server = assert(net.serve(function(stream)
    local me = {stream = stream, outbox = corio.Queue(64)}
    clients[me] = true
    local writer <close> = setmetatable({task = corio.spawn(function()
      while true do
        if not stream:write(me.outbox:get()) then return end
      end
    end)}, {__close = function(w) w.task:cancel() end})
    for line in stream:lines() do
      for other in pairs(clients) do
        if other ~= me and not other.outbox:full() then
          other.outbox:put_nowait(line .. "\n")
        elseif other ~= me then
          clients[other] = nil
          other.stream:abort()  -- too slow: drop it rather than buffer without bound
        end
      end
    end
    clients[me] = nil
  end, {host = "127.0.0.1", port = 0, limit = 2 * SIZE}))
  return server
end

corio.run(function()
  local server = chat_server()
  local function join() return assert(net.connect("127.0.0.1", server.port, {limit = 2 * SIZE})) end
  local ann, bob, cid, slow = join(), join(), join(), join()
  corio.sleep(0.05)  -- everyone has joined

  local function listen(name, conn)
    local n = 0
    while n < MESSAGES do
      local line = conn:read_line()
      if not line then break end
      n = n + 1
    end
    return ("%s received %d messages"):format(name, n)
  end
  local listeners = {corio.spawn(listen, "bob", bob), corio.spawn(listen, "cid", cid)}
  local line = ("x"):rep(SIZE - 1) .. "\n"
  for _ = 1, MESSAGES do ann:write(line) end
  for _, t in ipairs(listeners) do print(t:await()) end

  -- slow was dropped: once it reads, it finds the end of its stream (or a reset)
  local got = 0
  while true do
    local d = slow:read()
    if not d then break end
    got = got + #d
  end
  print(("slow was disconnected having fallen behind: %s"):format(got < MESSAGES * SIZE))
  for _, c in ipairs {ann, bob, cid, slow} do c:close() end
  server:close()
  server:close_clients()
  server:wait_closed()
end)
