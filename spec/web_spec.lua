-- corio.web: the Lua API (routing, requests, responses, middleware, static files, streaming,
-- shutdown) driven by curl and raw sockets.
local corio = require "corio"
local web = require "corio.web"
local json = require "corio.json"
local W = require "web_support"

local serve = W.serve

local function get(port, req)
  return W.parse((W.raw(port, req)))[1]
end

describe("corio.web", function()
  it("sends the registered reason phrases, 418 and 451 included, from one table", function()
    local reasons = require("corio._http_reason").reasons
    assert.equal("I'm a teapot", reasons[418])
    assert.equal("Unavailable For Legal Reasons", web.status_text(451))
    assert.equal("Error", web.status_text(299))
    serve(function(app)
      app:get("/{code}", function(request)
        return web.Response{status = tonumber(request.params.code), text = "x"}
      end)
    end, nil, function(_, port)
      for _, code in ipairs {200, 418, 451, 511, 299} do
        local raw = W.raw(port, ("GET /%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                                :format(code))
        local phrase = reasons[code] or "Unknown"
        assert.equal(("HTTP/1.1 %d %s\r\n"):format(code, phrase), raw:match("^[^\n]*\n"))
      end
    end)
  end)

  it("serves a string as 200 text/plain with Date and Content-Length", function()
    serve(function(app) app:get("/", function() return "Hello, world!" end) end, nil,
      function(url, port)
        local body, code = W.curl(url .. "/")
        assert.equal(0, code)
        assert.equal("Hello, world!", body)
        local r = get(port, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert.equal(200, r.status)
        assert.equal("text/plain; charset=utf-8", r.headers["content-type"])
        assert.equal("13", r.headers["content-length"])
        assert.truthy(r.headers.date:match("^%a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT$"))
      end)
  end)

  it("routes {name} parts with optional patterns; 404 and 405 with Allow", function()
    serve(function(app)
      app:get("/users/{id:%d+}", function(r) return "user " .. r.params.id end)
      app:get("/files/{dir}/{name}", function(r) return r.params.dir .. "|" .. r.params.name end)
      app:post("/users/{id:%d+}", function() return "posted" end)
    end, nil, function(url, port)
      assert.equal("user 42", (W.curl(url .. "/users/42")))
      assert.equal("a|b.txt", (W.curl(url .. "/files/a/b.txt")))
      local r = get(port, "GET /users/abc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      assert.equal(404, r.status)
      r = get(port, "DELETE /users/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      assert.equal(405, r.status)
      assert.equal("GET, HEAD, POST", r.headers.allow)
    end)
  end)

  it("gives the request's method, path, query, headers, remote, body, form and json", function()
    local seen
    serve(function(app)
      app:post("/p/{x}", function(r)
        seen = {method = r.method, path = r.path, q = r.query.a, qall = r:query_all("a"),
                sp = r.query.s, ua = r.headers["User-Agent"], multi = r.headers:get_all("x-m"),
                remote = r.remote, x = r.params.x, body = r:body(), form = r:form()}
        return "ok"
      end)
      app:post("/json", function(r) return web.json(r:json()) end)
    end, nil, function(url, port)
      local r = get(port, "POST /p/a%20b?a=1&a=2&s=x+y%21 HTTP/1.1\r\nHost: x\r\n"
        .. "User-Agent: test\r\n"
        .. "X-M: 1\r\nX-M: 2\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        .. "Content-Length: 11\r\nConnection: close\r\n\r\nk=v&w=%2F+1")
      assert.equal(200, r.status)
      assert.equal("POST", seen.method)
      assert.equal("/p/a b", seen.path)
      assert.equal("a b", seen.x)
      assert.equal("1", seen.q)
      assert.same({"1", "2"}, seen.qall)
      assert.equal("x y!", seen.sp)
      assert.equal("test", seen.ua)
      assert.same({"1", "2"}, seen.multi)
      assert.equal("127.0.0.1", seen.remote)
      assert.equal("k=v&w=%2F+1", seen.body)
      assert.same({k = "v", w = "/ 1"}, seen.form)
      local body = W.curl("-X POST -d '{\"id\": 9007199254740993, \"n\": null}' " .. url .. "/json")
      assert.equal(9007199254740993, json.decode(body).id)
      r = get(port, "POST /json HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
        .. "Connection: close\r\n\r\n{bad")
      assert.equal(400, r.status)
      assert.truthy(r.body:find("invalid JSON", 1, true))
    end)
  end)

  it("turns HTTPError into its status and web.json into application/json", function()
    serve(function(app)
      app:get("/teapot", function() error(web.HTTPError(409, "taken")) end)
      app:get("/j", function() return web.json({ok = true, list = json.array()}, 201) end)
      app:get("/resp", function()
        return web.Response{status = 202, body = "b", headers = {["X-A"] = {"1", "2"}},
                            content_type = "text/x-custom"}
      end)
      app:get("/nil", function() end)
    end, {error_log = function() end}, function(_, port)
      local r = get(port, "GET /teapot HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      assert.equal(409, r.status)
      assert.equal("taken\n", r.body)
      r = get(port, "GET /j HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      assert.equal(201, r.status)
      assert.equal("application/json", r.headers["content-type"])
      assert.same({ok = true, list = {}}, json.decode(r.body))
      assert.truthy(r.body:find('"list":[]', 1, true))
      local raw = W.raw(port, "GET /resp HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      assert.truthy(raw:find("X-A: 1\r\n", 1, true) and raw:find("X-A: 2\r\n", 1, true))
      assert.equal(202, W.parse(raw)[1].status)
      assert.equal(500, get(port, "GET /nil HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        .. "\r\n").status)
    end)
  end)

  it("composes middleware around handlers, outermost first", function()
    local order = {}
    serve(function(app)
      app:use(function(req, h)
        order[#order + 1] = "a"
        local resp = h(req)
        resp.headers["X-Outer"] = "1"
        return resp
      end)
      app:use(function(req, h)
        order[#order + 1] = "b"
        if req.path == "/blocked" then return web.Response{status = 403, body = "no"} end
        return h(req)
      end)
      app:get("/", function() order[#order + 1] = "h"; return "hi" end)
    end, nil, function(_, port)
      local r = get(port, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      assert.equal("hi", r.body)
      assert.equal("1", r.headers["x-outer"])
      assert.same({"a", "b", "h"}, order)
      r = get(port, "GET /blocked HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      assert.equal(403, r.status)
      assert.equal("1", r.headers["x-outer"])
      assert.equal(404, get(port, "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        .. "\r\n").status)
    end)
  end)

  it("answers HEAD with the GET length and no body", function()
    serve(function(app) app:get("/", function() return "twelve bytes" end) end, nil,
      function(_, port)
        local raw = W.raw(port, "HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        local r = W.parse(raw, true)[1]
        assert.equal(200, r.status)
        assert.equal("12", r.headers["content-length"])
        assert.truthy(raw:sub(-4) == "\r\n\r\n")
      end)
  end)

  it("speaks HTTP/1.0: closes unless keep-alive is asked", function()
    serve(function(app) app:get("/", function() return "x" end) end, nil, function(_, port)
      local raw, closed = W.raw(port, "GET / HTTP/1.0\r\n\r\n")
      assert.is_true(closed)
      assert.equal("close", W.parse(raw)[1].headers.connection)
      raw = W.raw(port, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", {wait = 0.3})
      local r = W.parse(raw)[1]
      assert.equal("keep-alive", r.headers.connection)
    end)
  end)

  it("keeps connections alive and honours Connection: close both ways", function()
    serve(function(app)
      app:get("/", function() return "x" end)
      app:get("/bye", function()
        return web.Response{body = "bye", headers = {Connection = "close"}}
      end)
    end, nil, function(_, port)
      local raw = W.raw(port, "GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n"
        .. "\r\nGET /bye HTTP/1.1\r\nHost: x\r\n\r\n"
        .. "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      local rs = W.parse(raw)
      assert.equal(3, #rs)  -- the server closed after /bye
      assert.is_nil(rs[1].headers.connection)
      assert.equal("close", rs[3].headers.connection)
    end)
  end)

  it("sends 100 Continue for Expect: 100-continue, 417 for other expectations", function()
    serve(function(app) app:post("/", function(r) return r:body() end) end, nil,
      function(url, port)
        local tcp = require "corio._tcp"
        local c = assert(tcp.connect("127.0.0.1", port))
        c:write("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        assert.equal("HTTP/1.1 100 Continue\r\n\r\n", c:read())
        c:write("hello")
        local r = W.parse(c:read())[1]
        assert.equal("hello", r.body)
        c:close()
        local big = ("x"):rep(2000)
        local echoed = W.curl("-H 'Expect: 100-continue' --data-binary " .. big .. " "
          .. url .. "/")
        assert.equal(big, echoed)
        assert.equal(417, get(port, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
          .. "Expect: magic\r\n\r\nx").status)
      end)
  end)

  it("streams chunked responses (server-sent events)", function()
    serve(function(app)
      app:get("/events", function(req)
        local resp = web.StreamResponse{content_type = "text/event-stream"}
        resp:prepare(req)
        for i = 1, 3 do
          resp:write("data: " .. i .. "\n\n")
          corio.sleep(0.01)
        end
        return resp
      end)
    end, nil, function(url, port)
      local r = get(port, "GET /events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      assert.equal("chunked", r.headers["transfer-encoding"])
      assert.equal("data: 1\n\ndata: 2\n\ndata: 3\n\n", r.body)
      assert.equal("data: 1\n\ndata: 2\n\ndata: 3\n\n", (W.curl("-N " .. url .. "/events")))
    end)
  end)

  it("cuts a stream that fails midway instead of sending a second head", function()
    local logged = {}
    serve(function(app)
      app:get("/broken", function(req)
        local resp = web.StreamResponse{}
        resp:prepare(req)
        resp:write("partial")
        error("stream failed")
      end)
    end, {error_log = function(m) logged[#logged + 1] = m end}, function(_, port)
      local raw = W.raw(port, "GET /broken HTTP/1.1\r\nHost: x\r\n\r\n")
      local _, heads = raw:gsub("HTTP/1%.1 ", "")
      assert.equal(1, heads)
      assert.truthy(raw:find("partial", 1, true))
      assert.is_nil(raw:find("0\r\n\r\n", 1, true))  -- no clean end: the client sees the cut
      assert.truthy(logged[1]:find("stream failed", 1, true))
    end)
  end)

  it("lets listen's options override the application's", function()
    local app_log, server_log = {}, {}
    corio.run(function()
      local app = web.Application{access_log = function(l) app_log[#app_log + 1] = l end}
      app:get("/", function() return "x" end)
      local s1 = assert(app:listen{port = 0})
      local s2 = assert(app:listen{port = 0,
                                   access_log = function(l) server_log[#server_log + 1] = l end})
      get(s1.port, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      get(s2.port, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      s1:shutdown(1)
      s2:shutdown(1)
    end)
    assert.equal(1, #app_log)
    assert.equal(1, #server_log)
  end)

  it("writes an access log line in the common format", function()
    local lines = {}
    serve(function(app) app:get("/", function() return "abc" end) end,
      {access_log = function(l) lines[#lines + 1] = l end}, function(_, port)
        get(port, "GET /?q=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert.truthy(lines[1]:match("^127%.0%.0%.1 %- %- %[%d%d/%a%a%a/%d%d%d%d:%d%d:%d%d:%d%d "
          .. '%+0000%] "GET /%?q=1 HTTP/1%.1" 200 3$'),
          lines[1])
      end)
  end)

  it("finishes an in-flight request on shutdown, refusing new connections", function()
    corio.run(function()
      local app = web.Application()
      app:get("/", function() corio.sleep(0.3); return "done" end)
      local server = assert(app:listen{port = 0})
      local port = server.port
      local inflight = corio.spawn(W.raw, port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      corio.sleep(0.1)
      local clean = server:shutdown(5)
      assert.is_true(clean)
      local raw = inflight:await()
      local r = W.parse(raw)[1]
      assert.equal("done", r.body)
      assert.equal("close", r.headers.connection)
      local tcp = require "corio._tcp"
      assert.is_nil((tcp.connect("127.0.0.1", port)))
    end)
  end)

  it("answers a request that was on its way when shutdown began, then closes", function()
    corio.run(function()
      local tcp = require "corio._tcp"
      local app = web.Application()
      app:get("/", function() return "hi" end)
      local server = assert(app:listen{port = 0})
      local kept = assert(tcp.connect("127.0.0.1", server.port))  -- kept alive, now idle
      assert(kept:write("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
      assert.truthy(kept:read():find("\r\n\r\nhi$"))
      local fresh = assert(tcp.connect("127.0.0.1", server.port))  -- accepted, silent yet
      corio.sleep(0.1)
      local done = corio.spawn(server.shutdown, server, 5)
      corio.sleep(0.2)  -- the requests arrive after shutdown began
      local rs = {}
      for i, c in ipairs {kept, fresh} do
        assert(c:write("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
        local got = {}
        for data in function() return c:read() end do got[#got + 1] = data end
        rs[i] = W.parse(table.concat(got))[1]
        c:close()
      end
      for i = 1, 2 do
        local r = rs[i] or {}
        assert.equal("hi", r.body)
        assert.equal("close", r.headers.connection)
      end
      assert.is_true(done:await())
      -- one that sends nothing is closed after a second, not at the idle timeout
      server = assert(app:listen{port = 0})
      local silent = assert(tcp.connect("127.0.0.1", server.port))
      corio.sleep(0.1)
      local t0 = corio.now()
      assert.is_true(server:shutdown(10))
      local took = corio.now() - t0
      assert.is_true(took > 0.5 and took < 5, took)
      assert.is_nil(silent:read())
      silent:close()
    end)
  end)

  it("cancels handlers that outlive the grace period", function()
    local cancelled = false
    corio.run(function()
      local app = web.Application()
      app:get("/", function()
        local ok, e = pcall(corio.sleep, 10)
        if not ok then cancelled = corio.is_cancelled(e); error(e, 0) end
      end)
      local server = assert(app:listen{port = 0})
      local inflight = corio.spawn(W.raw, server.port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      corio.sleep(0.1)
      assert.is_false(server:shutdown(0.2))
      assert.equal("", inflight:await())
    end)
    assert.is_true(cancelled)
  end)

  describe("static files", function()
    local dir, outside
    before_each(function()
      dir = os.tmpname(); os.remove(dir)
      assert(os.execute("mkdir -p " .. dir .. "/sub"))
      outside = dir .. "-secret"
      local f = assert(io.open(outside, "w")); f:write("SECRET"); f:close()
      f = assert(io.open(dir .. "/a.html", "w")); f:write("<p>hi</p>"); f:close()
      f = assert(io.open(dir .. "/sub/big.bin", "w")); f:write(("0123456789"):rep(30000)); f:close()
      assert(os.execute("ln -s " .. outside .. " " .. dir .. "/link"))
      assert(os.execute("ln -s " .. dir .. "/a.html " .. dir .. "/inside-link"))
    end)
    after_each(function()
      os.execute("rm -rf " .. dir .. " " .. outside)
    end)

    it("serves files with content types, Last-Modified and 304", function()
      serve(function(app) app:static("/s", dir) end, nil, function(url, port)
        local r = get(port, "GET /s/a.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert.equal(200, r.status)
        assert.equal("<p>hi</p>", r.body)
        assert.equal("text/html; charset=utf-8", r.headers["content-type"])
        local lm = r.headers["last-modified"]
        assert.truthy(lm)
        r = get(port, "GET /s/a.html HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: " .. lm .. "\r\n"
          .. "Connection: close\r\n\r\n")
        assert.equal(304, r.status)
        r = get(port, "GET /s/a.html HTTP/1.1\r\nHost: x\r\n"
          .. "If-Modified-Since: Mon, 01 Jan 1990 00:00:00 GMT\r\nConnection: close\r\n\r\n")
        assert.equal(200, r.status)
        local big = W.curl(url .. "/s/sub/big.bin")
        assert.equal(300000, #big)
        assert.equal(("0123456789"):rep(30000), big)
        assert.equal("<p>hi</p>", (W.curl(url .. "/s/inside-link")))
        r = W.parse((W.raw(port, "HEAD /s/sub/big.bin HTTP/1.1\r\nHost: x\r\n"
          .. "Connection: close\r\n\r\n")), true)[1]
        assert.equal("300000", r.headers["content-length"])
      end)
    end)

    it("lets no path escape the directory", function()
      serve(function(app) app:static("/s", dir) end, nil, function(_, port)
        local name = outside:match("[^/]+$")
        for _, p in ipairs {"/s/../" .. name, "/s/%2e%2e/" .. name, "/s/%2E%2E/" .. name,
                            "/s/sub/..%2f..%2f" .. name, "/s/link", "/s/a.html%00.txt",
                            "/s/..%5c" .. name, "/s/%252e%252e/" .. name,
                            "/s/sub/../../" .. name} do
          local raw = W.raw(port, "GET " .. p .. " HTTP/1.1\r\nConnection: close\r\n\r\n")
          local r = W.parse(raw)[1]
          assert.is_nil(raw:find("SECRET", 1, true), p)
          assert.is_true(r == nil or r.status >= 400, p)
        end
      end)
    end)
  end)
end)
