-- corio: asyncio for Lua. The scheduler, tasks and timers are C ("corio.core",
-- "corio._timer"); this module adds the composition on top of them: run, gather, wait_for,
-- timeout, wait, as_completed, shield, and attaches the messaging modules (queues, locks,
-- task groups, the bus).
--
-- The public table is this module's own: it takes corio.core's public names and leaves the
-- internals (_wait, _collect, _cancel_all, _stats, ...) behind, reachable only through
-- require "corio.core" by the modules and specs that need them.
local core = require "corio.core"
local timer = require "corio._timer"
local errors = require "corio.errors"

local M = {}
for k, v in pairs(core) do
  if k:sub(1, 1) ~= "_" then M[k] = v end
end
M.sleep = timer.sleep
M.now = timer.now

-- observability (scripts/corio/obs.lua, doc/observability.md)
local obs = require "corio.obs"
M.ps, M.pstree, M.top, M.stats, M.dump = obs.ps, obs.pstree, obs.top, obs.stats, obs.dump

-- corio.set_debug(on | {spawn_tracebacks =, times =, slow =, max_slice =}): `on` (a boolean)
-- keeps a full traceback of every spawn site; `times` measures each task's run time (corio.ps's
-- run and max); `slow` and `max_slice` (seconds, false for off) drive the stall watchdog.
M.SliceExceeded = errors.class("corio.SliceExceeded",
                               "the task ran for more than max_slice without suspending")
local watchdog = {slow = 0, max_slice = 0}
function M.set_debug(opts)
  if type(opts) ~= "table" then return core._set_debug(opts) end
  if opts.spawn_tracebacks ~= nil then core._set_debug(opts.spawn_tracebacks) end
  if opts.times ~= nil then core._set_times(opts.times) end
  if opts.slow ~= nil or opts.max_slice ~= nil then
    if opts.slow ~= nil then watchdog.slow = opts.slow or 0 end
    if opts.max_slice ~= nil then watchdog.max_slice = opts.max_slice or 0 end
    core._set_watchdog(watchdog.slow, watchdog.max_slice)
  end
end
do -- CORIO_DEBUG=slow=0.1,max_slice=2 in the environment
  local env = os.getenv("CORIO_DEBUG") or ""
  local slow = tonumber(env:match("slow=([%d.]+)"))
  local max = tonumber(env:match("max_slice=([%d.]+)"))
  if slow or max then M.set_debug {slow = slow, max_slice = max} end
end
M._VERSION = "corio 0.1.0"

local spawn, _wait, _collect = core.spawn, core._wait, core._collect
local is_cancelled, is_timeout = core.is_cancelled, core.is_timeout
local pack, unpack, select, type, error, pcall = table.pack, table.unpack, select, type, error, pcall
local getmetatable = getmetatable

local is_task = core.is_task

-- A task, or a function (plus arguments) spawned as one.
local function as_task(v, what)
  if is_task(v) then return v end
  local tv = type(v)
  if tv == "function" or (tv == "table" and getmetatable(v) and getmetatable(v).__call) then
    return spawn(v)
  end
  error(("%s: expected a task or a function, got %s"):format(what, tv), 3)
end

-- corio.run(fn, ...) -> fn's results, like asyncio.run: runs fn as a task, waits for it, then
-- cancels the tasks it left running — only its own: those its task started, and theirs, never
-- a server's handlers or another background task's children — and waits while their cleanup
-- runs. Errors are raised. Called from inside a task, it simply awaits a new task.
function M.run(fn, ...)
  if type(fn) ~= "function" then
    error(("run: expected a function, got %s"):format(type(fn)), 2)
  end
  local top = not M.current_task()
  local task = spawn(fn, ...)
  if top then core._set_scope(task) end
  local r = pack(pcall(task.await, task))
  if top then
    local n, left = core._cancel_all(task.id)
    if n > 0 then _wait(left, n, false) end  -- each wakes with corio.Cancelled and finishes
  end
  if not r[1] then core._reraise(r[2], task) end  -- error(r[2], 0), keeping task's traceback
  return unpack(r, 2, r.n)
end

-- Split gather's arguments: tasks/functions, then an optional options table. A single plain
-- table whose [1] is set is the list itself.
local function gather_args(...)
  local n = select("#", ...)
  local last = n > 0 and select(n, ...) or nil
  local opts
  if type(last) == "table" and getmetatable(last) == nil and last[1] == nil then
    opts, n = last, n - 1
  end
  local list
  if n == 1 then
    local first = ...
    if type(first) == "table" and getmetatable(first) == nil then list = first end
  end
  if not list then list = pack(...); list.n = nil; for i = n + 1, #list do list[i] = nil end end
  return list, opts or {}
end

-- corio.gather(aw1, aw2, ... [, {return_errors = true, concurrency = n}]) -> results[, errors]
-- corio.gather(list [, opts])
-- Runs functions as tasks (tasks are taken as they are) and waits for all of them. `results`
-- is a list in argument order holding each one's first return value (results.n is the count;
-- use task:await() for several values). The first error raised by a child is raised at once
-- (the others keep running, as in asyncio). With return_errors, errors are kept in place in
-- `results` and also in `errors[i]`. Cancelling the gathering task cancels every child.
-- `concurrency = n` starts at most n of the functions at a time.
function M.gather(...)
  local list, opts = gather_args(...)
  local n = #list
  local tasks = {}
  local return_errors = opts.return_errors and true or false
  if opts.concurrency then
    return M.map(function(aw)
      return as_task(aw, "gather"):await()
    end, list, {concurrency = opts.concurrency, return_errors = return_errors})
  end
  for i = 1, n do tasks[i] = as_task(list[i], "gather") end
  local ok, failed = pcall(_wait, tasks, n, not return_errors)
  if not ok then
    for i = 1, n do tasks[i]:cancel() end
    error(failed, 0)
  end
  if failed then
    local t = tasks[failed]
    return error(t:error(), 0)
  end
  return _collect(tasks, return_errors)
end

-- Cancel the tasks and wait until every one has finished (a cancellation of the caller
-- meanwhile is held back and raised at the end: no child outlives the call).
local function cancel_and_drain(tasks)
  for _, t in ipairs(tasks) do t:cancel() end
  local held
  while true do
    local ok, err = pcall(_wait, tasks, #tasks, false)
    if ok then break end
    if not is_cancelled(err) then error(err, 0) end
    held = held or err
  end
  for _, t in ipairs(tasks) do
    if not t:cancelled() then t:error() end  -- siblings' failures are part of this one
  end
  return held
end

-- corio.map(fn, items [, {concurrency = n, return_errors = bool, thread = bool}])
--   -> results[, errors]
-- Calls fn(item, i) for every item of the list in tasks, at most `concurrency` at once
-- (default: all), and returns the results in the order of the items (results.n = #items).
-- With thread = true each call runs on a worker thread (corio.thread.map).
-- The first error cancels the calls still running, waits for them, and is raised; with
-- return_errors, errors are kept in place in results and in errors[i] instead. Cancelling
-- the caller cancels every call in flight.
function M.map(fn, items, opts)
  if type(opts) == "table" and opts.thread then
    -- every call computed on a worker of corio.thread's pool (fn must be sendable)
    return require("corio.thread").map(fn, items, opts)
  end
  if type(fn) ~= "function" and not (getmetatable(fn) and getmetatable(fn).__call) then
    error(("map: expected a function, got %s"):format(type(fn)), 2)
  end
  if type(items) ~= "table" then
    error(("map: expected a list of items, got %s"):format(type(items)), 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error(("map: options must be a table, got %s"):format(type(opts)), 2)
  end
  opts = opts or {}
  local n = #items
  local limit = opts.concurrency or math.max(n, 1)
  if (math.type(limit) ~= "integer" or limit < 1) and limit ~= math.huge then
    error(("map: concurrency must be a positive integer, got %s"):format(tostring(limit)), 2)
  end
  local return_errors = opts.return_errors and true or false
  local results, errors = {n = n}, {}
  local next_index = 0
  local function worker()
    while true do
      next_index = next_index + 1
      local i = next_index
      if i > n then return end
      if return_errors then
        local ok, v = pcall(fn, items[i], i)
        if ok then
          results[i] = v
        elseif is_cancelled(v) then
          error(v, 0)
        else
          results[i], errors[i] = v, v
        end
      else
        results[i] = fn(items[i], i)  -- an error fails this worker, with its traceback
      end
    end
  end
  local workers = {}
  for w = 1, math.min(limit, n) do workers[w] = spawn(worker) end
  local ok, failed = pcall(_wait, workers, #workers, not return_errors)
  if not ok or failed then
    local first = ok and workers[failed]:error()
    cancel_and_drain(workers)
    if not ok then error(failed, 0) end
    error(first, 0)
  end
  return results, errors
end

-- corio.timeout(seconds, fn, ...) -> fn's results
-- Runs fn(...) in the current task; when the time is up the task is cancelled at its
-- suspension point, the cancellation unwinds fn, and corio.Timeout is raised here.
function M.timeout(seconds, fn, ...)
  if type(seconds) ~= "number" then
    error(("timeout: seconds must be a number, got %s"):format(type(seconds)), 2)
  end
  if type(fn) ~= "function" then
    error(("timeout: expected a function, got %s"):format(type(fn)), 2)
  end
  local task = M.current_task()
  if not task then
    -- top-level code: run the body as a task so that it can be cancelled
    return M.run(M.timeout, seconds, fn, ...)
  end
  -- As asyncio's Timeout: the cancellation that comes out is ours only if, once our own
  -- request is withdrawn, no more are pending than on entry (a task that had caught an
  -- earlier cancel still gets Timeout; an outside cancel that came meanwhile wins).
  local entry = task:cancelling()
  local deadline = timer._deadline(seconds)
  local r = pack(pcall(fn, ...))
  local fired = deadline:stop()
  if fired then
    if task:uncancel() <= entry and (not r[1] and is_cancelled(r[2])) then
      error(errors.Timeout.new(("timed out after %g seconds"):format(seconds)), 0)
    end
  end
  if not r[1] then core._reraise(r[2], task) end  -- error(r[2], 0), keeping task's traceback
  return unpack(r, 2, r.n)
end

-- corio.wait_for(task_or_fn, seconds) -> results
-- Waits for a task (or runs a function) with a time limit: on expiry the work is cancelled
-- (and waited for) and corio.Timeout is raised; an error the task raised while it was being
-- cancelled comes out instead, and a value it returned anyway is returned. A limit of 0 or
-- less raises Timeout at once: a function is not started, a task not done is cancelled.
function M.wait_for(aw, seconds)
  if seconds ~= nil and type(seconds) ~= "number" then
    error(("wait_for: seconds must be a number, got %s"):format(type(seconds)), 2)
  end
  if is_task(aw) then
    if seconds == nil or aw:done() then return aw:await() end
    local r = pack(pcall(M.timeout, math.max(seconds, 0), aw.await, aw))
    if not r[1] and is_timeout(r[2]) then
      if not aw:done() then
        aw:cancel()
        pcall(_wait, {aw}, 1, false)
      end
      if not aw:cancelled() then return aw:await() end  -- its error, or its value
    end
    if not r[1] then error(r[2], 0) end
    return unpack(r, 2, r.n)
  end
  if type(aw) ~= "function" then
    error(("wait_for: expected a task or a function, got %s"):format(type(aw)), 2)
  end
  if seconds == nil then return aw() end
  if seconds <= 0 then
    error(errors.Timeout.new(("timed out after %g seconds"):format(seconds)), 2)
  end
  return M.timeout(seconds, aw)
end

-- corio.wait(tasks [, {return_when = "ALL_COMPLETED" | "FIRST_COMPLETED" | "FIRST_ERROR",
--                      timeout = seconds}]) -> done, pending
-- Waits without raising; `done` and `pending` are lists of the given tasks (functions are
-- spawned). On timeout it returns what is done so far; nothing is cancelled.
function M.wait(list, opts)
  if type(list) ~= "table" then error("wait: expected a list of tasks", 2) end
  opts = opts or {}
  local when = opts.return_when or "ALL_COMPLETED"
  local tasks = {}
  for i = 1, #list do tasks[i] = as_task(list[i], "wait") end
  local needed, stop
  if when == "ALL_COMPLETED" then needed, stop = #tasks, false
  elseif when == "FIRST_COMPLETED" then needed, stop = math.min(1, #tasks), false
  elseif when == "FIRST_ERROR" then needed, stop = #tasks, true
  else error(("wait: unknown return_when %q"):format(tostring(when)), 2) end
  if opts.timeout then
    local ok, err = pcall(M.timeout, opts.timeout, _wait, tasks, needed, stop)
    if not ok and not is_timeout(err) then error(err, 0) end
  else
    _wait(tasks, needed, stop)
  end
  local done, pending = {}, {}
  for _, t in ipairs(tasks) do
    local into = t:done() and done or pending
    into[#into + 1] = t
  end
  return done, pending
end

-- for task in corio.as_completed(tasks [, {timeout = s}]) do ... end
-- Yields the tasks in the order they finish (functions are spawned first).
function M.as_completed(list, opts)
  opts = opts or {}
  local tasks, seen = {}, {}
  for i = 1, #list do
    local t = as_task(list[i], "as_completed")
    if not seen[t] then           -- the same task twice is one task, yielded once
      seen[t] = true
      tasks[#tasks + 1] = t
    end
  end
  -- `finished` is a FIFO with explicit ends: slots below head are cleared, so its length
  -- operator would be meaningless.
  local finished, head, tail = {}, 1, 0
  local waiter
  for _, t in ipairs(tasks) do
    t:add_done_callback(function(done)
      tail = tail + 1
      finished[tail] = done
      if waiter and not waiter:done() then waiter:set_result() end
    end)
  end
  local deadline = opts.timeout and (M.now() + opts.timeout)
  local given = 0
  return function()
    if given == #tasks then return nil end
    while head > tail do
      waiter = M.Future()
      if deadline then
        local left = deadline - M.now()
        local ok, err = pcall(M.wait_for, function() return waiter:await() end, math.max(left, 0))
        if not ok then error(err, 0) end
      else
        waiter:await()
      end
    end
    local t = finished[head]
    finished[head] = nil
    head = head + 1
    given = given + 1
    return t
  end
end

-- corio.shield(task) -> Future that completes as the task does, but whose cancellation does
-- not reach the task (as asyncio.shield).
function M.shield(aw)
  local task = as_task(aw, "shield")
  if task:done() then return task end
  local outer = M.Future()
  task:add_done_callback(function(t)
    if outer:done() then
      if not t:cancelled() then t:error() end
      return
    end
    if t:cancelled() then
      outer:cancel()
    else
      local err = t:error()
      if err ~= nil then outer:set_error(err)
      else outer:set_result(t:result()) end
    end
  end)
  return outer
end

-- Messaging and structured concurrency live in their own modules (scripts/corio/*.lua); they
-- are built on corio.core alone and attached here.
for _, name in ipairs {"corio.queue", "corio.sync", "corio.group", "corio.bus"} do
  for k, v in pairs(require(name)) do
    if k:sub(1, 1) ~= "_" then M[k] = v end
  end
end

-- corio.stdin() -> a read stream on standard input (corio.net loads on first use).
function M.stdin() return require("corio.net").stdin() end

-- corio.thread (CPU work on a pool of threads) loads on first use: a script that never
-- touches it pays nothing for it.
setmetatable(M, {__index = function(_, k)
  if k == "thread" then
    local thread = require "corio.thread"
    rawset(M, "thread", thread)
    return thread
  end
end})

return M
