-- corio.web against bad input and limits, driven by a raw TCP client: every rule of the
-- issue gets the status nginx or Node would send, and a close where framing is unsafe.
local corio = require "corio"
local web = require "corio.web"
local W = require "web_support"

local function with_server(opts, fn, setup)
  return corio.run(function()
    local app = web.Application()
    app:get("/", function() return "ok" end)
    app:post("/echo", function(req) return req:body() end)
    app:get("/slow", function() corio.sleep(0.3); return "slow" end)
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

describe("corio.web limits and bad input", function()
  it("rejects a malformed request line with 400 and closes", function()
    with_server({}, function(port)
      local r, raw = first(port, "GARBAGE\r\n\r\n")
      assert.equal(400, r.status)
      assert.equal("close", r.headers.connection)
      assert.truthy(raw:find("Content-Length", 1, true))
    end)
  end)

  it("rejects a bare LF / bare CR in the head (strict mode)", function()
    with_server({}, function(port)
      assert.equal(400, first(port, "GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n").status)
    end)
  end)

  it("wants exactly one Host in HTTP/1.1 (none is fine in HTTP/1.0)", function()
    with_server({}, function(port)
      assert.equal(400, first(port, "GET / HTTP/1.1\r\n\r\n").status)
      assert.equal(400, first(port, "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").status)
      assert.equal(200, first(port, "GET / HTTP/1.0\r\n\r\n").status)
    end)
  end)

  it("answers 414 for a URI over the limit", function()
    with_server({max_url = 100}, function(port)
      local r = first(port, "GET /" .. ("a"):rep(200) .. " HTTP/1.1\r\nHost: x\r\n\r\n")
      assert.equal(414, r.status)
    end)
  end)

  it("answers 431 for a header section over the limit", function()
    with_server({max_header = 1024}, function(port)
      local r = first(port, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " .. ("b"):rep(2000) .. "\r\n\r\n")
      assert.equal(431, r.status)
    end)
  end)

  it("answers 431 for too many headers", function()
    with_server({max_headers = 10}, function(port)
      local h = {}
      for i = 1, 11 do h[#h + 1] = ("X-%d: v\r\n"):format(i) end
      local r = first(port, "GET / HTTP/1.1\r\nHost: x\r\n" .. table.concat(h) .. "\r\n")
      assert.equal(431, r.status)
    end)
  end)

  it("counts bytes no callback sees (endless whitespace in a header)", function()
    with_server({max_header = 1024}, function(port)
      local r = first(port, "GET / HTTP/1.1\r\nHost: x\r\nX:" .. (" "):rep(8000))
      assert.equal(431, r.status)
    end)
  end)

  it("answers 413 from Content-Length before reading the body", function()
    with_server({max_body = 100}, function(port)
      -- only the head is sent: the answer cannot depend on the body
      local r = first(port, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
      assert.equal(413, r.status)
      assert.equal("close", r.headers.connection)
    end)
  end)

  it("cuts a chunked body off when it passes the limit", function()
    with_server({max_body = 100}, function(port)
      local chunk = ("%x\r\n%s\r\n"):format(80, ("z"):rep(80))
      local r = first(port, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        .. chunk .. chunk .. "0\r\n\r\n")
      assert.equal(413, r.status)
    end)
  end)

  it("accepts a chunked body within the limit", function()
    with_server({max_body = 100}, function(port)
      local r = first(port, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        .. "Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
      assert.equal(200, r.status)
      assert.equal("hello world", r.body)
    end)
  end)

  it("rejects obs-fold (CVE-2024-27982) with 400", function()
    with_server({}, function(port)
      local r = first(port, "POST /echo HTTP/1.1\r\nHost: x\r\nX-A: a\r\n Content-Length: 5\r\n"
        .. "\r\nhello")
      assert.equal(400, r.status)
      r = first(port, "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n\tcontinued\r\n\r\n")
      assert.equal(400, r.status)
      -- after an empty value, and with the line break and the whitespace in separate reads
      r = first(port, "GET / HTTP/1.1\r\nHost: x\r\nX-A:\r\n b\r\n\r\n")
      assert.equal(400, r.status)
      r = first(port, {"POST /echo HTTP/1.1\r\nHost: x\r\nX-A: a\r\n", " ", "\t",
                       " Content-Length: 5\r\n\r\nhello"}, {gap = 0.05})
      assert.equal(400, r.status)
    end)
  end)

  it("rejects Content-Length together with Transfer-Encoding", function()
    with_server({}, function(port)
      local r, raw = first(port, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        .. "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
      assert.equal(400, r.status)
      assert.equal(1, #W.parse(raw))  -- nothing smuggled through
    end)
  end)

  it("rejects duplicate Content-Length (different or equal values)", function()
    with_server({}, function(port)
      assert.equal(400, first(port, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        .. "Content-Length: 6\r\n\r\nhello!").status)
      assert.equal(400, first(port, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        .. "Content-Length: 5\r\n\r\nhello").status)
    end)
  end)

  it("rejects unknown and obfuscated transfer codings", function()
    with_server({}, function(port)
      for _, te in ipairs {"gzip", "chunked, gzip", "xchunked", "chunked\1", "identity"} do
        local r = first(port, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: " .. te
          .. "\r\n\r\n0\r\n\r\n")
        assert.equal(400, r.status, te)
      end
    end)
  end)

  it("rejects invalid and overflowing chunk sizes", function()
    with_server({}, function(port)
      for _, size in ipairs {"zz", "-1", "fffffffffffffffffffff", "1 ;", "0x5"} do
        local r = first(port, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
          .. size .. "\r\nhello\r\n0\r\n\r\n")
        assert.equal(400, r.status, size)
      end
    end)
  end)

  it("rejects an invalid Content-Length", function()
    with_server({}, function(port)
      for _, cl in ipairs {"-1", "abc", "1 2", "99999999999999999999999"} do
        local r = first(port, "POST /echo HTTP/1.1\r\nHost: x\r\n"
          .. "Content-Length: " .. cl .. "\r\n\r\n")
        assert.equal(400, r.status, cl)
      end
    end)
  end)

  it("cuts off a client that trickles its head: the deadline is not reset per byte", function()
    with_server({header_timeout = 0.5}, function(port)
      local req = "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " .. ("s"):rep(40) .. "\r\n\r\n"
      local pieces = {}
      for i = 1, #req do pieces[i] = req:sub(i, i) end
      local t0 = corio.now()
      local raw = W.raw(port, pieces, {gap = 0.05, wait = 5})
      local elapsed = corio.now() - t0
      local r = W.parse(raw)[1]
      assert.equal(408, r and r.status)
      -- a byte every 50 ms would take >3 s: it was cut off near the 0.5 s deadline
      assert.is_true(elapsed < 2.5, "took " .. elapsed)
    end)
  end)

  it("closes a connection that sends nothing within the header deadline", function()
    with_server({header_timeout = 0.3}, function(port)
      local t0 = corio.now()
      local raw, ok = W.raw(port, "", {wait = 3})
      assert.is_true(ok)  -- the server closed it
      assert.equal("", raw)
      assert.is_true(corio.now() - t0 < 2)
    end)
  end)

  it("answers 408 when the body stops arriving", function()
    with_server({body_timeout = 0.3}, function(port)
      local r = first(port, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc",
        {wait = 3})
      assert.equal(408, r.status)
    end)
  end)

  it("closes keep-alive connections after the idle timeout", function()
    with_server({idle_timeout = 0.3}, function(port)
      local t0 = corio.now()
      local raw, ok = W.raw(port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", {wait = 3})
      assert.is_true(ok)
      assert.equal(200, W.parse(raw)[1].status)
      assert.is_true(corio.now() - t0 < 2)
    end)
  end)

  it("applies the idle timeout after a response that had to be queued", function()
    with_server({idle_timeout = 0.3}, function(port)
      local t0 = corio.now()
      local raw, ok = W.raw(port, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n", {wait = 5})
      assert.is_true(ok)  -- closed by the server, not by our timeout
      assert.equal(8 * 1024 * 1024, #W.parse(raw)[1].body)
      assert.is_true(corio.now() - t0 < 4)
    end, function(app)
      local big = ("x"):rep(8 * 1024 * 1024)
      app:get("/big", function() return big end)
    end)
  end)

  it("closes a connection whose client stops reading (write_timeout)", function()
    with_server({write_timeout = 0.3}, function(port, server)
      local tcp = require "corio._tcp"
      local c = assert(tcp.connect("127.0.0.1", port))
      c:write("GET /huge HTTP/1.1\r\nHost: x\r\n\r\n")  -- and never read
      local t0 = corio.now()
      while server:connections() > 0 and corio.now() - t0 < 5 do corio.sleep(0.05) end
      assert.equal(0, (server:connections()))
      assert.is_true(corio.now() - t0 < 4)
      c:close()
    end, function(app)
      local huge = ("h"):rep(64 * 1024 * 1024)
      app:get("/huge", function() return huge end)
    end)
  end)

  it("answers a client that half-closes after its request", function()
    with_server({}, function(port)
      local raw = W.raw(port, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n", {half_close = true})
      local r = W.parse(raw)[1]
      assert.equal(200, r.status)
      assert.equal("slow", r.body)
    end)
  end)

  it("survives a client that resets mid-response", function()
    with_server({}, function(port, server)
      local tcp = require "corio._tcp"
      for _ = 1, 5 do
        local c = assert(tcp.connect("127.0.0.1", port))
        c:write("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        c:close()
      end
      corio.sleep(0.5)
      local r = first(port, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      assert.equal(200, r.status)
      local t0 = corio.now()
      while server:connections() > 0 and corio.now() - t0 < 2 do corio.sleep(0.01) end
      assert.equal(0, (server:connections()))
    end)
  end)

  it("answers pipelined requests in order", function()
    with_server({}, function(port)
      local raw = W.raw(port, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
        .. "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\none"
        .. "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        .. "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\ntwo")
      local rs = W.parse(raw)
      assert.equal(4, #rs)
      assert.same({"slow", "one", "ok", "two"}, {rs[1].body, rs[2].body, rs[3].body, rs[4].body})
    end)
  end)

  it("stops at a bad request in a pipeline, after answering the good ones", function()
    with_server({}, function(port)
      local raw = W.raw(port, "GET / HTTP/1.1\r\nHost: x\r\n\r\nBAD REQUEST\r\n\r\n"
        .. "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      local rs = W.parse(raw)
      assert.equal(2, #rs)
      assert.equal(200, rs[1].status)
      assert.equal(400, rs[2].status)
    end)
  end)

  it("refuses politely past max_connections and keeps serving the others", function()
    with_server({max_connections = 2}, function(port)
      local tcp = require "corio._tcp"
      local a = assert(tcp.connect("127.0.0.1", port))
      local b = assert(tcp.connect("127.0.0.1", port))
      corio.sleep(0.05)
      local r = first(port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      assert.equal(503, r.status)
      a:write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      local got = a:read()
      assert.equal(200, W.parse(got)[1].status)
      a:close(); b:close()
    end)
  end)

  it("serves a normal client while thousands of idle connections are open", function()
    with_server({}, function(port)
      local tcp = require "corio._tcp"
      local idle = {}
      for i = 1, 1000 do idle[i] = assert(tcp.connect("127.0.0.1", port)) end
      local r = first(port, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      assert.equal(200, r.status)
      for _, c in ipairs(idle) do c:close() end
    end)
  end)

  it("answers 500 with a generic body when a handler raises, logging the traceback", function()
    local logged = {}
    with_server({error_log = function(m) logged[#logged + 1] = m end}, function(port)
      local r = first(port, "GET /boom HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      assert.equal(500, r.status)
      assert.equal("Internal Server Error\n", r.body)
      assert.is_nil(r.body:find("secret"))
      assert.truthy(logged[1]:find("secret detail", 1, true))
      assert.truthy(logged[1]:find("traceback", 1, true))
    end, function(app) app:get("/boom", function() error("secret detail") end) end)
  end)

  it("cuts off a handler that never returns with the per-request timeout (504)", function()
    with_server({request_timeout = 0.2}, function(port)
      local r = first(port, "GET /forever HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      assert.equal(504, r.status)
      -- the task that was cut off goes on serving
      for _ = 1, 3 do
        local ok = first(port, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert.equal(200, ok.status)
      end
    end, function(app) app:get("/forever", function() corio.sleep(1e6) end) end)
  end)

  it("rejects response header injection with a 500", function()
    with_server({error_log = function() end}, function(port)
      local r, raw = first(port, "GET /inject HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      assert.equal(500, r.status)
      assert.is_nil(raw:find("Evil", 1, true))
    end, function(app)
      app:get("/inject", function()
        return web.Response{headers = {["X-A"] = "a\r\nEvil: yes"}}
      end)
    end)
  end)

  it("survives random bytes and mutated requests, then serves normally", function()
    with_server({header_timeout = 0.5, body_timeout = 0.5}, function(port)
      math.randomseed(20261122)
      local base = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
      local fns = {}
      for i = 1, 200 do
        local data
        if i % 2 == 0 then
          local t = {}
          for k = 1, math.random(1, 300) do t[k] = string.char(math.random(0, 255)) end
          data = table.concat(t)
        else  -- flip, drop or insert bytes in a valid request
          local b = {}
          for k = 1, #base do b[k] = base:sub(k, k) end
          for _ = 1, math.random(1, 4) do
            local at, op = math.random(1, #b), math.random(1, 3)
            if op == 1 then b[at] = string.char(math.random(0, 255))
            elseif op == 2 then table.remove(b, at)
            else table.insert(b, at, string.char(math.random(0, 255))) end
          end
          data = table.concat(b)
        end
        fns[i] = function()
          local raw = W.raw(port, data, {wait = 3})
          local r = W.parse(raw)[1]
          return raw == "" or (r and r.status ~= nil)  -- silence or a well-formed answer
        end
      end
      local results = corio.gather(fns)
      for i = 1, 200 do assert.is_true(results[i], "connection " .. i) end
      local r = first(port, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      assert.equal(200, r.status)
    end)
  end)

  it("handles 1000 concurrent slow requests", function()
    with_server({}, function(port)
      local t0 = corio.now()
      local results = corio.gather((function()
        local fns = {}
        for i = 1, 1000 do
          fns[i] = function()
            local r = first(port, "GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
              {wait = 20})
            return r.status == 200 and r.body == "slow"
          end
        end
        return fns
      end)())
      local good = 0
      for i = 1, 1000 do if results[i] then good = good + 1 end end
      assert.equal(1000, good)
      -- 1000 handlers each sleeping 0.3 s: concurrent, not 300 s
      assert.is_true(corio.now() - t0 < 10, "took " .. (corio.now() - t0))
    end)
  end)
end)
