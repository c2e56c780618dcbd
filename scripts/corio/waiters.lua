-- corio.waiters: the FIFO of suspended tasks behind every queue and lock. Internal: used by
-- corio.channel, corio.queue, corio.sync and corio.bus.
--
-- A waiter is a corio.Future. Waking one completes its future (with a value that says why);
-- a waiter that gives up (cancelled, timed out) before being woken cancels its own future,
-- which leaves it in the list as a tombstone that wake() skips: removal is O(1) and the
-- order of the others is untouched, so a cancelled waiter never blocks the ones behind it.
-- Tombstones are swept out once they outnumber the live waiters, so a loop that keeps timing
-- out on an idle queue does not grow the list.
local core = require "corio.core"

local Future = core.Future
local setmetatable, pcall, error = setmetatable, pcall, error

local W = {}

local Waiters = {__name = "corio.Waiters"}
Waiters.__index = Waiters

-- Waiters() -> an empty FIFO. `n` counts the live (not given up) waiters.
function W.new()
  return setmetatable({head = 1, tail = 0, n = 0, dead = 0}, Waiters)
end

-- w:add() -> a new future, queued last.
function Waiters:add()
  local f = Future()
  local t = self.tail + 1
  self.tail = t
  self[t] = f
  self.n = self.n + 1
  return f
end

-- w:wake(value) -> true if a live waiter was woken (its future completed with value).
function Waiters:wake(value)
  local h, t = self.head, self.tail
  while h <= t do
    local f = self[h]
    self[h] = nil
    h = h + 1
    if not f:done() then
      self.n = self.n - 1
      if h > t then self.head, self.tail = 1, 0 else self.head = h end
      f:set_result(value)
      return true
    end
    self.dead = self.dead - 1
  end
  self.head, self.tail, self.dead = 1, 0, 0
  return false
end

-- w:wake_all(value) -> how many were woken.
function Waiters:wake_all(value)
  local woken = 0
  while self:wake(value) do woken = woken + 1 end
  return woken
end

-- w:give_up(f): the waiter of f leaves without having been woken.
function Waiters:give_up(f)
  f:cancel()
  self.n = self.n - 1
  local dead = self.dead + 1
  self.dead = dead
  if dead > 32 and dead > self.n then
    -- sweep: keep the live waiters, in order, at the front
    local j, h, t = 0, self.head, self.tail
    for i = h, t do
      local w = self[i]
      self[i] = nil
      if not w:done() then
        j = j + 1
        self[j] = w
      end
    end
    self.head, self.tail, self.dead = 1, j, 0
  end
end

-- woken(f) tells apart "woken, then cancelled before it ran" (the waker's hand-off must be
-- passed on) from "cancelled while waiting".
function W.woken(f)
  return f:done() and not f:cancelled()
end
local woken = W.woken

-- w:wait([on_handoff, arg, reason, obj]) -> the value the waker gave [suspends]. `reason` (a
-- constant string such as "Queue:get") is what corio.ps() shows for the waiting task; if
-- obj's metatable has __reason(obj, reason), corio.ps() shows what that returns instead
-- (`Queue:get (queue "jobs", 0 items)`), computed only when asked. If the wait ends in an
-- error (cancellation, a timeout, a deadlock at top level), a waiter that had already been
-- woken with a true value calls on_handoff(arg) to pass on what it was promised (an item, a
-- slot, the lock); one not woken yet gives its place up. Then the error is re-raised.
function Waiters:wait(on_handoff, arg, reason, obj)
  local f = self:add()
  local ok, why = pcall(f.await, f, reason, obj)
  if not ok then
    if woken(f) then
      if on_handoff and f:result() then on_handoff(arg) end
    else
      self:give_up(f)
    end
    error(why, 0)
  end
  return why
end

return W
