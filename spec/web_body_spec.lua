-- corio.web: request bodies read while they arrive (read, chunks, save), max_body and the
-- high-water mark, bodies a handler leaves unread on keep-alive connections, clients that
-- leave mid-upload, and the on_startup / on_shutdown hooks. Real sockets; curl for the big
-- uploads.
local corio = require "corio"
local web = require "corio.web"
local tcp = require "corio._tcp"
local W = require "web_support"
local S = require "support"

-- W.serve, with fn(port, server)
local function serve(setup, opts, fn)
  return W.serve(setup, opts, function(_, port, server) return fn(port, server) end)
end

local PATTERN = "0123456789abcdef"

-- A file of `size` bytes repeating PATTERN: any slice can be checked against its offset.
local function pattern_file(size)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  local block = PATTERN:rep(65536 // #PATTERN)
  local left = size
  while left > 0 do
    local n = math.min(left, #block)
    f:write(n == #block and block or block:sub(1, n))
    left = left - n
  end
  f:close()
  return path
end

local function sha256(path)
  local out = S.run("sha256sum " .. path)
  return out:match("^(%x+)")
end

local function file_size(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local n = f:seek("end")
  f:close()
  return n
end

-- AddressSanitizer keeps freed memory in quarantine: RSS says nothing under it
local sanitized = io.open("/proc/self/maps"):read("a"):find("libasan", 1, true) ~= nil

local function rss_kib()
  local f = io.open("/proc/self/status")
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

local function upload(port, path, route, extra)
  return W.curl(("%s --data-binary @%s -H 'Content-Type: application/octet-stream' "
                 .. "http://127.0.0.1:%d%s"):format(extra or "", path, port, route), 60)
end

local function head(size, extra)
  return ("POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n%s\r\n"):format(size, extra or "")
end

local CHUNKED = "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
local function chunk(s) return ("%x\r\n%s\r\n"):format(#s, s) end

describe("corio.web request bodies", function()
  it("reads a multi-MiB upload in chunks as it arrives, holding at most the mark", function()
    local size, hwm = 32 * 1024 * 1024 + 5, 64 * 1024
    local path = pattern_file(size)
    local ref = PATTERN:rep(256 * 1024 // #PATTERN) -- longer than any chunk
    local got, bad, peak_buffered, peak_lua, peak_rss, max_chunk, chunks = 0, nil, 0, 0, 0, 0, 0
    local lua0, rss0, srv
    serve(function(app)
      app:post("/up", function(req)
        for piece in req:chunks() do
          local o = got % #PATTERN
          if piece ~= ref:sub(o + 1, o + #piece) then bad = bad or got end
          got = got + #piece
          chunks = chunks + 1
          max_chunk = math.max(max_chunk, #piece)
          peak_lua = math.max(peak_lua, collectgarbage("count"))
          if chunks % 16 == 0 then
            peak_rss = math.max(peak_rss, rss_kib())
            corio.sleep(0.01) -- a slow consumer now and then: the socket must wait for it
            peak_buffered = math.max(peak_buffered, srv:stats().body_buffered)
          end
        end
        return tostring(got)
      end)
    end, {max_body = 64 * 1024 * 1024, max_body_buffer = hwm}, function(port, server)
      srv = server
      collectgarbage()
      lua0, rss0 = collectgarbage("count"), rss_kib()
      local out, code = upload(port, path, "/up")
      assert.equal(0, code)
      assert.equal(tostring(size), out)
    end)
    os.remove(path)
    assert.is_nil(bad, "the body differs from offset " .. tostring(bad))
    assert.equal(size, got)
    assert.is_true(chunks > 100)
    -- while the handler sleeps the body fills up to the mark, and one read (64 KiB) may
    -- land on top of it, never more: reading pauses
    assert.is_true(peak_buffered >= hwm, "buffered " .. peak_buffered)
    assert.is_true(peak_buffered <= hwm + 64 * 1024, "buffered " .. peak_buffered)
    assert.is_true(max_chunk <= hwm + 64 * 1024)
    -- a 32 MiB body never sits in memory: wide margins for the garbage collector's pace
    assert.is_true(peak_lua - lua0 < 12 * 1024, ("Lua grew %.0f KiB"):format(peak_lua - lua0))
    if not sanitized then
      assert.is_true(peak_rss - rss0 < 16 * 1024, ("RSS grew %d KiB"):format(peak_rss - rss0))
    end
  end)

  it("saves uploads to files as they arrive: Content-Length and chunked", function()
    local size, hwm = 8 * 1024 * 1024 + 123, 32 * 1024
    local path = pattern_file(size)
    local want = sha256(path)
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir " .. dir))
    local peak, srv, n = 0, nil, 0
    serve(function(app)
      app:post("/up", function(req)
        n = n + 1
        local dest = ("%s/%d"):format(dir, n)
        local watcher = corio.spawn(function()
          while true do
            peak = math.max(peak, srv:stats().body_buffered)
            corio.sleep(0.001)
          end
        end)
        local written, err = req:save(dest)
        watcher:cancel()
        return written and tostring(written) or err
      end)
    end, {max_body = 16 * 1024 * 1024, max_body_buffer = hwm}, function(port, server)
      srv = server
      local out, code = upload(port, path, "/up")
      assert.equal(0, code)
      assert.equal(tostring(size), out)
      out, code = upload(port, path, "/up", "-H 'Transfer-Encoding: chunked'")
      assert.equal(0, code)
      assert.equal(tostring(size), out)
    end)
    for i = 1, 2 do
      local dest = ("%s/%d"):format(dir, i)
      assert.equal(size, file_size(dest))
      assert.equal(want, sha256(dest))
    end
    os.execute("rm -rf " .. dir)
    os.remove(path)
    -- the unread buffer and the one being written, each at most the mark plus one read
    assert.is_true(peak <= 2 * (hwm + 64 * 1024), "buffered " .. peak)
  end)

  it("save returns the file error and leaves nothing behind", function()
    serve(function(app)
      app:post("/up", function(req)
        local n, err, code = req:save("/nonexistent-dir/x")
        assert.is_nil(n)
        return ("%s|%s"):format(code, err)
      end)
    end, nil, function(port)
      local r = W.parse((W.raw(port, head(5, "Connection: close\r\n") .. "hello")))[1]
      assert.equal(200, r.status)
      assert.equal("ENOENT|save /nonexistent-dir/x: no such file or directory", r.body)
    end)
  end)

  it("streams chunked bodies: read(n) gives at most n bytes, nil at the end", function()
    local pieces = {}
    serve(function(app)
      app:post("/up", function(req)
        while true do
          local s = req:read(3)
          if not s then break end
          pieces[#pieces + 1] = s
        end
        assert.is_nil(req:read())
        return table.concat(pieces)
      end)
    end, nil, function(port)
      local raw = W.raw(port, {CHUNKED, chunk("hello"), chunk(" world"), "0\r\n\r\n"},
                        {gap = 0.05, until_ = "hello world"})
      local r = W.parse(raw)[1]
      assert.equal(200, r.status)
      assert.equal("hello world", r.body)
    end)
    assert.is_true(#pieces >= 4)
    for _, p in ipairs(pieces) do assert.is_true(#p <= 3) end
  end)

  it("echoes a body while it arrives: a stream response written from read()", function()
    serve(function(app)
      app:post("/up", function(req)
        local resp = web.StreamResponse{}
        resp:prepare(req)
        for piece in req:chunks() do resp:write(piece:upper()) end
        return resp
      end)
    end, nil, function(port)
      local c = assert(tcp.connect("127.0.0.1", port))
      local got = ""
      corio.timeout(10, function()
        c:write(CHUNKED .. chunk("abc"))
        while not got:find("ABC", 1, true) do got = got .. c:read() end -- before the end
        c:write(chunk("def") .. "0\r\n\r\n")
        while not got:find("0\r\n\r\n", 1, true) do got = got .. c:read() end
      end)
      c:close()
      assert.equal("ABCDEF", W.parse(got)[1].body)
    end)
  end)

  it("answers 413 when a streamed body passes max_body, and the read raises it", function()
    local errs, lines = {}, {}
    local dest = os.tmpname()
    serve(function(app)
      app:post("/up", function(req)
        local ok, err = pcall(function() for _ in req:chunks() do end end)
        errs[#errs + 1] = err
        error(err, 0)
      end)
      app:post("/save", function(req)
        local ok, err = pcall(req.save, req, dest)
        errs[#errs + 1] = err
        return "saved?"
      end)
    end, {max_body = 1000, access_log = function(l) lines[#lines + 1] = l end},
    function(port)
      local big = ("z"):rep(600)
      local raw = W.raw(port, {CHUNKED, chunk(big), chunk(big), chunk(big), "0\r\n\r\n"},
                        {gap = 0.05})
      local r = W.parse(raw)
      assert.equal(1, #r)
      assert.equal(413, r[1].status)
      assert.equal("close", r[1].headers.connection)
      raw = W.raw(port, {CHUNKED:gsub("/up", "/save"), chunk(big), chunk(big), "0\r\n\r\n"},
                  {gap = 0.05})
      r = W.parse(raw)
      assert.equal(1, #r)
      assert.equal(413, r[1].status)
      corio.sleep(0.05)
    end)
    assert.equal(2, #errs)
    for _, e in ipairs(errs) do
      assert.is_true(web.is_http_error(e))
      assert.equal(413, e.status)
      assert.equal("request body larger than 1000 bytes", e.message)
    end
    assert.is_nil(io.open(dest), "the partial file was removed")
    local all = table.concat(lines, "\n")
    assert.equal(2, select(2, all:gsub(" 413 ", "")), all) -- logged once each
  end)

  it("reads the body whole on demand: body() kept, read() after it nil, not after read()",
    function()
      serve(function(app)
        app:post("/whole", function(req)
          local a = req:body()
          assert.equal(a, req:text())
          assert.is_nil(req:read())
          return a
        end)
        app:post("/part", function(req)
          local first = req:read(2)
          local ok, err = pcall(req.body, req)
          assert.is_false(ok)
          assert.truthy(err:find("read in part", 1, true))
          return first
        end)
        app:post("/json", function(req) return web.json(req:json()) end)
        app:post("/later", function(req)
          local t = corio.spawn(function() corio.sleep(0.1); return pcall(req.read, req) end)
          corio.spawn(function()
            local ok, err = t:await()
            assert.is_false(ok)
            assert.truthy(tostring(err):find("the request is over", 1, true))
          end)
          return "early"
        end)
      end, nil, function(port)
        -- the body in pieces: body() waits for the rest
        local raw = W.raw(port, {head(11, "Connection: close\r\n"):gsub("/up", "/whole"),
                                 "hello", " world"}, {gap = 0.05})
        assert.equal("hello world", W.parse(raw)[1].body)
        raw = W.raw(port, head(5, "Connection: close\r\n"):gsub("/up", "/part") .. "hello")
        assert.equal("he", W.parse(raw)[1].body)
        raw = W.raw(port, {head(9, "Connection: close\r\n"):gsub("/up", "/json"), '{"a":', "[1]}"},
                    {gap = 0.05})
        assert.equal('{"a":[1]}', W.parse(raw)[1].body)
        raw = W.raw(port, head(5, "Connection: close\r\n"):gsub("/up", "/later") .. "hello")
        assert.equal("early", W.parse(raw)[1].body)
        corio.sleep(0.3)
      end)
    end)

  it("drains a body the handler left unread and serves the next request on the connection",
    function()
      local seen = {}
      serve(function(app)
        app:post("/up", function(req)
          seen[#seen + 1] = "up"
          return "ignored"
        end)
        app:get("/", function() seen[#seen + 1] = "get"; return "ok" end)
      end, nil, function(port)
        local body = ("b"):rep(200000)
        local get = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        -- Content-Length: the rest arrives after the answer
        local raw = W.raw(port, {head(#body) .. body:sub(1, 1000), body:sub(1001) .. get},
                          {gap = 0.1})
        local r = W.parse(raw)
        assert.equal(2, #r, raw)
        assert.equal("ignored", r[1].body)
        assert.is_nil(r[1].headers.connection)
        assert.equal("ok", r[2].body)
        -- chunked, in pieces
        raw = W.raw(port, {CHUNKED .. chunk("abc"), chunk(("c"):rep(50000)), "0\r\n\r\n" .. get},
                    {gap = 0.1})
        r = W.parse(raw)
        assert.equal(2, #r, raw)
        assert.equal("ignored", r[1].body)
        assert.equal("ok", r[2].body)
      end)
      assert.same({"up", "get", "up", "get"}, seen)
    end)

  it("closes after the answer when the unread rest is big or the client awaits 100", function()
    local read_it = false
    serve(function(app)
      app:post("/up", function() return "no" end)
      app:post("/read", function(req)
        corio.sleep(0.2)
        read_it = true
        return req:body()
      end)
    end, {max_body = 8 * 1024 * 1024}, function(port)
      -- 4 MiB announced, past what is worth draining: Connection: close
      local raw = W.raw(port, head(4 * 1024 * 1024) .. ("x"):rep(1000))
      local r = W.parse(raw)
      assert.equal(1, #r)
      assert.equal("no", r[1].body)
      assert.equal("close", r[1].headers.connection)
      -- Expect: 100-continue and a handler that does not read: no 100, and a close
      raw = W.raw(port, head(10, "Expect: 100-continue\r\n"))
      assert.falsy(raw:find("100 Continue", 1, true))
      r = W.parse(raw)
      assert.equal(1, #r)
      assert.equal("close", r[1].headers.connection)
      -- a handler that reads: the 100 comes when it starts to
      local c = assert(tcp.connect("127.0.0.1", port))
      local t0 = corio.now()
      local rest = {}
      corio.timeout(10, function()
        c:write(head(5, "Expect: 100-continue\r\nConnection: close\r\n"):gsub("/up", "/read"))
        assert.equal("HTTP/1.1 100 Continue\r\n\r\n", c:read())
        assert.is_true(read_it)
        assert.is_true(corio.now() - t0 >= 0.15)
        c:write("hello")
        while true do
          local s = c:read()
          if not s then break end
          rest[#rest + 1] = s
        end
      end)
      c:close()
      assert.equal("hello", W.parse(table.concat(rest))[1].body)
    end)
  end)

  it("a client that leaves mid-upload: the read raises ClientGone, save removes its file",
    function()
      local errs, lines = {}, {}
      local dest = os.tmpname()
      serve(function(app)
        app:post("/up", function(req)
          local ok, err = pcall(function() for _ in req:chunks() do end end)
          errs[#errs + 1] = err
          error(err, 0)
        end)
        app:post("/save", function(req)
          local ok, err = pcall(req.save, req, dest)
          errs[#errs + 1] = err
          error(err, 0)
        end)
      end, {access_log = function(l) lines[#lines + 1] = l end, max_body = 1 << 30},
      function(port, server)
        for _, route in ipairs {"/up", "/save"} do
          local c = assert(tcp.connect("127.0.0.1", port))
          c:write(head(1 << 20):gsub("/up", route) .. ("y"):rep(100000))
          corio.sleep(0.1)
          c:close()
        end
        local deadline = corio.now() + 5
        while #errs < 2 and corio.now() < deadline do corio.sleep(0.01) end
        assert.equal(0, (server:connections()))
      end)
      assert.equal(2, #errs)
      for _, e in ipairs(errs) do assert.is_true(web.is_client_gone(e), tostring(e)) end
      assert.is_nil(io.open(dest), "the partial file was removed")
      local all = table.concat(lines, "\n")
      assert.equal(2, select(2, all:gsub(" 499 ", "")), all)
    end)

  it("a reader cancelled by request_timeout: 504, and a cancelled save removes its file",
    function()
      local dest = os.tmpname()
      serve(function(app)
        app:post("/up", function(req) return req:body() end)
        app:post("/save", function(req) return tostring(req:save(dest)) end)
      end, {request_timeout = 0.3}, function(port)
        for _, route in ipairs {"/up", "/save"} do
          local raw = W.raw(port, head(100):gsub("/up", route) .. "part")
          local r = W.parse(raw)[1]
          assert.equal(504, r.status)
        end
      end)
      assert.is_nil(io.open(dest), "the partial file was removed")
    end)

  it("times a stalled body out with 408 and the read raises it", function()
    local err
    serve(function(app)
      app:post("/up", function(req)
        local ok, e = pcall(req.body, req)
        err = e
        error(e, 0)
      end)
    end, {body_timeout = 0.2}, function(port)
      local r = W.parse((W.raw(port, head(100) .. "part")))[1]
      assert.equal(408, r.status)
    end)
    assert.is_true(web.is_http_error(err))
    assert.equal(408, err.status)
  end)
end)

describe("corio.web start and shutdown hooks", function()
  it("run in order: startup before listening, shutdown after the handlers drained", function()
    local events = {}
    local function ev(s) events[#events + 1] = s end
    corio.run(function()
      local app = web.Application()
      app:on_startup(function(a) assert.equal(app, a); corio.sleep(0.01); ev("start1") end)
      app:on_startup(function() ev("start2") end)
      app:on_shutdown(function() ev("stop1") end)
      app:on_shutdown(function() corio.sleep(0.01); ev("stop2") end)
      app:get("/slow", function() corio.sleep(0.2); ev("handled"); return "done" end)
      local server = assert(app:listen{port = 0})
      ev("listening")
      local client = corio.spawn(function()
        return W.raw(server.port, "GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      end)
      corio.sleep(0.05)
      assert.is_true(server:shutdown(5))
      ev("shut")
      assert.equal("done", W.parse((client:await()))[1].body)
    end)
    assert.same({"start1", "start2", "listening", "handled", "stop1", "stop2", "shut"}, events)
  end)

  it("a failed startup hook aborts the start; the shutdown hooks still run", function()
    local events = {}
    corio.run(function()
      local app = web.Application()
      app:on_startup(function() events[#events + 1] = "start1" end)
      app:on_startup(function() error("database unreachable") end)
      app:on_startup(function() events[#events + 1] = "start3" end)
      app:on_shutdown(function() events[#events + 1] = "stop1" end)
      local ok, err = pcall(app.listen, app, {port = 0})
      assert.is_false(ok)
      assert.truthy(err:find("^listen: on_startup hook 2 failed: .*database unreachable"), err)
      -- the app can start again once the cause is gone
      app._on_startup[2] = function() events[#events + 1] = "start2" end
      local server = assert(app:listen{port = 0})
      server:shutdown(1)
    end)
    assert.same({"start1", "stop1", "start1", "start2", "start3", "stop1"}, events)
  end)

  it("every shutdown hook runs even when one fails; failures are reported", function()
    local events, log = {}, {}
    corio.run(function()
      local app = web.Application{error_log = function(m) log[#log + 1] = m end}
      app:on_shutdown(function() events[#events + 1] = "stop1"; error("pool stuck") end)
      app:on_shutdown(function() events[#events + 1] = "stop2" end)
      local a = assert(app:listen{port = 0})
      local b = assert(app:listen{port = 0}) -- a second server of the same app
      a:shutdown(1)
      assert.same({}, events)                -- b still serves the app
      b:shutdown(1)
      b:shutdown(1)                          -- once per server
    end)
    assert.same({"stop1", "stop2"}, events)
    assert.equal(1, #log)
    assert.truthy(log[1]:find("on_shutdown hook 1 failed: .*pool stuck"), log[1])
  end)

  it("run_app runs them around serving", function()
    local script = S.script([[
      local web = require "corio.web"
      local app = web.Application()
      app:on_startup(function() print("startup") end)
      app:on_shutdown(function() print("shutdown") end)
      web.run_app(app, {port = 0, print = false, on_ready = function()
        print("ready")
        os.execute("kill -TERM $PPID")
      end})
      print("returned")
    ]])
    local out, err, code = S.run_corio(script)
    assert.equal("startup\nready\nshutdown\nreturned\n", out, err)
    assert.is_true(code == 0 or code == true, err)
    local fail = S.script([[
      local web = require "corio.web"
      local app = web.Application()
      app:on_startup(function() error("no database") end)
      app:on_shutdown(function() print("shutdown") end)
      web.run_app(app, {port = 0, print = false})
    ]])
    out, err = S.run_corio(fail)
    assert.equal("shutdown\n", out)
    assert.truthy(err:find("on_startup hook 1 failed: .*no database"), err)
    os.remove(script)
    os.remove(fail)
  end)
end)
