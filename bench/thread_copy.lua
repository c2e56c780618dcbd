-- Copy cost: a 1 MiB string and a 100,000-entry table, encoded and decoded as corio.thread
-- does (corio._thread._copy, one state) against the in-state baselines (a string copy, a
-- plain Lua deep copy), and end to end through a worker (thread.run). Prints MB/s.
local corio = require "corio"
local thread = require "corio.thread"
local C = require "corio._thread"
local REPS = tonumber(arg[1]) or 20

local s = ("0123456789abcdef"):rep(65536)  -- 1 MiB
local t = {}
for i = 1, 50000 do t[i] = i * 1.5 end
for i = 1, 50000 do t["k" .. i] = i end

local function deepcopy(v)
  if type(v) ~= "table" then return v end
  local r = {}
  for k, x in pairs(v) do r[deepcopy(k)] = deepcopy(x) end
  return r
end

local function median(f)
  local ts = {}
  for r = 1, REPS do
    local t0 = corio.now()
    f()
    ts[r] = corio.now() - t0
  end
  table.sort(ts)
  return ts[(REPS + 1) // 2]
end

local TABLE_BYTES = 100000 * 16  -- two 8-byte values an entry: a nominal size for MB/s
local rows = {}
local function row(name, bytes, secs, base)
  rows[#rows + 1] = ("%-34s %9.1f MB/s %8.3f ms%s"):format(name, bytes / secs / 1e6, secs * 1e3,
    base and ("  %.2fx the baseline's time"):format(secs / base) or "")
end

corio.run(function()
  local str_base = median(function() local _ = s .. "x" end)
  local str_copy = median(function() C._copy(s) end)
  local tbl_base = median(function() deepcopy(t) end)
  local tbl_copy = median(function() C._copy(t) end)
  local fn = function(x) return #x end
  thread.run(fn, "")
  local str_run = median(function() thread.run(fn, s) end)
  local tfn = function(x) return x end
  local tbl_run = median(function() thread.run(tfn, t) end)
  row("1 MiB string: s .. 'x' (baseline)", #s, str_base)
  row("1 MiB string: encode+decode", #s, str_copy, str_base)
  row("1 MiB string: thread.run one way", #s, str_run)
  row("100k table: Lua deep copy (baseline)", TABLE_BYTES, tbl_base)
  row("100k table: encode+decode", TABLE_BYTES, tbl_copy, tbl_base)
  row("100k table: thread.run both ways", 2 * TABLE_BYTES, tbl_run)
  for _, r in ipairs(rows) do print(r) end
end)
