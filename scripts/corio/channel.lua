-- corio.channel: the reservation hand-off between the tasks that wait to take from a bounded
-- buffer and those that wait to put into it. Internal: the one implementation behind
-- corio.queue's queues and corio.bus's subscriptions. Exports new.
--
-- The owner keeps the buffer (a ring, a stack, a heap) and its count; a channel keeps who
-- waits and what was promised to them. When an item comes in while getters wait, the first
-- live getter is woken and one buffered item is *reserved* for it (`reserved`), so a
-- newcomer cannot take it: getters are served first-come first-served. The item stays in the
-- buffer until the woken getter runs and takes it, so a getter cancelled at any point never
-- holds an item: woken and then cancelled, it passes its reservation to the next getter (or
-- releases it). Putters mirror this with promised free slots (`slots`): a cancelled putter
-- never inserts its item, because only the putter itself inserts it, once it runs.
--
-- So the owner's fast paths need no look at the waiters: a get may take at once iff
-- count - reserved > 0, a put may insert at once iff count + slots < capacity (and, for an
-- owner that lets putters queue behind a full buffer, nobody waits in putters).
local W = require "corio.waiters"

local new_waiters, setmetatable = W.new, setmetatable

local C = {}

local Channel = {__name = "corio.Channel"}
Channel.__index = Channel

-- channel.new() -> a channel with nobody waiting and nothing promised
function C.new()
  return setmetatable({
    getters = new_waiters(), putters = new_waiters(),
    reserved = 0,    -- buffered items promised to woken getters that have not run yet
    slots = 0,       -- free slots promised to woken putters that have not run yet
    closed = false,  -- close() was called: nobody waits any more, nothing is passed on
  }, Channel)
end

-- ch:item_added(): an item was buffered; promise it to the first waiting getter, if any.
function Channel:item_added()
  local getters = self.getters
  if getters.n > 0 then
    self.reserved = self.reserved + 1
    getters:wake(true)
  end
end

-- ch:slot_freed(): an item left the buffer; promise its slot to the first waiting putter.
function Channel:slot_freed()
  local putters = self.putters
  if putters.n > 0 then
    self.slots = self.slots + 1
    putters:wake(true)
  end
end

-- A getter woken with an item promised, then cancelled before it ran: the item stays in the
-- buffer for the next getter. (Once drop_items() emptied the buffer, nothing is left to pass.)
local function pass_item(ch)
  if ch.reserved > 0 then
    ch.reserved = ch.reserved - 1
    ch:item_added()
  end
end

-- A putter woken with a slot promised, then cancelled before it ran: the next one gets it.
local function pass_slot(ch)
  ch.slots = ch.slots - 1
  if not ch.closed then ch:slot_freed() end
end

-- ch:wait_item([reason, obj]) -> true when an item was promised to the caller, who must take
-- it from the buffer now (its reservation is already spent); false when woken by close() with
-- nothing for it [suspends]. Cancellation passes a promised item on and is re-raised.
-- reason and obj name the wait for corio.ps (corio.waiters' wait).
function Channel:wait_item(reason, obj)
  if self.getters:wait(pass_item, self, reason, obj) and self.reserved > 0 then
    self.reserved = self.reserved - 1
    return true
  end
  return false
end

-- ch:wait_slot([reason, obj]) -> true when a free slot was promised to the caller, who must
-- insert its item now (unless the owner closed meanwhile); false when woken by close()
-- [suspends].
function Channel:wait_slot(reason, obj)
  if self.putters:wait(pass_slot, self, reason, obj) then
    self.slots = self.slots - 1
    return true
  end
  return false
end

-- ch:drop_items(): the owner emptied its buffer for good (no item comes after it): the
-- promised items are gone too, and getters woken for them will find nothing.
function Channel:drop_items()
  self.reserved = 0
end

-- ch:close(): wake every waiter with nothing (wait_item and wait_slot return false).
function Channel:close()
  self.closed = true
  self.getters:wake_all(false)
  self.putters:wake_all(false)
end

return C
