-- corio.redis against a real redis-server (Debian's), started per test on a temporary socket.
local corio = require "corio"
local support = require "support"
local RS = require "redis_support"

if not RS.available() then
  describe("corio.redis", function()
    pending("redis-server is not installed")
  end)
  return
end

local redis = require "corio.redis"
local json = require "corio.json"

local function with_server(opts, fn)
  if fn == nil then fn, opts = opts, nil end
  return function()
    local srv = RS.start(opts)
    local ok, err = pcall(corio.run, fn, srv)
    srv:stop()
    if not ok then error(err, 0) end
  end
end

describe("corio.redis", function()
  after_each(support.assert_clean)

  it("returns every reply type as Lua values", with_server(function(srv)
    local r = assert(redis.connect{path = srv.path})
    assert.equal(redis.OK, r:call("SET", "s", "v"))
    assert.is_true(redis.is_status(r:call("PING")))
    assert.equal("PONG", tostring(r:call("PING")))
    assert.equal("v", r:call("GET", "s"))
    assert.is_nil(r:call("GET", "missing"))
    assert.equal(1, r:call("INCR", "n"))
    assert.equal("integer", math.type(r:call("INCR", "n")))
    assert.equal(9007199254740993, r:call("INCRBY", "big", 9007199254740993))
    local a = r:call("MGET", "s", "missing", "n")
    assert.same({"v", redis.null, "2"}, a)
    assert.same({}, r:call("LRANGE", "nolist", 0, -1))
    local nested = r:call("EVAL", "return {1, {2, {'x', {}}}, 'y'}", 0)
    assert.same({1, {2, {"x", {}}}, "y"}, nested)
    local v, msg, code = r:call("NOSUCHCOMMAND")
    assert.is_nil(v)
    assert.matches("^ERR unknown command", msg)
    assert.equal("EREDIS", code)
    v, msg, code = r:call("INCR", "s")
    assert.is_nil(v); assert.equal("EREDIS", code); assert.matches("not an integer", msg)
    -- binary-safe, and big enough to arrive in many reads
    local big = string.rep("\0\r\n", 400000)
    assert.equal(redis.OK, r:call("SET", "big", big))
    assert.equal(big, r:call("GET", "big"))
    r:call("DEL", "l")
    for i = 1, 20 do r:call("RPUSH", "l", string.rep("x", 10000) .. i) end
    local l = r:call("LRANGE", "l", 0, -1)
    assert.equal(20, #l)
    assert.equal(string.rep("x", 10000) .. "20", l[20])
    r:close()
  end))

  it("closes a client whose reader has a reply waiting, without a lost task error",
     with_server(function(srv)
    -- The reader was woken by data when close() aborted the stream: it must stop, not read a
    -- closed stream (seen in examples/redis_workers.lua's connect-and-close probe).
    for _ = 1, 50 do
      local r = assert(redis.connect{path = srv.path})
      local callers = {}
      for i = 1, 5 do callers[i] = corio.spawn(function() return r:call("PING") end) end
      for _ = 1, math.random(0, 3) do corio.sleep(0) end
      r:close()
      corio.gather(callers, {return_errors = true})
    end
  end))

  it("fails a connection clearly", function()
    corio.run(function()
      local r, msg, code = redis.connect{path = "/nonexistent/redis.sock", timeout = 1}
      assert.is_nil(r)
      assert.is_string(msg)
      assert.equal("ENOENT", code)
    end)
  end)

  it("pipelines 1,000 concurrent callers in order", with_server(function(srv)
    local r = assert(redis.connect{path = srv.path})
    local tasks = {}
    for i = 1, 1000 do
      tasks[i] = corio.spawn(function()
        assert.equal(redis.OK, r:call("SET", "k" .. i, i))
        assert.equal(i + 1, r:call("INCR", "k" .. i))
        return r:call("GET", "k" .. i)
      end)
    end
    local res = corio.gather(tasks)
    for i = 1, 1000 do assert.equal(tostring(i + 1), res[i]) end
    local p = r:pipeline(function(pl)
      pl:call("SET", "a", 1); pl:call("INCR", "a"); pl:call("BAD")
    end)
    assert.equal(redis.OK, p[1]); assert.equal(2, p[2]); assert.is_true(redis.is_error(p[3]))
    local tx = r:multi(function(t) t:call("INCR", "a"); t:call("INCR", "a") end)
    assert.same({3, 4}, tx)
    local no, msg, code = r:multi(function(t) t:call("INCR") end)
    assert.is_nil(no); assert.equal("EREDIS", code); assert.matches("EXECABORT", msg)
    r:close()
  end))

  it("drops the reply of a cancelled call and keeps the others in order", with_server(function(srv)
    local r = assert(redis.connect{path = srv.path})
    r:call("SET", "x", "1")
    for _ = 1, 20 do
      local t = corio.spawn(function() return r:call("BLPOP", "nothing", 0.05) end)
      corio.sleep(0)
      t:cancel()
      assert.equal("1", r:call("GET", "x"))  -- queued behind the cancelled call
    end
    assert.has_error(function()
      corio.wait_for(function() return r:call("BLPOP", "nothing", 0.2) end, 0.02)
    end)
    assert.equal("1", r:call("GET", "x"))
    assert.equal(0, r:pending())
    r:close()
  end))

  it("fails calls in flight when the server dies, then recovers and re-selects its db",
     with_server({appendonly = true}, function(srv)
    local r = assert(redis.connect{path = srv.path, db = 3, backoff_max = 0.1, timeout = 3})
    assert.equal(redis.OK, r:call("SET", "where", "db3"))
    local inflight = corio.spawn(function() return r:call("BLPOP", "nothing", 5) end)
    corio.sleep(0.05)
    srv:kill()
    local v, msg, code = inflight:await()
    assert.is_nil(v); assert.is_string(msg); assert.is_string(code)
    srv:restart()
    assert.equal("db3", r:call("GET", "where"))   -- waits for the reconnection
    assert.is_true(r.connects >= 2)
    r:close()
  end))

  it("delivers pub/sub and re-subscribes after a restart", with_server(function(srv)
    local r = assert(redis.connect{path = srv.path, backoff_max = 0.1})
    local sub = assert(r:subscribe("news"))
    local psub = assert(r:psubscribe("orders.*"))
    assert.equal(1, r:call("PUBLISH", "news", "hello"))
    r:call("PUBLISH", "orders.eu.created", "glob")
    assert.same({"news", "hello"}, {sub()})
    assert.same({"orders.eu.created", "glob", "orders.*"}, {psub()})
    srv:kill()
    srv:restart()
    -- wait for both connections to come back and re-subscribe
    local n = 0
    for _ = 1, 300 do
      n = r:call("PUBLISH", "news", "again")
      if n == 1 then break end
      corio.sleep(0.02)
    end
    assert.equal(1, n)
    assert.same({"news", "again"}, {sub()})
    sub:close()
    psub:close()
    assert.is_nil(sub())
    r:close()
  end))

  it("runs blocking commands on a pool without stalling the shared client",
     with_server(function(srv)
    local r = assert(redis.connect{path = srv.path})
    local pool = redis.pool{path = srv.path, size = 2}
    local waiter = corio.spawn(function() return pool:call("BLPOP", "work", 2) end)
    corio.sleep(0.02)
    local t0 = corio.now()
    assert.equal(1, r:call("RPUSH", "work", "item"))
    assert.same({"work", "item"}, waiter:await())
    assert.is_true(corio.now() - t0 < 0.5)
    pool:close()
    r:close()
  end))
end)

describe("corio.redis.queue", function()
  after_each(support.assert_clean)

  it("acks, retries, fails, reclaims and dead-letters", with_server(function(srv)
    local r = assert(redis.connect{path = srv.path})
    local q = assert(redis.queue(r, "jobs", {visibility = 0.2, max_attempts = 3}))
    for i = 1, 4 do assert.is_string(q:put({n = i, big = 1 << 62})) end
    assert.same({pending = 4, in_flight = 0, dead = 0, delayed = 0}, q:stats())
    local j1, j2, j3, j4 = q:get(), q:get(), q:get(), q:get()
    assert.equal(1 << 62, j1.value.big)
    assert.is_true(j1:ack())
    assert.has_error(function() j1:ack() end)
    assert.is_true(j2:fail("boom"))
    assert.is_true(j3:retry(0, "again"))
    -- j4 is abandoned: reclaimed after the visibility timeout
    local again = q:get()
    assert.equal(3, again.value.n); assert.equal(2, again.attempt); assert.equal("again", again.error)
    assert.is_true(again:retry(0.1, "later"))
    local s = q:stats()
    assert.equal(1, s.dead); assert.equal(1, s.delayed)
    local seen = {}
    for _ = 1, 2 do
      local j = q:get()
      seen[j.value.n] = j.attempt
      if j.value.n == 4 then j:ack() else assert.is_true(j:retry(0, "last")) end
    end
    assert.same({[3] = 3, [4] = 2}, seen)
    s = q:stats()
    assert.same({pending = 0, in_flight = 0, dead = 2, delayed = 0}, s)
    local dead = q:dead_letters()
    assert.equal("boom", dead[1].error); assert.equal(2, dead[1].value.n)
    assert.equal("last", dead[2].error); assert.equal(3, dead[2].attempt)
    q:close()
    r:close()
  end))

  it("loses no job when a consumer is SIGKILLed mid-job", with_server(function(srv)
    local r = assert(redis.connect{path = srv.path})
    local q = assert(redis.queue(r, "jobs", {visibility = 0.3}))
    assert(q:put("precious"))
    local script = support.script(([[
      local corio = require "corio"
      local redis = require "corio.redis"
      corio.run(function()
        local r = assert(redis.connect{path = %q})
        local q = assert(redis.queue(r, "jobs", {visibility = 0.3, consumer = "doomed"}))
        local job = q:get()
        io.stdout:write("took ", job.value, "\n"); io.stdout:flush()
        corio.sleep(60)
      end)
    ]]):format(srv.path))
    local corio_bin = os.getenv("CORIO") or "build/corio"
    local p = io.popen(corio_bin .. " " .. script .. " & echo $!")
    local pid = tonumber(p:read("l"))
    p:close()
    -- wait until the doomed consumer holds the job, then kill it
    for _ = 1, 300 do
      local st = q:stats()
      if st.in_flight == 1 then break end
      corio.sleep(0.02)
    end
    assert.equal(1, q:stats().in_flight)
    os.execute("kill -KILL " .. pid)
    local job = corio.wait_for(function() return q:get() end, 5)
    assert.equal("precious", job.value)
    assert.equal(2, job.attempt)
    assert.is_true(job:ack())
    os.remove(script)
    q:close()
    r:close()
  end))

  it("keeps acknowledged puts across a server crash with persistence on",
     with_server({appendonly = true}, function(srv)
    local r = assert(redis.connect{path = srv.path, backoff_max = 0.1})
    local q = assert(redis.queue(r, "jobs"))
    for i = 1, 100 do assert(q:put(i)) end
    srv:kill()
    srv:restart()
    assert.equal(100, corio.wait_for(function()
      while true do
        local s = q:stats()
        if s then return s.pending end
        corio.sleep(0.05)
      end
    end, 5))
    q:close()
    r:close()
  end))

  it("works jobs with a handler and concurrency", with_server(function(srv)
    local r = assert(redis.connect{path = srv.path})
    local q = assert(redis.queue(r, "work", {block = 0.05}))
    for i = 1, 200 do q:put(i) end
    local sum, n = 0, 0
    local w = corio.spawn(function()
      q:work(function(v)
        if v == 7 and n < 300 then n = n + 1000; error("flaky") end
        sum = sum + v
        n = n + 1
      end, {concurrency = 8})
    end)
    while n < 1200 do corio.sleep(0.01) end
    w:cancel()
    corio.sleep(0)
    assert.equal(200 * 201 // 2, sum)
    q:close()
    r:close()
  end))
end)

describe("corio.redis.bridge", function()
  after_each(support.assert_clean)

  it("forwards a burst through a bridge in batches, in order, echoing nothing",
     with_server(function(srv)
    local r = assert(redis.connect{path = srv.path})
    local a, b = corio.Bus(), corio.Bus()
    local ba = assert(redis.bridge(a, r, {patterns = {"n.#"}}))
    local bb = assert(redis.bridge(b, r, {patterns = {"n.#"}}))
    local sb = b:subscribe("n.#", {size = 5000})
    for i = 1, 3000 do a:publish("n.x", i) end   -- more than one batch (512) waits at once
    a:publish("other", 0)                          -- not bridged, never forwarded
    for i = 1, 3000 do
      local topic, m = corio.wait_for(function() return sb:get() end, 5)
      assert.equal("n.x", topic)
      assert.equal(i, m)
    end
    corio.sleep(0.1)
    assert.equal(0, sb:pending())
    assert.equal(3000, ba.forwarded); assert.equal(3000, bb.received)
    assert.equal(0, bb.forwarded); assert.equal(0, ba.received)
    ba:close(); bb:close(); sb:close()
    r:close()
  end))

  it("carries a Bus across bridges with word matching and no echo", with_server(function(srv)
    local r = assert(redis.connect{path = srv.path})
    local a, b = corio.Bus(), corio.Bus()
    local ba = assert(redis.bridge(a, r, {patterns = {"orders.*"}}))
    local bb = assert(redis.bridge(b, r, {patterns = {"orders.#"}}))
    local sa, sb = a:subscribe("#"), b:subscribe("#")
    a:publish("orders.created", {id = 1})
    b:publish("orders.eu.created", {id = 2})   -- b forwards it; a must not take it
    b:publish("orders.paid", "ok")
    a:publish("other.thing", 3)                -- not bridged
    assert.same({"orders.created", {id = 1}}, {sa:get()})
    assert.same({"other.thing", 3}, {sa:get()})
    assert.same({"orders.paid", "ok"}, {sa:get()})
    assert.same({"orders.eu.created", {id = 2}}, {sb:get()})
    assert.same({"orders.paid", "ok"}, {sb:get()})
    local topic, msg = sb:get()
    assert.equal("orders.created", topic); assert.equal(1, msg.id)
    corio.sleep(0.1)
    assert.equal(0, sa:pending()); assert.equal(0, sb:pending())
    assert.equal(1, ba.forwarded); assert.equal(1, ba.received)
    assert.equal(2, bb.forwarded); assert.equal(1, bb.received)
    ba:close(); bb:close(); sa:close(); sb:close()
    r:close()
  end))
end)

describe("corio._redis's reply reader", function()
  after_each(support.assert_clean)

  it("parses replies split at every byte", function()
    local C = require "corio._redis"
    local wire = "+OK\r\n:-42\r\n$3\r\na\0b\r\n$-1\r\n*-1\r\n*3\r\n*2\r\n:1\r\n$-1\r\n*0\r\n-ERR x\r\n" ..
                 "*2\r\n$1\r\nz\r\n+QUEUED\r\n"
    local c = C.conn()
    local got = {}
    for i = 1, #wire do
      for _, v in ipairs(assert(c:parse(wire:sub(i, i)))) do got[#got + 1] = v end
    end
    assert.equal(redis.OK, got[1]); assert.equal(-42, got[2]); assert.equal("a\0b", got[3])
    assert.same({{1, json.null}, {}, {message = "ERR x"}}, got[4])
    assert.same({"z", redis.status("QUEUED")}, got[5])
    local v, msg, code = C.conn():parse("?bad\r\n")
    assert.is_nil(v); assert.matches("protocol error", msg); assert.equal("EPROTO", code)
  end)
end)
