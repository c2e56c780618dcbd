-- corio.queue: asyncio's queues in Lua. Exports Queue (FIFO), PriorityQueue (a stable binary
-- heap) and LifoQueue, plus the QueueFull / QueueEmpty / QueueShutDown error classes.
--
-- Fairness and cancellation safety come from hand-offs with reservations. A get that has to
-- wait queues a future; the put that brings an item wakes the first waiting getter and
-- *reserves* one item for it (`_reserved`), so a newcomer's get cannot take it: getters are
-- served first-come first-served. The item itself stays in the buffer until the woken getter
-- runs and takes it, so a getter cancelled at any point never holds an item: if it was woken
-- and then cancelled, it hands its reservation to the next getter (or releases it). Putters
-- mirror this with reserved free slots (`_slots`): a cancelled put never inserts its item,
-- because the item is only inserted by the putter itself once it runs.
--
-- Invariants: live waiting getters => no unreserved item (n - reserved == 0);
--             live waiting putters => no unreserved free slot (n + slots >= cap).
local W = require "corio.waiters"

local new_waiters, woken = W.new, W.woken
local QueueFull, QueueEmpty, QueueShutDown = W.QueueFull, W.QueueEmpty, W.QueueShutDown
local pcall, error, type, setmetatable, math_type = pcall, error, type, setmetatable, math.type
local HUGE = math.huge

local M = {}

local function shut_down(op)
  return QueueShutDown.new(op .. ": the queue is shut down")
end

local function check_item(v, op)
  if v == nil then
    error(op .. ": cannot put nil in a queue (nil means 'no value' in Lua: use false or a "
          .. "sentinel value)", 3)
  end
end

local function check_maxsize(maxsize, what)
  if maxsize == nil then return 0, HUGE end
  if math_type(maxsize) ~= "integer" and not (type(maxsize) == "number" and maxsize % 1 == 0) then
    error(("%s: maxsize must be an integer, got %s"):format(what, tostring(maxsize)), 3)
  end
  if maxsize <= 0 then return maxsize, HUGE end
  return maxsize, maxsize
end

-- ---- the shared machinery ------------------------------------------------------------------
-- A concrete queue class provides _init(self), _push(self, v), _pop(self) -> v, _peek(self)
-- and keeps `_n` (items in the buffer) up to date.

local Base = {}
Base.__index = Base

local function init(q, maxsize, what)
  q.maxsize, q._cap = check_maxsize(maxsize, what)
  q._n = 0
  q._reserved = 0      -- items promised to woken getters that have not run yet
  q._slots = 0         -- free slots promised to woken putters that have not run yet
  q._unfinished = 0    -- items put and not yet marked done (task_done/join)
  q._getters = new_waiters()
  q._putters = new_waiters()
  q._joiners = new_waiters()
  q._shutdown = false
  q:_init()
  return q
end

-- An item was added: serve the first waiting getter.
local function added(q)
  q._unfinished = q._unfinished + 1
  local getters = q._getters
  if getters.n > 0 then
    q._reserved = q._reserved + 1
    getters:wake(true)
  end
end

-- An item was removed: serve the first waiting putter.
local function removed(q)
  local putters = q._putters
  if putters.n > 0 then
    q._slots = q._slots + 1
    putters:wake(true)
  end
end

-- q:put_nowait(v): adds v or raises QueueFull (or QueueShutDown).
function Base:put_nowait(v)
  check_item(v, "put_nowait")
  if self._shutdown then error(shut_down("put_nowait"), 2) end
  if self._putters.n > 0 or self._n + self._slots >= self._cap then
    error(QueueFull.new(("put_nowait: the queue is full (maxsize %d)"):format(self.maxsize)), 2)
  end
  self:_push(v)
  added(self)
end

-- The slow path of put: wait for a slot (FIFO among putters), then insert.
local function wait_put(self, v)
  local putters = self._putters
  local f = putters:add()
  local ok, why = pcall(f.await, f)
  if not ok then
    if woken(f) then
      if f:result() then
        -- a slot was promised to us: pass it to the next putter, or free it
        self._slots = self._slots - 1
        if not self._shutdown then removed(self) end
      end
    else
      putters:give_up(f)
    end
    error(why, 0)
  end
  if why then self._slots = self._slots - 1 end
  if self._shutdown then error(shut_down("put"), 2) end
  self:_push(v)
  added(self)
end

-- q:put(v) [suspends while the queue is full]
function Base:put(v)
  check_item(v, "put")
  if self._shutdown then error(shut_down("put"), 2) end
  if self._putters.n == 0 and self._n + self._slots < self._cap then
    self:_push(v)
    return added(self)
  end
  return wait_put(self, v)
end

-- q:get_nowait() -> v, or raises QueueEmpty (QueueShutDown once shut down and empty)
function Base:get_nowait()
  if self._n - self._reserved <= 0 then
    if self._shutdown then error(shut_down("get_nowait"), 2) end
    error(QueueEmpty.new("get_nowait: the queue is empty"), 2)
  end
  local v = self:_pop()
  removed(self)
  return v
end

-- The slow path of get: wait for an item (FIFO among getters), then take it.
local function wait_get(self)
  if self._shutdown then error(shut_down("get"), 2) end
  local getters = self._getters
  local f = getters:add()
  local ok, why = pcall(f.await, f)
  if not ok then
    if woken(f) then
      if f:result() and self._reserved > 0 then
        -- an item was promised to us: it stays in the queue for the next getter
        self._reserved = self._reserved - 1
        if getters.n > 0 then
          self._reserved = self._reserved + 1
          getters:wake(true)
        end
      end
    else
      getters:give_up(f)
    end
    error(why, 0)
  end
  if not why or self._n == 0 then
    -- woken by shutdown (an immediate one also drops the promised items)
    error(shut_down("get"), 2)
  end
  self._reserved = self._reserved - 1
  local v = self:_pop()
  removed(self)
  return v
end

-- q:get() -> v [suspends while the queue is empty]
function Base:get()
  if self._n - self._reserved > 0 then
    local v = self:_pop()
    removed(self)
    return v
  end
  return wait_get(self)
end

-- q:task_done(): one item taken earlier is fully processed.
function Base:task_done()
  if self._unfinished <= 0 then
    error("task_done: called more times than items were put in the queue", 2)
  end
  local left = self._unfinished - 1
  self._unfinished = left
  if left == 0 then self._joiners:wake_all(true) end
end

-- q:join() [suspends until every item put has been marked done with task_done]
function Base:join()
  if self._unfinished == 0 then return end
  local joiners = self._joiners
  local f = joiners:add()
  local ok, why = pcall(f.await, f)
  if not ok then
    if not woken(f) then joiners:give_up(f) end
    error(why, 0)
  end
end

-- q:shutdown([immediate]): put/put_nowait raise QueueShutDown from now on; waiting putters
-- wake with it; getters drain what is left, then raise it. With immediate, the items left are
-- dropped (each counts as done for join) and waiting getters raise at once.
function Base:shutdown(immediate)
  self._shutdown = true
  if immediate then
    local dropped = self._n
    while self._n > 0 do self:_pop() end
    self._reserved = 0
    self._unfinished = self._unfinished - dropped
    if self._unfinished < 0 then self._unfinished = 0 end
    if self._unfinished == 0 then self._joiners:wake_all(true) end
  end
  self._getters:wake_all(false)
  self._putters:wake_all(false)
end

function Base:qsize() return self._n end
function Base:empty() return self._n == 0 end
function Base:full() return self._n >= self._cap end
function Base:is_shut_down() return self._shutdown end

-- for v in q:iter() do ... end: gets until the queue is shut down and drained.
function Base:iter()
  return function()
    local ok, v = pcall(self.get, self)
    if ok then return v end
    if W.is_queue_shut_down(v) then return nil end
    error(v, 0)
  end
end

local function queue_tostring(q)
  return ("%s (%d items, maxsize %d%s)"):format(getmetatable(q).__name, q._n, q.maxsize,
                                               q._shutdown and ", shut down" or "")
end

-- Make a class from the base with its own storage.
local function class(name, storage)
  local C = {__name = name, __tostring = queue_tostring}
  for k, v in pairs(Base) do C[k] = v end
  for k, v in pairs(storage) do C[k] = v end
  C.__index = C
  return C
end

-- ---- FIFO: a ring buffer that doubles when full --------------------------------------------

local Queue = class("corio.Queue", {
  _init = function(q)
    q._items, q._head, q._tail, q._size = {}, 1, 0, 16
  end,
  _push = function(q, v)
    local n, size = q._n, q._size
    local items = q._items
    if n == size then
      -- grow: unroll the ring into a table twice as large
      local grown, h = {}, q._head
      for i = 1, n do
        grown[i] = items[h]
        h = h + 1
        if h > size then h = 1 end
      end
      items, q._items, q._head, q._size, size = grown, grown, 1, size * 2, size * 2
      q._tail = n
    end
    local t = q._tail + 1
    if t > size then t = 1 end
    items[t] = v
    q._tail = t
    q._n = n + 1
  end,
  _pop = function(q)
    local h, items = q._head, q._items
    local v = items[h]
    items[h] = nil
    h = h + 1
    if h > q._size then h = 1 end
    q._head = h
    q._n = q._n - 1
    return v
  end,
})

-- The FIFO's put and get are the hot path of every producer/consumer program: the ring
-- operations are inlined here (the generic methods above call _push/_pop), and only the
-- waiting paths are shared.
function Queue:put(v)
  if v == nil then check_item(v, "put") end
  local n, size = self._n, self._size
  if n + self._slots < self._cap and self._putters.n == 0 and not self._shutdown
     and n < size then
    local t = self._tail + 1
    if t > size then t = 1 end
    self._items[t] = v
    self._tail = t
    self._n = n + 1
    self._unfinished = self._unfinished + 1
    local getters = self._getters
    if getters.n > 0 then
      self._reserved = self._reserved + 1
      getters:wake(true)
    end
    return
  end
  return Base.put(self, v)
end

function Queue:get()
  local n = self._n
  if n - self._reserved > 0 then
    local h, items = self._head, self._items
    local v = items[h]
    items[h] = nil
    h = h + 1
    if h > self._size then h = 1 end
    self._head = h
    self._n = n - 1
    local putters = self._putters
    if putters.n > 0 then
      self._slots = self._slots + 1
      putters:wake(true)
    end
    return v
  end
  return wait_get(self)
end

-- corio.Queue([maxsize]) -> a FIFO queue; maxsize nil or <= 0 means unbounded.
function M.Queue(maxsize)
  return init(setmetatable({}, Queue), maxsize, "Queue")
end

-- ---- LIFO --------------------------------------------------------------------------------

local LifoQueue = class("corio.LifoQueue", {
  _init = function(q) q._items = {} end,
  _push = function(q, v)
    local n = q._n + 1
    q._items[n] = v
    q._n = n
  end,
  _pop = function(q)
    local n = q._n
    local v = q._items[n]
    q._items[n] = nil
    q._n = n - 1
    return v
  end,
})

-- corio.LifoQueue([maxsize]) -> a last-in first-out queue.
function M.LifoQueue(maxsize)
  return init(setmetatable({}, LifoQueue), maxsize, "LifoQueue")
end

-- ---- priority: a binary min-heap, stable for equal priorities ------------------------------

-- The default order: numbers and strings by `<`; tables by their first element (the
-- priority of a {priority, data} pair), as Python orders tuples.
local function default_less(a, b)
  if type(a) == "table" and type(b) == "table" then return a[1] < b[1] end
  return a < b
end

local PriorityQueue = class("corio.PriorityQueue", {
  _init = function(q)
    q._vals, q._seqs, q._seq = {}, {}, 0
  end,
  _push = function(q, v)
    local vals, seqs, less = q._vals, q._seqs, q._less
    local seq = q._seq + 1
    q._seq = seq
    local i = q._n + 1
    -- sift up: move parents that must come after v down
    while i > 1 do
      local p = i // 2
      local pv = vals[p]
      if less(v, pv) or (not less(pv, v) and seq < seqs[p]) then
        vals[i], seqs[i] = pv, seqs[p]
        i = p
      else
        break
      end
    end
    vals[i], seqs[i] = v, seq
    q._n = q._n + 1
  end,
  _pop = function(q)
    local vals, seqs, less = q._vals, q._seqs, q._less
    local n = q._n
    local top = vals[1]
    local v, seq = vals[n], seqs[n]
    vals[n], seqs[n] = nil, nil
    n = n - 1
    q._n = n
    if n > 0 then
      -- sift down the last element from the root
      local i = 1
      while true do
        local c = i * 2
        if c > n then break end
        local cv, cs = vals[c], seqs[c]
        if c < n then
          local dv, ds = vals[c + 1], seqs[c + 1]
          if less(dv, cv) or (not less(cv, dv) and ds < cs) then c, cv, cs = c + 1, dv, ds end
        end
        if less(cv, v) or (not less(v, cv) and cs < seq) then
          vals[i], seqs[i] = cv, cs
          i = c
        else
          break
        end
      end
      vals[i], seqs[i] = v, seq
    end
    return top
  end,
})

-- corio.PriorityQueue([maxsize][, less]) -> a queue that gives the smallest item first
-- (less(a, b) says whether a comes first; equal items come out in the order they were put).
function M.PriorityQueue(maxsize, less)
  if type(maxsize) == "function" and less == nil then maxsize, less = nil, maxsize end
  if less ~= nil and type(less) ~= "function" then
    error(("PriorityQueue: less must be a function, got %s"):format(type(less)), 2)
  end
  local q = setmetatable({_less = less or default_less}, PriorityQueue)
  return init(q, maxsize, "PriorityQueue")
end

M.QueueFull, M.QueueEmpty, M.QueueShutDown = QueueFull, QueueEmpty, QueueShutDown
M.is_queue_full, M.is_queue_empty, M.is_queue_shut_down =
  W.is_queue_full, W.is_queue_empty, W.is_queue_shut_down
M._classes = {Queue = Queue, LifoQueue = LifoQueue, PriorityQueue = PriorityQueue}

return M
