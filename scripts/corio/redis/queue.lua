-- corio.redis.queue: durable work queues on Redis Streams with a consumer group. Exports new
-- (reached as redis.queue(r, name, opts)).
--
-- A job is a stream entry {data = <JSON>, attempt = n [, error = last error]}. Consumers read
-- with XREADGROUP (on a connection of the queue's own, since BLOCK would stall the shared one);
-- a job read and neither acked nor failed within `visibility` seconds is taken over by another
-- consumer (XAUTOCLAIM, in a server-side script that also reads its delivery count); once a
-- job has had max_attempts attempts it moves to the dead-letter stream NAME:dead with its last
-- error. Delayed retries wait in the sorted set NAME:delayed until a consumer moves them back.
--
-- Delivery is at least once: a job is removed (XACK + XDEL, in one MULTI) only when acked,
-- failed or re-queued. Duplicates happen when a consumer outlives its visibility window (its
-- job was handed to another meanwhile) or dies after the work but before the ack: at most the
-- jobs a consumer held at the time (its read batch).
local corio = require "corio"
local redis = require "corio.redis"
local json = require "corio.json"

local type, tostring, error, setmetatable, ipairs, tonumber, pcall =
  type, tostring, error, setmetatable, ipairs, tonumber, pcall
local encode, decode = json.encode, json.decode

local M = {}

-- KEYS: stream, dead. ARGV: group, consumer, min_idle_ms, count, max_attempts.
-- Claims the jobs idle for too long; returns {{id, data, attempt, error}, ...} for those that
-- may run again and dead-letters the others.
local RECLAIM = [[
local res = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], '0-0', 'COUNT', ARGV[4])
local out, max = {}, tonumber(ARGV[5])
for _, e in ipairs(res[2]) do
  local id, f = e[1], e[2]
  local a0, data, err = 1, '', ''
  for i = 1, #f, 2 do
    if f[i] == 'attempt' then a0 = tonumber(f[i + 1])
    elseif f[i] == 'data' then data = f[i + 1]
    elseif f[i] == 'error' then err = f[i + 1] end
  end
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)[1]
  local k = p and p[4] or 2
  if a0 + k - 2 >= max then
    redis.call('XADD', KEYS[2], '*', 'data', data, 'attempt', a0 + k - 2, 'id', id, 'error',
               'visibility timeout: not acknowledged in time (consumer lost?)')
    redis.call('XACK', KEYS[1], ARGV[1], id)
    redis.call('XDEL', KEYS[1], id)
  else
    out[#out + 1] = {id, data, a0 + k - 1, err}
  end
end
return out
]]

-- KEYS: stream, delayed. ARGV: count. Moves the delayed jobs that are due back to the stream.
local MOVE_DUE = [[
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, p in ipairs(due) do
  local a, n, rest = string.match(p, '^[^:]*:(%d+):(%d+):(.*)$')
  n = tonumber(n)
  redis.call('XADD', KEYS[1], '*', 'data', string.sub(rest, n + 1), 'attempt', a, 'error',
             string.sub(rest, 1, n))
  redis.call('ZREM', KEYS[2], p)
end
return #due
]]

-- KEYS: stream, delayed. ARGV: group, id, delay_ms, member. Re-queue later, atomically.
local DELAY = [[
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[4])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return 1
]]

local Queue = {__name = "corio.redis.Queue"}
Queue.__index = Queue
local Job = {__name = "corio.redis.Job"}
Job.__index = Job

local function default_consumer()
  local h = io.open("/proc/sys/kernel/hostname")
  local host = h and h:read("l") or "host"
  if h then h:close() end
  return ("%s-%d-%06d"):format(host, math.floor(corio.now() * 1000) % 1000000,
                               math.random(0, 999999))
end

local function num_opt(opts, k, dflt, op)
  local v = opts[k]
  if v == nil then return dflt end
  if type(v) ~= "number" or v <= 0 then
    error(("%s: %s must be a positive number, got %s"):format(op, k, tostring(v)), 4)
  end
  return v
end

local function ensure_group(self)
  local ok, msg, code = self.r:call("XGROUP", "CREATE", self.name, self.group, "0", "MKSTREAM")
  if ok or (code == "EREDIS" and msg:find("BUSYGROUP", 1, true)) then return true end
  return nil, msg, code
end

-- redis.queue(r, name, {group = "workers", consumer = <unique>, visibility = 30,
--   max_attempts = 5, maxlen = nil, batch = 16, block = 1}) -> queue | nil, msg, code
-- [suspends: creates the stream and the group if needed]. maxlen caps the backlog (XADD
-- MAXLEN ~): beyond it the oldest waiting jobs are dropped, so leave it nil to lose nothing.
function M.new(r, name, opts)
  if getmetatable(r) ~= redis.Client then error("redis.queue: expected a client", 2) end
  if type(name) ~= "string" or name == "" then error("redis.queue: name must be a string", 2) end
  opts = opts or {}
  local op = "redis.queue"
  local self = setmetatable({
    r = r, name = name, dead = name .. ":dead", delayed = name .. ":delayed",
    group = opts.group or "workers", consumer = opts.consumer or default_consumer(),
    visibility = num_opt(opts, "visibility", 30, op),
    max_attempts = math.tointeger(num_opt(opts, "max_attempts", 5, op)) or 5,
    maxlen = opts.maxlen and math.tointeger(num_opt(opts, "maxlen", 1, op)),
    batch = math.tointeger(num_opt(opts, "batch", 16, op)) or 16,
    block = num_opt(opts, "block", 1, op),
    _buf = {}, _head = 1, _next_maint = 0, _lock = corio.Lock(),
  }, Queue)
  local ok, msg, code = ensure_group(self)
  if not ok then return nil, msg, code end
  return self
end

-- q:put(value) -> id | nil, msg, code  [suspends]. value: anything corio.json encodes
-- (integers stay exact).
function Queue:put(value)
  local data = encode(value)
  if self.maxlen then
    return self.r:call("XADD", self.name, "MAXLEN", "~", self.maxlen, "*", "data", data,
                       "attempt", 1)
  end
  return self.r:call("XADD", self.name, "*", "data", data, "attempt", 1)
end

local function new_job(q, id, data, attempt, err)
  local ok, value = pcall(decode, data)
  return setmetatable({queue = q, id = id, value = ok and value or data, raw = data,
                       attempt = attempt, error = err ~= "" and err or nil}, Job)
end

-- The connection for XREADGROUP BLOCK: the queue's own.
local function blocking(self)
  local b = self._blocking
  if b and not b._closed then return b end
  local msg, code
  b, msg, code = redis.connect(self.r._o)
  if not b then return nil, msg, code end
  self._blocking = b
  return b
end

local function maintain(self)
  local now = corio.now()
  if now < self._next_maint then return end
  self._next_maint = now + math.max(0.2, math.min(self.visibility / 4, 5))
  local r = self.r
  r:call("EVAL", MOVE_DUE, 2, self.name, self.delayed, 100)
  local res = r:call("EVAL", RECLAIM, 2, self.name, self.dead, self.group, self.consumer,
                     math.floor(self.visibility * 1000), 100, self.max_attempts)
  if type(res) == "table" then
    local buf = self._buf
    for _, e in ipairs(res) do
      buf[#buf + 1] = new_job(self, e[1], e[2], e[3], e[4])
    end
  end
end

-- Fill the buffer: one XREADGROUP (blocking up to `block` seconds). true | nil, msg, code
local function fetch(self)
  maintain(self)
  if #self._buf >= self._head then return true end
  local b, msg, code = blocking(self)
  if not b then return nil, msg, code end
  local res
  res, msg, code = b:call("XREADGROUP", "GROUP", self.group, self.consumer, "COUNT", self.batch,
                          "BLOCK", math.floor(self.block * 1000), "STREAMS", self.name, ">")
  if res == nil and msg then
    if code == "EREDIS" and msg:find("NOGROUP", 1, true) then
      local ok, m2, c2 = ensure_group(self)
      if not ok then return nil, m2, c2 end
      return true
    end
    return nil, msg, code
  end
  if type(res) == "table" then
    local buf = self._buf
    for _, stream in ipairs(res) do
      for _, e in ipairs(stream[2]) do
        local f, data, attempt, err = e[2], "", 1, ""
        if type(f) == "table" then
          for i = 1, #f, 2 do
            local k = f[i]
            if k == "data" then data = f[i + 1]
            elseif k == "attempt" then attempt = tonumber(f[i + 1]) or 1
            elseif k == "error" then err = f[i + 1] end
          end
          buf[#buf + 1] = new_job(self, e[1], data, attempt, err)
        end
      end
    end
  end
  return true
end

-- q:get() -> job | nil, msg, code  [suspends until a job is there]
function Queue:get()
  if self._closed then error("get: the queue is closed", 2) end
  while true do
    local buf, h = self._buf, self._head
    local job = buf[h]
    if job then
      buf[h] = nil
      if h >= #buf then self._buf, self._head = {}, 1 else self._head = h + 1 end
      return job
    end
    local ok, msg, code = self._lock:with(fetch, self)
    if not ok then
      if self._closed then return nil, msg, code end
      corio.sleep(0.1)  -- the connection is down: the client reconnects meanwhile
    end
  end
end

-- for job in q:jobs() do ... job:ack() end  (inside a task; ends when the queue is closed)
function Queue:jobs()
  return function()
    if self._closed then return nil end
    local job = self:get()
    return job
  end
end

local function done(job, op)
  if job._done then error(op .. ": the job " .. job.id .. " was already " .. job._done, 3) end
end

-- job:ack() -> true | nil, msg, code  [suspends]: done, removed from the stream.
function Job:ack()
  done(self, "ack")
  local q = self.queue
  local res, msg, code = q.r:multi(function(tx)
    tx:call("XACK", q.name, q.group, self.id)
    tx:call("XDEL", q.name, self.id)
  end)
  if not res then return nil, msg, code end
  self._done = "acknowledged"
  return true
end

local function dead_letter(job, reason)
  local q = job.queue
  return q.r:multi(function(tx)
    tx:call("XADD", q.dead, "*", "data", job.raw, "attempt", job.attempt, "id", job.id,
            "error", reason)
    tx:call("XACK", q.name, q.group, job.id)
    tx:call("XDEL", q.name, job.id)
  end)
end

-- job:fail(reason) -> true | nil, msg, code  [suspends]: give up now, into NAME:dead.
function Job:fail(reason)
  done(self, "fail")
  local res, msg, code = dead_letter(self, tostring(reason or "failed"))
  if not res then return nil, msg, code end
  self._done = "failed"
  return true
end

-- job:retry([delay [, reason]]) -> true | nil, msg, code  [suspends]: run it again (after
-- delay seconds); this attempt counts, and after max_attempts the job goes to NAME:dead.
function Job:retry(delay, reason)
  done(self, "retry")
  local q = self.queue
  reason = tostring(reason or "retried")
  local res, msg, code
  if self.attempt >= q.max_attempts then
    res, msg, code = dead_letter(self, reason)
    self._done = "dead-lettered"
  elseif delay and delay > 0 then
    local member = ("%s:%d:%d:%s%s"):format(self.id, self.attempt + 1, #reason, reason, self.raw)
    res, msg, code = q.r:call("EVAL", DELAY, 2, q.name, q.delayed, q.group, self.id,
                              math.floor(delay * 1000), member)
    self._done = "retried"
  else
    res, msg, code = q.r:multi(function(tx)
      tx:call("XADD", q.name, "*", "data", self.raw, "attempt", self.attempt + 1, "error",
              reason)
      tx:call("XACK", q.name, q.group, self.id)
      tx:call("XDEL", q.name, self.id)
    end)
    self._done = "retried"
  end
  if not res then
    self._done = nil
    return nil, msg, code
  end
  return true
end

Job.__tostring = function(j)
  return ("corio.redis.Job %s (attempt %d)"):format(j.id, j.attempt)
end

-- q:work(handler [, {concurrency = 1}]) [suspends until the queue is closed]: runs
-- handler(value, job) for each job in `concurrency` tasks; a normal return acks the job, an
-- error retries it (its message becomes the job's last error). The handler may ack, retry or
-- fail the job itself.
function Queue:work(handler, opts)
  local n = opts and opts.concurrency or 1
  local tasks = {}
  for i = 1, n do
    tasks[i] = corio.spawn(function()
      for job in self:jobs() do
        local ok, err = pcall(handler, job.value, job)
        if not job._done then
          if ok then job:ack()
          elseif corio.is_cancelled(err) then error(err, 0)
          else job:retry(0, tostring(err)) end
        elseif not ok then
          error(err, 0)
        end
      end
    end)
  end
  return corio.gather(tasks)
end

-- q:stats() -> {pending = waiting to be read, in_flight = read and not yet acked, dead =,
--   delayed =} | nil, msg, code  [suspends]
function Queue:stats()
  local res, msg, code = self.r:pipeline(function(p)
    p:call("XLEN", self.name)
    p:call("XPENDING", self.name, self.group)
    p:call("XLEN", self.dead)
    p:call("ZCARD", self.delayed)
  end)
  if not res then return nil, msg, code end
  for _, v in ipairs(res) do
    if redis.is_error(v) then return nil, v.message, "EREDIS" end
  end
  local pel = type(res[2]) == "table" and res[2][1] or 0
  return {pending = res[1] - pel, in_flight = pel, dead = res[3], delayed = res[4]}
end

-- q:dead_letters([count]) -> {{id =, value =, attempt =, error =, original_id =}, ...}
function Queue:dead_letters(count)
  local res, msg, code = self.r:call("XRANGE", self.dead, "-", "+", "COUNT", count or 100)
  if not res then return nil, msg, code end
  local out = {}
  for _, e in ipairs(res) do
    local t = {id = e[1]}
    local f = e[2]
    for i = 1, #f, 2 do t[f[i]] = f[i + 1] end
    t.original_id, t.id = t.id, e[1]
    local ok, v = pcall(decode, t.data or "null")
    t.value = ok and v or t.data
    t.attempt = tonumber(t.attempt)
    out[#out + 1] = t
  end
  return out
end

-- q:close(): stops jobs()/get() (a fetch in progress ends within `block` seconds... at once:
-- its connection is closed).
function Queue:close()
  if self._closed then return end
  self._closed = true
  if self._blocking then self._blocking:close() end
end
Queue.__close = Queue.close

Queue.__tostring = function(q)
  return ("corio.redis.Queue %q (group %s, consumer %s)"):format(q.name, q.group, q.consumer)
end

return M
