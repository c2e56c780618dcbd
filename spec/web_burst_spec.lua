-- corio.web after a burst (issue 16): the handler-task pool and what 2,000 connections took
-- shrink back, and the server's resident memory, read from /proc, returns near its idle
-- figure without a request or a collectgarbage from anyone.
local corio = require "corio"
local json = require "corio.json"
local process = require "corio.process"
local support = require "support"
local tcp = require "corio._tcp"

local SERVER = [[
local corio = require "corio"
local web = require "corio.web"
local server
local app = web.Application()
app:get("/", function() corio.sleep(0.5) return ("x"):rep(1000) end)
app:get("/stats", function()
  local st = server:stats()
  return web.json {idle_tasks = st.idle_tasks, connections = st.connections,
                   tasks = #corio.all_tasks()}
end)
web.run_app(app, {port = 0, backlog = 4096, on_ready = function(s) server = s end})
]]

local corio_bin = os.getenv("CORIO") or "build/corio"

local function sanitized()
  -- ASan keeps freed memory in quarantine: resident memory does not come back
  return support.run("ldd " .. corio_bin):find("libasan") ~= nil
end

local function rss_kib(pid)
  local f = assert(io.open("/proc/" .. pid .. "/status"))
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

local function get(port, path)
  local c, err = tcp.connect("127.0.0.1", port)
  if not c then return nil, err end
  c:write("GET " .. path .. " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
  local got = {}
  for data in function() return c:read() end do got[#got + 1] = data end
  c:close()
  local s = table.concat(got)
  return s:match("^HTTP/1%.1 200") and s:match("\r\n\r\n(.*)$")
end

describe("corio.web after a 2,000-connection burst", function()
  it("ends the extra handler tasks and gives the memory back", function()
    if sanitized() then return end
    local path = support.script(SERVER)
    corio.run(function()
      local p <close> = assert(process.spawn {corio_bin, path, stdout = "pipe"})
      local line = corio.timeout(30, p.stdout.read_line, p.stdout)
      local port = tonumber(line and line:match(":(%d+)"))
      assert(port, tostring(line))
      local warm = {}  -- what serving leaves: a few handler tasks, buffers
      for i = 1, 20 do warm[i] = function() assert(get(port, "/")) end end
      corio.gather(warm)
      corio.sleep(1)
      local idle = rss_kib(p.pid)

      local peak, done = idle, false
      local sampler = corio.spawn(function()
        while not done do
          peak = math.max(peak, rss_kib(p.pid))
          corio.sleep(0.05)
        end
      end)
      local clients, ok = {}, 0
      for i = 1, 2000 do
        clients[i] = function() if get(port, "/") then ok = ok + 1 end end
      end
      corio.gather(clients)
      done = true
      sampler:await()
      assert.equal(2000, ok)
      local st = json.decode(assert(get(port, "/stats")))
      assert.is_true(st.idle_tasks > 100, "no pool left by the burst: " .. st.idle_tasks)

      -- the pool lets its unused tasks go within two sweeps (5 s each), then the memory
      local deadline = corio.now() + 30
      repeat
        corio.sleep(0.5)
        st = json.decode(assert(get(port, "/stats")))
      until st.idle_tasks == 0 or corio.now() > deadline
      assert.equal(0, st.idle_tasks)
      assert.is_true(st.tasks <= 4, st.tasks .. " tasks left")
      corio.sleep(1)
      local after = rss_kib(p.pid)
      local figures = ("idle %d KiB, peak %d KiB, after %d KiB"):format(idle, peak, after)
      assert.is_true(peak - idle > 4096, "the burst did not grow the server: " .. figures)
      -- near idle: at most a third of what the burst took is still resident
      assert.is_true(after - idle <= (peak - idle) / 3, figures)
      p:kill("TERM")
      corio.timeout(15, p.wait, p)
    end)
    os.remove(path)
  end)
end)
