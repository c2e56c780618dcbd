-- web.run_app with workers: SIGHUP replaces the workers one by one while clients keep
-- sending requests (keep-alive and a new connection each), and not one request fails; the
-- supervisor shares one listening socket with its workers, so a retiring worker leaves what
-- waits in the accept queue to the others.
local corio = require "corio"
local process = require "corio.process"
local tcp = require "corio._tcp"

local SERVER = [[
local corio = require "corio"
local web = require "corio.web"
local process = require "corio.process"
local app = web.Application()
app:get("/", function()
  corio.sleep(0.005)  -- a request in flight when its worker is told to stop must finish
  return "pid " .. process.getpid()
end)
-- a broken deployment: while the file named by arg[2] exists, a new worker fails at start
if arg[2] and io.open(arg[2]) then error("broken deployment") end
web.run_app(app, {port = 0, workers = tonumber(arg[1]), grace = 10})
]]

local function script(text)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return path
end

-- The supervisor, its port (from its first line) and a way to read what it printed.
local function start(path, workers, flag)
  local p = assert(process.spawn {os.getenv("CORIO") or "build/corio", path, tostring(workers),
                                  flag, stdout = "pipe", stderr = "stdout", group = false})
  local lines = {}
  local first = corio.timeout(30, p.stdout.read_line, p.stdout)
  lines[1] = first
  local port = tonumber(first and first:match("http://127%.0%.0%.1:(%d+)"))
  assert(port, "no port in " .. tostring(first))
  local reader = corio.spawn(function()
    for line in p.stdout:lines() do lines[#lines + 1] = line end
  end)
  return p, port, lines, reader
end

-- Wait until a line of the supervisor's output after line `seen` contains `text`.
local function await_line(lines, seen, text)
  corio.timeout(60, function()
    while true do
      for i = seen + 1, #lines do
        if lines[i]:find(text, 1, true) then return end
      end
      corio.sleep(0.05)
    end
  end)
end

local function children(pid)
  local r = process.run {"pgrep", "-P", tostring(pid)}
  local list = {}
  for k in r.stdout:gmatch("%d+") do list[#list + 1] = k end
  table.sort(list)
  return list
end

-- One request on conn; -> pid that answered, keep (the server keeps the connection) | nil, why
local function request(conn)
  local ok, err = conn:write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
  if not ok then return nil, "write: " .. tostring(err) end
  local buf = ""
  while true do
    local e = buf:find("\r\n\r\n", 1, true)
    if e then
      local len = tonumber(buf:match("\r\n[Cc]ontent%-[Ll]ength: *(%d+)"))
      if #buf >= e + 3 + len then
        local status = buf:match("^HTTP/1%.1 (%d+)")
        if status ~= "200" then return nil, "status " .. tostring(status) end
        local close = buf:lower():find("\r\nconnection: close", 1, true)
        return buf:sub(e + 4, e + 3 + len):match("pid (%d+)"), not close
      end
    end
    local data, rerr = conn:read()
    if not data then return nil, "read: " .. tostring(rerr or "end of stream") end
    buf = buf .. data
  end
end

local function get_pid(port)
  local c = assert(tcp.connect("127.0.0.1", port))
  local pid = request(c)
  c:close()
  return pid
end

-- A client that sends requests until `stop.now`, on one keep-alive connection (reconnecting
-- when the server says Connection: close) or on a new connection each time.
local function client(port, keepalive, stop, stats)
  local conn
  while not stop.now do
    if not conn then conn = assert(tcp.connect("127.0.0.1", port)) end
    local pid, keep = request(conn)
    if pid then
      stats.ok = stats.ok + 1
      stats.pids[pid] = true
    else
      stats.failed = stats.failed + 1
      stats.why[#stats.why + 1] = keep
    end
    if not (pid and keep and keepalive) then
      conn:close()
      conn = nil
    end
  end
  if conn then conn:close() end
end

describe("run_app with workers", function()
  local path
  setup(function() path = script(SERVER) end)
  teardown(function() os.remove(path) end)

  it("replaces every worker on SIGHUP while clients keep sending, and drops no request",
     function()
    corio.run(function()
      local p, port, lines, reader = start(path, 2)
      local before = children(p.pid)
      assert.equal(2, #before)
      local stop, stats = {now = false}, {ok = 0, failed = 0, pids = {}, why = {}}
      local clients = {}
      for i = 1, 8 do clients[i] = corio.spawn(client, port, i % 2 == 0, stop, stats) end
      corio.sleep(1)
      local reloads = 3
      for _ = 1, reloads do
        local seen = #lines
        assert(p:kill("HUP"))
        await_line(lines, seen, "workers replaced")  -- the new workers serve
        corio.sleep(1)
      end
      stop.now = true
      corio.gather(clients)
      local after = children(p.pid)
      p:kill("TERM")
      corio.timeout(30, p.wait, p)
      reader:await()
      p:close()
      local out = table.concat(lines, "\n")
      assert.equal(0, stats.failed, table.concat(stats.why, "; ") .. "\n" .. out)
      assert.is_true(stats.ok > 100, "only " .. stats.ok .. " requests")
      assert.equal(reloads, select(2, out:gsub("2 of 2 workers replaced", "")), out)
      -- every old worker is gone; the new ones served too
      assert.equal(2, #after)
      for _, old in ipairs(before) do
        for _, new in ipairs(after) do assert.are_not.equal(old, new) end
      end
      for _, new in ipairs(after) do assert.is_true(stats.pids[new], new .. " served nothing") end
      assert.truthy(out:find("SIGTERM: stopping the workers", 1, true), out)
    end)
  end)

  it("keeps the old workers serving when the new ones do not start", function()
    corio.run(function()
      local flag = os.tmpname()  -- exists: the deployment is broken
      os.remove(flag)
      local p, port, lines, reader = start(path, 2, flag)
      local before = children(p.pid)
      local f = assert(io.open(flag, "w"))
      f:close()
      local seen = #lines
      assert(p:kill("HUP"))
      await_line(lines, seen, "workers replaced")
      local out = table.concat(lines, "\n", seen + 1)
      assert.truthy(out:find("did not start (it exited)", 1, true), out)
      assert.truthy(out:find("reload: 0 of 2 workers replaced", 1, true), out)
      assert.same(before, children(p.pid))
      assert.truthy(get_pid(port))
      os.remove(flag)  -- fixed: the next reload goes through
      seen = #lines
      assert(p:kill("HUP"))
      await_line(lines, seen, "workers replaced")
      out = table.concat(lines, "\n", seen + 1)
      assert.truthy(out:find("reload: 2 of 2 workers replaced", 1, true), out)
      local after = children(p.pid)
      assert.equal(2, #after)
      for _, old in ipairs(before) do
        for _, new in ipairs(after) do assert.are_not.equal(old, new) end
      end
      p:kill("TERM")
      corio.timeout(30, p.wait, p)
      reader:await()
      p:close()
    end)
  end)

  it("workers shut down when their supervisor is killed", function()
    corio.run(function()
      local p, port, _, reader = start(path, 2)
      local kids = children(p.pid)
      assert.equal(2, #kids)
      assert.truthy(get_pid(port))
      p:kill("KILL")
      p:wait()
      reader:await()
      p:close()
      local deadline = corio.now() + 20
      local function alive()
        local n = 0
        for _, k in ipairs(kids) do
          local st = io.open("/proc/" .. k .. "/stat")
          -- a zombie (state Z) has exited: who reaps an orphan is not ours to time
          if st then
            if not st:read("a"):match("^%d+ %b() Z") then n = n + 1 end
            st:close()
          end
        end
        return n
      end
      while alive() > 0 and corio.now() < deadline do corio.sleep(0.05) end
      assert.equal(0, alive())
    end)
  end)
end)
