-- Start and stop a real redis-server for the specs: a temporary directory holds its Unix
-- socket, its data and its log. No mocks.
local corio = require "corio"

local R = {}

local function sh(cmd)
  local p = io.popen(cmd)
  local out = p:read("a")
  p:close()
  return out
end

function R.available()
  return sh("command -v redis-server") ~= ""
end

local Server = {}
Server.__index = Server

-- R.start{appendonly = false} -> server {dir, path, pid}; server:stop() removes everything.
function R.start(opts)
  opts = opts or {}
  local dir = sh("mktemp -d /tmp/corio-redis-XXXXXX"):gsub("%s+$", "")
  local self = setmetatable({dir = dir, path = dir .. "/redis.sock", opts = opts}, Server)
  self:launch()
  return self
end

function Server:launch()
  local d = self.dir
  local args = ("--port 0 --unixsocket %s --unixsocketperm 700 --dir %s --save '' "
    .. "--daemonize yes --pidfile %s/redis.pid --logfile %s/redis.log"):format(self.path, d, d, d)
  if self.opts.appendonly then args = args .. " --appendonly yes --appendfsync always" end
  os.remove(d .. "/redis.pid")
  assert(os.execute("redis-server " .. args))
  for _ = 1, 500 do
    local f = io.open(d .. "/redis.pid")
    if f then
      self.pid = tonumber(f:read("l"))
      f:close()
      if self.pid and sh("test -S " .. self.path .. " && echo y") ~= "" then
        -- a connection proves it is listening
        return
      end
    end
    corio.sleep(0.01)
  end
  error("redis-server did not start: " .. sh("cat " .. d .. "/redis.log"))
end

local function gone(pid)
  return not os.execute("kill -0 " .. pid .. " 2>/dev/null")
end

-- server:kill([signal = "KILL"]): the server dies at once.
function Server:kill(sig)
  os.execute(("kill -%s %d 2>/dev/null"):format(sig or "KILL", self.pid))
  for _ = 1, 500 do
    if gone(self.pid) then break end
    corio.sleep(0.01)
  end
  os.remove(self.path)
end

function Server:restart() self:launch() end

function Server:stop()
  if self.pid and not gone(self.pid) then self:kill("TERM") end
  os.execute("rm -rf " .. self.dir)
end

return R
