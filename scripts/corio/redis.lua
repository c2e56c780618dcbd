-- corio.redis: a Redis client on corio.net streams. Exports connect, pool, queue, bridge,
-- null, status, OK, is_error, is_status, and the classes' names in their metatables.
--
-- One client is one connection shared by every task that calls it: commands issued in the
-- same loop turn leave in one write and their replies come back in order (corio._redis keeps
-- the FIFO of callers, hiredis parses). A lost connection fails the calls in flight, then the
-- client reconnects with backoff, re-authenticates and re-selects its db; calls made meanwhile
-- wait for the new connection for up to `timeout` seconds. Pub/sub runs on a second
-- connection of its own, opened on the first subscribe, which re-subscribes after a loss.
local corio = require "corio"
local C = require "corio._redis"
local net = require "corio._net"
local json = require "corio.json"
local W = require "corio.waiters"
local errors = require "corio.errors"

local setmetatable, getmetatable, type, tostring, select, error, pcall, ipairs, pairs =
  setmetatable, getmetatable, type, tostring, select, error, pcall, ipairs, pairs
local spawn, sleep, is_cancelled, is_timeout = corio.spawn, corio.sleep, corio.is_cancelled,
  corio.is_timeout
local concat, unpack, pack = table.concat, table.unpack, table.pack

local M = {}

-- ---- reply values --------------------------------------------------------------------------

local Status = {__name = "corio.redis.Status"}
Status.__tostring = function(s) return s.status end
local Error = {__name = "corio.redis.Error"}
Error.__tostring = function(e) return e.message end
errors.register(Error)
local Failure = {__name = "corio.redis.Failure"}  -- internal: a lost connection's marker
C.setup(json.null, Status, Error, Failure)

M.null = json.null        -- a null element inside an array reply
M.status = C.status       -- redis.status("OK") -> the interned status object
M.OK = C.status("OK")     -- r:call("SET", k, v) == redis.OK
function M.is_status(v) return getmetatable(v) == Status end
function M.is_error(v) return getmetatable(v) == Error end   -- errors inside arrays

-- ---- connecting ----------------------------------------------------------------------------

local DEFAULTS = {host = "127.0.0.1", port = 6379, timeout = 5, backoff_min = 0.05,
                  backoff_max = 2}

local function check_opts(opts, op)
  if type(opts) ~= "table" then
    error(("%s: expected an options table, got %s"):format(op, type(opts)), 3)
  end
  local o = {}
  for k, v in pairs(DEFAULTS) do o[k] = v end
  for k, v in pairs(opts) do o[k] = v end
  if o.db ~= nil and math.type(o.db) ~= "integer" then
    error(op .. ": db must be an integer", 3)
  end
  if type(o.timeout) ~= "number" or o.timeout <= 0 then
    error(op .. ": timeout must be a positive number", 3)
  end
  if o.path ~= nil and type(o.path) ~= "string" then error(op .. ": path must be a string", 3) end
  o.target = o.path or (o.host .. ":" .. tostring(o.port))
  return o
end

local function is_numeric(host)
  return host:match("^%d+%.%d+%.%d+%.%d+$") or host:find(":", 1, true)
end

local function open_stream(o)
  if o.path then return net.connect_unix(o.path) end
  if is_numeric(o.host) then return net.connect(o.host, o.port) end
  local addrs, msg, code = net.getaddrinfo(o.host, o.port)
  if not addrs then return nil, msg, code end
  for _, a in ipairs(addrs) do
    local s
    s, msg, code = net.connect(a.addr, o.port)
    if s then return s end
  end
  return nil, msg or ("connect " .. o.target .. ": no address"), code or "EAI_NONAME"
end

-- Run fn(...) with a time limit: its results, or nil, "op target: timed out", "ETIMEDOUT".
local function limited(seconds, what, fn, ...)
  local r = pack(pcall(corio.timeout, seconds, fn, ...))
  if r[1] then return unpack(r, 2, r.n) end
  if is_timeout(r[2]) then
    return nil, ("%s: timed out after %g seconds"):format(what, seconds), "ETIMEDOUT"
  end
  error(r[2], 0)
end

-- The handshake: AUTH, SELECT, CLIENT SETNAME in one batch. true | nil, msg, code
local function handshake(c, o)
  local cmds = {}
  if o.password then
    cmds[#cmds + 1] = o.username and {"AUTH", o.username, o.password} or {"AUTH", o.password}
  end
  if o.db and o.db ~= 0 then cmds[#cmds + 1] = {"SELECT", o.db} end
  if o.name then cmds[#cmds + 1] = {"CLIENT", "SETNAME", o.name} end
  if #cmds == 0 then return true end
  local res, msg, code = c:call_many(cmds)
  if not res then return nil, msg, code end
  for i, v in ipairs(res) do
    if getmetatable(v) == Error then
      return nil, ("redis %s: %s: %s"):format(o.target, cmds[i][1], v.message), "EREDIS"
    end
  end
  return true
end

-- Open a stream and a Conn, start the reader and writer, run the handshake.
-- -> conn, stream | nil, msg, code.  on_lost(conn, msg, code) is called once if it breaks.
local function establish(o, on_lost, pubsub)
  local s, msg, code = limited(o.timeout, "connect " .. o.target, open_stream, o)
  if not s then return nil, msg, code end
  if not o.path then s:set_nodelay(true) end
  local c = C.conn(o.target)
  local lost_once = false
  local function lost(m, k)
    if lost_once then return end
    lost_once = true
    c:fail(m, k)
    s:abort()
    on_lost(c, m, k)
  end
  if not pubsub then
    local take, write = c.take_output, s.write
    local writer = spawn(function()
      while true do
        local data = take(c)
        if not data then return end
        local ok, m, k = write(s, data)
        if not ok then return lost(m, k) end
      end
    end)
    writer.name = "redis writer"
  end
  local feed, read = c.feed, s.read
  local reader = spawn(function()
    while true do
      -- Once lost (close() aborts the stream), stop: this task may have been woken with data
      -- before the abort, and reading the closed stream would raise.
      if lost_once then return end
      local data, m, k = read(s)
      if not data then
        return lost(m or ("redis " .. o.target .. ": connection closed by the server"),
                    k or "ECONNRESET")
      end
      if pubsub then
        local ok, list, m2, k2 = pcall(c.parse, c, data)
        if not ok then return lost(tostring(list), "EPROTO") end
        if not list then return lost(m2, k2) end
        pubsub(list)
      else
        local ok, done, m2, k2 = pcall(feed, c, data)
        if not ok then return lost(tostring(done), "EPROTO") end
        if not done then return lost(m2, k2) end
      end
    end
  end)
  reader.name = "redis reader"
  local ok
  if not pubsub then
    ok, msg, code = limited(o.timeout, "redis " .. o.target .. " handshake", handshake, c, o)
  else
    ok = true
    if o.password then
      local auth = o.username and C.format("AUTH", o.username, o.password)
                   or C.format("AUTH", o.password)
      ok, msg, code = s:write(auth)
    end
  end
  if not ok then
    lost(msg, code)
    return nil, msg, code
  end
  return c, s, lost, reader
end

-- ---- the client ----------------------------------------------------------------------------

local Client = {__name = "corio.redis.Client"}
Client.__index = Client

local function backoff_loop(self, reconnect)
  local delay = self._o.backoff_min
  while not self._closed do
    sleep(delay)
    if self._closed then return end
    if reconnect() then return end
    delay = math.min(delay * 2, self._o.backoff_max)
  end
end

local connect_client

local function on_lost(self)
  return function(c, msg, code)
    if self._conn == c then
      self._conn = nil
      self._lost = {msg, code}
    end
    if self._closed then return end
    self._reconnecting = spawn(backoff_loop, self, function()
      return connect_client(self)
    end)
  end
end

-- connect the client once: true | nil, msg, code
connect_client = function(self)
  local c, s, lost = establish(self._o, on_lost(self))
  if not c then
    self._lost = {s, lost}
    return nil, s, lost
  end
  if self._closed then
    lost("redis: the client is closed", "ECANCELED")
    return nil
  end
  self._conn, self._lose = c, lost
  self._reconnecting = nil
  self._lost = nil
  self._ready:wake_all(true)
  self.connects = self.connects + 1
  return true
end

-- redis.connect{host = "127.0.0.1", port = 6379 | path = socket, db =, username =, password =,
--   timeout = 5, name =, backoff_min = 0.05, backoff_max = 2} -> client | nil, msg, code
-- [suspends]. The first connection must succeed; later losses reconnect in the background.
function M.connect(opts)
  local o = check_opts(opts or {}, "redis.connect")
  local self = setmetatable({_o = o, _ready = W.new(), _closed = false, connects = 0}, Client)
  local ok, msg, code = connect_client(self)
  if not ok then return nil, msg, code end
  return self
end

-- Wait (at most the client's timeout) for a connection: conn | nil, msg, code
local function wait_conn(self, op)
  if self._closed then error(op .. ": the redis client is closed", 3) end
  local c = self._conn
  if c then return c end
  local f = self._ready:add()
  local ok = limited(self._o.timeout, "redis " .. self._o.target, f.await, f)
  if not ok then self._ready:give_up(f) end
  c = self._conn
  if c then return c end
  local lost = self._lost or {}
  return nil, ("redis %s: not connected (%s)"):format(self._o.target,
                                                      tostring(lost[1] or "reconnecting")),
         lost[2] or "ENOTCONN"
end

-- r:call(command, args...) -> reply | nil, msg, "EREDIS" (an error reply) | nil, msg, code
-- [suspends]. Integers stay integers, bulk strings are strings, a null reply is nil, arrays
-- are tables (a null inside is redis.null), status replies are redis.status objects.
function Client:call(...)
  local c = self._conn
  if c then return c:call(...) end
  local msg, code
  c, msg, code = wait_conn(self, "call")
  if not c then return nil, msg, code end
  return c:call(...)
end

local function many(self, cmds, op)
  local c = self._conn
  if not c then
    local msg, code
    c, msg, code = wait_conn(self, op)
    if not c then return nil, msg, code end
  end
  return c:call_many(cmds)
end

local Batch = {__name = "corio.redis.Pipeline"}
Batch.__index = Batch
function Batch:call(...)
  if select("#", ...) == 0 then error("call: a command name is required", 2) end
  local n = #self._cmds + 1
  self._cmds[n] = {...}
  return n
end

-- r:pipeline(function(p) p:call(...) ... end) -> {reply, ...} | nil, msg, code  [suspends]
-- The commands leave together; error replies are redis.Error objects in the list.
function Client:pipeline(fn)
  local p = setmetatable({_cmds = {}}, Batch)
  fn(p)
  return many(self, p._cmds, "pipeline")
end

-- r:multi(function(tx) tx:call(...) ... end) -> {reply, ...} (EXEC's replies)
--   | nil, msg, "EREDIS" (the transaction was refused: EXECABORT) | nil, msg, code
-- MULTI, the commands and EXEC leave as one batch, so no other task's command falls between.
function Client:multi(fn)
  local p = setmetatable({_cmds = {{"MULTI"}}}, Batch)
  fn(p)
  local cmds = p._cmds
  cmds[#cmds + 1] = {"EXEC"}
  local res, msg, code = many(self, cmds, "multi")
  if not res then return nil, msg, code end
  local exec = res[#res]
  if getmetatable(exec) == Error then return nil, exec.message, "EREDIS" end
  if exec == json.null then
    return nil, "multi: the transaction was aborted (a watched key changed)", "EABORTED"
  end
  return exec
end

-- r:close(): calls in flight fail with "ECANCELED"; subscriptions end. Idempotent.
function Client:close()
  if self._closed then return end
  self._closed = true
  if self._reconnecting then self._reconnecting:cancel() end
  if self._lose then self._lose("redis " .. self._o.target .. ": the client is closed",
                                "ECANCELED") end
  self._ready:wake_all(false)
  if self._ps then self._ps:close() end
  if self._pool_close then self._pool_close() end
end
Client.__close = Client.close

function Client:connected() return self._conn ~= nil end
-- How many calls wait for replies on the current connection.
function Client:pending() return self._conn and self._conn:pending() or 0 end

Client.__tostring = function(r)
  return ("corio.redis.Client (%s, %s)"):format(r._o.target, r._closed and "closed"
    or r._conn and "connected" or "reconnecting")
end

-- A few conveniences; call() is the contract.
function Client:get(k) return self:call("GET", k) end
function Client:set(k, v, ...) return self:call("SET", k, v, ...) end
function Client:del(...) return self:call("DEL", ...) end
function Client:incr(k) return self:call("INCR", k) end
function Client:publish(ch, msg) return self:call("PUBLISH", ch, msg) end
function Client:ping() return self:call("PING") end

-- ---- pub/sub -------------------------------------------------------------------------------

local Subscription = {__name = "corio.redis.Subscription"}
Subscription.__index = Subscription

local PubSub = {}
PubSub.__index = PubSub

local function ps_dispatch(ps)
  return function(list)
    for _, m in ipairs(list) do
      local kind = type(m) == "table" and m[1]
      if kind == "message" then
        local subs = ps.channels[m[2]]
        if subs then for s in pairs(subs) do s:_push(m[2], m[3]) end end
      elseif kind == "pmessage" then
        local subs = ps.patterns[m[2]]
        if subs then for s in pairs(subs) do s:_push(m[3], m[4], m[2]) end end
      elseif kind == "subscribe" or kind == "psubscribe" then
        local key = kind .. " " .. tostring(m[2])
        local w = ps.confirm[key]
        if w then
          ps.confirm[key] = nil
          w:wake_all(true)
        end
      end
    end
  end
end

local function ps_send(ps, cmd, names)
  if not ps.stream or #names == 0 then return true end
  return ps.stream:write(C.format(cmd, unpack(names)))
end

local ps_connect

local function ps_lost(ps)
  return function(_, msg)
    ps.stream, ps.lose = nil, nil
    ps.last_error = msg
    if ps.closed then return end
    ps.task = spawn(backoff_loop, ps.client, function() return ps_connect(ps) end)
  end
end

-- (Re)connect the pub/sub connection and subscribe to everything wanted: true | nil, msg, code
ps_connect = function(ps)
  local c, s, lose = establish(ps.client._o, ps_lost(ps), ps_dispatch(ps))
  if not c then return nil, s, lose end
  if ps.closed then
    lose("redis: closed", "ECANCELED")
    return nil
  end
  ps.stream, ps.lose, ps.task = s, lose, nil
  local chans, pats = {}, {}
  for ch in pairs(ps.channels) do chans[#chans + 1] = ch end
  for p in pairs(ps.patterns) do pats[#pats + 1] = p end
  ps_send(ps, "SUBSCRIBE", chans)
  ps_send(ps, "PSUBSCRIBE", pats)
  ps.connects = ps.connects + 1
  return true
end

function PubSub:close()
  self.closed = true
  if self.task then self.task:cancel() end
  if self.lose then self.lose("redis: the client is closed", "ECANCELED") end
  for _, set in pairs(self.channels) do for s in pairs(set) do s:_end() end end
  for _, set in pairs(self.patterns) do for s in pairs(set) do s:_end() end end
end

local function pubsub_of(self)
  local ps = self._ps
  if ps then return ps end
  ps = setmetatable({client = self, channels = {}, patterns = {}, confirm = {}, connects = 0},
                    PubSub)
  self._ps = ps
  local ok, msg, code = ps_connect(ps)
  if not ok then
    ps.task = spawn(backoff_loop, self, function() return ps_connect(ps) end)
    return ps, msg, code
  end
  return ps
end

local function subscribe(self, kind, names, op)
  if self._closed then error(op .. ": the redis client is closed", 3) end
  if #names == 0 then error(op .. ": at least one name is required", 3) end
  for i, n in ipairs(names) do
    if type(n) ~= "string" then
      error(("%s: argument %d must be a string, got %s"):format(op, i, type(n)), 3)
    end
  end
  local ps = pubsub_of(self)
  local q = corio.Queue()
  local sub = setmetatable({_ps = ps, _kind = kind, _names = names, _q = q, dropped = 0,
                            size = self._o.subscription_size or 100000}, Subscription)
  local map = kind == "psubscribe" and ps.patterns or ps.channels
  local new, waits = {}, {}
  for _, n in ipairs(names) do
    local set = map[n]
    if not set then
      set = {}
      map[n] = set
      new[#new + 1] = n
      local key = kind .. " " .. n
      local w = ps.confirm[key] or W.new()
      ps.confirm[key] = w
      waits[#waits + 1] = w:add()
    end
    set[sub] = true
  end
  if ps.stream then
    ps_send(ps, kind == "psubscribe" and "PSUBSCRIBE" or "SUBSCRIBE", new)
  end
  -- Wait until the server confirmed every new name: messages published after subscribe
  -- returned are then received.
  local ok, msg, code = limited(self._o.timeout, op .. " " .. self._o.target, function()
    for _, f in ipairs(waits) do f:await() end
    return true
  end)
  if not ok then
    sub:close()
    return nil, msg, code
  end
  return sub
end

-- r:subscribe(channel, ...) -> subscription | nil, msg, code  [suspends until confirmed]
-- for channel, message in sub do ... end   (inside a task); sub:close()
function Client:subscribe(...) return subscribe(self, "subscribe", {...}, "subscribe") end
-- r:psubscribe(pattern, ...) -> subscription: for channel, message, pattern in sub do
function Client:psubscribe(...) return subscribe(self, "psubscribe", {...}, "psubscribe") end

function Subscription:_push(channel, msg, pattern)
  local q = self._q
  if q:qsize() >= self.size then
    q:get_nowait()
    self.dropped = self.dropped + 1
  end
  q:put_nowait({channel, msg, pattern})
end

function Subscription:_end()
  if not self._q:is_shut_down() then self._q:shutdown(false) end
end

-- sub:get() -> channel, message [, pattern] | nil once closed  [suspends]
function Subscription:get()
  local ok, item = pcall(self._q.get, self._q)
  if ok then return item[1], item[2], item[3] end
  if errors.is_queue_shut_down(item) then return nil end
  error(item, 0)
end
Subscription.__call = Subscription.get

-- sub:close(): unsubscribes (the server is told when no other subscription needs the name).
function Subscription:close()
  if self._closed then return end
  self._closed = true
  local ps = self._ps
  local map = self._kind == "psubscribe" and ps.patterns or ps.channels
  local gone = {}
  for _, n in ipairs(self._names) do
    local set = map[n]
    if set then
      set[self] = nil
      if next(set) == nil then
        map[n] = nil
        gone[#gone + 1] = n
      end
    end
  end
  if not ps.closed and ps.stream then
    ps_send(ps, self._kind == "psubscribe" and "PUNSUBSCRIBE" or "UNSUBSCRIBE", gone)
  end
  self._q:shutdown(true)
end
Subscription.__close = Subscription.close

Subscription.__tostring = function(s)
  return ("corio.redis.Subscription (%s %s)"):format(s._kind, concat(s._names, " "))
end

-- ---- a pool of connections, for blocking commands ------------------------------------------

local Pool = {__name = "corio.redis.Pool"}
Pool.__index = Pool

-- redis.pool{size = 10, <connect's options>} -> pool. Each call takes a connection of its own
-- (opened on demand, at most size at once), so BLPOP or XREADGROUP BLOCK stall no one else.
function M.pool(opts)
  local o = check_opts(opts or {}, "redis.pool")
  local size = o.size or 10
  if math.type(size) ~= "integer" or size < 1 then
    error("redis.pool: size must be a positive integer", 2)
  end
  return setmetatable({_o = o, size = size, _idle = {}, _open = 0, _waiters = W.new(),
                       _closed = false}, Pool)
end

-- pool:acquire() -> client | nil, msg, code  [suspends while size clients are in use]
function Pool:acquire()
  if self._closed then error("acquire: the pool is closed", 2) end
  while true do
    local n = #self._idle
    if n > 0 then
      local r = self._idle[n]
      self._idle[n] = nil
      if not r._closed then return r end
      self._open = self._open - 1
    elseif self._open < self.size then
      self._open = self._open + 1
      local r, msg, code = M.connect(self._o)
      if not r then
        self._open = self._open - 1
        self._waiters:wake(true)
        return nil, msg, code
      end
      return r
    else
      local f = self._waiters:add()
      local ok, e = pcall(f.await, f)
      if not ok then
        self._waiters:give_up(f)
        error(e, 0)
      end
    end
  end
end

-- pool:release(client [, broken]): give it back; a broken one (a call was cancelled or timed
-- out while the server may still be blocked on it) is closed instead.
function Pool:release(r, broken)
  if broken or self._closed or r._closed or not r._conn then
    r:close()
    self._open = self._open - 1
  else
    self._idle[#self._idle + 1] = r
  end
  self._waiters:wake(true)
end

-- pool:call(command, args...) -> as client:call, on a connection of its own  [suspends]
function Pool:call(...)
  local r, msg, code = self:acquire()
  if not r then return nil, msg, code end
  local res = pack(pcall(r.call, r, ...))
  self:release(r, not res[1])
  if not res[1] then error(res[2], 0) end
  return unpack(res, 2, res.n)
end

-- pool:with(function(client) ... end) -> fn's results: a connection for a sequence of commands
-- (WATCH ... MULTI/EXEC, a blocking loop).
function Pool:with(fn)
  local r, msg, code = self:acquire()
  if not r then return nil, msg, code end
  local res = pack(pcall(fn, r))
  self:release(r, not res[1])
  if not res[1] then error(res[2], 0) end
  return unpack(res, 2, res.n)
end

function Pool:close()
  if self._closed then return end
  self._closed = true
  for _, r in ipairs(self._idle) do r:close() end
  self._idle = {}
  self._waiters:wake_all(false)
end
Pool.__close = Pool.close

-- ---- the queue and the bridge live in their own files --------------------------------------

function M.queue(r, name, opts) return require("corio.redis.queue").new(r, name, opts) end
function M.bridge(bus, r, opts) return require("corio.redis.bridge").new(bus, r, opts) end

M.Client, M.Subscription, M.Pool = Client, Subscription, Pool
M._opts = check_opts

return M
