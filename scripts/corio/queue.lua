-- corio.queue: asyncio's queues in Lua. Exports Queue (FIFO), PriorityQueue (a stable binary
-- heap) and LifoQueue, plus the QueueFull / QueueEmpty / QueueShutDown error classes.
--
-- Fairness and cancellation safety come from corio.channel's hand-offs with reservations
-- (getters and putters served first-come first-served; a cancelled one never holds an item
-- nor inserts one). Invariants: live waiting getters => no unreserved item
-- (n - ch.reserved == 0); live waiting putters => no unreserved free slot
-- (n + ch.slots >= cap). So the fast paths need no look at the waiters: put succeeds at once
-- iff n + ch.slots < cap, get iff n - ch.reserved > 0.
--
-- Speed: put and get are the inner loop of every producer/consumer program, so a queue keeps
-- its state in upvalues of its own methods (one set of closures per queue, none per item):
-- an upvalue costs a fraction of a table field. The storage (ring, stack or heap) is chosen
-- with one upvalue test on the hot path.
local W = require "corio.waiters"
local channel = require "corio.channel"
local errors = require "corio.errors"

local new_waiters, new_channel = W.new, channel.new
local QueueFull, QueueEmpty, QueueShutDown = errors.QueueFull, errors.QueueEmpty,
                                            errors.QueueShutDown
local is_queue_shut_down = errors.is_queue_shut_down
local pcall, error, type, setmetatable, tostring = pcall, error, type, setmetatable, tostring
local math_type, HUGE = math.type, math.huge

local M = {}

local function shut_down(op)
  return QueueShutDown.new(op .. ": the queue is shut down")
end

local function nil_item(op, self, q)
  if self ~= q then return ("%s: call it as a method, q:%s(v)"):format(op, op) end
  return op .. ": cannot put nil in a queue (nil means 'no value' in Lua: use false or a "
         .. "sentinel value)"
end

-- Raises at the caller of the queue's constructor (level 4: check_maxsize, new_queue, the
-- constructor, its caller: the constructors do not tail-call new_queue).
local function check_maxsize(maxsize, what)
  if maxsize == nil then return 0, HUGE end
  if math_type(maxsize) ~= "integer" then
    if type(maxsize) ~= "number" or maxsize % 1 ~= 0 then
      error(("%s: maxsize must be an integer, got %s"):format(what, tostring(maxsize)), 4)
    end
    maxsize = math.tointeger(maxsize) or maxsize
  end
  if maxsize <= 0 then return maxsize, HUGE end
  return maxsize, maxsize
end

-- The order of a PriorityQueue by default: numbers and strings by `<`; tables by their first
-- element (the priority of a {priority, data} pair), as Python orders tuples.
local function default_less(a, b)
  if type(a) == "table" and type(b) == "table" then return a[1] < b[1] end
  return a < b
end

local FIFO, LIFO, HEAP = 1, 2, 3

local function queue_tostring(q)
  return ("%s (%d items, maxsize %d%s)"):format(getmetatable(q).__name, q:qsize(), q.maxsize,
                                               q:is_shut_down() and ", shut down" or "")
end

local function items(n)
  return n == 1 and "1 item" or ("%d items"):format(n)
end

-- What corio.ps() shows for a task waiting on queue q (corio.waiters: called only when asked):
-- `Queue:get (queue "jobs", 0 items)`, `Queue:put (queue "jobs", full: 10 items)`,
-- `Queue:join (queue "jobs", 3 unfinished)`; without the name when q.name is not set.
local function queue_reason(q, reason)
  local what
  if reason:find(":join", 1, true) then what = ("%d unfinished"):format(q:unfinished())
  elseif reason:find(":put", 1, true) then what = "full: " .. items(q:qsize())
  else what = items(q:qsize()) end
  if q.name == nil then return ("%s (%s)"):format(reason, what) end
  return ('%s (queue "%s", %s)'):format(reason, tostring(q.name), what)
end

local CLASSES = {
  [FIFO] = {__name = "corio.Queue", __tostring = queue_tostring, __reason = queue_reason},
  [LIFO] = {__name = "corio.LifoQueue", __tostring = queue_tostring, __reason = queue_reason},
  [HEAP] = {__name = "corio.PriorityQueue", __tostring = queue_tostring,
            __reason = queue_reason},
}

-- The wait reasons, per class: "Queue:get", "LifoQueue:get", "PriorityQueue:get" ...
local REASONS = {}
for kind, mt in pairs(CLASSES) do
  local cls = mt.__name:sub(#"corio." + 1)
  REASONS[kind] = {get = cls .. ":get", put = cls .. ":put", join = cls .. ":join"}
end

local function new_queue(kind, maxsize, less, what)
  local q = setmetatable({}, CLASSES[kind])
  local reasons = REASONS[kind]
  local cap
  q.maxsize, cap = check_maxsize(maxsize, what)

  local n = 0             -- items in the buffer
  local unfinished = 0    -- items put and not yet marked done (task_done/join)
  local is_shut = false
  local lim = cap         -- cap, or 0 once shut down: the fast path of put checks only this
  local ch = new_channel()  -- who waits, what was promised to them (reserved, slots)
  local getters, putters = ch.getters, ch.putters
  local joiners = new_waiters()

  -- ---- storage: a ring (FIFO, doubles when full), a stack (LIFO), or a stable heap ----
  local items = {}
  local head, tail, size = 1, 0, 16      -- ring
  local seqs, seq = {}, 0                -- heap: insertion numbers break ties
  local path = {}                        -- heap: the sift-down path, reused

  local function grow()
    local grown, h = {}, head
    for i = 1, n do
      grown[i] = items[h]
      h = h + 1
      if h > size then h = 1 end
    end
    items, head, tail, size = grown, 1, n, size * 2
  end

  local function push(v)
    if kind == FIFO then
      if n == size then grow() end
      local t = tail + 1
      if t > size then t = 1 end
      items[t] = v
      tail = t
    elseif kind == LIFO then
      items[n + 1] = v
    else
      -- Sift up. All comparisons (user code that may raise) happen before any write, so
      -- a failing `less` leaves the heap as it was.
      local s = seq + 1
      local j = n + 1
      while j > 1 do
        local p = j // 2
        local pv = items[p]
        if less(v, pv) or (not less(pv, v) and s < seqs[p]) then j = p else break end
      end
      local i = n + 1
      while i > j do
        local p = i // 2
        items[i], seqs[i] = items[p], seqs[p]
        i = p
      end
      items[j], seqs[j] = v, s
      seq = s
    end
    n = n + 1
  end

  local function pop()
    local v
    if kind == FIFO then
      local h = head
      v = items[h]
      items[h] = nil
      h = h + 1
      if h > size then h = 1 end
      head = h
    elseif kind == LIFO then
      v = items[n]
      items[n] = nil
    else
      -- Sift the last element down from the root: first find the path (comparisons only),
      -- then move, so that a failing `less` loses nothing.
      v = items[1]
      local last, lseq = items[n], seqs[n]
      local m, depth, i = n - 1, 0, 1
      while true do
        local c = i * 2
        if c > m then break end
        local cv, cs = items[c], seqs[c]
        if c < m then
          local dv, ds = items[c + 1], seqs[c + 1]
          if less(dv, cv) or (not less(cv, dv) and ds < cs) then c, cv, cs = c + 1, dv, ds end
        end
        if less(cv, last) or (not less(last, cv) and cs < lseq) then
          depth = depth + 1
          path[depth] = c
          i = c
        else
          break
        end
      end
      items[n], seqs[n] = nil, nil
      if m > 0 then
        i = 1
        for d = 1, depth do
          local c = path[d]
          items[i], seqs[i] = items[c], seqs[c]
          i = c
        end
        items[i], seqs[i] = last, lseq
      end
    end
    n = n - 1
    return v
  end

  -- ---- the shared waiting paths ----------------------------------------------------------

  local function added()
    unfinished = unfinished + 1
    if getters.n > 0 then ch:item_added() end
  end

  local function removed()
    if putters.n > 0 then ch:slot_freed() end
  end

  local function wait_put(v)
    ch:wait_slot(reasons.put, q)
    if is_shut then error(shut_down("put"), 2) end
    push(v)
    added()
  end

  local function wait_get()
    if is_shut then error(shut_down("get"), 2) end
    -- false: woken by shutdown (an immediate one also dropped the promised items)
    if not ch:wait_item(reasons.get, q) then error(shut_down("get"), 2) end
    local v = pop()
    removed()
    return v
  end

  -- ---- methods -----------------------------------------------------------------------------

  -- q:put(v) [suspends while the queue is full]
  if kind == FIFO then
    -- the ring push and the getter hand-off inlined: the hottest path of all
    function q.put(self, v)
      if n + ch.slots < lim and v ~= nil and n < size then
        local t = tail + 1
        if t > size then t = 1 end
        items[t] = v
        tail = t
        n = n + 1
        unfinished = unfinished + 1
        if getters.n > 0 then ch:item_added() end
        return
      end
      if v == nil then error(nil_item("put", self, q), 2) end
      if is_shut then error(shut_down("put"), 2) end
      if n + ch.slots < cap then
        push(v)
        return added()
      end
      return wait_put(v)
    end
  else
    function q.put(self, v)
      if v == nil then error(nil_item("put", self, q), 2) end
      if n + ch.slots < lim then
        push(v)
        return added()
      end
      if is_shut then error(shut_down("put"), 2) end
      return wait_put(v)
    end
  end

  -- q:put_nowait(v): adds v or raises QueueFull (or QueueShutDown).
  function q.put_nowait(self, v)
    if v == nil then error(nil_item("put_nowait", self, q), 2) end
    if is_shut then error(shut_down("put_nowait"), 2) end
    if n + ch.slots >= cap then
      error(QueueFull.new(("put_nowait: the queue is full (maxsize %d)"):format(q.maxsize)), 2)
    end
    push(v)
    added()
  end

  -- q:get() -> v [suspends while the queue is empty]
  if kind == FIFO then
    function q.get()
      if n - ch.reserved > 0 then
        local h = head
        local v = items[h]
        items[h] = nil
        h = h + 1
        if h > size then h = 1 end
        head = h
        n = n - 1
        if putters.n > 0 then ch:slot_freed() end
        return v
      end
      return wait_get()
    end
  else
    function q.get()
      if n - ch.reserved > 0 then
        local v = pop()
        removed()
        return v
      end
      return wait_get()
    end
  end

  -- q:get_nowait() -> v, or raises QueueEmpty (QueueShutDown once shut down and empty)
  function q.get_nowait()
    if n - ch.reserved <= 0 then
      if is_shut then error(shut_down("get_nowait"), 2) end
      error(QueueEmpty.new("get_nowait: the queue is empty"), 2)
    end
    local v = pop()
    removed()
    return v
  end

  -- q:task_done(): one item taken earlier is fully processed.
  function q.task_done()
    if unfinished <= 0 then
      error("task_done: called more times than items were put in the queue", 2)
    end
    unfinished = unfinished - 1
    if unfinished == 0 then joiners:wake_all(true) end
  end

  -- q:join() [suspends until every item put has been marked done with task_done]
  function q.join()
    if unfinished == 0 then return end
    joiners:wait(nil, nil, reasons.join, q)
  end

  -- q:shutdown([immediate]): put/put_nowait raise QueueShutDown from now on; waiting putters
  -- wake with it; getters drain what is left, then raise it. With immediate, the items left
  -- are dropped (each counts as done for join) and waiting getters raise at once.
  function q.shutdown(_, immediate)
    is_shut, lim = true, 0
    if immediate then
      local dropped = n
      while n > 0 do pop() end
      ch:drop_items()
      unfinished = unfinished - dropped
      if unfinished < 0 then unfinished = 0 end
      if unfinished == 0 then joiners:wake_all(true) end
    end
    ch:close()
  end

  function q.qsize() return n end
  function q.empty() return n == 0 end
  function q.full() return n >= cap end
  function q.is_shut_down() return is_shut end
  -- q:unfinished() -> items put and not yet marked done
  function q.unfinished() return unfinished end

  -- for v in q:iter() do ... end: gets until the queue is shut down and drained.
  function q.iter()
    local get = q.get
    return function()
      local ok, v = pcall(get, q)
      if ok then return v end
      if is_queue_shut_down(v) then return nil end
      error(v, 0)
    end
  end

  return q
end

-- corio.Queue([maxsize]) -> a FIFO queue; maxsize nil or <= 0 means unbounded.
function M.Queue(maxsize)
  local q = new_queue(FIFO, maxsize, nil, "Queue")
  return q
end

-- corio.LifoQueue([maxsize]) -> a last-in first-out queue.
function M.LifoQueue(maxsize)
  local q = new_queue(LIFO, maxsize, nil, "LifoQueue")
  return q
end

-- corio.PriorityQueue([maxsize][, less]) -> a queue that gives the smallest item first
-- (less(a, b) says whether a comes first; equal items come out in the order they were put).
function M.PriorityQueue(maxsize, less)
  if type(maxsize) == "function" and less == nil then maxsize, less = nil, maxsize end
  if less ~= nil and type(less) ~= "function" then
    error(("PriorityQueue: less must be a function, got %s"):format(type(less)), 2)
  end
  local q = new_queue(HEAP, maxsize, less or default_less, "PriorityQueue")
  return q
end

M.QueueFull, M.QueueEmpty, M.QueueShutDown = QueueFull, QueueEmpty, QueueShutDown
M.is_queue_full, M.is_queue_empty, M.is_queue_shut_down =
  errors.is_queue_full, errors.is_queue_empty, is_queue_shut_down

return M
