-- corio.ps, pstree, top, stats, dump (issue 14: see what every task is doing).
local corio = require "corio"

-- the record of task t in corio.ps()
local function rec(t)
  for _, r in ipairs(corio.ps()) do
    if r.id == t.id then return r end
  end
end

-- spawn fn as a task named name
local function named(name, fn, ...)
  local t = corio.spawn(fn, ...)
  t.name = name
  return t
end

local function cancel_all(list)
  for _, t in ipairs(list) do t:cancel() end
  for _, t in ipairs(list) do pcall(t.await, t) end
end

describe("corio.ps", function()
  it("says what each kind of suspension waits on, with the object", function()
    corio.run(function()
      local q, lock, ev, sem = corio.Queue(), corio.Lock(), corio.Event(), corio.Semaphore(0)
      local full = corio.Queue(1)
      full:put_nowait(1)
      lock:acquire()
      local f = corio.Future()
      local sleeper = named("sleeper", corio.sleep, 0.5)
      local list = {
        sleeper,
        named("getter", function() q:get() end),
        named("putter", function() full:put(2) end),
        named("locker", function() lock:acquire() end),
        named("event", function() ev:wait() end),
        named("sem", function() sem:acquire() end),
        named("awaiter", function() sleeper:await() end),
        named("future", function() f:await() end),
        named("gatherer", function() corio.gather({sleeper, corio.spawn(corio.sleep, 0)}) end),
      }
      corio.sleep(0.02)
      local want = {
        sleeper = "sleep 0.50 s", getter = "Queue:get (0 items)",
        putter = "Queue:put (full: 1 item)",
        locker = "Lock:acquire", event = "Event:wait", sem = "Semaphore:acquire",
        awaiter = 'await task "sleeper"', future = 'await Future "Future-' .. f.id .. '"',
        gatherer = "gather 1/2 done",
      }
      for _, t in ipairs(list) do
        local r = rec(t)
        assert.equal(want[t.name], r.reason, t.name)
        assert.equal("waiting", r.state)
        assert.is_true(r.waited >= 0.01 and r.waited < 5, t.name)
        assert.equal(corio.current_task().id, r.parent)
        assert.truthy(r.spawned_at:find("obs_spec.lua:%d+"))
        assert.equal(1, r.resumes)
      end
      assert.equal(sleeper, rec(list[7]).waiting_for)
      assert.same({sleeper}, rec(list[9]).waiting_for)
      local me = rec(corio.current_task())
      assert.equal("running", me.state)
      assert.equal(#list, #me.children) -- not the gatherer's own child
      f:cancel()
      cancel_all(list)
    end)
  end)

  it("names a queue, a subscription and a task group, and points where at the caller", function()
    corio.run(function()
      local jobs = corio.Queue()
      jobs.name = "jobs"
      local lifo = corio.LifoQueue()
      local joined = corio.Queue()
      joined:put(1)
      joined:put(2)
      local bus = corio.Bus()
      local sub = bus:subscribe("orders.*")
      local list = {
        named("jobs", function() jobs:get() end),
        named("lifo", function() lifo:get() end),
        named("joiner", function() joined:join() end),
        named("sub", function() sub:get() end),
        named("group", function()
          corio.group(function(g) g:spawn(corio.sleep, 10); g:spawn(corio.sleep, 0) end)
        end),
      }
      corio.sleep(0.02)
      local want = {
        jobs = 'Queue:get (queue "jobs", 0 items)', lifo = "LifoQueue:get (0 items)",
        joiner = "Queue:join (2 unfinished)", sub = 'Subscription:get ("orders.*", 0 messages)',
        group = "TaskGroup (1/2 done)",
      }
      for _, t in ipairs(list) do
        local r = rec(t)
        assert.equal(want[t.name], r.reason, t.name)
        if t.name ~= "group" then assert.truthy(r.where:find("^await at .*obs_spec.lua:%d+$")) end
      end
      cancel_all(list)
      sub:close()
    end)
  end)

  it("counts resumes and, with set_debug{times = true}, run time", function()
    corio.run(function()
      corio.set_debug {times = true}
      local t = named("busy", function()
        for _ = 1, 3 do
          local x = 0
          for i = 1, 2e5 do x = x + i end
          corio.sleep(0)
        end
        corio.sleep(10)
      end)
      -- until it sleeps for good (a fixed 20 ms was not always enough on a loaded machine)
      local deadline = corio.now() + 5
      repeat corio.sleep(0.01) until rec(t).reason == "sleep 10.00 s" or corio.now() > deadline
      local r = rec(t)
      corio.set_debug {times = false}
      assert.equal(4, r.resumes)
      assert.is_true(r.run > 0 and r.max > 0 and r.max <= r.run)
      cancel_all {t}
    end)
  end)
end)

describe("corio.pstree", function()
  it("draws who awaits whom and explains an await cycle", function()
    corio.run(function()
      local a, b
      a = named("A", function() corio.sleep(0.01); b:await() end)
      b = named("B", function() corio.sleep(0.01); a:await() end)
      local c = named("C", function() a:await() end)
      corio.sleep(0.05)
      local text, cycles = corio.pstree()
      assert.equal(1, #cycles)
      assert.truthy(text:find("#" .. c.id .. " C %[waiting, %d+ ms%] await task \"A\""))
      assert.truthy(text:find("\n  #" .. a.id .. " A "))
      assert.truthy(text:find(("cycle: #%d A awaits #%d B awaits #%d A (deadlock)")
                              :format(a.id, b.id, a.id), 1, true))
      cancel_all {c, a, b}
    end)
  end)
end)

describe("corio.stats", function()
  it("counts tasks and handles and measures loop lag under a deliberate stall", function()
    corio.run(function()
      local before = corio.stats(true)
      local t = corio.spawn(corio.sleep, 0.01)
      local stall = corio.spawn(function()
        local t0 = os.clock()
        while os.clock() - t0 < 0.15 do end  -- holds the loop: the timer fires late
      end)
      corio.gather({t, stall})
      local s = corio.stats()
      assert.equal(before.tasks_created + 2, s.tasks_created)
      assert.equal(before.tasks_finished + 2, s.tasks_finished)
      assert.is_true(s.tasks_alive >= 1)
      assert.is_true(s.resumes >= before.resumes + 2)
      assert.is_number(s.resumes_per_s)
      assert.is_true(s.lua_kb > 0)
      assert.is_true(s.lag.n >= 1)
      assert.is_true(s.lag.max >= 0.1, s.lag.max)
      assert.is_true(s.lag.p99 <= s.lag.max and s.lag.p50 <= s.lag.p99)
      assert.is_table(s.handles)
    end)
  end)
end)

describe("corio.top", function()
  it("lists the tasks that ran in the interval, busiest first", function()
    corio.run(function()
      local spin = named("spin", function()
        while true do
          local t0 = os.clock()
          while os.clock() - t0 < 0.005 do end
          corio.sleep(0)
        end
      end)
      local idle = named("idle", corio.sleep, 10)
      corio.sleep(0.01)  -- idle has started and sleeps through the interval
      local top = corio.top(0.1)
      assert.equal("spin", top[1].name)
      assert.is_true(top[1].cpu > 0.02)
      for _, r in ipairs(top) do assert.are_not.equal("idle", r.name) end
      cancel_all {spin, idle}
    end)
  end)
end)

describe("corio.dump", function()
  it("writes the task tree to a file without stopping anything", function()
    corio.run(function()
      local t = named("napper", corio.sleep, 10)
      corio.sleep(0)
      local path = os.tmpname()
      local f = assert(io.open(path, "w"))
      corio.dump(f)
      f:close()
      local text = assert(io.open(path)):read("a")
      os.remove(path)
      assert.truthy(text:find("corio: %d+ live tasks"))
      assert.truthy(text:find("#" .. t.id .. " napper %[waiting, %d+ ms%] sleep 10.00 s"))
      assert.equal("waiting", t.state)
      cancel_all {t}
    end)
  end)
end)

describe("kill -USR1", function()
  it("makes the corio command write its task tree to stderr and carry on", function()
    local support = require "support"
    -- Files say when the script is ready for the signal and when it may end: on a loaded
    -- machine a fixed delay could send the signal before the command has started.
    local ready = os.tmpname()
    os.remove(ready)
    local script = support.script([[
      local corio = require "corio"
      corio.run(function()
        local t = corio.spawn(corio.sleep, 30)
        t.name = "napper"
        corio.sleep(0.3)
        io.open(arg[1], "w"):close()
        local deadline = corio.now() + 10
        local function done()
          local f = io.open(arg[1] .. ".done")
          if f then f:close() end
          return f ~= nil or corio.now() > deadline
        end
        repeat corio.sleep(0.05) until done()
        print("still running", t.state)
        t:cancel()
      end)
    ]])
    local bin = os.getenv("CORIO") or "build/corio"
    local out, err, code = support.run(("sh -c '%s %s %s & pid=$!; while [ ! -e %s ]; do "
                                        .. "sleep 0.05; done; kill -USR1 $pid; sleep 0.5; "
                                        .. "touch %s.done; wait $pid'")
                                       :format(bin, script, ready, ready, ready))
    os.remove(script)
    os.remove(ready)
    os.remove(ready .. ".done")
    assert.equal(0, code, err)
    assert.equal("still running\twaiting\n", out)
    assert.truthy(err:find("corio: 2 live tasks\n", 1, true), err)
    assert.truthy(err:find("#%d+ napper %[waiting, %d+ ms%] sleep 30.00 s"), err)
  end)

  it("is left to a script that watches SIGUSR1 itself: no dump", function()
    local support = require "support"
    local ready = os.tmpname()
    os.remove(ready)
    local script = support.script([[
      local corio = require "corio"
      local signal = require "corio.signal"
      corio.run(function()
        local w <close> = signal.watch{"USR1"}
        io.open(arg[1], "w"):close()  -- watching now
        print("got", w:next())
      end)
    ]])
    local bin = os.getenv("CORIO") or "build/corio"
    local out, err, code = support.run(("sh -c '%s %s %s & pid=$!; while [ ! -e %s ]; do "
                                        .. "sleep 0.05; done; kill -USR1 $pid; wait $pid'")
                                       :format(bin, script, ready, ready))
    os.remove(script)
    os.remove(ready)
    assert.equal(0, code, err)
    assert.equal("got\tUSR1\n", out)
    assert.equal("", err)
  end)
end)

describe("the stall watchdog", function()
  it("reports a task that runs too long, in Lua and stuck in a C call", function()
    local support = require "support"
    local script = support.script([[
      local corio = require "corio"
      corio.run(function()
        local spinner = corio.spawn(function()
          local t0 = os.clock()
          while os.clock() - t0 < 0.4 do end
        end)
        spinner.name = "spinner"
        local blocker = corio.spawn(function() os.execute("sleep 1") end)
        blocker.name = "blocker"
        corio.gather({spinner, blocker})
        print("served")
      end)
    ]])
    local out, err, code = support.run_corio(script, nil)
    assert.equal(0, code)
    assert.equal("", err) -- off unless asked
    out, err, code = support.run("CORIO_DEBUG=slow=0.1 " .. (os.getenv("CORIO") or "build/corio")
                                 .. " " .. script)
    os.remove(script)
    assert.equal(0, code, err)
    assert.equal("served\n", out)
    assert.truthy(err:find("corio: task 'spinner' has run for 0%.%d+ s without suspending " ..
                           "%(slow = 0%.100 s%):\nstack traceback:\n.-:5: in function"), err)
    assert.truthy(err:find("corio: task #%d+ has run for [%d.]+ s without suspending and is " ..
                           "stuck in a C function %(called at .-:8%)"), err)
  end)

  it("is turned on and off by set_debug{slow =}", function()
    corio.run(function()
      corio.set_debug {slow = 0.05}
      corio.sleep(0.01)
      corio.set_debug {slow = false}
    end)
  end)
end)

describe("set_debug{max_slice}", function()
  it("turns a CPU-bound web handler into a 503 while the server keeps serving", function()
    local web = require "corio.web"
    local W = require "web_support"
    corio.run(function()
      local app = web.Application()
      app:get("/spin", function() while true do end end)
      app:get("/hello", function() return "hello" end)
      local server = assert(app:listen {port = 0})
      local port = server.port
      corio.set_debug {max_slice = 0.2}
      local function get(path)
        local req = ("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"):format(path)
        return W.parse((W.raw(port, req)))[1]
      end
      local ok, err = pcall(function()
        local t0 = corio.now()
        local spin = get("/spin")
        assert.equal(503, spin.status)
        assert.is_true(corio.now() - t0 < 3)
        local hello = get("/hello")
        assert.equal(200, hello.status)
        assert.equal("hello", hello.body)
      end)
      corio.set_debug {max_slice = false}
      server:shutdown(1)
      if not ok then error(err, 0) end
    end)
  end)

  it("raises corio.SliceExceeded inside a runaway task", function()
    corio.run(function()
      corio.set_debug {max_slice = 0.1}
      local t = corio.spawn(function() while true do end end)
      local ok, err = pcall(t.await, t)
      corio.set_debug {max_slice = false}
      assert.is_false(ok)
      assert.equal(corio.SliceExceeded, getmetatable(err))
      assert.truthy(tostring(err):find("max_slice"))
    end)
  end)
end)

-- I/O waits name their object: the reason corio.ps shows, exactly, with the ports and pids of
-- the real sockets and processes (one case per binding: net, process, thread, http, web, fs,
-- signal, redis).
describe("corio.ps wait reasons of I/O", function()
  local net = require "corio.net"

  -- Wait (up to 5 s: the machine may be loaded) until task t's reason matches pattern.
  local function settled(t, pattern)
    local deadline = corio.now() + 5
    while not (rec(t) and rec(t).reason:find(pattern)) and corio.now() < deadline do
      corio.sleep(0.01)
    end
  end

  -- the reasons of the tasks in list, by name
  local function reasons(list)
    local out = {}
    for _, t in ipairs(list) do out[t.name] = rec(t).reason end
    return out
  end

  it("net: read, write, accept, connect, udp, a Unix socket, wait_closed", function()
    corio.run(function()
      local held = {}
      local srv = assert(net.serve(function(s) held[#held + 1] = s; s:read() end, {port = 0}))
      local c = assert(net.connect("127.0.0.1", srv.port))
      local reader = named("reader", function() c:read() end)
      -- a listener that never accepts, with a backlog of 0: one connection fits in its queue,
      -- the kernel drops the SYNs of the next ones, which stay in connect
      local C = require "corio._net"
      local full = assert(C.listen{host = "127.0.0.1", port = 0, backlog = 0})
      local connecting, made = {}, {}
      for i = 1, 3 do
        connecting[i] = named("connect" .. i, function()
          made[#made + 1] = net.connect("127.0.0.1", full.port)
        end)
      end
      local u = assert(net.udp{port = 0})
      local receiver = named("udp", function() u:recv() end)
      local path = os.tmpname()
      os.remove(path)
      local usrv = assert(net.serve(function(s) s:read() end, {path = path}))
      local uc = assert(net.connect_unix(path))
      local ureader = named("unix", function() uc:read() end)
      local closer = named("closer", function() srv:wait_closed() end)
      -- a peer that does not read: the writer waits once the kernel's buffers are full
      local stop = corio.Event()
      local sink = assert(net.serve(function() stop:wait() end, {port = 0}))
      local w = assert(net.connect("127.0.0.1", sink.port))
      local writer = named("writer", function() w:write(string.rep("x", 32 * 1024 * 1024)) end)
      corio.sleep(0.1)
      local got = reasons {reader, receiver, ureader, closer, writer}
      assert.equal("write tcp 127.0.0.1:" .. sink.port, got.writer)
      assert.equal("read tcp 127.0.0.1:" .. srv.port, got.reader)
      assert.equal("recv udp 127.0.0.1:" .. u.port, got.udp)
      assert.equal("read unix " .. path, got.unix)
      assert.equal("Server:wait_closed (0/2 done)", got.closer)
      -- the server side: the acceptor and the handler of c's connection
      local acceptor = rec(srv._acceptor)
      assert.equal("accept tcp 127.0.0.1:" .. srv.port, acceptor.reason)
      assert.equal("net.serve", acceptor.name)
      local handler = rec(srv._clients[held[1]])
      assert.equal("read tcp " .. c.sockname, handler.reason)
      local pending = 0
      for _, t in ipairs(connecting) do
        local r = rec(t)
        if r then
          assert.equal("connect tcp 127.0.0.1:" .. full.port, r.reason)
          pending = pending + 1
        end
      end
      assert.is_true(pending >= 1, "a connect to the full listener is pending")
      cancel_all {reader, receiver, ureader, closer, writer}
      cancel_all(connecting)
      for _, m in ipairs(made) do m:close() end
      srv:close(); srv:close_clients(); usrv:close(); usrv:close_clients()
      stop:set(); sink:close(); w:abort()
      c:close(); uc:close(); u:close(); full:close()
      srv:wait_closed(); usrv:wait_closed(); sink:wait_closed()
      os.remove(path)
    end)
  end)

  it("process: wait, and a read of its pipe", function()
    local process = require "corio.process"
    corio.run(function()
      local p = assert(process.spawn{"sleep", "30"})
      local q = assert(process.spawn{"sh", "-c", "sleep 30", stdout = "pipe"})
      local waiter = named("waiter", function() p:wait() end)
      local reader = named("reader", function() q.stdout:read() end)
      corio.sleep(0.05)
      local got = reasons {waiter, reader}
      assert.equal("process " .. p.pid .. " wait", got.waiter)
      assert.equal("read sh (pid " .. q.pid .. ") stdout", got.reader)
      cancel_all {waiter, reader}
      p:close()
      q:close()
    end)
  end)

  it("thread: a running job, a queued one, a Channel", function()
    local thread = require "corio.thread"
    corio.run(function()
      local pool <close> = thread.pool{size = 1}
      local line = debug.getinfo(1, "l").currentline + 1
      local function spin() while true do end end
      local running = named("running", function() pool:run(spin) end)
      settled(running, "running") -- it has reached the worker
      local queued = named("queued", function() pool:call("string", "rep", "x", 3) end)
      local ch = thread.Channel(4)
      local getter = named("getter", function() ch:get() end)
      corio.sleep(0.05)
      local got = reasons {running, queued, getter}
      local src = debug.getinfo(1, "S").short_src
      assert.equal(("thread.run %s:%d (running)"):format(src, line), got.running)
      assert.equal("thread.call string.rep (queued)", got.queued)
      assert.equal("thread.Channel:get (0 items)", got.getter)
      cancel_all {running, queued, getter}
      ch:close()
    end)
  end)

  it("web and http: a handler, the client's request, an idle handler task, a slow reader, "
     .. "bodies that do not come",
     function()
    local web = require "corio.web"
    local http = require "corio.http"
    local W = require "web_support"
    corio.run(function()
      local release = corio.Event()
      local handlers = {}
      local app = web.Application()
      app:get("/fast", function() return "ok" end)
      app:get("/slow", function(req)
        handlers.slow = corio.current_task()
        handlers.watch = req.disconnected  -- its watcher task waits for the client to go
        release:wait()
        return "done"
      end)
      app:get("/big", function(req)
        handlers.big = corio.current_task()
        local resp = web.StreamResponse()
        resp:prepare(req)
        local chunk = string.rep("x", 1024 * 1024)
        for _ = 1, 256 do resp:write(chunk) end
        return resp
      end)
      -- bodies that do not come: a handler reading one, another saving one to a file
      local saved = os.tmpname()
      app:post("/read", function(req)
        handlers.read = corio.current_task()
        return req:body()
      end)
      app:post("/save", function(req)
        handlers.save = corio.current_task()
        return tostring(req:save(saved))
      end)
      local server = assert(app:listen{port = 0})
      local base = "http://127.0.0.1:" .. server.port
      local client = named("client", function() return http.get(base .. "/slow") end)
      -- a client that sends its request and reads nothing: the stream writer waits
      local C = require "corio._tcp"
      local raw = assert(C.connect("127.0.0.1", server.port))
      assert(raw:write("GET /big HTTP/1.1\r\nHost: x\r\n\r\n"))
      local body = "Host: x\r\nContent-Length: 100\r\n\r\nabc"
      local reader = assert(net.connect("127.0.0.1", server.port))
      assert(reader:write("POST /read HTTP/1.1\r\n" .. body))
      local saver = assert(net.connect("127.0.0.1", server.port))
      assert(saver:write("POST /save HTTP/1.1\r\n" .. body))
      for _ = 1, 500 do
        if handlers.slow and handlers.big and handlers.read and handlers.save then break end
        corio.sleep(0.01)
      end
      settled(handlers.big, "^stream write")
      -- the others busy, /fast gets a new handler task, which then waits in the pool
      assert.equal("ok", assert(http.get(base .. "/fast")):text())
      corio.sleep(0.02)
      local idle
      for _, r in ipairs(corio.ps()) do
        if r.reason:find("^next request") then idle = r end
      end
      assert.equal("next request (server 127.0.0.1:" .. server.port .. ")", idle.reason)
      assert.equal("http GET " .. base .. "/slow", rec(client).reason)
      assert.equal("Event:wait", rec(handlers.slow).reason)
      assert.truthy(rec(handlers.slow).where:find("obs_spec.lua:%d+$"))
      local watcher
      for _, r in ipairs(corio.ps()) do
        if r.reason:find("^request.disconnected") then watcher = r end
      end
      assert.truthy(watcher.reason:find("^request.disconnected %(client 127.0.0.1:%d+%)$"),
                    watcher.reason)
      assert.truthy(rec(handlers.big).reason:find("^stream write %(client 127.0.0.1:%d+%)$"),
                    rec(handlers.big).reason)
      assert.equal("request body (client " .. reader.sockname .. ")", rec(handlers.read).reason)
      assert.equal("request body to " .. saved .. " (client " .. saver.sockname .. ")",
                   rec(handlers.save).reason)
      release:set()
      assert.equal("done", client:await():text())
      raw:close()
      reader:close()
      saver:close()
      server:shutdown(1)
      os.remove(saved)
    end)
  end)

  it("fs: a watch, and a whole-file read that blocks on a FIFO", function()
    local fs = require "corio.fs"
    corio.run(function()
      local dir = os.tmpname()
      os.remove(dir)
      assert(fs.mkdir(dir))
      local fifo = dir .. "/fifo"
      assert(os.execute("mkfifo " .. fifo))
      local w = assert(fs.watch(dir))
      local watcher = named("watcher", function() w:next() end)
      local reader = named("reader", function() return fs.read_file(fifo) end)
      corio.sleep(0.05)
      local got = reasons {watcher, reader}
      assert.equal("fs watch " .. dir, got.watcher)
      assert.equal("read_file " .. fifo, got.reader)
      -- a writer that opens and closes the FIFO ends the read (a thread-pool job cannot be
      -- cancelled while it runs)
      local f = assert(io.open(fifo, "w"))
      f:write("hi")
      f:close()
      assert.equal("hi", reader:await())
      cancel_all {watcher}
      w:close()
      assert(os.execute("rm -rf " .. dir))
    end)
  end)

  it("signal: a watch", function()
    local signal = require "corio.signal"
    corio.run(function()
      local w <close> = signal.watch{"HUP", "USR2"}
      local t = named("watch", function() w:next() end)
      corio.sleep(0.02)
      assert.equal("signal watch HUP, USR2", rec(t).reason)
      cancel_all {t}
    end)
  end)

  local RS = require "redis_support"
  if RS.available() then
    it("redis: a blocking command, the connection's reader and writer", function()
      local redis = require "corio.redis"
      local srv = RS.start()
      local ok, err = pcall(corio.run, function()
        local r = assert(redis.connect{path = srv.path})
        local popper = named("popper", function() return r:call("BLPOP", "nothing", 30) end)
        corio.sleep(0.1)
        assert.equal("redis BLPOP " .. srv.path, rec(popper).reason)
        local seen = {}
        for _, x in ipairs(corio.ps()) do seen[x.name] = x.reason end
        assert.equal("read unix " .. srv.path, seen["redis reader"])
        assert.equal("redis writer " .. srv.path, seen["redis writer"])
        cancel_all {popper}
        r:close()
      end)
      srv:stop()
      if not ok then error(err, 0) end
    end)
  else
    pending("redis: redis-server is not installed")
  end
end)

describe("examples/stall.lua", function()
  it("shows its deadlock in pstree, its hogs in the watchdog, its tasks on SIGUSR1", function()
    local support = require "support"
    local bin = os.getenv("CORIO") or "build/corio"
    local outf, errf = os.tmpname(), os.tmpname()
    -- its output goes to files the shell watches: once the lag line is out, the example waits
    -- 2 s for the signal
    local out, err, code = support.run(("sh -c 'CORIO_DEBUG=slow=0.1 %s examples/stall.lua "
      .. ">%s 2>%s & pid=$!; i=0; while ! grep -q \"loop lag\" %s && [ $i -lt 200 ]; do "
      .. "sleep 0.05; i=$((i+1)); done; kill -USR1 $pid; wait $pid; st=$?; cat %s; cat %s >&2; "
      .. "exit $st'"):format(bin, outf, errf, outf, outf, errf))
    os.remove(outf)
    os.remove(errf)
    assert.equal(0, code, err)
    assert.truthy(out:find('#%d+ worker %[waiting, %d+ ms%] Queue:get %(queue "jobs", 0 items%)'),
                  out)
    assert.truthy(out:find("#%d+ net.serve %[waiting, %d+ ms%] accept tcp 127.0.0.1:%d+"), out)
    assert.truthy(out:find("\n1 await cycle %(deadlock%): #%d+ config awaits #%d+ db awaits "
                           .. "#%d+ config\n1 deadlock%(s%)\n"), out)
    local lag = tonumber(out:match("loop lag while they ran: max ([%d.]+) s"))
    assert.is_true(lag >= 0.5, out)
    assert.truthy(out:find("\ndone\n$"), out)
    assert.truthy(err:find("corio: task 'report' has run for 0%.%d+ s without suspending "
                           .. "%(slow = 0%.100 s%):\nstack traceback:\n.-count_primes"), err)
    assert.truthy(err:find("corio: task #%d+ has run for [%d.]+ s without suspending and is "
                           .. "stuck in a C function %(called at examples/stall.lua:%d+%)"), err)
    assert.truthy(err:find("corio: task 'backup' has run for [%d.]+ s without suspending "
                           .. "%(slow = 0%.100 s%):\nstack traceback:\n\t%[C%]: in function "
                           .. "'os.execute'"), err)
    assert.truthy(err:find("corio: 6 live tasks\n", 1, true), err)
    assert.truthy(err:find("cycle: #%d+ config awaits #%d+ db awaits #%d+ config %(deadlock%)"),
                  err)
  end)
end)
