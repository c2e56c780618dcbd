local corio = require "corio"
local support = require "support"
local hs = require "http_support"
local http = require "corio.http"

describe("corio.http", function()
  local srv, base
  lazy_setup(function()
    srv = hs.server()
    base = srv.base
  end)
  lazy_teardown(function()
    http.default_session():close()
    srv.stop()
  end)

  -- The fixture counts requests per X-Stats-Tag header, so what one spec counts cannot include
  -- a request that another spec left to the server's threads (one that curl abandoned after
  -- sending its headers is still counted, later, on the server's own thread).
  local ntags = 0
  local function new_tag()
    ntags = ntags + 1
    return "spec-" .. ntags
  end
  -- A fresh session with a tag of its own; its first request is made, so the server-side
  -- connection count starts at 1.
  local function counted_session(opts)
    opts = opts or {}
    opts.headers = {["X-Stats-Tag"] = new_tag()}
    local s = http.Session(opts)
    assert.equal(200, s:get(base .. "/stats").status)
    return s
  end

  describe("responses", function()
    it("gives status, reason, headers, body, url and version", function()
      local r = assert(http.get(base .. "/hello"))
      assert.equal(200, r.status)
      assert.equal("OK", r.reason)
      assert.equal("hello", r.body)
      assert.equal("hello", r:text())
      assert.equal(base .. "/hello", r.url)
      assert.equal("1.1", r.http_version)
      assert.is_true(r.ok)
      assert.equal("5", r.headers["Content-Length"])
      assert.equal("5", r.headers["content-length"])
      assert.equal("5", r.headers:get("CONTENT-LENGTH"))
      assert.is_nil(r.headers["x-nope"])
      -- a buffered response reads as one chunk, then the end
      assert.equal("hello", r:read())
      assert.is_nil(r:read())
      assert.equal("hello", r.body)
    end)

    it("keeps repeated headers", function()
      local r = assert(http.get(base .. "/headers"))
      assert.same({"a=1; Path=/", "b=2; Path=/"}, r.headers:get_all("Set-Cookie"))
      assert.equal("a=1; Path=/", r.headers["set-cookie"])
      assert.equal("one, two", r.headers["x-multi"])
      local names = {}
      for name in r.headers:items() do names[#names + 1] = name end
      assert.same({"Server", "Date", "Set-Cookie", "Set-Cookie", "X-Multi", "X-Multi",
                   "Content-Length"}, names)
      local seen = {}
      for k, v in pairs(r.headers) do seen[k] = v end
      assert.equal("one, two", seen["x-multi"])
      assert.has_error(function() r.headers.foo = "x" end)
    end)

    it("treats 4xx and 5xx as responses, and raise_for_status raises", function()
      local r = assert(http.get(base .. "/status/404"))
      assert.equal(404, r.status)
      assert.equal("Not Found", r.reason)
      assert.is_false(r.ok)
      local ok, e = pcall(r.raise_for_status, r)
      assert.is_false(ok)
      assert.is_true(http.is_http_error(e))
      assert.equal(404, e.status)
      assert.equal(r, e.response)
      assert.matches("404 Not Found %(client error%) for GET .*/status/404", tostring(e))
      local r5 = assert(http.get(base .. "/status/503"))
      assert.matches("server error", tostring(select(2, pcall(r5.raise_for_status, r5))))
      local good = assert(http.get(base .. "/hello"))
      assert.equal(good, good:raise_for_status())
    end)

    it("decodes JSON keeping integers integers", function()
      local j = assert(http.get(base .. "/json")):json()
      assert.equal(9007199254740993, j.id)
      assert.equal("integer", math.type(j.id))
      assert.equal("integer", math.type(j.n))
      assert.equal("float", math.type(j.e))
      assert.equal(1.5, j.f)
      assert.equal("café", j.s)
      assert.same({1, 2, 3}, j.list)
      assert.equal(http.json.null, j.none)
      assert.is_true(j.ok)
      local r = assert(http.get(base .. "/hello"))
      assert.has_error(function() r:json() end)
      assert.matches("not valid JSON", select(2, pcall(r.json, r)))
    end)
  end)

  describe("requests", function()
    it("sends every method with its body", function()
      local function echo(method, opts)
        local r = assert(http.request(method, base .. "/echo", opts))
        return r:json()
      end
      local j = echo("POST", {json = {id = 12345678901234567, name = "x", list = {1, 2}}})
      assert.equal("POST", j.method)
      assert.same({"application/json"}, j.headers["content-type"])
      assert.same({id = 12345678901234567, name = "x", list = {1, 2}}, http.json.decode(j.body))
      j = echo("PUT", {form = {b = "2 3", a = "&"}})
      assert.equal("PUT", j.method)
      assert.equal("a=%26&b=2%203", j.body)
      assert.same({"application/x-www-form-urlencoded"}, j.headers["content-type"])
      j = echo("PATCH", {body = "raw\0bytes"})
      assert.equal("PATCH", j.method)
      assert.equal("raw\0bytes", j.body)
      assert.equal("DELETE", echo("DELETE").method)
      assert.equal("OPTIONS", echo("OPTIONS").method)
      assert.equal("GET", http.get(base .. "/echo"):json().method)
      j = assert(http.post(base .. "/echo")):json()
      assert.equal("POST", j.method)
      assert.equal(0, j.length)
      local h = assert(http.head(base .. "/hello"))
      assert.equal(200, h.status)
      assert.equal("5", h.headers["content-length"])
      assert.equal("", h.body)
      local t = assert(http.request {method = "post", url = base .. "/echo", body = "x"}):json()
      assert.equal("POST", t.method)
    end)

    it("encodes the query, joins base_url and merges headers", function()
      local s = http.Session {base_url = base .. "/",
                              headers = {["X-Session"] = "s", ["X-Both"] = "s"}}
      local j = assert(s:get("/echo", {query = {q = "a b", n = 1, list = {"x", "y"}},
                                       headers = {["x-both"] = "r", ["X-Num"] = 7}})):json()
      assert.equal("list=x&list=y&n=1&q=a%20b", j.query)
      assert.same({"s"}, j.headers["x-session"])
      assert.same({"r"}, j.headers["x-both"])
      assert.same({"7"}, j.headers["x-num"])
      assert.same({"corio/0.1.0"}, j.headers["user-agent"])
      assert.is_nil(j.headers["expect"])
      j = assert(s:get("echo?a=1#frag", {query = {{"b", 2}}})):json()
      assert.equal("a=1&b=2", j.query)
      j = assert(s:get("/echo", {headers = {["User-Agent"] = "me", Accept = false}})):json()
      assert.same({"me"}, j.headers["user-agent"])
      assert.is_nil(j.headers["accept"])
      s:close()
    end)

    it("streams a request body from a file", function()
      local path = os.tmpname()
      local f = assert(io.open(path, "wb"))
      local block = ("0123456789abcdef"):rep(64 * 1024)  -- 1 MiB
      f:write(block, block, block)
      f:close()
      local j = assert(http.put(base .. "/echo", {body_file = path})):json()
      os.remove(path)
      assert.equal("PUT", j.method)
      assert.equal(3 * #block, j.length)
      assert.equal(block .. block .. block, j.body)
    end)
  end)

  describe("transfers", function()
    it("follows redirects, or not", function()
      local r = assert(http.get(base .. "/redirect/3"))
      assert.equal(200, r.status)
      assert.equal(base .. "/hello", r.url)
      assert.equal("hello", r.body)
      r = assert(http.get(base .. "/redirect/3", {allow_redirects = false}))
      assert.equal(302, r.status)
      assert.equal("/redirect/2", r.headers.location)
      local j = assert(http.post(base .. "/see-other", {body = "data"})):json()
      assert.equal("GET", j.method)
      -- a redirect's own body is not part of the final one, buffered or streamed
      assert.equal("hello", assert(http.get(base .. "/moved")).body)
      assert.equal("hello", assert(http.get(base .. "/moved", {stream = true})):text())
    end)

    it("uses the proxy named by the environment (http_proxy)", function()
      local script = support.script([[
        local http = require "corio.http"
        local r = assert(http.get("http://api.example/echo?x=1"))
        local j = r:json()
        io.write(r.status, " ", j.path, " ", j.query, " ", j.headers.host[1])
      ]])
      local p = assert(io.popen(("env http_proxy=%s %s %s 2>&1"):format(
        base, os.getenv("CORIO") or "build/corio", script)))
      local out = p:read("a")
      p:close()
      os.remove(script)
      -- the test server, acting as the proxy, received the request for api.example
      assert.equal("200 /echo x=1 api.example", out)
    end)

    it("decodes gzip, unless asked not to", function()
      local r = assert(http.get(base .. "/gzip"))
      assert.equal(("compressible "):rep(1000), r.body)
      r = assert(http.get(base .. "/gzip", {decompress = false}))
      assert.equal("\31\139", r.body:sub(1, 2))
      assert.is_true(#r.body < 1000)

      assert.equal(("deflated "):rep(500), assert(http.get(base .. "/deflate")).body)
      local z = assert(http.get(base .. "/zstd"))
      if z.status == 200 then assert.equal(("zstandard "):rep(500), z.body) end
    end)

    it("reads chunked responses", function()
      local r = assert(http.get(base .. "/chunked"))
      assert.equal("chunk 0;chunk 1;chunk 2;chunk 3;chunk 4;", r.body)
      assert.is_nil(r.headers["content-length"])
      assert.equal("chunked", r.headers["transfer-encoding"])
    end)

    it("buffers a large body", function()
      local n = 8 * 1024 * 1024 + 3
      local r = assert(http.get(base .. "/large?n=" .. n))
      assert.equal(n, #r.body)
      local pattern = ""
      for i = 0, 255 do pattern = pattern .. string.char(i) end
      assert.equal(pattern, r.body:sub(1, 256))
      assert.equal(pattern, r.body:sub(65536 * 3 + 1, 65536 * 3 + 256))
    end)

    it("streams a large body in chunks, with backpressure", function()
      local n = 16 * 1024 * 1024
      local r <close> = assert(http.get(base .. "/large?n=" .. n, {stream = true}))
      assert.equal(200, r.status)
      assert.is_nil(r.body)
      local total, chunks, biggest = 0, 0, 0
      for chunk in r:chunks() do
        total, chunks = total + #chunk, chunks + 1
        if #chunk > biggest then biggest = #chunk end
        if chunks % 10 == 0 then corio.sleep(0.001) end  -- a slow reader
      end
      assert.equal(n, total)
      assert.is_true(chunks > 1)
      -- the reader is behind: at most about 256 KiB wait in C, not the whole body
      assert.is_true(biggest < 1024 * 1024, "biggest chunk " .. biggest)
      assert.is_nil(r:read())
    end)

    it("refuses a second concurrent reader of a stream", function()
      local r <close> = assert(http.get(base .. "/drip?n=5&s=0.1", {stream = true}))
      assert.is_string(r:read())  -- what arrived with the head
      local reader = corio.spawn(function() return r:read() end)
      corio.sleep(0.01)
      assert.has_error(function() r:read() end,
                       "http read: another task is already reading this response")
      assert.is_string(reader:await())
    end)

    it("closing a streamed response mid-way drops its connection", function()
      local s = http.Session()
      local r = assert(s:get(base .. "/large?n=50000000", {stream = true}))
      assert.is_string(r:read())
      assert.equal(1, s:stats().active)
      r:close()
      assert.equal(0, s:stats().active)
      support.settle()
      assert.equal(0, s:stats().sockets)
      s:close()
    end)

    it("works from a generator of the user's own inside a task", function()
      local got = corio.run(function()
        local gen = coroutine.wrap(function()
          for _, path in ipairs {"/hello", "/status/201"} do
            coroutine.yield(assert(http.get(base .. path)).status)
          end
        end)
        return {gen(), gen()}
      end)
      assert.same({200, 201}, got)
    end)

    it("a top-level request lets other tasks run meanwhile", function()
      local ticks = 0
      local ticker = corio.spawn(function()
        while true do ticks = ticks + 1; corio.sleep(0.02) end
      end)
      assert.equal("slow", assert(http.get(base .. "/slow?s=0.3")).body)
      ticker:cancel()
      assert.is_true(ticks >= 5, "ticks: " .. ticks)
    end)

    it("runs requests concurrently", function()
      local t0 = corio.now()
      local results = corio.gather(
        function() return http.get(base .. "/slow?s=0.4").body end,
        function() return http.get(base .. "/slow?s=0.4").body end,
        function() return http.get(base .. "/slow?s=0.4").body end,
        function() return http.get(base .. "/slow?s=0.4").body end)
      assert.same({"slow", "slow", "slow", "slow", n = 4}, results)
      assert.is_true(corio.now() - t0 < 1.4, "took " .. (corio.now() - t0))
    end)
  end)

  describe("the pool", function()
    it("reuses one keep-alive connection for sequential requests", function()
      local s = counted_session()
      for _ = 1, 20 do assert.equal("hello", s:get(base .. "/hello").body) end
      assert.equal(1, s:get(base .. "/stats"):json().connections)
      assert.equal(1, s:stats().connects)
      assert.equal(22, s:stats().requests)
      s:close()
    end)

    it("limits connections per host and queues the excess", function()
      local s = counted_session {max_per_host = 3}
      local fns = {}
      for i = 1, 9 do fns[i] = function() return s:get(base .. "/slow?s=0.15").status end end
      local t0 = corio.now()
      local statuses = corio.gather(fns)
      local elapsed = corio.now() - t0
      for i = 1, 9 do assert.equal(200, statuses[i]) end
      local st = s:get(base .. "/stats"):json()
      assert.equal(3, st.max_inflight)
      assert.equal(3, st.connections)
      assert.is_true(elapsed >= 0.44, "9 requests of 0.15 s, 3 at a time, took " .. elapsed)
      s:close()
    end)

    it("limits connections in total across hosts", function()
      local s = counted_session {max_connections = 2}
      local other = base:gsub("127%.0%.0%.1", "localhost")
      local fns = {}
      for i = 1, 6 do
        local b = i % 2 == 0 and base or other
        fns[i] = function() return s:get(b .. "/slow?s=0.1").status end
      end
      local statuses = corio.gather(fns)
      for i = 1, 6 do assert.equal(200, statuses[i]) end
      assert.equal(2, s:get(base .. "/stats"):json().max_inflight)
      s:close()
    end)

    it("opens connections as needed without a limit", function()
      local s = counted_session()
      local fns = {}
      for i = 1, 6 do fns[i] = function() return s:get(base .. "/slow?s=0.2").status end end
      corio.gather(fns)
      local st = s:get(base .. "/stats"):json()
      assert.equal(6, st.max_inflight)
      assert.equal(6, st.connections)
      s:close()
    end)

    it("keeps cookies per session", function()
      local s = http.Session()
      assert(s:get(base .. "/cookie/set?v=abc"))
      assert.equal("session=abc", s:get(base .. "/cookie/get").body)
      s:close()
      local plain = http.Session {cookies = false}
      assert(plain:get(base .. "/cookie/set?v=abc"))
      assert.equal("", plain:get(base .. "/cookie/get").body)
      plain:close()
    end)

    it("closes with <close>, failing requests in flight with ECLOSED", function()
      local task
      do
        local s <close> = http.Session()
        task = corio.spawn(function() return s:get(base .. "/slow?s=2") end)
        corio.sleep(0.1)
      end
      local r, msg, code = task:await()
      assert.is_nil(r)
      assert.equal("ECLOSED", code)
      assert.matches("GET .*/slow%?s=2: the session was closed", msg)
      local s = http.Session()
      s:close()
      assert.has_error(function() s:get(base .. "/hello") end,
                       "http.request: the session is closed")
    end)
  end)

  describe("timeouts", function()
    it("total: a number is the whole request's limit", function()
      local t0 = corio.now()
      local r, msg, code = http.get(base .. "/slow?s=2", {timeout = 0.3})
      assert.is_nil(r)
      assert.equal("ETIMEDOUT", code)
      assert.matches("^GET http://127%.0%.0%.1:%d+/slow%?s=2: .*timed out", msg)
      assert.is_true(corio.now() - t0 < 1.5)
    end)

    it("idle: no byte for that long, even mid-body", function()
      local r, msg, code = http.get(base .. "/stall?s=2", {timeout = {idle = 0.3}})
      assert.is_nil(r)
      assert.equal("ETIMEDOUT", code)
      assert.matches("no data received for 0.3 seconds %(idle timeout%)", msg)
      -- a slow but steady response is not idle: 10 chunks 0.1 s apart under idle = 0.3
      local ok = assert(http.get(base .. "/drip?n=10&s=0.1", {timeout = {idle = 0.3}}))
      assert.equal(10240, #ok.body)
    end)

    it("connect: a listener that never accepts", function()
      local full = hs.server("--full-backlog")
      local t0 = corio.now()
      local r, msg, code = http.get("http://127.0.0.1:" .. full.port .. "/",
                                    {timeout = {connect = 0.3, total = 5}})
      full.stop()
      assert.is_nil(r)
      assert.equal("ETIMEDOUT", code)
      -- curl words it "Connection timeout after" or "Failed to connect ... Timeout was reached"
      assert.matches("^GET http://127%.0%.0%.1:%d+/: .*[Tt]imeout", msg)
      assert.is_true(corio.now() - t0 < 2)
    end)
  end)

  describe("cancellation", function()
    it("aborts the transfer at once and frees its connection", function()
      local s = http.Session()
      local t = corio.spawn(function() return s:get(base .. "/slow?s=3") end)
      corio.sleep(0.1)
      assert.equal(1, s:stats().active)
      assert.equal(1, s:stats().sockets)
      local t0 = corio.now()
      t:cancel()
      local ok, e = pcall(t.await, t)
      assert.is_false(ok)
      assert.is_true(corio.is_cancelled(e))
      assert.is_true(corio.now() - t0 < 0.5)
      support.settle()
      assert.equal(0, s:stats().active)
      assert.equal(0, s:stats().sockets)
      s:close()
    end)

    it("wait_for expiring mid-body aborts it", function()
      local s = http.Session()
      local ok, e = pcall(corio.wait_for, function()
        return s:get(base .. "/drip?n=100&s=0.02")
      end, 0.3)
      assert.is_false(ok)
      assert.is_true(corio.is_timeout(e))
      support.settle()
      assert.equal(0, s:stats().active)
      assert.equal(0, s:stats().sockets)
      -- the pool still works afterwards
      assert.equal("hello", s:get(base .. "/hello").body)
      s:close()
    end)

    it("cancelling a task reading a stream aborts the stream", function()
      local s = http.Session()
      local t = corio.spawn(function()
        local r = assert(s:get(base .. "/drip?n=100&s=0.02", {stream = true}))
        for _ in r:chunks() do end
      end)
      corio.sleep(0.2)
      assert.equal(1, s:stats().active)
      t:cancel()
      assert.is_false(pcall(t.await, t))
      support.settle()
      assert.equal(0, s:stats().active)
      assert.equal(0, s:stats().sockets)
      s:close()
    end)

    it("cancelling after completion changes nothing", function()
      local t = corio.spawn(function() return http.get(base .. "/hello").body end)
      assert.equal("hello", t:await())
      assert.is_false(t:cancel())
      assert.equal("hello", t:result())
    end)

    it("an error raised after a request leaves the pool usable", function()
      local s = http.Session()
      local t = corio.spawn(function()
        local r = assert(s:get(base .. "/hello", {stream = true}))
        error({reason = "handler failed", status = r.status})
      end)
      local ok, e = pcall(t.await, t)
      assert.is_false(ok)
      assert.same({reason = "handler failed", status = 200}, e)
      collectgarbage()
      collectgarbage()
      assert.equal("hello", assert(s:get(base .. "/hello")).body)
      assert.equal(0, s:stats().active)
      s:close()
    end)

    it("leaves nothing behind after many cancelled requests", function()
      local s = http.Session()
      local tasks = {}
      for i = 1, 20 do tasks[i] = corio.spawn(function() return s:get(base .. "/slow?s=1") end) end
      corio.sleep(0.1)
      for _, t in ipairs(tasks) do t:cancel() end
      corio.wait(tasks)
      support.settle()
      assert.same({active = 0, sockets = 0, connects = s:stats().connects, requests = 20},
                  s:stats())
      s:close()
    end)
  end)

  describe("errors", function()
    local function fails(code, pattern, ...)
      local r, msg, c = ...
      assert.is_nil(r)
      assert.equal(code, c)
      assert.matches(pattern, msg)
    end

    it("ECONNREFUSED", function()
      fails("ECONNREFUSED", "^GET http://127%.0%.0%.1:1/x: Connection refused",
            http.get("http://127.0.0.1:1/x"))
    end)

    it("ECONNREFUSED after a server restart says refused, not the earlier reset", function()
      local gone = hs.server()
      local s = http.Session()
      assert.equal("hello", s:get(gone.base .. "/hello").body)
      -- the server resets the pooled connection and exits: curl retries on a fresh
      -- connection, which is refused
      local r, msg, code = s:get(gone.base .. "/reset?exit=1")
      s:close()
      gone.stop()
      assert.is_nil(r)
      assert.equal("ECONNREFUSED", code)
      assert.matches("^GET http://127%.0%.0%.1:%d+/reset%?exit=1: Connection refused %(", msg)
      assert.not_matches("reset by peer", msg)
    end)

    it("EDNS (a name the resolver rejects without asking the network)", function()
      local host = ("a"):rep(64) .. ".example"
      fails("EDNS", "^GET http://" .. host .. "/: Could not resolve host",
            http.get("http://" .. host .. "/"))
    end)

    it("EREDIRECTS", function()
      fails("EREDIRECTS", "Maximum %(3%) redirects followed",
            http.get(base .. "/loop", {max_redirects = 3}))
    end)

    it("ECONNRESET: closed without an answer, or mid-body", function()
      fails("ECONNRESET", "/reset: Empty reply from server", http.get(base .. "/reset"))
      fails("ECONNRESET", "/partial: transfer closed with 90 bytes remaining",
            http.get(base .. "/partial"))
    end)

    it("EPROTO: not HTTP, or a broken encoding", function()
      fails("EPROTO", "/garbage: ", http.get(base .. "/garbage"))
      fails("EPROTO", "/badgzip: .*", http.get(base .. "/badgzip"))
    end)

    it("ETOOLARGE", function()
      fails("ETOOLARGE", "/large%?n=5000: ", http.get(base .. "/large?n=5000", {max_size = 1000}))
      -- chunked: no Content-Length to check up front
      fails("ETOOLARGE", "/chunked: the response body is larger than max_size %(10 bytes%)",
            http.get(base .. "/chunked", {max_size = 10}))
      local small = assert(http.get(base .. "/large?n=500", {max_size = 1000}))
      assert.equal(500, #small.body)
    end)

    it("EPROXY: an unresolvable proxy, a proxy refusing a tunnel", function()
      fails("EPROXY", "^GET http://127%.0%.0%.1:%d+/hello: Could not resolve proxy",
            http.get(base .. "/hello", {proxy = "http://" .. ("b"):rep(64) .. ".example"}))
      -- the test server answers CONNECT with 501
      fails("EPROXY", "^GET https://foo%.example/: CONNECT tunnel failed, response 501",
            http.get("https://foo.example/", {proxy = base}))
    end)

    it("EIO: the body file cannot be read", function()
      fails("EIO", "^POST .*/echo: reading the body file: Is a directory",
            http.post(base .. "/echo", {body_file = "/"}))
    end)

    it("raises on misuse", function()
      assert.has_error(function() http.get("not a url") end)
      assert.has_error(function() http.get("ftp://127.0.0.1/") end,
        'http.request: bad URL "ftp://127.0.0.1/": only http and https URLs are supported')
      assert.has_error(function() http.get("http://127.0.0.1/\r\nX: y") end)
      assert.has_error(function() http.get(base .. "/", {bogus = 1}) end,
        'http.request: unknown option "bogus" (accepted: allow_redirects, body, body_file, '
        .. 'ca_file, decompress, form, headers, http2, insecure, json, max_redirects, max_size, '
        .. 'method, proxy, query, stream, timeout, url)')
      assert.has_error(function() http.get(base .. "/", {timeout = -1}) end)
      assert.has_error(function() http.get(base .. "/", {timeout = {read = 1}}) end)
      assert.has_error(function() http.post(base .. "/", {body = 1}) end)
      assert.has_error(function() http.post(base .. "/", {body = "a", json = {}}) end)
      assert.has_error(function() http.request {method = "GE T", url = base} end)
      assert.has_error(function() http.post(base .. "/", {body_file = "/nonexistent/x"}) end)
      assert.has_error(function() http.Session {max_per_host = 0} end)
      assert.has_error(function() http.Session {nope = true} end)
    end)

    it("rejects header injection", function()
      local tag = new_tag()
      for _, v in ipairs {"a\r\nX-Evil: 1", "a\nb", "a\rb", "a\0b"} do
        assert.has_error(function()
          http.get(base .. "/echo", {headers = {["X-Stats-Tag"] = tag, ["X-Test"] = v}})
        end, "http.request: header X-Test: value contains CR, LF or NUL (header injection)")
      end
      for _, name in ipairs {"X Bad", "X:Bad", "X\r\nBad"} do
        assert.has_error(function()
          http.get(base .. "/echo", {headers = {["X-Stats-Tag"] = tag, [name] = "v"}})
        end, ("http.request: bad header name %q"):format(name))
      end
      assert.has_error(function() http.Session {headers = {A = "x\r\ny"}} end)
      assert.has_error(function() http.get(base .. "/echo", {query = {a = {}}, headers = {{}}}) end)
      -- nothing with the tag reached the server: the only request is the stats one
      local st = http.get(base .. "/stats", {headers = {["X-Stats-Tag"] = tag}}):json()
      assert.equal(1, st.requests)
    end)

    it("raises a clear error when libcurl cannot be loaded", function()
      local dir = os.tmpname()
      os.remove(dir)
      assert(os.execute("mkdir " .. dir .. " && : > " .. dir .. "/libcurl.so.4"))
      local p = assert(io.popen(("LD_LIBRARY_PATH=%s %s -e 'require \"corio.http\"' 2>&1"):format(
        dir, os.getenv("CORIO") or "build/corio")))
      local out = p:read("a")
      local ok = p:close()
      assert.is_falsy(ok)
      assert.matches("corio.http needs libcurl (libcurl.so.4, Debian package libcurl4): ", out, 1,
                     true)
      -- and the corio command itself does not need it
      local plain = assert(io.popen(("LD_LIBRARY_PATH=%s %s -e 'print(require \"corio\" ~= nil)'")
        :format(dir, os.getenv("CORIO") or "build/corio")))
      assert.equal("true\n", plain:read("a"))
      plain:close()
      os.execute("rm -rf " .. dir)
    end)

    it("raises where the caller cannot suspend", function()
      local ok, e = corio.run(function()
        return pcall(table.sort, {3, 1, 2}, function(a, b)
          http.get(base .. "/hello")
          return a < b
        end)
      end)
      assert.is_false(ok)
      assert.matches("http request", e)
    end)
  end)
end)
