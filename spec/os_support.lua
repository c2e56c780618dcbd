-- Shared by the corio.fs, corio.process and corio.signal specs: descriptor counting (every
-- spec ends with as many open descriptors as it started with) and /proc inspection.
local lfs = require "lfs"
local support = require "support"

local S = {}

function S.fd_count()
  local n = 0
  for name in lfs.dir("/proc/self/fd") do
    if name ~= "." and name ~= ".." then n = n + 1 end
  end
  return n - 1  -- the directory being listed
end

-- Install (with busted's before_each, after_each) the leak checks plus the descriptor count.
-- The loop opens some descriptors once, on first use, and keeps them: the inotify descriptor,
-- the signal pipe, the threadpool's wakeup. Open them before counting.
local warm = false
local function warm_up()
  if warm then return end
  warm = true
  local corio = require "corio"
  corio.run(function()
    local w = assert(require("corio.fs").watch("/tmp"))
    w:close()
    assert(require("corio.fs").read_file("/dev/null"))
    local s = require("corio.signal").watch{"USR2"}
    s:close()
    assert(require("corio.process").run{"true"})
  end)
  support.assert_clean()
end

function S.track_fds(before_each, after_each)
  local start
  before_each(function()
    warm_up()
    collectgarbage(); collectgarbage()
    start = S.fd_count()
  end)
  after_each(function()
    support.assert_clean()
    local now = S.fd_count()
    assert(now == start, ("descriptors: %d at the start, %d at the end"):format(start, now))
  end)
end

-- Is process `pid` alive (and not a zombie)?
function S.alive(pid)
  local f = io.open(("/proc/%d/stat"):format(pid))
  if not f then return false end
  local st = f:read("a")
  f:close()
  local state = st:match("%) (%a)")
  return state ~= nil and state ~= "Z"
end

-- Is `pid` a zombie?
function S.zombie(pid)
  local f = io.open(("/proc/%d/stat"):format(pid))
  if not f then return false end
  local st = f:read("a")
  f:close()
  return st:match("%) (%a)") == "Z"
end

-- The pids of the live processes whose command line contains `marker`.
function S.pids_with(marker)
  local out = {}
  for name in lfs.dir("/proc") do
    if name:match("^%d+$") then
      local f = io.open("/proc/" .. name .. "/cmdline")
      local cmd = f and f:read("a")
      if f then f:close() end
      if cmd and cmd:find(marker, 1, true) and S.alive(tonumber(name)) then
        out[#out + 1] = tonumber(name)
      end
    end
  end
  return out
end

-- A fresh temporary directory (removed by the caller with fs.remove(dir, true)).
function S.tmpdir()
  local p = os.tmpname()
  os.remove(p)
  assert(lfs.mkdir(p))
  return p
end

return S
