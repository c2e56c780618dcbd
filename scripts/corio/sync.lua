-- corio.sync: synchronisation primitives for tasks, with asyncio's semantics.
-- Exports Event, Lock, Semaphore, BoundedSemaphore, Condition, Barrier, BrokenBarrier.
--
-- All are FIFO-fair and cancellation-safe the same way: a waiter queues a future; release
-- hands the lock (or the semaphore unit) directly to the first live waiter, so a newcomer
-- cannot overtake it; a waiter cancelled after it was handed the lock but before it ran
-- passes the lock on; a waiter cancelled while waiting leaves a tombstone that is skipped.
-- Timeouts compose: corio.wait_for(function() return lock:acquire() end, 0.5).
local core = require "corio.core"
local W = require "corio.waiters"
local errors = require "corio.errors"

local new_waiters = W.new
local pcall, error, type, setmetatable = pcall, error, type, setmetatable
local pack, unpack = table.pack, table.unpack
local is_cancelled = core.is_cancelled

local M = {}

-- The scoped form shared by Lock and Semaphore: a to-be-closed guard and :with(fn, ...).
local function scoped(C)
  local Guard = {__name = C.__name .. "Guard"}
  Guard.__index = Guard
  Guard.__close = function(g)
    if g.held then
      g.held = false
      g.owner:release()
    end
  end
  Guard.release = Guard.__close
  -- local guard <close> = lock:hold()  [suspends]: released when the scope ends, however.
  function C:hold()
    self:acquire()
    return setmetatable({owner = self, held = true}, Guard)
  end
  -- lock:with(fn, ...) -> fn's results [suspends]: fn runs holding the lock; released after
  -- it returns, raises or is cancelled.
  function C:with(fn, ...)
    if type(fn) ~= "function" then
      error(("with: expected a function, got %s"):format(type(fn)), 2)
    end
    self:acquire()
    local r = pack(pcall(fn, ...))
    self:release()
    if not r[1] then error(r[2], 0) end
    return unpack(r, 2, r.n)
  end
end

-- ---- Event -------------------------------------------------------------------------------

local Event = {__name = "corio.Event"}
Event.__index = Event

-- corio.Event() -> an event, initially not set.
function M.Event()
  return setmetatable({_set = false, _waiters = new_waiters()}, Event)
end

-- ev:set(): wakes every waiter; later waits return at once until clear().
function Event:set()
  if self._set then return end
  self._set = true
  self._waiters:wake_all(true)
end

function Event:clear() self._set = false end
function Event:is_set() return self._set end

-- ev:wait() -> true [suspends until the event is set]
function Event:wait()
  if self._set then return true end
  self._waiters:wait(nil, nil, "Event:wait")
  return true
end

Event.__tostring = function(e)
  return ("corio.Event (%s, %d waiting)"):format(e._set and "set" or "unset", e._waiters.n)
end

-- ---- Lock --------------------------------------------------------------------------------

local Lock = {__name = "corio.Lock"}
Lock.__index = Lock

-- corio.Lock() -> an unlocked lock (not reentrant, not owned: any task may release it, as
-- in asyncio).
function M.Lock()
  return setmetatable({_locked = false, _waiters = new_waiters()}, Lock)
end

-- lock:acquire() -> true [suspends while locked]
function Lock:acquire()
  if not self._locked and self._waiters.n == 0 then
    self._locked = true
    return true
  end
  self._waiters:wait(Lock.release, self, "Lock:acquire")
  return true  -- release handed the lock over: it stayed locked
end

-- lock:release(): unlocks, or hands the lock to the first waiter.
function Lock:release()
  if not self._locked then error("release: the lock is not acquired", 2) end
  if not self._waiters:wake(true) then self._locked = false end
end

function Lock:locked() return self._locked end

Lock.__tostring = function(l)
  return ("corio.Lock (%s, %d waiting)"):format(l._locked and "locked" or "unlocked",
                                                l._waiters.n)
end
scoped(Lock)

-- ---- Semaphore ---------------------------------------------------------------------------

local Semaphore = {__name = "corio.Semaphore"}
Semaphore.__index = Semaphore

-- Raises at the caller of the constructor (level 3: new_semaphore, the constructor, its caller).
local function new_semaphore(C, n, what)
  if n == nil then n = 1 end
  if math.type(n) ~= "integer" or n < 0 then
    error(("%s: the initial value must be a non-negative integer, got %s")
          :format(what, tostring(n)), 3)
  end
  return setmetatable({_value = n, _initial = n, _waiters = new_waiters()}, C)
end

-- corio.Semaphore([n = 1]) -> a semaphore with n units.
function M.Semaphore(n)
  local s = new_semaphore(Semaphore, n, "Semaphore")  -- not a tail call: it keeps level 3
  return s
end

-- sem:acquire() -> true [suspends while no unit is free]
function Semaphore:acquire()
  if self._value > 0 and self._waiters.n == 0 then
    self._value = self._value - 1
    return true
  end
  self._waiters:wait(self.release, self, "Semaphore:acquire")
  return true  -- a unit was handed over by release
end

-- sem:release(): gives a unit back (to the first waiter, if any).
function Semaphore:release()
  if not self._waiters:wake(true) then self._value = self._value + 1 end
end

function Semaphore:locked() return self._value == 0 or self._waiters.n > 0 end
function Semaphore:value() return self._value end

Semaphore.__tostring = function(s)
  return ("%s (value %d, %d waiting)"):format(getmetatable(s).__name, s._value, s._waiters.n)
end
scoped(Semaphore)

local BoundedSemaphore = {}
for k, v in pairs(Semaphore) do BoundedSemaphore[k] = v end
BoundedSemaphore.__name = "corio.BoundedSemaphore"
BoundedSemaphore.__index = BoundedSemaphore
scoped(BoundedSemaphore)

-- corio.BoundedSemaphore([n = 1]) -> a semaphore whose release raises past n units.
function M.BoundedSemaphore(n)
  local s = new_semaphore(BoundedSemaphore, n, "BoundedSemaphore")
  return s
end

function BoundedSemaphore:release()
  if self._value >= self._initial then
    error(("release: the semaphore was released more times than acquired (bound %d)")
          :format(self._initial), 2)
  end
  Semaphore.release(self)
end

-- ---- Condition ---------------------------------------------------------------------------

local Condition = {__name = "corio.Condition"}
Condition.__index = Condition

-- corio.Condition([lock]) -> a condition variable over lock (a new Lock by default).
function M.Condition(lock)
  if lock ~= nil and getmetatable(lock) ~= Lock then
    error("Condition: expected a corio.Lock or nothing", 2)
  end
  return setmetatable({_lock = lock or M.Lock(), _waiters = new_waiters()}, Condition)
end

function Condition:acquire() return self._lock:acquire() end
function Condition:release() return self._lock:release() end
function Condition:locked() return self._lock:locked() end

local function reacquire(lock)
  -- The lock must be held again when wait returns or raises; a cancellation that arrives
  -- meanwhile is raised after that.
  local cancelled
  while true do
    local ok, err = pcall(lock.acquire, lock)
    if ok then return cancelled end
    if not is_cancelled(err) then error(err, 0) end
    cancelled = cancelled or err
  end
end

-- A waiter notified, then cancelled before it ran, will not act on the notification: the
-- next waiter gets it.
local function pass_notification(cond)
  cond:_notify(1)
end

-- cond:wait() -> true [suspends]: releases the lock, waits for notify, re-acquires the lock.
function Condition:wait()
  if not self._lock._locked then error("wait: the condition's lock is not acquired", 2) end
  self._lock:release()
  local waiters = self._waiters
  local ok, why = pcall(waiters.wait, waiters, pass_notification, self, "Condition:wait")
  local cancelled = reacquire(self._lock)
  if not ok then error(why, 0) end
  if cancelled then error(cancelled, 0) end
  return true
end

-- cond:wait_for(predicate) -> the predicate's true value [suspends]
function Condition:wait_for(predicate)
  local r = predicate()
  while not r do
    self:wait()
    r = predicate()
  end
  return r
end

function Condition:_notify(n)
  local woken_count = 0
  while woken_count < n and self._waiters:wake(true) do woken_count = woken_count + 1 end
  return woken_count
end

-- cond:notify([n = 1]) -> how many were woken; the lock must be held.
function Condition:notify(n)
  if not self._lock._locked then error("notify: the condition's lock is not acquired", 2) end
  return self:_notify(n or 1)
end

function Condition:notify_all()
  if not self._lock._locked then
    error("notify_all: the condition's lock is not acquired", 2)
  end
  return self:_notify(math.huge)
end

scoped(Condition)

-- ---- Barrier -----------------------------------------------------------------------------

M.BrokenBarrier, M.is_broken_barrier = errors.BrokenBarrier, errors.is_broken_barrier

local Barrier = {__name = "corio.Barrier"}
Barrier.__index = Barrier

-- A barrier cycles through states as asyncio's does: "filling" (parties arrive), "draining"
-- (it filled: the released parties are still resuming, and newcomers wait for the next
-- cycle), "resetting" (reset() came while draining: the parties still draining raise
-- BrokenBarrier) and "broken" (abort(): every wait raises BrokenBarrier until reset()).

-- corio.Barrier(parties) -> a barrier that releases its waiters each time `parties` wait.
function M.Barrier(parties)
  if math.type(parties) ~= "integer" or parties < 1 then
    error(("Barrier: parties must be a positive integer, got %s"):format(tostring(parties)), 2)
  end
  return setmetatable({parties = parties, _state = "filling", _draining = 0,
                       _waiters = new_waiters(), _blocked = new_waiters()}, Barrier)
end

local function broken_error(level)
  error(M.BrokenBarrier.new("wait: the barrier is broken"), level + 1)
end

-- A released party has resumed (or given up): the last one ends the draining phase and lets
-- the parties that arrived meanwhile in.
local function drained(b)
  b._draining = b._draining - 1
  if b._draining == 0 and (b._state == "draining" or b._state == "resetting") then
    b._state = "filling"
    b._blocked:wake_all(true)
  end
end

-- barrier:wait() -> index (0 .. parties-1, in arrival order among the parties released
-- together; the last arrival gets parties-1) [suspends]. Raises BrokenBarrier if the barrier
-- is (or becomes) broken, or is reset or aborted before this party has resumed. A waiter
-- cancelled before the barrier filled leaves it as if it had never arrived, so indices are
-- given when the barrier fills, not on arrival.
function Barrier:wait()
  while self._state == "draining" or self._state == "resetting" do
    self._blocked:wait(nil, nil, "Barrier:wait (draining)") -- the previous cycle is still draining
  end
  if self._state == "broken" then broken_error(2) end
  local waiters = self._waiters
  if waiters.n + 1 == self.parties then
    local index = 0
    while waiters:wake(index) do index = index + 1 end
    if index > 0 then
      self._state, self._draining = "draining", index
    end
    return index
  end
  -- woken with an index (or false when broken or reset while filling); a party released and
  -- then cancelled before it resumed still counts as drained
  local why = waiters:wait(drained, self, "Barrier:wait")
  if why == false then broken_error(2) end
  local state = self._state
  drained(self)
  if state ~= "draining" then broken_error(2) end  -- reset or aborted before it resumed
  return why
end

-- barrier:abort(): breaks the barrier; waiting, draining and future calls raise BrokenBarrier.
function Barrier:abort()
  self._state = "broken"
  self._waiters:wake_all(false)
  self._blocked:wake_all(true)
end

-- barrier:reset(): back to the initial state; the parties waiting, or released but not yet
-- resumed, raise BrokenBarrier.
function Barrier:reset()
  self._waiters:wake_all(false)
  if self._state == "draining" then
    self._state = "resetting"
  elseif self._state ~= "resetting" then
    self._state = "filling"
    self._blocked:wake_all(true)
  end
end

function Barrier:n_waiting() return self._waiters.n end
function Barrier:broken() return self._state == "broken" end

Barrier.__tostring = function(b)
  return ("corio.Barrier (%d/%d waiting, %s)"):format(b._waiters.n, b.parties, b._state)
end

return M
