-- corio.thread: CPU work on every core without blocking the loop. Exports run, call, pool,
-- Channel, spawn, map, cores, default. The mechanism (threads, copying, waking) is C:
-- bindings/thread/; see doc/thread.md.
--
--   local thread = require "corio.thread"
--   local n = thread.run(function(a, b) return a * b end, 6, 7)  -- 42, computed on a worker
local C = require "corio._thread"
local corio = require "corio"

local type, error, select, pack, unpack, tostring = type, error, select, table.pack,
  table.unpack, tostring

local M = {}

-- thread.run(fn, ...) -> fn(...)'s results, computed on a worker of the default pool
-- [suspends]. fn's only upvalue may be _ENV; arguments and results are copied.
M.run = C.run

-- thread.call(module, name, ...) -> require(module)[name](...) on a worker  [suspends]
M.call = C.call

-- thread.Channel([capacity = 64]) -> a bounded queue shared by tasks and workers
M.Channel = C.Channel

-- thread.cores() -> how many threads can run at once here (uv_available_parallelism)
M.cores = C.cores

-- thread.default() -> the default pool (one worker per core, made at first use)
M.default = C.default

-- thread.pool{size = cores, init = "module", memory_limit = bytes, nice = 0} -> Pool
-- pool:run(fn, ...), pool:call(module, name, ...), pool:close() (also <close>), pool:size(),
-- pool:stats(). init is required in every worker before its first job; memory_limit bounds
-- each worker's Lua state; nice (Linux) lowers the workers' priority below the loop's.
function M.pool(opts)
  if opts ~= nil and type(opts) ~= "table" then
    error(("thread.pool: options must be a table, got %s"):format(type(opts)), 2)
  end
  opts = opts or {}
  if opts.init ~= nil and type(opts.init) ~= "string" then
    error("thread.pool: init must be a module name", 2)
  end
  return C.pool(opts.size, opts.init, opts.memory_limit, opts.nice)
end

-- thread.spawn(fn, ...) -> Task: fn(...) on a thread of its own (a pool of one, closed when fn
-- returns), for long-lived workers that talk through Channels. Cancelling the task interrupts
-- fn. Values that cannot be sent raise here, before the task starts.
function M.spawn(fn, ...)
  if type(fn) ~= "function" then
    error(("thread.spawn: expected a function, got %s"):format(type(fn)), 2)
  end
  C.check(fn, ...)
  local args = pack(...)
  return corio.spawn(function()
    local p <close> = C.pool(1)
    return p:run(fn, unpack(args, 1, args.n))
  end)
end

-- thread.map(fn, items[, {concurrency = n, pool = p, return_errors = bool}]) -> results[, errors]
-- corio.map with every call fn(item, i) computed on a worker: results in the order of the
-- items. concurrency (default: twice the pool's size) bounds the jobs in flight.
function M.map(fn, items, opts)
  if type(fn) ~= "function" then
    error(("thread.map: expected a function, got %s"):format(type(fn)), 2)
  end
  opts = opts or {}
  local pool = opts.pool or C.default()
  C.check(fn)
  return corio.map(function(item, i) return pool:run(fn, item, i) end, items, {
    concurrency = opts.concurrency or 2 * pool:size(),
    return_errors = opts.return_errors,
  })
end

return M
