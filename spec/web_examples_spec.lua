-- The examples run as real programs: the post's hello server answers curl after its
-- 1-second sleep, serves requests concurrently and exits 0 on SIGTERM.
local corio = require "corio"
local W = require "web_support"

local function free_port()
  local web = require "corio.web"
  local s = assert(web.Application():listen{port = 0})
  local port = s.port
  s:close()
  return port
end

local function start(script, port, extra)
  local corio_bin = os.getenv("CORIO") or "build/corio"
  local pidfile = os.tmpname()
  local log = os.tmpname()
  os.execute(("(%s %s %d %s >%s 2>&1 & echo $! >%s)"):format(corio_bin, script, port,
    extra or "", log, pidfile))
  local f = io.open(pidfile); local pid = f:read("n"); f:close()
  os.remove(pidfile)
  -- wait until it listens
  for _ = 1, 100 do
    local _, code = W.sh("curl -s -o /dev/null --max-time 0.1 http://127.0.0.1:" .. port .. "/nope")
    if code == 0 then break end
    corio.sleep(0.05)
  end
  return pid, log
end

local function stop(pid, log)
  os.execute("kill -TERM " .. pid .. " 2>/dev/null")
  -- wait for it to exit (kill -0 fails once it is gone)
  for _ = 1, 200 do
    if not os.execute("kill -0 " .. pid .. " 2>/dev/null") then break end
    corio.sleep(0.05)
  end
  local f = io.open(log); local s = f:read("a"); f:close()
  os.remove(log)
  return s
end

describe("examples", function()
  it("web_hello.lua answers curl with Hello, world! after a second, concurrently", function()
    corio.run(function()
      local port = free_port()
      local pid, log = start("examples/web_hello.lua", port)
      local t0 = corio.now()
      local results = corio.gather((function()
        local fns = {}
        for i = 1, 20 do
          fns[i] = function() return (W.curl("http://127.0.0.1:" .. port .. "/")) end
        end
        return fns
      end)())
      local elapsed = corio.now() - t0
      for i = 1, 20 do assert.equal("Hello, world!", results[i]) end
      assert.is_true(elapsed >= 1 and elapsed < 5, "took " .. elapsed)
      local out = stop(pid, log)
      assert.truthy(out:find("listening on http://127.0.0.1:" .. port, 1, true), out)
      assert.truthy(out:find("SIGTERM: shutting down", 1, true), out)
    end)
  end)

  it("finishes requests in flight when SIGTERM arrives, then exits 0", function()
    corio.run(function()
      local port = free_port()
      local pid, log = start("examples/web_hello.lua", port)
      local inflight = {}
      for i = 1, 5 do
        inflight[i] = corio.spawn(W.curl, "-w ' %{http_code}' http://127.0.0.1:" .. port .. "/")
      end
      corio.sleep(0.4)
      local status = W.sh("kill -TERM " .. pid .. "; wait_exit() { while kill -0 " .. pid
        .. " 2>/dev/null; do sleep 0.05; done; }; wait_exit; echo gone")
      assert.equal("gone\n", status)
      for i = 1, 5 do assert.equal("Hello, world! 200", inflight[i]:await()) end
      local out = stop(pid, log)
      assert.truthy(out:find("SIGTERM: shutting down", 1, true), out)
    end)
  end)

  it("closes everything at once on a second signal", function()
    corio.run(function()
      local port = free_port()
      local pid, log = start("examples/web_hello.lua", port)
      local inflight = corio.spawn(W.curl, "-w '%{http_code}' http://127.0.0.1:" .. port .. "/")
      corio.sleep(0.3)
      local t0 = corio.now()
      -- (a zombie counts as gone: who reaps it is not ours to time)
      W.sh("kill -TERM " .. pid .. "; sleep 0.1; kill -TERM " .. pid
        .. "; while [ -e /proc/" .. pid .. " ] && ! grep -q '^State:.*Z' /proc/" .. pid
        .. "/status; do sleep 0.05; done")
      local elapsed = corio.now() - t0
      assert.is_true(elapsed < 3,
        ("no prompt exit after the second signal (%.2f s)"):format(elapsed))
      assert.equal("000", inflight:await())  -- cut off: the answer would have come at 1 s
      local out = stop(pid, log)
      assert.truthy(out:find("SIGTERM again: closing every connection now", 1, true), out)
    end)
  end)

  it("lets workers finish their requests when Ctrl-C reaches the whole group", function()
    corio.run(function()
      local port = free_port()
      local pid, log = start("examples/web_hello.lua", port, "2")
      local inflight = {}
      for i = 1, 4 do
        inflight[i] = corio.spawn(W.curl, "-w ' %{http_code}' http://127.0.0.1:" .. port .. "/")
      end
      corio.sleep(0.3)
      -- SIGINT to the supervisor and its workers at once, as a terminal's Ctrl-C does
      W.sh("kill -INT " .. pid .. " $(pgrep -P " .. pid .. ")")
      for i = 1, 4 do assert.equal("Hello, world! 200", inflight[i]:await()) end
      local out = stop(pid, log)
      assert.truthy(out:find("SIGINT: stopping the workers", 1, true), out)
    end)
  end)

  it("runs workers sharing the port, restarts one that dies, stops them on SIGTERM", function()
    corio.run(function()
      local port = free_port()
      local pid, log = start("examples/web_hello.lua", port, "2")
      local function children()
        local out = W.sh("pgrep -P " .. pid)
        local list = {}
        for p in out:gmatch("%d+") do list[#list + 1] = p end
        return list
      end
      local kids = children()
      assert.equal(2, #kids)
      os.execute("kill -KILL " .. kids[1])
      local deadline = corio.now() + 5
      local now_kids
      repeat
        corio.sleep(0.1)
        now_kids = children()
      until (#now_kids == 2 and now_kids[1] ~= kids[1] and now_kids[2] ~= kids[1])
        or corio.now() > deadline
      assert.equal(2, #now_kids)
      assert.equal("Hello, world!", (W.curl("http://127.0.0.1:" .. port .. "/")))
      local out = stop(pid, log)
      assert.truthy(out:find("with 2 workers", 1, true), out)
      assert.truthy(out:find("exited (SIGKILL); restarting", 1, true), out)
      assert.equal(0, #children())
      for _, k in ipairs(now_kids) do
        assert.is_falsy(os.execute("kill -0 " .. k .. " 2>/dev/null"))
      end
    end)
  end)

  it("json_api.lua creates, reads and deletes users", function()
    corio.run(function()
      local port = free_port()
      local pid, log = start("examples/json_api.lua", port)
      local url = "http://127.0.0.1:" .. port
      local json = require "corio.json"
      local body = W.curl("-X POST -d '{\"name\": \"Ada\"}' " .. url .. "/users")
      assert.same({id = 1, name = "Ada", email = json.null}, json.decode(body))
      assert.equal("Ada", json.decode((W.curl(url .. "/users/1"))).name)
      local list = json.decode((W.curl(url .. "/users")))
      assert.equal(1, #list)
      assert.same({id = 1, name = "Ada", email = json.null}, list[1])
      local function code(args) return (W.curl("-o /dev/null -w '%{http_code}' " .. args)) end
      assert.equal("422", code("-X POST -d '{}' " .. url .. "/users"))
      assert.equal("400", code("-X POST -d '{' " .. url .. "/users"))
      assert.equal("204", code("-X DELETE " .. url .. "/users/1"))
      assert.equal("404", code(url .. "/users/1"))
      stop(pid, log)
    end)
  end)
end)
