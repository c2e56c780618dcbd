-- corio.bus: an in-process publish/subscribe broker. Exports Bus.
--
-- Topics are dot-separated words ("orders.created.eu"). A subscription pattern matches topics
-- word by word: a plain word matches itself, `*` matches exactly one word, `#` matches zero
-- or more words ("orders.*" matches "orders.created" but not "orders" nor "orders.a.b";
-- "orders.#" matches all three; "#" matches every topic). `*` and `#` are only wildcards as
-- whole words; topics given to publish cannot contain them.
--
-- Each subscription owns a bounded buffer of (topic, message) pairs and a policy for when it
-- is full: "block" (the default: publish waits for room, so nothing is lost), "drop_oldest"
-- (the oldest buffered message is discarded and counted in sub.dropped) or "error" (publish
-- still delivers to every other subscriber, then raises corio.QueueFull). Subscriptions are
-- served through a corio.channel, as queues are: FIFO and cancellation-safe.
local channel = require "corio.channel"
local errors = require "corio.errors"

local new_channel = channel.new
local QueueFull, QueueEmpty = errors.QueueFull, errors.QueueEmpty
local error, type, setmetatable, tostring = error, type, setmetatable, tostring
local find, gmatch = string.find, string.gmatch

local M = {}

local DEFAULT_SIZE = 128
local CACHE_LIMIT = 4096  -- distinct topics remembered before the cache starts afresh

-- ---- patterns ------------------------------------------------------------------------------

local function split(s)
  local words = {}
  for w in gmatch(s, "[^.]*") do words[#words + 1] = w end
  return words
end

-- Split and check a pattern (wildcards allowed) or a topic (not allowed); raises at `level`
-- (counted as error counts it from parse's caller: 2 is the caller's caller).
local function parse(s, op, wild_ok, level)
  level = level + 1
  if type(s) ~= "string" then
    error(("%s: expected a string %s, got %s"):format(op, wild_ok and "pattern" or "topic",
                                                      type(s)), level)
  end
  local words = split(s)
  for _, w in ipairs(words) do
    if w == "" then
      error(("%s: %q has an empty word (words are separated by single dots)"):format(op, s), level)
    end
    local wild = w == "*" or w == "#"
    if wild and not wild_ok then
      error(("%s: a topic cannot contain the wildcard %q: %q"):format(op, w, s), level)
    end
    if not wild and (find(w, "*", 1, true) or find(w, "#", 1, true)) then
      error(("%s: %q: '*' and '#' are wildcards only as whole words"):format(op, s), level)
    end
  end
  return words
end

local function match(pw, i, tw, j)
  while true do
    local p = pw[i]
    if p == nil then return tw[j] == nil end
    if p == "#" then
      -- zero or more words: try every split point
      for k = j, #tw + 1 do
        if match(pw, i + 1, tw, k) then return true end
      end
      return false
    end
    local t = tw[j]
    if t == nil or (p ~= "*" and p ~= t) then return false end
    i, j = i + 1, j + 1
  end
end

-- ---- subscriptions -------------------------------------------------------------------------

local Subscription = {__name = "corio.Subscription"}
Subscription.__index = Subscription

-- What corio.ps() shows for a task waiting on subscription s (only when asked):
-- `Subscription:get ("orders.*", 0 messages)`, `Bus:publish (subscriber "orders.*" full: 64
-- messages)`.
function Subscription.__reason(s, reason)
  local n = s._n
  local what = n == 1 and "1 message" or ("%d messages"):format(n)
  if reason:find("^Bus:publish") then
    return ('Bus:publish (subscriber "%s" full: %s)'):format(s.pattern, what)
  end
  return ('%s ("%s", %s)'):format(reason, s.pattern, what)
end

local POLICIES = {block = true, drop_oldest = true, error = true}

local function push(s, topic, msg)
  local t = s._tail + 1
  if t > s.size then t = 1 end
  s._topics[t], s._msgs[t] = topic, msg
  s._tail = t
  s._n = s._n + 1
  local ch = s._ch
  if ch.getters.n > 0 then ch:item_added() end
end

local function pop(s)
  local h = s._head
  local topic, msg = s._topics[h], s._msgs[h]
  s._topics[h], s._msgs[h] = nil, nil
  h = h + 1
  if h > s.size then h = 1 end
  s._head = h
  s._n = s._n - 1
  return topic, msg
end

local function take(s)
  local topic, msg = pop(s)
  local ch = s._ch
  if ch.putters.n > 0 then ch:slot_freed() end
  return topic, msg
end

-- Deliver one message; returns true if it was buffered (suspends under "block" when full).
local function deliver(s, topic, msg)
  if s._ended then return false end
  local ch = s._ch
  if ch.putters.n == 0 and s._n + ch.slots < s.size then
    push(s, topic, msg)
    return true
  end
  local policy = s.policy
  if policy == "drop_oldest" then
    pop(s)
    s.dropped = s.dropped + 1
    push(s, topic, msg)
    return true
  elseif policy == "error" then
    return nil
  end
  -- false: the subscription ended meanwhile
  if not ch:wait_slot("Bus:publish (subscriber full)", s) or s._ended then return false end
  push(s, topic, msg)
  return true
end

-- sub:get() -> topic, message [suspends]; nil once the subscription is closed (or the bus
-- closed and the buffer drained).
function Subscription:get()
  local n = self._n
  local ch = self._ch
  if n - ch.reserved > 0 then
    -- take() inlined: this is the inner loop of every subscriber
    local h = self._head
    local topics, msgs = self._topics, self._msgs
    local topic, msg = topics[h], msgs[h]
    topics[h], msgs[h] = nil, nil
    h = h + 1
    if h > self.size then h = 1 end
    self._head = h
    self._n = n - 1
    if ch.putters.n > 0 then ch:slot_freed() end
    return topic, msg
  end
  if self._ended then return nil end
  if not ch:wait_item("Subscription:get", self) then return nil end
  return take(self)
end

-- sub:get_nowait() -> topic, message, or raises QueueEmpty; nil once ended and drained.
function Subscription:get_nowait()
  if self._n - self._ch.reserved > 0 then return take(self) end
  if self._ended then return nil end
  error(QueueEmpty.new("get_nowait: no message is buffered for " .. self.pattern), 2)
end

-- for topic, message in sub do ... end  (inside a task)
Subscription.__call = Subscription.get

function Subscription:pending() return self._n end
function Subscription:closed() return self._ended end

-- Stop delivering to s; `discard` drops what is buffered (else get drains it first).
local function finish(s, discard)
  s._ended = true
  if discard then
    while s._n > 0 do pop(s) end
    s._ch:drop_items()
  end
  s._ch:close()
end

-- sub:close(): unsubscribes at once; buffered messages are dropped, a waiting get returns
-- nil, a publisher blocked on this subscription moves on. Safe during a publish.
function Subscription:close()
  if self._ended and self._n == 0 then return end
  self.bus:_remove(self)
  finish(self, true)
end
Subscription.__close = Subscription.close
Subscription.unsubscribe = Subscription.close

Subscription.__tostring = function(s)
  return ("corio.Subscription %q (%d/%d buffered, %s%s)"):format(
    s.pattern, s._n, s.size, s.policy, s._ended and ", closed" or "")
end

-- ---- the bus -------------------------------------------------------------------------------

local Bus = {__name = "corio.Bus"}
Bus.__index = Bus

-- corio.Bus() -> a new broker.
function M.Bus()
  return setmetatable({
    _exact = {},    -- topic -> list of subscriptions (lists are replaced, never mutated)
    _wild = {},     -- list of wildcard subscriptions
    _cache = {},    -- topic -> list of the subscriptions it reaches
    _cached = 0,
    _closed = false,
  }, Bus)
end

local EMPTY = {}

local function copy_without(list, s)
  local out = {}
  for _, x in ipairs(list) do if x ~= s then out[#out + 1] = x end end
  return out
end

local function copy_with(list, s)
  local out = {}
  for i, x in ipairs(list or EMPTY) do out[i] = x end
  out[#out + 1] = s
  return out
end

-- bus:subscribe(pattern [, {size = 128, policy = "block" | "drop_oldest" | "error"}])
--   -> Subscription
function Bus:subscribe(pattern, opts)
  if self._closed then error("subscribe: the bus is closed", 2) end
  local words = parse(pattern, "subscribe", true, 2)
  if opts ~= nil and type(opts) ~= "table" then
    error(("subscribe: options must be a table, got %s"):format(type(opts)), 2)
  end
  opts = opts or EMPTY
  local size = opts.size or DEFAULT_SIZE
  if math.type(size) ~= "integer" or size < 1 then
    error(("subscribe: size must be a positive integer, got %s"):format(tostring(size)), 2)
  end
  local policy = opts.policy or "block"
  if not POLICIES[policy] then
    error(("subscribe: policy must be \"block\", \"drop_oldest\" or \"error\", got %s")
          :format(tostring(policy)), 2)
  end
  local s = setmetatable({
    bus = self, pattern = pattern, size = size, policy = policy, dropped = 0,
    _words = words, _wild = find(pattern, "[*#]") ~= nil,
    _topics = {}, _msgs = {}, _head = 1, _tail = 0, _n = 0, _ch = new_channel(), _ended = false,
  }, Subscription)
  if s._wild then self._wild = copy_with(self._wild, s)
  else self._exact[pattern] = copy_with(self._exact[pattern], s) end
  self._cache, self._cached = {}, 0
  return s
end

function Bus:_remove(s)
  if s._wild then
    self._wild = copy_without(self._wild, s)
  else
    local list = copy_without(self._exact[s.pattern] or EMPTY, s)
    self._exact[s.pattern] = #list > 0 and list or nil
  end
  self._cache, self._cached = {}, 0
end

-- The subscriptions a topic reaches (cached); a bad topic raises as op (publish,
-- subscribers) at the caller of op.
local function resolve(bus, topic, op)
  local words = parse(topic, op, false, 3)
  local list = bus._exact[topic]
  local wild = bus._wild
  if #wild > 0 then
    local out = {}
    for i, x in ipairs(list or EMPTY) do out[i] = x end
    for _, s in ipairs(wild) do
      if match(s._words, 1, words, 1) then out[#out + 1] = s end
    end
    list = out
  end
  list = list or EMPTY
  if bus._cached >= CACHE_LIMIT then bus._cache, bus._cached = {}, 0 end
  bus._cache[topic] = list
  bus._cached = bus._cached + 1
  return list
end

-- bus:publish(topic, message) -> how many subscriptions got the message [may suspend: a
-- full "block" subscription makes the publisher wait for room]. If the publisher is cancelled
-- while waiting, the subscriptions before the full one have the message, the others do not.
function Bus:publish(topic, msg)
  if self._closed then error("publish: the bus is closed", 2) end
  local subs = self._cache[topic] or resolve(self, topic, "publish")
  local n, refused = #subs, nil
  if n == 0 then return 0 end
  local delivered = 0
  for i = 1, n do
    local s = subs[i]
    local ok
    local count, ch = s._n, s._ch
    if count + ch.slots < s.size and ch.putters.n == 0 and not s._ended then
      -- the common case, inlined: room in the buffer and nobody queued before us
      local t = s._tail + 1
      if t > s.size then t = 1 end
      s._topics[t], s._msgs[t] = topic, msg
      s._tail = t
      s._n = count + 1
      if ch.getters.n > 0 then ch:item_added() end
      ok = true
    else
      ok = deliver(s, topic, msg)
    end
    if ok then
      delivered = delivered + 1
    elseif ok == nil then
      refused = refused or {}
      refused[#refused + 1] = subs[i]
    end
  end
  if refused then
    local e = QueueFull.new(("publish %s: %d subscription(s) full (policy \"error\"): %s")
                            :format(topic, #refused, refused[1].pattern))
    e.delivered, e.refused = delivered, refused
    error(e, 2)
  end
  return delivered
end

-- bus:subscribers(topic) -> how many subscriptions a publish to topic would reach.
function Bus:subscribers(topic)
  return #(self._cache[topic] or resolve(self, topic, "subscribers"))
end

-- bus:close(): no more publishing; every subscription drains its buffer, then ends.
function Bus:close()
  if self._closed then return end
  self._closed = true
  local all = {}
  for _, list in pairs(self._exact) do for _, s in ipairs(list) do all[#all + 1] = s end end
  for _, s in ipairs(self._wild) do all[#all + 1] = s end
  self._exact, self._wild, self._cache, self._cached = {}, {}, {}, 0
  for _, s in ipairs(all) do finish(s, false) end
end
Bus.__close = Bus.close

Bus.__tostring = function(b)
  local n = #b._wild
  for _, list in pairs(b._exact) do n = n + #list end
  return ("corio.Bus (%d subscriptions%s)"):format(n, b._closed and ", closed" or "")
end

-- The word rules themselves, for corio.redis's bridge (which re-checks what Redis's globs
-- deliver): split a topic or pattern into words, match pattern words against topic words.
M._split, M._match = split, match

return M
