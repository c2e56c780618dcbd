-- corio.redis.bridge: one corio.Bus across processes, through Redis pub/sub. Exports new
-- (reached as redis.bridge(bus, r, opts)).
--
-- Local -> Redis: a subscription on the bus (per pattern) forwards each message to the channel
-- PREFIX..topic as JSON {n = node id, m = payload}. Redis -> local: PSUBSCRIBE on each pattern
-- turned into a Redis glob (`*` and `#` both become `*`); since a Redis glob ignores word
-- boundaries (`orders.*` also matches `orders.eu.created`), every message is matched again
-- with the Bus's own rules before it is published locally. Messages carry the node id of the
-- bridge that sent them: a bridge drops its own (no echo), and what it publishes locally it
-- does not forward again (its forwarding subscription skips exactly those messages).
local corio = require "corio"
local json = require "corio.json"

local type, error, ipairs, pcall, tostring, setmetatable, rawequal =
  type, error, ipairs, pcall, tostring, setmetatable, rawequal

local M = {}

local BATCH_MAX = 512 -- PUBLISHes per pipeline

local Bridge = {__name = "corio.redis.Bridge"}
Bridge.__index = Bridge

-- The Bus's own word rules: a message Redis's glob let through is matched again with them.
local bus_rules = require "corio.bus"
local split, match = bus_rules._split, bus_rules._match

-- Does topic match one of the bridge's patterns (the Bus's word rules)?
local function wanted(self, topic)
  local hit = self._cache[topic]
  if hit ~= nil then return hit end
  local tw = split(topic)
  hit = false
  for _, pw in ipairs(self._pwords) do
    if match(pw, 1, tw, 1) then hit = true break end
  end
  if self._cached > 4096 then self._cache, self._cached = {}, 0 end
  self._cache[topic] = hit
  self._cached = self._cached + 1
  return hit
end

local function glob_escape(s) return (s:gsub("[%?%[%]\\]", "\\%0")) end

local function node_id()
  return ("%x%06x"):format(math.floor(corio.now() * 1e6) % 0xffffffff, math.random(0, 0xffffff))
end

-- redis.bridge(bus, r, {prefix = "corio:", patterns = {"#"}, node = <unique>})
--   -> bridge | nil, msg, code  [suspends until the Redis subscription is confirmed]
-- bridge:close() stops both directions; bridge.forwarded / bridge.received count messages.
function M.new(bus, r, opts)
  opts = opts or {}
  local prefix = opts.prefix or "corio:"
  local patterns = opts.patterns or {"#"}
  if type(patterns) ~= "table" or #patterns == 0 then
    error("redis.bridge: patterns must be a non-empty list", 2)
  end
  local self = setmetatable({bus = bus, r = r, prefix = prefix, node = opts.node or node_id(),
                             _pwords = {}, _cache = {}, _cached = 0, _injected = {},
                             _ihead = 1, _itail = 0, forwarded = 0, received = 0, _tasks = {}},
                            Bridge)
  local globs = {}
  for i, p in ipairs(patterns) do
    self._pwords[i] = split(p)
    globs[i] = glob_escape(prefix) .. p:gsub("#", "*")
  end
  local sub, msg, code = r:psubscribe(table.unpack(globs))
  if not sub then return nil, msg, code end
  self._rsub = sub
  -- One local subscription: "#" when several patterns (a topic matching two of them must be
  -- forwarded once), filtered with the same matcher.
  local local_pattern = #patterns == 1 and patterns[1] or "#"
  self._lsub = bus:subscribe(local_pattern, {size = opts.size or 1024})
  local plen = #prefix
  local encode, decode = json.encode, json.decode

  -- Redis -> bus
  self._tasks[1] = corio.spawn(function()
    for channel, payload in sub do
      local topic = channel:sub(plen + 1)
      if wanted(self, topic) then
        local ok, env = pcall(decode, payload)
        if ok and type(env) == "table" and env.n ~= self.node then
          self.received = self.received + 1
          local m = env.m
          local t = self._itail + 1
          self._itail = t
          self._injected[t] = {topic, m}
          bus:publish(topic, m)
        end
      end
    end
  end)
  -- bus -> Redis. Whatever the subscription holds when the forwarder wakes leaves as one
  -- pipeline (one write, one wait for all the replies) instead of one PUBLISH round trip per
  -- message: under load the batches grow by themselves, and a lone message is not delayed.
  local function forward(batch, topic, m)
    local h = self._ihead
    local inj = self._injected[h]
    if inj and rawequal(inj[1], topic) and rawequal(inj[2], m) then
      self._injected[h] = nil
      self._ihead = h + 1
    elseif local_pattern == "#" and not wanted(self, topic) then
      -- not ours to forward
    else
      self.forwarded = self.forwarded + 1
      batch[#batch + 1] = {"PUBLISH", prefix .. topic, encode({n = self.node, m = m})}
    end
  end
  self._tasks[2] = corio.spawn(function()
    local lsub = self._lsub
    local batch = {}
    for topic, m in lsub do
      forward(batch, topic, m)
      -- this task is the subscription's only getter, so a buffered message is one get() takes
      -- without suspending
      while #batch < BATCH_MAX and lsub:pending() > 0 do
        local t2, m2 = lsub:get()
        if t2 == nil then break end
        forward(batch, t2, m2)
      end
      if #batch == 1 then
        r:call(table.unpack(batch[1]))
      elseif #batch > 1 then
        r:pipeline(function(p)
          for i = 1, #batch do p:call(table.unpack(batch[i])) end
        end)
      end
      batch = {}
    end
  end)
  return self
end

function Bridge:close()
  if self._closed then return end
  self._closed = true
  self._rsub:close()
  self._lsub:close()
  for _, t in ipairs(self._tasks) do t:cancel() end
end
Bridge.__close = Bridge.close

Bridge.__tostring = function(b)
  return ("corio.redis.Bridge (node %s, prefix %q)"):format(b.node, b.prefix)
end

return M
