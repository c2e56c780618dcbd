-- corio.http against corio.web in one process: the two halves of the HTTP stack together.
local corio = require "corio"
local support = require "support"
local web = require "corio.web"
local http = require "corio.http"
local json = require "corio.json"

describe("corio.http client against corio.web server", function()
  local server, base, accepted

  before_each(function()
    accepted = 0
    local app = web.Application()
    app:use(function(request, handler)
      local resp = handler(request)
      resp.headers = resp.headers or {}
      resp.headers["X-Seen"] = request.method
      return resp
    end)
    app:get("/hello/{name}", function(request) return "hello " .. request.params.name end)
    app:post("/echo", function(request)
      local doc = request:json()
      doc.echoed = true
      return web.json(doc, 201)
    end)
    app:get("/slow", function() corio.sleep(0.2) return "slow" end)
    app:get("/big", function() return web.Response{body = ("x"):rep(3 * 1024 * 1024)} end)
    app:get("/fail", function() error("handler bug") end)
    server = app:listen{host = "127.0.0.1", port = 0, error_log = function() end}
    base = ("http://127.0.0.1:%d"):format(server.port)
  end)

  after_each(function()
    server:close()
  end)

  it("gets, posts JSON with integers intact, and sees middleware headers", function()
    local session <close> = http.Session{base_url = base}
    local r = assert(session:get("/hello/world"))
    assert.equal(200, r.status)
    assert.equal("hello world", r:text())
    assert.equal("GET", r.headers["x-seen"])
    local p = assert(session:post("/echo", {json = {id = 9007199254740993, tags = {"a"}}}))
    assert.equal(201, p.status)
    local doc = p:json()
    assert.equal(9007199254740993, doc.id)
    assert.equal("integer", math.type(doc.id))
    assert.is_true(doc.echoed)
    assert.equal(404, assert(session:get("/nowhere")).status)
    local f = assert(session:get("/fail"))
    assert.equal(500, f.status)
    assert.not_matches("handler bug", f.body)
    assert.equal(3 * 1024 * 1024, #assert(session:get("/big")).body)
  end)

  it("runs 100 slow requests concurrently over a bounded, reused pool", function()
    local session <close> = http.Session{base_url = base, max_per_host = 10}
    local t0 = corio.now()
    local fs = {}
    for i = 1, 100 do fs[i] = function() return assert(session:get("/slow")).body end end
    local r = corio.gather(fs)
    local elapsed = corio.now() - t0
    for i = 1, 100 do assert.equal("slow", r[i]) end
    -- ten connections, each serving ten 0.2 s requests in turn: about 2 s, not 20
    assert.is_true(elapsed < 5, "took " .. elapsed)
    local st = session:stats()
    assert.is_true(st.connects <= 10, st.connects .. " connections opened")
    assert.equal(100, st.requests)
  end)

  it("cancelling a request mid-flight frees its connection and the server stays up", function()
    local session <close> = http.Session{base_url = base}
    local ok, e = pcall(corio.wait_for, function() return session:get("/slow") end, 0.05)
    assert.is_false(ok)
    assert.is_true(corio.is_timeout(e))
    assert.equal("hello again", assert(session:get("/hello/again")):text())
    assert.equal(0, session:stats().active)
    -- the handler of the cancelled request is the server's, not the client's: it runs on
    -- (wait_for's cleanup cancels only its own tasks) until it has answered
    corio.sleep(0.25)
  end)

  it("the JSON of both sides is corio.json", function()
    assert.equal(json, http.json)
    assert.equal(json, require("corio.json"))
  end)
end)
