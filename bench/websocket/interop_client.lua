-- bench/websocket/interop.sh's corio side as a client: http.websocket to URL (a Node `ws`
-- echo server with permessage-deflate), the same messages as interop_ws.js, checked byte for
-- byte; prints "ok".
local corio = require "corio"
local http = require "corio.http"

corio.run(function()
  local ws = assert(http.websocket(arg[1], {compress = true}))
  local bin = {}
  for i = 0, 69999 do bin[#bin + 1] = string.char((i * 7) & 255) end
  local sent = {{"hello", "text"}, {"héllo wörld ✓", "text"}, {("x"):rep(1 << 20), "text"},
                {table.concat(bin), "binary"}, {"", "binary"}}
  for _, m in ipairs(sent) do assert(ws:send(m[1], m[2])) end
  for i, m in ipairs(sent) do
    local data, kind = ws:receive()
    assert(data == m[1], ("message %d: %s bytes differ"):format(i, data and #data))
    assert(kind == m[2], ("message %d: %s, want %s"):format(i, kind, m[2]))
  end
  ws:close(1000, "done")
  print("ok")
end)
