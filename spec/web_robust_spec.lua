-- corio.web against clients that misbehave or leave (issue 16): bounded output, descriptors
-- bounded by max_connections, HTTP/0.9 and absolute-form targets, the access log's byte
-- counts and refusals, request.disconnected, web.ClientGone, cancel_on_disconnect, web.sse.
-- Memory and descriptors are read from /proc.
local corio = require "corio"
local web = require "corio.web"
local tcp = require "corio._tcp"
local W = require "web_support"

local function with_server(opts, setup, fn)
  return corio.run(function()
    local app = web.Application()
    app:get("/", function() return "ok" end)
    if setup then setup(app) end
    opts.port = 0
    local server = assert(app:listen(opts))
    local ok, err = pcall(fn, server.port, server)
    server:shutdown(1)
    if not ok then error(err, 0) end
  end)
end

local function first(port, data, opts)
  local raw = W.raw(port, data, opts)
  return W.parse(raw)[1] or {status = nil, raw = raw}, raw
end

local function open_fds()
  local n = 0
  local p = io.popen("ls /proc/self/fd")
  for _ in p:lines() do n = n + 1 end
  p:close()
  return n - 1  -- the pipe of ls itself
end

local function rss_kib()
  local f = io.open("/proc/self/status")
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

local function get(path) return ("GET %s HTTP/1.1\r\nHost: x\r\n\r\n"):format(path) end
local function get_close(path)
  return ("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"):format(path)
end

describe("corio.web protocol fixes", function()
  it("answers an HTTP/0.9 request 400 at once", function()
    with_server({header_timeout = 10}, nil, function(port)
      local t0 = corio.now()
      local r = first(port, "GET /\r\n", {wait = 5})
      assert.equal(400, r.status)
      assert.is_true(corio.now() - t0 < 2)
    end)
  end)

  it("serves an absolute-form target as origin-form, Host rules unchanged", function()
    with_server({}, function(app)
      app:get("/p", function(req) return req.path .. "|" .. req.query_string end)
    end, function(port)
      local r = first(port, "GET http://example.com/p?a=1 HTTP/1.1\r\nHost: example.com\r\n\r\n")
      assert.equal(200, r.status)
      assert.equal("/p|a=1", r.body)
      assert.equal("ok", first(port, "GET HTTP://h:80 HTTP/1.1\r\nHost: h\r\n\r\n").body)
      assert.equal(400, first(port, "GET http://h/p HTTP/1.1\r\n\r\n").status)
    end)
  end)

  it("sends no Content-Type with a 204", function()
    with_server({}, function(app)
      app:get("/none", function() return web.Response{status = 204} end)
    end, function(port)
      local r = first(port, get_close("/none"))
      assert.equal(204, r.status)
      assert.is_nil(r.headers["content-type"])
    end)
  end)

  it("answers CONNECT with an empty target without touching a NULL buffer", function()
    with_server({}, nil, function(port)
      local r = first(port, "CONNECT \r\n\r\n")
      assert.truthy(r.status >= 400 and r.status < 500)
    end)
  end)
end)

describe("corio.web access log", function()
  it("counts the body bytes of every response kind and logs refusals", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir))
    local f = io.open(dir .. "/a.txt", "w")
    f:write(("z"):rep(100000))
    f:close()
    local lines = {}
    with_server({access_log = function(l) lines[#lines + 1] = l end, max_body = 10,
                 max_url = 50}, function(app)
      app:static("/s", dir)
      app:get("/stream", function(req)
        local resp = web.StreamResponse{}
        resp:prepare(req)
        resp:write("12345")
        resp:write("678")
        return resp
      end)
    end, function(port)
      assert.equal(200, first(port, get_close("/s/a.txt")).status)
      assert.equal("12345678", first(port, get_close("/stream")).body)
      assert.equal(400, first(port, "GARBAGE\r\n\r\n").status)
      assert.equal(413, first(port, "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 99\r\n\r\n")
                          .status)
      assert.equal(414, first(port, get_close("/" .. ("u"):rep(80))).status)
      W.raw(port, "GET /\r\n")
      corio.sleep(0.05)
    end)
    os.execute("rm -rf " .. dir)
    local all = table.concat(lines, "\n")
    assert.truthy(all:find('"GET /s/a.txt HTTP/1.1" 200 100000', 1, true), all)
    assert.truthy(all:find('"GET /stream HTTP/1.1" 200 8', 1, true), all)
    assert.truthy(all:find('"-" 400 ', 1, true), all)
    assert.truthy(all:find('"POST /x HTTP/1.1" 413 ', 1, true), all)
    assert.truthy(all:find('" 414 ', 1, true), all)
    assert.equal(2, select(2, all:gsub(" 400 ", "")), all)  -- and the HTTP/0.9 one
  end)
end)

describe("corio.web bounded resources", function()
  it("keeps descriptors at max_connections whatever the clients do", function()
    with_server({max_connections = 10}, nil, function(port, server)
      local before = open_fds()
      local clients = {}
      for i = 1, 60 do clients[i] = assert(tcp.connect("127.0.0.1", port)) end
      corio.sleep(0.2)
      local fds = open_fds() - before - 60  -- the server's share
      assert.is_true(fds <= 10 + 2, "server holds " .. fds .. " descriptors")
      assert.is_true(server:stats().refused >= 50)
      for _, c in ipairs(clients) do c:close() end
      -- a refused client read a 503
      local r = first(port, get_close("/"))
      assert.truthy(r.status == 200 or r.status == 503)
    end)
  end)

  it("does not copy a big response for clients that never read", function()
    local big = ("x"):rep(1024 * 1024)
    with_server({}, function(app)
      app:get("/big", function() return big end)
    end, function(port, server)
      collectgarbage()
      local rss0 = rss_kib()
      local clients = {}
      for i = 1, 100 do
        clients[i] = assert(tcp.connect("127.0.0.1", port))
        clients[i]:write(get("/big"))
      end
      corio.sleep(0.5)
      local st = server:stats()
      local grown = rss_kib() - rss0
      assert.is_true(st.buffered < 100 * 32 * 1024, "copied " .. st.buffered)
      assert.is_true(grown < 40 * 1024, ("RSS grew %d KiB"):format(grown))
      for _, c in ipairs(clients) do c:close() end
      corio.sleep(0.1)
      assert.equal(0, server:stats().pinned)
    end)
  end)

  it("suspends a stream writer above the high-water mark; its client leaving ends it", function()
    local written, outcome = 0, nil
    local chunk = ("y"):rep(64 * 1024)
    with_server({max_output_buffer = 256 * 1024}, function(app)
      app:get("/forever", function(req)
        local resp = web.StreamResponse{}
        resp:prepare(req)
        local ok, err = pcall(function()
          while true do resp:write(chunk); written = written + #chunk end
        end)
        outcome = web.is_client_gone(err) and "gone" or tostring(err)
        error(err, 0)
      end)
    end, function(port, server)
      local c = assert(tcp.connect("127.0.0.1", port))
      c:write(get("/forever"))
      corio.sleep(0.3)
      local w1 = written
      corio.sleep(0.3)
      assert.equal(w1, written)  -- suspended, not polling
      local st = server:stats()
      assert.is_true(st.buffered + st.pinned <= 256 * 1024 + 2 * #chunk,
                     ("held %d + %d"):format(st.buffered, st.pinned))
      c:close()
      local deadline = corio.now() + 3
      while not outcome and corio.now() < deadline do corio.sleep(0.02) end
      assert.equal("gone", outcome)
    end)
  end)
end)

describe("corio.web clients that leave", function()
  it("request.disconnected is set when the client goes", function()
    local seen
    with_server({}, function(app)
      app:get("/wait", function(req)
        corio.wait_for(function() return req.disconnected:wait() end, 5)
        seen = true
        return "late"
      end)
    end, function(port)
      local c = assert(tcp.connect("127.0.0.1", port))
      c:write(get("/wait"))
      corio.sleep(0.1)
      c:close()
      local deadline = corio.now() + 3
      while not seen and corio.now() < deadline do corio.sleep(0.02) end
      assert.is_true(seen)
    end)
  end)

  it("request.disconnected stays unset for a client that waits", function()
    local state
    with_server({}, function(app)
      app:get("/w", function(req)
        local ev = req.disconnected
        corio.sleep(0.05)
        state = ev:is_set()
        return "done"
      end)
    end, function(port)
      assert.equal("done", first(port, get_close("/w")).body)
      assert.is_false(state)
    end)
  end)

  it("cancel_on_disconnect cancels the handler's task", function()
    local cancelled, finished = false, false
    with_server({cancel_on_disconnect = true}, function(app)
      app:get("/slow", function()
        local ok, err = pcall(corio.sleep, 5)
        if not ok and corio.is_cancelled(err) then cancelled = true; error(err, 0) end
        finished = true
        return "slow"
      end)
    end, function(port)
      local c = assert(tcp.connect("127.0.0.1", port))
      c:write(get("/slow"))
      corio.sleep(0.1)
      c:close()
      local deadline = corio.now() + 3
      while not cancelled and corio.now() < deadline do corio.sleep(0.02) end
      assert.is_true(cancelled)
      assert.is_false(finished)
      assert.equal("ok", first(port, get_close("/")).body)  -- the server goes on
    end)
  end)

  it("web.sse sends events, keepalive comments, and ends when the client leaves", function()
    local ended
    with_server({}, function(app)
      app:get("/events", function(req)
        return web.sse(req, function(send)
          local i = 0
          while true do
            i = i + 1
            send("tick " .. i .. "\nline two", {event = "tick", id = i})
            corio.sleep(0.05)
          end
        end, {keepalive = 0.02})
        -- unreachable while the client stays
      end)
      app:get("/after", function() ended = true; return "x" end)
    end, function(port)
      local c = assert(tcp.connect("127.0.0.1", port))
      c:write(get("/events"))
      local got = ""
      local deadline = corio.now() + 3
      while not got:find("id: 2", 1, true) and corio.now() < deadline do
        got = got .. (c:read() or "")
      end
      c:close()
      assert.truthy(got:find("Content-Type: text/event-stream", 1, true))
      assert.truthy(got:find("Cache-Control: no-cache", 1, true))
      assert.truthy(got:find("event: tick\nid: 1\ndata: tick 1\ndata: line two\n\n", 1, true))
      assert.truthy(got:find(": keepalive\n\n", 1, true))
      corio.sleep(0.3)  -- the next send fails: the handler ends and the pool goes on
      assert.equal("x", first(port, get_close("/after")).body)
      assert.is_true(ended)
    end)
  end)
end)

describe("corio.web under memory pressure", function()
  -- AddressSanitizer reserves terabytes of address space: an address-space limit cannot apply
  local maps = io.open("/proc/self/maps"):read("a")
  local sanitized = maps:find("libasan", 1, true) ~= nil
  ;(sanitized and pending or it)("fails requests, not the process, when allocations fail", function()
    -- A server in its own process under a 300 MiB address-space limit; 300 clients POST
    -- 1 MB bodies at once (each within max_body). Some may get a 503 or a close; the
    -- process must live and keep serving.
    local base = os.tmpname()
    local script, portfile = base .. ".lua", base .. ".port"
    local f = io.open(script, "w")
    f:write([[
      local corio = require "corio"
      local web = require "corio.web"
      corio.run(function()
        local app = web.Application()
        app:post("/up", function(req) return tostring(#req:body()) end)
        app:get("/", function() return "alive" end)
        local s = assert(app:listen{port = 0, max_body = 2 * 1024 * 1024})
        local f = io.open(arg[1], "w"); f:write(s.port); f:close()
        corio.sleep(60)
      end)
    ]])
    f:close()
    local exe = arg and arg[-1] or "corio"
    local h = io.popen(("sh -c 'ulimit -v 307200; exec %s %s %s' 2>&1 & echo $!"):format(
      exe, script, portfile))
    local pid = h:read("l")
    h:close()
    corio.run(function()
      local port
      local deadline = corio.now() + 10
      while not port and corio.now() < deadline do
        local pf = io.open(portfile)
        if pf then port = tonumber(pf:read("a")); pf:close() end
        if not port then corio.sleep(0.05) end
      end
      assert.truthy(port, "the server did not start")
      local body = ("b"):rep(1000 * 1000)
      local req = ("POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
                   .. "Connection: close\r\n\r\n"):format(#body) .. body
      local ok200 = 0
      local tasks = {}
      for i = 1, 300 do
        tasks[i] = corio.spawn(function()
          local c = tcp.connect("127.0.0.1", port)
          if not c then return end
          c:write(req)
          local got = {}
          pcall(corio.timeout, 20, function()
            while true do local s = c:read(); if not s then break end; got[#got + 1] = s end
          end)
          c:close()
          if table.concat(got):find("^HTTP/1.1 200") then ok200 = ok200 + 1 end
        end)
      end
      for _, t in ipairs(tasks) do t:await() end
      assert.is_true(ok200 > 0)
      assert.equal("alive", first(port, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                              .body)
    end)
    os.execute("kill " .. pid .. " 2>/dev/null")
    os.remove(script); os.remove(portfile); os.remove(base)
  end)
end)
