-- corio.net: streams, TCP and Unix sockets, serve, UDP, DNS, standard streams.
-- Every test binds 127.0.0.1 (port 0) or a temporary Unix socket path; after each, no task,
-- handle or anchor is left, and the process holds as many descriptors as before.
local corio = require "corio"
local net = require "corio.net"
local support = require "support"

local function open_fds()
  -- /proc/self/fd read through a directory listing of our own process: lfs is what busted has.
  local lfs = require "lfs"
  local n = 0
  for _ in lfs.dir("/proc/self/fd") do n = n + 1 end
  return n
end

local function run(fn) return corio.run(fn) end

-- A predicate for support.errors_with: the error message contains `text`.
local function says(text)
  return function(e) return tostring(e):find(text, 1, true) ~= nil end
end

local CORIO = os.getenv("CORIO") or "build/corio"

-- Run a shell pipeline (support.run redirects the last command's stdin otherwise).
local function sh(cmd)
  return support.run("sh -c '" .. cmd:gsub("'", [['"'"']]) .. "'")
end

-- An echo server: every connection gets back what it sends.
local function echo_server(opts)
  return assert(net.serve(function(s)
    while true do
      local d = s:read()
      if not d then return end
      s:write(d)
    end
  end, opts))
end

local function read_all(s)
  local t = {}
  while true do
    local d, err = s:read()
    if not d then assert.is_nil(err); break end
    t[#t + 1] = d
  end
  return table.concat(t)
end

describe("corio.net", function()
  local fds_before
  -- libuv reserves one descriptor per loop on its first listen (to shed connections when out
  -- of descriptors, EMFILE): take it before counting.
  setup(function()
    local l = assert(require("corio._net").listen{host = "127.0.0.1", port = 0})
    l:close()
    support.settle()
  end)
  before_each(function() fds_before = open_fds() end)
  after_each(function()
    support.assert_clean()
    collectgarbage(); collectgarbage()
    assert.equal(fds_before, open_fds(), "descriptors left open")
  end)

  describe("connect and serve", function()
    it("echoes over TCP, with names for host, peer and sockname", function()
      run(function()
        local srv = echo_server{host = "localhost", port = 0}
        assert.is_true(srv.port > 0)
        assert.truthy(srv.sockname:find(":" .. srv.port .. "$"))
        local c <close> = assert(net.connect("localhost", srv.port))
        assert.equal(srv.sockname, c.peer)
        assert.truthy(c.sockname:find("^127%.0%.0%.1:%d+$") or c.sockname:find("^%[::1%]"))
        assert.is_true(c:write("hello"))
        assert.equal("hello", c:read_exactly(5))
        c:close()
        srv:close()
        srv:wait_closed()
      end)
    end)

    it("works at top level (outside corio.run)", function()
      local srv = echo_server()
      local c = assert(net.connect("127.0.0.1", srv.port))
      c:write("x")
      assert.equal("x", c:read())
      c:close()
      srv:close()
      srv:wait_closed()
    end)

    it("reports ECONNREFUSED, EADDRINUSE, ENOENT and names that do not resolve", function()
      run(function()
        local srv = echo_server()
        local port = srv.port
        local s2, msg, code = net.serve(function() end, {port = port})
        assert.is_nil(s2)
        assert.equal("EADDRINUSE", code)
        assert.equal("listen 127.0.0.1:" .. port .. ": address already in use", msg)
        srv:close()
        srv:wait_closed()
        local c
        c, msg, code = net.connect("127.0.0.1", port)
        assert.is_nil(c)
        assert.equal("ECONNREFUSED", code)
        assert.equal("connect 127.0.0.1:" .. port .. ": connection refused", msg)
        c, msg, code = net.connect_unix("/nonexistent/corio.sock")
        assert.is_nil(c)
        assert.equal("ENOENT", code)
        assert.equal("connect /nonexistent/corio.sock: no such file or directory", msg)
        c, msg, code = net.connect("no-such-host.invalid", 80)
        assert.is_nil(c)
        assert.truthy(code == "EAI_NONAME" or code == "EAI_AGAIN", code)
        assert.truthy(msg:find("^connect no%-such%-host%.invalid:80: "), msg)
      end)
    end)

    it("raises on misuse", function()
      run(function()
        assert.has_error(function() net.connect(1, 2) end,
                         "connect: host must be a string, got number")
        assert.has_error(function() net.connect("127.0.0.1", 70000) end)
        assert.has_error(function() net.serve("x") end)
        local srv = echo_server()
        local c = assert(net.connect("127.0.0.1", srv.port))
        c:close()
        c:close() -- idempotent
        assert.is_true(c.closed)
        support.errors_with(says("closed"), c.write, c, "x")
        support.errors_with(says("closed"), c.read, c)
        srv:close()
        srv:wait_closed()
      end)
    end)

    it("times out a connect that gets no answer", function()
      run(function()
        -- A listener that never accepts, its backlog full: the next SYN gets no answer.
        local C = require "corio._net"
        local l = assert(C.listen{host = "127.0.0.1", port = 0, backlog = 0})
        local held = {}
        local timed_out
        for _ = 1, 20 do
          local c, msg, code = net.connect("127.0.0.1", l.port, {timeout = 0.2})
          if not c then
            assert.equal("ETIMEDOUT", code)
            assert.truthy(msg:find("timed out"))
            timed_out = true
            break
          end
          held[#held + 1] = c
        end
        assert.is_true(timed_out)
        for _, c in ipairs(held) do c:abort() end
        l:close()
      end)
    end)

    it("closes a server before its acceptor first runs", function()
      run(function()
        local srv = assert(net.serve(function() end))
        srv:close()
        srv:wait_closed()
        assert.is_true(srv._l.closed)
      end)
    end)

    it("serves on a Unix socket", function()
      run(function()
        local path = os.tmpname()
        os.remove(path)
        local srv = echo_server{path = path}
        local c <close> = assert(net.connect_unix(path))
        c:write("over unix")
        assert.equal("over unix", c:read_exactly(9))
        c:close()
        srv:close()
        srv:wait_closed()
        os.remove(path)
      end)
    end)

    it("binds a local address for the client side", function()
      run(function()
        local srv = echo_server()
        local c <close> = assert(net.connect("127.0.0.1", srv.port, {local_address = "127.0.0.1"}))
        c:write("a")
        assert.equal("a", c:read())
        c:close()
        srv:close()
        srv:wait_closed()
      end)
    end)

    it("tries every address (happy eyeballs) and reports the last error", function()
      run(function()
        local srv = echo_server()
        -- ::1 is refused here or unavailable; 127.0.0.1 answers.
        local addrs = {"::1", "127.0.0.1"}
        local old = net.getaddrinfo
        local C = require "corio._net"
        local gai = C.getaddrinfo
        C.getaddrinfo = function()
          return {{addr = addrs[1], family = "inet6"}, {addr = addrs[2], family = "inet"}}
        end
        local ok, c = pcall(net.connect, "two.example", srv.port, {happy_eyeballs = 0.05})
        local c2, _, msg, code = pcall(net.connect, "two.example", 1, {happy_eyeballs = 0.05})
        C.getaddrinfo = gai
        assert.is_true(ok, c)
        assert.equal("127.0.0.1:" .. srv.port, c.peer)
        c:close()
        assert.is_true(c2)
        assert.equal("ECONNREFUSED", code)
        assert.truthy(msg:find("connection refused"))
        _ = old
        srv:close()
        srv:wait_closed()
      end)
    end)

    it("reports a handler error and closes only that connection", function()
      local script = support.script [[
        local corio = require "corio"
        local net = require "corio.net"
        corio.run(function()
          local srv = assert(net.serve(function(s)
            local line = s:read_line()
            if line == "boom" then error("handler failed on purpose") end
            s:write("ok " .. line .. "\n")
          end))
          local a = assert(net.connect("127.0.0.1", srv.port))
          local b = assert(net.connect("127.0.0.1", srv.port))
          a:write("boom\n")
          print("a:", a:read())
          b:write("fine\n")
          print("b:", b:read_line())
          a:close(); b:close()
          srv:close()
          srv:wait_closed()
        end)
        collectgarbage()
      ]]
      local out, err = support.run_corio(script)
      os.remove(script)
      assert.truthy(out:find("a:\tnil"), out)
      assert.truthy(out:find("b:\tok fine"), out)
      assert.truthy(err:find("handler failed on purpose"), err)
    end)

    it("close_clients closes the connections; wait_closed waits for their handlers", function()
      run(function()
        local finished = 0
        local srv = assert(net.serve(function(s)
          local d, msg, code = s:read()
          assert.is_nil(d)
          assert.equal("ECANCELED", code)
          finished = finished + 1
        end))
        local cs = {}
        for i = 1, 5 do cs[i] = assert(net.connect("127.0.0.1", srv.port)) end
        while srv:clients() < 5 do corio.sleep(0.001) end
        corio.sleep(0.01) -- every handler is reading
        srv:close()
        srv:close_clients()
        srv:wait_closed()
        assert.equal(5, finished)
        for _, c in ipairs(cs) do
          assert.is_nil(c:read())
          c:close()
        end
      end)
    end)

    it("a connection is named by its peer and closes with its handler, however it ends", function()
      run(function()
        local seen, gate = {}, corio.Event()
        local srv = assert(net.serve(function(s)
          local how = s:read_line()
          seen[#seen + 1] = {tostring(s), s.name}
          if how == "error" then error("on purpose") end
          if how == "wait" then gate:wait() end
          if how == "early" then s:close(); gate:wait() end
        end))
        local function client(how)
          local c = assert(net.connect("127.0.0.1", srv.port))
          c:write(how .. "\n")
          return c
        end
        local a = client("return")
        assert.is_nil(a:read())                   -- closed when the handler returned
        assert.equal("corio.net.Stream (" .. a.sockname .. ")", seen[1][1])
        assert.equal(a.sockname, seen[1][2])
        local b = client("error")
        assert.is_nil(b:read())                   -- ... or failed
        local failed
        for _, t in pairs(srv._clients) do
          if t:done() and not t:cancelled() and t:error() then failed = t end
        end
        assert.truthy(tostring(failed:error()):find("on purpose"))
        local c, d = client("wait"), client("early")
        assert.is_nil(d:read())                   -- the handler closed it and still runs
        while #seen < 4 do corio.sleep(0.001) end
        assert.equal(1, srv:clients())            -- open connections: c's
        srv:close()
        local waiting = corio.spawn(function() return srv:wait_closed() end)
        corio.sleep(0.01)
        assert.is_false(waiting:done())           -- d's handler has not finished
        for _, t in pairs(srv._clients) do
          if not t:done() then t:cancel() end     -- cancelled: c's stream closes too
        end
        assert.is_true(waiting:await())
        assert.is_nil(c:read())
        assert.equal(0, srv:clients())
        for _, x in ipairs {a, b, c, d} do x:close() end
      end)
    end)

    it("serves 1,000 concurrent connections", function()
      run(function()
        local srv = echo_server{backlog = 1024}
        local results = (corio.map(function(i)
          local c <close> = assert(net.connect("127.0.0.1", srv.port))
          c:write(("msg %d\n"):format(i))
          return c:read_line()
        end, (function() local t = {} for i = 1, 1000 do t[i] = i end return t end)()))
        for i = 1, 1000 do assert.equal(("msg %d"):format(i), results[i]) end
        srv:close()
        srv:wait_closed()
      end)
    end)
  end)

  describe("streams", function()
    -- A connected pair: the server side is handed to us through a queue.
    local function pair(opts)
      local q = corio.Queue()
      local done = corio.Event()
      local srv = assert(net.serve(function(s)
        q:put(s)
        done:wait()
      end, opts))
      local c = assert(net.connect("127.0.0.1", srv.port, opts))
      local s = q:get()
      return c, s, function()
        c:close()
        s:close()
        done:set()
        srv:close()
        srv:wait_closed()
      end
    end

    it("read returns 1..max bytes and nil at the end of the stream", function()
      run(function()
        local c, s, fin = pair()
        c:write("abcdef")
        assert.equal("abc", s:read_exactly(3))
        assert.equal("de", s:read(2))
        assert.equal("f", s:read())
        c:close_write()
        assert.is_nil(s:read())
        assert.is_nil(s:read())
        fin()
      end)
    end)

    it("read_until and read_line, with \\r\\n and a last line without newline", function()
      run(function()
        local c, s, fin = pair()
        c:write("one\r\ntwo\n\nthree||four||rest")
        assert.equal("one", s:read_line())
        assert.equal("two", s:read_line())
        assert.equal("", s:read_line())
        assert.equal("three||", s:read_until("||"))
        assert.equal("four||", s:read_until("||"))
        c:close_write()
        local d, msg, code = s:read_until("||")
        assert.is_nil(d)
        assert.equal("EOF", code)
        assert.truthy(msg:find("end of stream before the separator"))
        assert.equal("rest", s:read_line())
        assert.is_nil(s:read_line())
        fin()
      end)
    end)

    it("read_exactly at an early end keeps the bytes", function()
      run(function()
        local c, s, fin = pair()
        c:write("abc")
        c:close_write()
        local d, msg, code = s:read_exactly(10)
        assert.is_nil(d)
        assert.equal("EOF", code)
        assert.truthy(msg:find("after 3 of 10 bytes"))
        assert.equal("abc", s:read())
        fin()
      end)
    end)

    it("a line over the limit is an error that leaves the data buffered", function()
      run(function()
        local c, s, fin = pair{limit = 100}
        assert.equal(100, s.limit)
        c:write(("x"):rep(150) .. "\nnext\n")
        local d, msg, code = s:read_line()
        assert.is_nil(d)
        assert.equal("ELIMIT", code)
        assert.truthy(msg:find("limit of 100 bytes"), msg)
        assert.equal(("x"):rep(150) .. "\n", s:read_until("\n", 1000))
        assert.equal("next", s:read_line())
        assert.has_error(function() for _ in (function() c:write(("y"):rep(300)) return s:lines() end)() do end end)
        fin()
      end)
    end)

    it("lines() iterates until the end of the stream", function()
      run(function()
        local c, s, fin = pair()
        corio.spawn(function()
          for i = 1, 100 do c:write(("line %d\n"):format(i)) if i % 10 == 0 then corio.sleep(0) end end
          c:close_write()
        end)
        local n = 0
        for line in s:lines() do
          n = n + 1
          assert.equal(("line %d"):format(n), line)
        end
        assert.equal(100, n)
        fin()
      end)
    end)

    it("half-closes both ways", function()
      run(function()
        local c, s, fin = pair()
        c:write("request")
        c:close_write()
        assert.equal("request", read_all(s))
        assert.has_error(function() c:write("more") end)
        s:write("response")
        s:close_write()
        assert.equal("response", read_all(c))
        fin()
      end)
    end)

    it("a second reader or writer gets a busy error", function()
      run(function()
        local c, s, fin = pair()
        local t = corio.spawn(function() return s:read() end)
        corio.sleep(0)
        support.errors_with(says("busy"), s.read, s)
        support.errors_with(says("busy"), s.read_line, s)
        c:write("x")
        assert.equal("x", t:await())
        -- writers: fill the pipe until a write suspends, then try a second one
        local w = corio.spawn(function()
          local chunk = ("w"):rep(65536)
          for _ = 1, 1000 do c:write(chunk) end
        end)
        corio.sleep(0.05)
        assert.is_false(w:done())
        support.errors_with(says("busy"), c.write, c, "y")
        w:cancel()
        fin()
      end)
    end)

    it("a cancelled read loses no data", function()
      run(function()
        local c, s, fin = pair()
        local t = corio.spawn(function() return s:read_exactly(10) end)
        c:write("12345")
        corio.sleep(0.02)
        t:cancel()
        assert.is_true(pcall(function() return t:await() end) == false)
        c:write("67890")
        assert.equal("1234567890", s:read_exactly(10))
        -- cancelled in read_line with a partial line buffered
        t = corio.spawn(function() return s:read_line() end)
        c:write("par")
        corio.sleep(0.02)
        t:cancel()
        corio.sleep(0)
        c:write("tial\n")
        assert.equal("partial", s:read_line())
        fin()
      end)
    end)

    it("backpressure: a writer suspends until a slow peer reads; memory stays bounded", function()
      run(function()
        local c, s, fin = pair()
        local chunk = ("z"):rep(16384)
        local sent, suspended_at = 0, nil
        local writer = corio.spawn(function()
          for _ = 1, 640 do   -- 10 MiB
            local t0 = corio.now()
            assert(c:write(chunk))
            sent = sent + #chunk
            if not suspended_at and corio.now() - t0 > 0.01 then suspended_at = sent end
          end
          c:close_write()
        end)
        corio.sleep(0.1)
        -- the peer does not read: the writer is stuck after what the kernel and 64 KiB hold
        assert.is_false(writer:done())
        local stuck = sent
        assert.is_true(stuck < 8 * 1024 * 1024, "sent " .. stuck)
        corio.sleep(0.05)
        assert.equal(stuck, sent)
        -- now read slowly; the writer advances as we take data
        local got = 0
        while true do
          local d = s:read(65536)
          if not d then break end
          got = got + #d
          if got < 1024 * 1024 then corio.sleep(0.001) end
        end
        writer:await()
        assert.equal(640 * 16384, got)
        assert.truthy(suspended_at)
        fin()
      end)
    end)

    it("a cancelled write leaves nothing open; the data queued so far may be sent", function()
      run(function()
        local c, s, fin = pair()
        local w = corio.spawn(function()
          local chunk = ("q"):rep(65536)
          while true do c:write(chunk) end
        end)
        corio.sleep(0.05)
        w:cancel()
        assert.is_false(pcall(w.await, w))
        -- the stream still works
        local got = s:read(10)
        assert.equal("qqqqqqqqqq", got)
        fin()
      end)
    end)

    it("close() flushes what is queued; abort() resets", function()
      run(function()
        local c, s, fin = pair()
        local big = ("b"):rep(4 * 1024 * 1024)
        local w = corio.spawn(function() c:write(big) end)
        corio.sleep(0)
        c:close() -- the writer wakes with ECANCELED, but its data goes out before the FIN
        local ok, r, msg, code = pcall(w.await, w)
        assert.is_true(ok)
        _ = r; _ = msg; _ = code
        local got = read_all(s)
        assert.equal(#big, #got)
        fin()
        local c2, s2, fin2 = pair()
        local reader = corio.spawn(s2.read, s2)
        corio.sleep(0.01)
        c2:abort()
        local d, m, e = reader:await()
        assert.is_nil(d)
        assert.equal("ECONNRESET", e)
        assert.truthy(m:find("connection reset"))
        fin2()
      end)
    end)

    it("drain waits for the queue; options apply", function()
      run(function()
        local c, s, fin = pair{nodelay = false}
        assert.is_true(c:set_nodelay())
        assert.is_true(c:set_nodelay(false))
        assert.is_true(c:set_keepalive(true, 30))
        local reader = corio.spawn(read_all, s)
        c:write(("d"):rep(1024 * 1024))
        assert.is_true(c:drain())
        c:close_write()
        assert.equal(1024 * 1024, #reader:await())
        fin()
      end)
    end)

    it("cancels a pending connect and accept cleanly", function()
      run(function()
        -- connect: a listener whose backlog is full never answers
        local C = require "corio._net"
        local l = assert(C.listen{host = "127.0.0.1", port = 0, backlog = 0})
        local held = {}
        for _ = 1, 20 do
          local t = corio.spawn(net.connect, "127.0.0.1", l.port)
          corio.sleep(0.05)
          if not t:done() then
            t:cancel()
            assert.is_false(pcall(t.await, t))
            break
          end
          held[#held + 1] = t:result()
        end
        for _, c in ipairs(held) do c:abort() end
        l:close()
        -- accept: cancel the acceptor, then a connection waits for the next accept
        local l2 = assert(C.listen{host = "127.0.0.1", port = 0})
        local t = corio.spawn(l2.accept, l2)
        corio.sleep(0)
        t:cancel()
        assert.is_false(pcall(t.await, t))
        local c = assert(net.connect("127.0.0.1", l2.port))
        local s = assert(l2:accept())
        c:write("after")
        assert.equal("after", s:read())
        c:close(); s:close(); l2:close()
      end)
    end)
  end)

  describe("names everywhere", function()
    it("corio.web listens on a name", function()
      run(function()
        local web = require "corio.web"
        local app = web.Application()
        app:get("/", function() return "hi" end)
        local srv = assert(app:listen{host = "localhost", port = 0})
        assert.equal("localhost", srv.host)
        local c <close> = assert(net.connect("localhost", srv.port))
        c:write("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert.truthy(read_all(c):find("\r\n\r\nhi$"))
        c:close()
        srv:shutdown(1)
        local none, msg, code = app:listen{host = "no-such-host.invalid", port = 0}
        assert.is_nil(none)
        assert.truthy(code == "EAI_NONAME" or code == "EAI_AGAIN", code)
        assert.truthy(msg:find("no%-such%-host"))
      end)
    end)
  end)

  describe("udp", function()
    it("sends and receives datagrams, by name and connected", function()
      run(function()
        local a <close> = assert(net.udp{host = "127.0.0.1", port = 0})
        local b <close> = assert(net.udp{host = "localhost"})
        assert.is_true(b:send("hello", "127.0.0.1", a.port))
        local d, from, fport = a:recv()
        assert.equal("hello", d)
        assert.equal("127.0.0.1", from)
        assert.equal(b.port, fport)
        assert.equal("127.0.0.1:" .. a.port, a.sockname)
        assert.is_true(a:send("back", "localhost", fport))
        assert.equal("back", (b:recv()))
        assert.is_true(b:connect("127.0.0.1", a.port))
        assert.equal(a.sockname, b.peer)
        assert.is_true(b:send("connected"))
        assert.equal("connected", (a:recv()))
        assert.has_error(function() a:send("x") end)
        -- a cancelled recv loses nothing
        local t = corio.spawn(a.recv, a)
        corio.sleep(0)
        t:cancel()
        b:send("kept")
        corio.sleep(0.01)
        assert.equal("kept", (a:recv()))
      end)
    end)
  end)

  describe("dns", function()
    it("getaddrinfo and getnameinfo", function()
      run(function()
        local list = assert(net.getaddrinfo("localhost", 80, {family = "inet"}))
        assert.equal("127.0.0.1", list[1].addr)
        assert.equal(80, list[1].port)
        assert.equal("inet", list[1].family)
        assert.equal("stream", list[1].socktype)
        local u = assert(net.getaddrinfo("127.0.0.1", nil, {socktype = "dgram"}))
        assert.equal("dgram", u[1].socktype)
        local host, service = net.getnameinfo("127.0.0.1", 80)
        assert.equal("string", type(host))
        assert.equal("http", service)
        local r, msg, code = net.getaddrinfo("no-such-host.invalid")
        assert.is_nil(r)
        assert.truthy(code == "EAI_NONAME" or code == "EAI_AGAIN", code)
        assert.truthy(msg:find("^getaddrinfo no%-such%-host%.invalid: "))
        r, msg, code = net.getnameinfo("not an ip")
        assert.is_nil(r)
        assert.equal("EINVAL", code)
        -- cancelled while on the thread pool
        local t = corio.spawn(net.getaddrinfo, "localhost")
        corio.sleep(0)
        t:cancel()
        assert.is_false(pcall(t.await, t))
      end)
    end)
  end)

  describe("standard streams", function()
    it("corio.stdin() reads lines from a pipe alongside other tasks", function()
      local script = support.script [[
        local corio = require "corio"
        corio.run(function()
          local ticks = 0
          local ticker = corio.spawn(function() while true do corio.sleep(0.001); ticks = ticks + 1 end end)
          local n = 0
          for line in corio.stdin():lines() do n = n + 1; io.write(line:upper(), "\n") end
          ticker:cancel()
          print("lines", n)
          io.stderr:write(ticks > 0 and "" or "no ticks\n")
        end)
      ]]
      local out, err, code = sh("(printf 'a\\n'; sleep 0.5; printf 'b\\nc') | " .. CORIO .. " " .. script)
      assert.equal("", err)
      assert.equal(0, code)
      assert.equal("A\nB\nC\nlines\t3\n", out)
      -- a regular file on stdin
      out = support.run_corio(script, "x\ny\n")
      assert.equal("X\nY\nlines\t2\n", out)
      os.remove(script)
    end)

    it("restores stdin's flags at exit", function()
      local script = support.script [[
        local corio = require "corio"
        corio.run(function() local s = corio.stdin(); s:read() end)
      ]]
      local cmd = ("(sleep 0.2; echo hi 2>/dev/null) | sh -c '%s %s; python3 -c \"import fcntl,os;print(fcntl.fcntl(0,fcntl.F_GETFL)&os.O_NONBLOCK)\"'")
        :format(os.getenv("CORIO") or "build/corio", script)
      local out = support.run(cmd)
      os.remove(script)
      assert.equal("0\n", out)
    end)

    it("writes to stdout with backpressure when it is a pipe", function()
      local script = support.script [[
        local corio = require "corio"
        local net = require "corio.net"
        corio.run(function()
          local out = net.stdout()
          for i = 1, 2000 do assert(out:write(("%d %s\n"):format(i, ("x"):rep(100)))) end
          assert(out:drain())
          out:close()
        end)
      ]]
      local out, err = sh(CORIO .. " " .. script .. " | (sleep 0.2; wc -l)")
      os.remove(script)
      assert.equal("", err)
      assert.equal("2000", out:match("%d+"))
    end)

    it("opens a descriptor a parent passed down with from_fd", function()
      local script = support.script [[
        local corio = require "corio"
        local net = require "corio.net"
        corio.run(function()
          local s = assert(net.from_fd(3))
          assert(s:write("up\n"))
          print(s:read_line())
          s:close()
          print(select(3, net.from_fd(3)))  -- closed with the stream
        end)
      ]]
      corio.run(function()
        local process = require "corio.process"
        local p <close> = assert(process.spawn {CORIO, script, stdout = "pipe",
                                                fds = {[3] = "pipe"}})
        assert.equal("up", p.fds[3]:read_line())
        assert(p.fds[3]:write("down\n"))
        assert.equal("down\nEBADF\n", (p:communicate()))
        assert.same({0}, {p:wait()})
      end)
      os.remove(script)
      assert.has_error(function() net.from_fd(1) end,
        "from_fd: expected a descriptor above 2 (stdin() and the like are for 0-2), got 1")
    end)
  end)
end)
