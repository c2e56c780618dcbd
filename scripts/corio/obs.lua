-- corio.obs: what every task is doing. corio.ps, corio.pstree, corio.top, corio.stats and
-- corio.dump (attached to the corio table by corio.lua). The records come from C
-- (corio.core._ps, host/obs.c) and are built only when asked: a task that nobody looks at
-- costs nothing more.
local core = require "corio.core"
local timer = require "corio._timer"

local M = {}

local all_tasks, _ps = core.all_tasks, core._ps
local concat, sort, format = table.concat, table.sort, string.format
local type, ipairs, pairs = type, ipairs, pairs

-- corio.ps() -> list of records, oldest first: {id, name, state, reason, waited, waiting_for,
-- resumes, age, run, max, spawned_at, parent, children, where, task}
function M.ps()
  local recs = _ps(all_tasks())
  local by_id = {}
  for _, r in ipairs(recs) do
    r.children = {}
    by_id[r.id] = r
  end
  for _, r in ipairs(recs) do
    local p = r.parent and by_id[r.parent]
    if p then p.children[#p.children + 1] = r.id end
  end
  return recs
end

local function secs(s)
  if not s then return "" end
  if s < 1 then return format("%.0f ms", s * 1e3) end
  if s < 120 then return format("%.1f s", s) end
  return format("%dm%02ds", s // 60, s % 60 // 1)
end

local function label(r)
  local waited = r.waited and (", " .. secs(r.waited)) or ""
  local reason = r.reason ~= r.state and (" " .. r.reason) or ""
  return format("#%d %s [%s%s]%s", r.id, r.name, r.state, waited, reason)
end

-- The tasks a record waits for, as ids (a task or a list of them from gather).
local function awaited_ids(r)
  local w = r.waiting_for
  if w == nil then return {} end
  if core.is_task(w) then return {w.id} end
  local ids = {}
  for i, t in ipairs(w) do ids[i] = t.id end
  return ids
end

-- corio.pstree([records]) -> text: the live tasks as a tree of who awaits whom. A task that
-- nobody awaits is a root; under each task, the tasks it awaits. An await cycle (A awaits B
-- awaits A: a deadlock) is shown where it closes, and listed at the end.
function M.pstree(recs)
  recs = recs or M.ps()
  local by_id, awaited = {}, {}
  for _, r in ipairs(recs) do
    by_id[r.id] = r
    r._awaits = awaited_ids(r)
    for _, id in ipairs(r._awaits) do awaited[id] = true end
  end
  local lines, shown, cycles = {}, {}, {}
  local path, on_path = {}, {}
  local function walk(r, indent)
    lines[#lines + 1] = indent .. label(r)
    if shown[r.id] then
      if #r._awaits > 0 then lines[#lines] = lines[#lines] .. "  (shown above)" end
      return
    end
    shown[r.id] = true
    path[#path + 1], on_path[r.id] = r, true
    for _, id in ipairs(r._awaits) do
      local c = by_id[id]
      if c and on_path[id] then
        local names, start = {}, nil
        for i, p in ipairs(path) do
          if p.id == id then start = i end
          if start then names[#names + 1] = format("#%d %s", p.id, p.name) end
        end
        names[#names + 1] = format("#%d %s", c.id, c.name)
        local text = concat(names, " awaits ")
        cycles[#cycles + 1] = text
        lines[#lines + 1] = indent .. "  " .. "cycle: " .. text .. " (deadlock)"
      elseif c then
        walk(c, indent .. "  ")
      end
    end
    path[#path], on_path[r.id] = nil, nil
  end
  for _, r in ipairs(recs) do
    if not awaited[r.id] then walk(r, "") end
  end
  for _, r in ipairs(recs) do     -- what is left is in a cycle, or awaited only by one
    if not shown[r.id] then walk(r, "") end
  end
  if #cycles > 0 then
    lines[#lines + 1] = format("%d await cycle%s (deadlock): %s", #cycles,
                               #cycles == 1 and "" or "s", concat(cycles, "; "))
  end
  local text = concat(lines, "\n")
  return text, cycles
end

-- corio.top([seconds]) -> records of the tasks that ran in the next `seconds` (default 1),
-- busiest first, each with `cpu` (seconds run in the interval) [suspends]. Turns run-time
-- measurement on (corio.set_debug{times = true}) if it was off, for the interval only.
function M.top(seconds)
  seconds = seconds or 1
  local was = core._times()
  core._set_times(true)
  local before = {}
  for _, r in ipairs(_ps(all_tasks())) do before[r.id] = r.run or 0 end
  local ok, err = pcall(timer.sleep, seconds)
  core._set_times(was)
  if not ok then error(err, 0) end
  local out = {}
  for _, r in ipairs(M.ps()) do
    r.cpu = (r.run or 0) - (before[r.id] or 0)
    if r.cpu > 0 then out[#out + 1] = r end
  end
  sort(out, function(a, b) return a.cpu > b.cpu end)
  return out
end

-- corio.stats() -> {tasks_created, tasks_finished, tasks_alive, resumes, resumes_per_s,
-- ready, handles = {type = n}, lua_kb, lag = {p50, p99, max, n}}
local last_resumes, last_time
function M.stats(reset_lag)
  local s = core._loop_stats()
  local now = timer.now()
  if last_time and now > last_time then
    s.resumes_per_s = (s.resumes - last_resumes) / (now - last_time)
  end
  last_resumes, last_time = s.resumes, now
  s.lag = core._lag(reset_lag)
  return s
end

-- corio.dump([out]): write the task tree with wait reasons and durations to `out` (default
-- io.stderr), without stopping anything.
function M.dump(out)
  out = out or io.stderr
  local recs = M.ps()
  out:write(format("corio: %d live task%s\n", #recs, #recs == 1 and "" or "s"))
  if #recs > 0 then out:write(M.pstree(recs), "\n") end
  if out.flush then out:flush() end
end

return M
