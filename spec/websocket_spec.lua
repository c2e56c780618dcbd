-- corio.websocket: app:websocket and http.websocket against each other, against Python's
-- websockets (real client and server processes), and against hand-made frames that break
-- the protocol's rules.
local corio = require "corio"
local web = require "corio.web"
local http = require "corio.http"
local net = require "corio.net"
local process = require "corio.process"

local PY = "/usr/bin/python3"
local have_websockets = os.execute(PY .. " -c 'import websockets' 2>/dev/null")
local FIXTURES = "spec/fixtures/"

-- Run fn(port, server) with an app on 127.0.0.1 whose routes setup(app) made.
local function serve(setup, fn, opts)
  return corio.run(function()
    local app = web.Application()
    setup(app)
    opts = opts or {}
    opts.port, opts.host = 0, "127.0.0.1"
    local server = assert(app:listen(opts))
    local ok, err = pcall(fn, server.port, server)
    server:shutdown(1)
    if not ok then error(err, 0) end
  end)
end

local function echo_app(opts)
  return function(app)
    app:websocket("/echo", function(ws)
      for m, kind in ws:messages() do assert(ws:send(m, kind)) end
    end, opts)
  end
end

-- ---- a hand-made client: the handshake, then raw frames ------------------------------------

local function raw_connect(port, path, extra, headers)
  local s = assert(net.connect("127.0.0.1", port))
  assert(s:write("GET " .. (path or "/echo") .. " HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                 .. (headers or "")
                 .. "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 .. "Sec-WebSocket-Version: 13\r\n\r\n" .. (extra or "")))
  local head = assert(s:read_until("\r\n\r\n"))
  assert.truthy(head:find("^HTTP/1.1 101"))
  -- RFC 6455's own example key and answer
  assert.truthy(head:find("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", 1, true))
  return s
end

-- A client frame: masked unless told otherwise (key 0: the payload goes as it is).
local function frame(op, payload, opts)
  opts = opts or {}
  local b1 = (opts.fin == false and 0 or 0x80) | (opts.rsv or 0) | op
  local m = opts.unmasked and 0 or 0x80
  local n = #payload
  local head
  if n < 126 then head = string.pack(">BB", b1, m | n)
  elseif n < 65536 then head = string.pack(">BBI2", b1, m | 126, n)
  else head = string.pack(">BBI8", b1, m | 127, n) end
  return head .. (opts.unmasked and "" or "\0\0\0\0") .. payload
end

-- Read one server frame: op, payload, fin (servers never mask).
local function read_frame(s)
  local h = s:read_exactly(2)
  if not h then return nil end
  local b1, b2 = h:byte(1, 2)
  assert.equal(0, b2 & 0x80, "a server frame must not be masked")
  local n = b2 & 0x7F
  if n == 126 then n = string.unpack(">I2", s:read_exactly(2))
  elseif n == 127 then n = string.unpack(">I8", s:read_exactly(8)) end
  return b1 & 0x0F, n > 0 and s:read_exactly(n) or "", b1 & 0x80 ~= 0
end

local function expect_close(s, code)
  local op, payload = read_frame(s)
  assert.equal(8, op)
  assert.equal(code, string.unpack(">I2", payload))
  s:close()
end

describe("corio.websocket", function()
  it("echoes text, binary, empty and large messages between corio's client and server", function()
    serve(echo_app(), function(port)
      local ws <close> = assert(http.websocket("ws://127.0.0.1:" .. port .. "/echo"))
      assert(ws:send("héllo"))
      assert.same({"héllo", "text"}, {ws:receive()})
      assert(ws:send("\0\1\2\255", "binary"))
      assert.same({"\0\1\2\255", "binary"}, {ws:receive()})
      assert(ws:send(""))
      assert.same({"", "text"}, {ws:receive()})
      local big = string.rep("0123456789", 300000)
      assert(ws:send(big, "binary"))
      local got = ws:receive()
      assert.equal(#big, #got)
      assert.equal(big, got)
      assert(ws:ping("abc"))
      assert(ws:close(4000, "bye"))
      assert.equal(4000, ws.close_code)
      assert.same({nil, 4000, ""}, {ws:receive()})
      assert.same({nil, "send: the websocket is closed", "ECLOSED"}, {ws:send("x")})
    end)
  end)

  it("negotiates a subprotocol by the server's preference, and none when none match", function()
    serve(echo_app {protocols = {"v2", "v1"}}, function(port)
      local url = "ws://127.0.0.1:" .. port .. "/echo"
      local ws = assert(http.websocket(url, {protocols = {"v1", "v2"}}))
      assert.equal("v2", ws.protocol)
      ws:close()
      ws = assert(http.websocket(url, {protocols = {"other"}}))
      assert.is_nil(ws.protocol)
      ws:close()
    end)
  end)

  it("hands the handler the request, and ends with the handler's close code", function()
    serve(function(app)
      app:websocket("/rooms/{room}", function(ws, req)
        assert.equal(ws.request, req)
        ws:send(req.params.room .. " " .. req.headers:get("x-token", "-"))
        ws:close(4321, "room closed")
      end)
    end, function(port)
      local ws <close> = assert(http.websocket("ws://127.0.0.1:" .. port .. "/rooms/lua",
                                               {headers = {["X-Token"] = "t1"}}))
      assert.equal("lua t1", ws:receive())
      assert.same({nil, 4321, "room closed"}, {ws:receive()})
    end)
  end)

  it("answers a plain GET on a websocket route with 426", function()
    serve(echo_app(), function(port)
      local s = assert(net.connect("127.0.0.1", port))
      s:write("GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      local head = s:read_until("\r\n\r\n")
      s:close()
      assert.truthy(head:find("^HTTP/1.1 426"))
      assert.truthy(head:find("Upgrade: websocket", 1, true))
    end)
  end)

  it("reassembles fragments with a ping in between, and keeps frames sent with the head",
     function()
    serve(echo_app(), function(port)
      local s = raw_connect(port)
      s:write(frame(1, "frag", {fin = false}) .. frame(9, "in-between")
              .. frame(0, "men", {fin = false}) .. frame(0, "ted"))
      assert.same({10, "in-between", true}, {read_frame(s)})  -- the pong comes first
      assert.same({1, "fragmented", true}, {read_frame(s)})
      s:write(frame(8, string.pack(">I2", 1000)))
      expect_close(s, 1000)
      -- a client that sends its first frames in the same packet as the handshake
      s = raw_connect(port, "/echo", frame(1, "early") .. frame(2, "bird"))
      assert.same({1, "early", true}, {read_frame(s)})
      assert.same({2, "bird", true}, {read_frame(s)})
      s:write(frame(8, ""))
      local op, payload = read_frame(s)
      assert.same({8, ""}, {op, payload})  -- no code in, none out
      s:close()
    end)
  end)

  it("fails the connection on broken rules with the right close code", function()
    local codes = {}
    serve(function(app)
      app:websocket("/echo", function(ws)
        for m, kind in ws:messages() do ws:send(m, kind) end
        codes[#codes + 1] = ws.close_code
      end, {max_message = 1000})
    end, function(port)
      local cases = {
        {frame(1, "unmasked", {unmasked = true}), 1002},
        {frame(1, "\xff\xfe"), 1007},                          -- invalid UTF-8
        {frame(1, "\xed\xa0\x80"), 1007},                      -- a UTF-16 surrogate
        {frame(1, "ab", {fin = false}) .. frame(1, "cd"), 1002}, -- new message mid-message
        {frame(0, "cont"), 1002},                              -- continuation of nothing
        {frame(9, "ping", {fin = false}), 1002},               -- fragmented control frame
        {frame(9, string.rep("p", 126)), 1002},                -- control frame too long
        {frame(1, "x", {rsv = 0x40}), 1002},                   -- RSV1 without an extension
        {frame(3, "x"), 1002},                                 -- reserved opcode
        {frame(2, string.rep("b", 1001)), 1009},               -- max_message
        {frame(2, string.rep("b", 600), {fin = false}) .. frame(0, string.rep("b", 600)), 1009},
        {frame(8, string.pack(">I2", 1005)), 1002},            -- a code never sent
        {frame(8, "x"), 1002},                                 -- a 1-byte close payload
        -- a 64-bit length just under 2^63 (found by fuzz_websocket: it overflowed the
        -- position after the frame)
        {"\x82\xff\x7f\xff\xff\xff\xff\xff\xff\xff\1\2\3\4", 1009},
        {"\x82\xff\xff\xff\xff\xff\xff\xff\xff\xff\1\2\3\4", 1009}, -- the top bit set
      }
      for i, case in ipairs(cases) do
        local s = raw_connect(port)
        s:write(case[1])
        local op, payload = read_frame(s)
        assert.equal(8, op, "case " .. i)
        assert.equal(case[2], string.unpack(">I2", payload), "case " .. i)
        assert.is_nil(read_frame(s), "case " .. i .. ": the server closes the connection")
        s:close()
      end
      corio.sleep(0.05)
      assert.equal(#cases, #codes)
    end)
  end)

  it("survives random bytes after the handshake: each connection ends, nothing is left", function()
    local ended = 0
    serve(function(app)
      app:websocket("/echo", function(ws)
        for m, kind in ws:messages() do ws:send(m, kind) end
        ended = ended + 1
      end, {max_message = 1 << 16})
    end, function(port)
      math.randomseed(16)
      for i = 1, 60 do
        local t = {}
        for j = 1, math.random(1, 300) do t[j] = string.char(math.random(0, 255)) end
        -- half the time, a valid masked header first so that the rules past it are reached
        local data = (i % 2 == 0 and frame(1, "ok") or "") .. table.concat(t)
        local s = raw_connect(port, "/echo", data)
        s:close_write()
        corio.timeout(5, function() while s:read() do end end)
        s:close()
      end
      local deadline = corio.now() + 5
      while ended < 60 and corio.now() < deadline do corio.sleep(0.01) end
      assert.equal(60, ended)
    end)
  end)

  it("permessage-deflate: inflates within max_message, refuses bombs and misplaced RSV1",
     function()
    local deflate = require("corio._websocket").deflate
    serve(function(app)
      app:websocket("/echo", function(ws)
        for m, kind in ws:messages() do ws:send(m, kind) end
      end, {compress = true, max_message = 1000})
    end, function(port)
      local offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
      local z = {rsv = 0x40}
      -- two compressed messages on one stream (context takeover on the client's side), one
      -- of them fragmented
      local s = raw_connect(port, "/echo", nil, offer)
      local m1 = deflate("hello hello hello")
      s:write(frame(1, m1, z))
      local op, payload = read_frame(s)
      assert.equal(1, op)
      local inflater = require("corio._websocket").inflater()
      assert.equal("hello hello hello", inflater:inflate(payload, 1000))
      local m2 = deflate(string.rep("ab", 400))
      s:write(frame(2, m2:sub(1, 5), {rsv = 0x40, fin = false}) .. frame(0, m2:sub(6)))
      op, payload = read_frame(s)
      assert.equal(2, op)
      assert.equal(string.rep("ab", 400), inflater:inflate(payload, 1000))
      s:write(frame(8, string.pack(">I2", 1000)))
      expect_close(s, 1000)
      local cases = {
        {frame(1, deflate(string.rep("a", 2000000)), z), 1009},  -- 2 MB from 2 KB
        {frame(1, "\xff\xff\xff\xff", z), 1007},                -- not deflate data
        {frame(9, "", z), 1002},                                 -- RSV1 on a control frame
        {frame(1, "a", {fin = false}) .. frame(0, "b", z), 1002}, -- RSV1 on a continuation
      }
      for i, case in ipairs(cases) do
        s = raw_connect(port, "/echo", nil, offer)
        s:write(case[1])
        op, payload = read_frame(s)
        assert.equal(8, op, "case " .. i)
        assert.equal(case[2], string.unpack(">I2", payload), "case " .. i)
        s:close()
      end
      -- without the offer, RSV1 is a protocol error
      s = raw_connect(port, "/echo")
      s:write(frame(1, m1, z))
      expect_close(s, 1002)
    end)
  end)

  it("ends a connection whose peer stopped answering pings with 1006", function()
    local got = {}
    serve(function(app)
      app:websocket("/echo", function(ws)
        local t0 = corio.now()
        got = {ws:receive()}
        got.elapsed = corio.now() - t0
      end, {ping_interval = 0.1, ping_timeout = 0.1})
    end, function(port)
      local s = raw_connect(port)
      assert.equal(9, (read_frame(s)))  -- a ping, never answered
      corio.sleep(0.5)
      s:close()
      assert.same({nil, 1006}, {got[1], got[2]})
      assert.truthy(got[3]:find("ping timeout", 1, true))
      assert.truthy(got.elapsed < 2)
    end)
  end)

  it("keeps a peer that answers pings", function()
    serve(echo_app {ping_interval = 0.05, ping_timeout = 0.2}, function(port)
      local ws <close> = assert(http.websocket("ws://127.0.0.1:" .. port .. "/echo"))
      -- receiving answers the server's pings
      local r = corio.spawn(function() return ws:receive() end)
      corio.sleep(0.5)
      assert(ws:send("still here"))
      assert.equal("still here", r:await())
    end)
  end)

  it("lets one task receive while another sends and closes", function()
    serve(echo_app(), function(port)
      local ws = assert(http.websocket("ws://127.0.0.1:" .. port .. "/echo"))
      local seen = {}
      local reader = corio.spawn(function()
        for m in ws:messages() do seen[#seen + 1] = m end
        return ws.close_code
      end)
      local senders = {}
      for i = 1, 5 do
        senders[i] = corio.spawn(function()
          for j = 1, 20 do assert(ws:send(("%d-%d"):format(i, j))) end
        end)
      end
      for _, t in ipairs(senders) do t:await() end
      while #seen < 100 do corio.sleep(0.01) end
      ws:close()
      assert.equal(1000, reader:await())
      assert.equal(100, #seen)
    end)
  end)

  it("raises on misuse, and a receive cut by a timeout leaves the connection usable", function()
    serve(echo_app(), function(port)
      local ws <close> = assert(http.websocket("ws://127.0.0.1:" .. port .. "/echo"))
      assert.has_error(function() ws:send(42) end, "send: data must be a string, got number")
      assert.has_error(function() ws:send("\xff") end, "send: text is not valid UTF-8")
      assert.has_error(function() ws:send("x", "json") end)
      assert.has_error(function() ws:close(1005) end, "close: invalid close code 1005")
      assert.has_error(function() ws:ping(string.rep("p", 126)) end)
      local ok, err = pcall(corio.wait_for, function() return ws:receive() end, 0.05)
      assert.is_false(ok)
      assert.is_true(corio.is_timeout(err))
      local r = corio.spawn(function() return ws:receive() end)
      corio.sleep(0)
      assert.has_error(function() ws:receive() end, "receive: busy: another task is receiving")
      assert(ws:send("after the timeout"))
      assert.equal("after the timeout", r:await())
    end)
  end)

  it("says goodbye (1001) to sessions at server:shutdown, and cuts them at server:abort",
     function()
    corio.run(function()
      local app = web.Application()
      echo_app()(app)
      local server = assert(app:listen {host = "127.0.0.1", port = 0})
      local url = "ws://127.0.0.1:" .. server.port .. "/echo"
      local a = assert(http.websocket(url))
      local reader = corio.spawn(function() return {a:receive()} end)
      corio.sleep(0.05)
      assert.is_true(server:shutdown(2))
      assert.same({nil, 1001, "server shutdown"}, reader:await())
      a:close()
      server = assert(app:listen {host = "127.0.0.1", port = 0})
      local b = assert(http.websocket("ws://127.0.0.1:" .. server.port .. "/echo"))
      assert(b:send("x"))
      assert.equal("x", b:receive())
      server:abort()
      local m, code = b:receive()
      assert.is_nil(m)
      assert.equal(1006, code)
      b:close()
      server:shutdown(1)
    end)
  end)

  it("refuses a server that does not switch protocols", function()
    serve(function(app) app:get("/plain", function() return "no" end) end, function(port)
      local ws, msg, code = http.websocket("ws://127.0.0.1:" .. port .. "/plain")
      assert.is_nil(ws)
      assert.equal("EHANDSHAKE", code)
      assert.truthy(msg:find("200", 1, true))
    end)
  end)

  it("examples/ws_chat.lua: two clients chat through the server, the page is served", function()
    corio.run(function()
      local port = (function()
        local s = assert(web.Application():listen {host = "127.0.0.1", port = 0})
        local n = s.port
        s:close()
        return n
      end)()
      local p <close> = assert(process.spawn {os.getenv("CORIO") or "build/corio",
                                              "examples/ws_chat.lua", tostring(port),
                                              stdout = "null", stderr = "inherit"})
      local url = "ws://127.0.0.1:" .. port .. "/ws"
      local a
      for _ = 1, 100 do
        a = http.websocket(url .. "?name=ada", {protocols = {"chat"}})
        if a then break end
        corio.sleep(0.05)
      end
      assert(a, "the chat server did not start")
      assert.equal("chat", a.protocol)
      assert.equal("* ada joined", a:receive())
      local b = assert(http.websocket(url .. "?name=bob"))
      assert.equal("* bob joined", b:receive())
      assert.equal("* bob joined", a:receive())
      assert(a:send("hello bob"))
      assert.equal("ada: hello bob", b:receive())
      assert.equal("ada: hello bob", a:receive())
      assert(b:send("hi ada ✓"))
      assert.equal("bob: hi ada ✓", a:receive())
      b:close()
      assert.equal("* bob left", a:receive())
      a:close()
      local page = assert(http.get("http://127.0.0.1:" .. port .. "/"))
      assert.truthy(page:text():find("new WebSocket", 1, true))
      p:terminate()
      p:wait()
    end)
  end)

  describe("with Python's websockets", function()
    local pit = have_websockets and it or pending

    pit("serves a Python client: fragments, pings, a large message, its close code", function()
      local closed
      serve(function(app)
        app:websocket("/echo", function(ws)
          for m, kind in ws:messages() do assert(ws:send(m, kind)) end
          closed = {ws.close_code, ws.close_reason}
        end, {protocols = {"chat"}})
      end, function(port)
        local r = assert(process.run {PY, FIXTURES .. "ws_client.py",
                                      "ws://127.0.0.1:" .. port .. "/echo", timeout = 20})
        assert.equal("", r.stderr)
        assert.equal(table.concat({
          "protocol chat", "extensions none", "text héllo", "binary bytes 3",
          "fragmented frag1 frag2 frag3", "pong", "big 300000", "closed 4001", ""}, "\n"),
          r.stdout)
        assert.same({4001, "done"}, closed)
      end)
    end)

    pit("speaks permessage-deflate with a Python client when compress is on", function()
      serve(function(app)
        app:websocket("/echo", function(ws)
          for m, kind in ws:messages() do assert(ws:send(m, kind)) end
        end, {protocols = {"chat"}, compress = true, max_message = 1 << 20})
      end, function(port)
        local r = assert(process.run {PY, FIXTURES .. "ws_client.py",
                                      "ws://127.0.0.1:" .. port .. "/echo", timeout = 20})
        assert.equal("", r.stderr)
        assert.equal(table.concat({
          "protocol chat", "extensions permessage-deflate", "text héllo", "binary bytes 3",
          "fragmented frag1 frag2 frag3", "pong", "big 300000", "closed 4001", ""}, "\n"),
          r.stdout)
      end)
    end)

    -- Connect with opts to spec/fixtures/ws_server.py and run fn(ws); then ask the server to
    -- close (code 4002) and stop it.
    local function with_python_server(opts, fn)
      corio.run(function()
        local p <close> = assert(process.spawn {PY, FIXTURES .. "ws_server.py",
                                                stdout = "pipe", stderr = "inherit"})
        local port = tonumber(assert(p.stdout:read_line()))
        local ws <close> = assert(http.websocket("ws://127.0.0.1:" .. port .. "/", opts))
        fn(ws)
        assert(ws:send("close-me"))
        assert.same({nil, 4002, "asked"}, {ws:receive()})
        p:terminate()
        p:wait()
      end)
    end

    pit("connects to a Python server: echo, its pings, its close", function()
      with_python_server({protocols = {"chat"}}, function(ws)
        assert.equal("chat", ws.protocol)
        assert(ws:send("héllo"))
        assert.same({"héllo", "text"}, {ws:receive()})
        local big = string.rep("z", 1000000)
        assert(ws:send(big, "binary"))
        assert.equal(big, (ws:receive()))
        assert(ws:send("ping-me"))
        assert.equal("ping-me", (ws:receive()))  -- answered its ping meanwhile
        assert(ws:send("extensions?"))
        assert.equal("none", (ws:receive()))
      end)
    end)

    pit("offers permessage-deflate to a Python server with compress = true", function()
      with_python_server({compress = true}, function(ws)
        assert(ws:send("extensions?"))
        assert.equal("permessage-deflate", (ws:receive()))
        -- the server keeps its compression context between messages: repeats inflate right
        for i = 1, 3 do
          local m = string.rep("abc" .. i, 20000)
          assert(ws:send(m))
          assert.equal(m, (ws:receive()))
        end
      end)
    end)

    it("refuses unknown client options", function()
      corio.run(function()
        assert.has_error(function() http.websocket("ws://127.0.0.1:1/", {compres = true}) end,
                         'http.websocket: unknown option "compres" (accepted: compress, '
                         .. 'headers, max_message, ping_interval, ping_timeout, protocols, timeout)')
      end)
    end)
  end)
end)
