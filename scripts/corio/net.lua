-- corio.net: TCP, Unix sockets, UDP and DNS. The mechanism is C ("corio._net": streams,
-- listeners, sockets, the resolver); this module is the policy: names resolved before use,
-- happy eyeballs (RFC 8305) in connect, a task per connection in serve, lines().
-- Exports connect, connect_unix, serve, udp, getaddrinfo, getnameinfo, stdin, stdout, stderr.
local corio = require "corio"
local C = require "corio._net"
local core = require "corio.core"

local M = {}

local type, error, pcall, setmetatable, tostring = type, error, pcall, setmetatable, tostring
local math_type = math.type

M.getaddrinfo = C.getaddrinfo
M.getnameinfo = C.getnameinfo

-- ---- names --------------------------------------------------------------------------------

local function is_ip(host)
  return host:match("^%d+%.%d+%.%d+%.%d+$") ~= nil or host:find(":", 1, true) ~= nil
end

local function target(host, port)
  if host:find(":", 1, true) and host:sub(1, 1) ~= "[" then return ("[%s]:%d"):format(host, port) end
  return ("%s:%d"):format(host, port)
end

-- resolve(op, host, port [, socktype]) -> list of numeric addresses | nil, msg, code
local function resolve(op, host, port, socktype)
  if is_ip(host) then return {host} end
  local list, err, code = C.getaddrinfo(host, nil, {socktype = socktype})
  if not list then
    return nil, ("%s %s: %s"):format(op, target(host, port), err:match(": (.*)$") or err), code
  end
  local out, seen = {}, {}
  for _, a in ipairs(list) do
    if not seen[a.addr] then seen[a.addr] = true; out[#out + 1] = a.addr end
  end
  if #out == 0 then
    return nil, ("%s %s: no address"):format(op, target(host, port)), "EAI_NONAME"
  end
  return out
end

-- net.resolve_host(host) -> the first numeric address for host | nil, msg, code  [suspends
-- unless host is numeric]. For listeners: corio.web's listen uses it.
function M.resolve_host(host, port)
  local list, err, code = resolve("listen", host, port or 0)
  if not list then return nil, err, code end
  return list[1]
end

-- RFC 8305 section 4: alternate the families, starting with the resolver's first choice.
local function interleave(addrs)
  local v6, v4 = {}, {}
  for _, a in ipairs(addrs) do
    if a:find(":", 1, true) then v6[#v6 + 1] = a else v4[#v4 + 1] = a end
  end
  local first, second = v6, v4
  if not addrs[1]:find(":", 1, true) then first, second = v4, v6 end
  local out = {}
  for i = 1, math.max(#first, #second) do
    out[#out + 1] = first[i]
    out[#out + 1] = second[i]
  end
  return out
end

-- ---- connect ------------------------------------------------------------------------------

local function check_port(fn, port, level)
  if math_type(port) ~= "integer" or port < 0 or port > 65535 then
    error(("%s: port must be an integer in 0..65535, got %s"):format(fn, tostring(port)), level + 1)
  end
end

-- Race the addresses: start one, give it `delay` seconds, then start the next alongside; the
-- first to connect wins and the others are cancelled (their sockets closed). A failure starts
-- the next one at once. All failed: the last error.
local function race(addrs, port, opts, delay)
  local running, nexti = {}, 1
  local err, code = nil, nil
  local winner
  local function start()
    local a = addrs[nexti]
    nexti = nexti + 1
    running[#running + 1] = corio.spawn(C.connect, a, port, opts.local_address)
  end
  local function cleanup()
    for _, t in ipairs(running) do
      if t:done() then
        local s = t:result()
        if s and s ~= winner then s:close() end
      else
        t:cancel()
      end
    end
  end
  local ok, e = pcall(function()
    start()
    while not winner do
      local more = nexti <= #addrs
      corio.wait(running, {return_when = "FIRST_COMPLETED",
                                        timeout = more and delay or nil})
      local still = {}
      for _, t in ipairs(running) do
        if t:done() then
          local s, m, c = t:result()
          if s and not winner then winner = s
          elseif s then s:close()
          else err, code = m, c end
        else
          still[#still + 1] = t
        end
      end
      running = still
      if winner then return end
      -- Time is up for the attempts running, or one failed: start the next address now.
      if more then start()
      elseif #running == 0 then return end
    end
  end)
  cleanup()
  if not ok then
    if winner then winner:close() end
    error(e, 0)
  end
  if winner then return winner end
  return nil, err, code
end

local function connect_any(host, port, opts)
  local addrs, err, code = resolve("connect", host, port)
  if not addrs then return nil, err, code end
  local delay = opts.happy_eyeballs or 0.25
  local s
  if #addrs == 1 then
    s, err, code = C.connect(addrs[1], port, opts.local_address)
  else
    s, err, code = race(interleave(addrs), port, opts, delay)
  end
  if not s then return nil, err, code end
  if opts.nodelay ~= false then s:set_nodelay(true) end
  if opts.limit then s:_set_limit(opts.limit) end
  return s
end

-- net.connect(host, port [, {timeout=, local_address=, nodelay=true, limit=65536,
--                            happy_eyeballs=0.25}]) -> stream | nil, msg, code  [suspends]
function M.connect(host, port, opts)
  if type(host) ~= "string" then
    error(("connect: host must be a string, got %s"):format(type(host)), 2)
  end
  check_port("connect", port, 2)
  opts = opts or {}
  if opts.timeout == nil then return connect_any(host, port, opts) end
  local r = table.pack(pcall(corio.timeout, opts.timeout, connect_any, host, port, opts))
  if not r[1] then
    if corio.is_timeout(r[2]) then
      return nil, ("connect %s: timed out after %g seconds"):format(target(host, port),
                                                                     opts.timeout), "ETIMEDOUT"
    end
    error(r[2], 0)
  end
  return table.unpack(r, 2, r.n)
end

-- net.connect_unix(path [, {timeout=, limit=}]) -> stream | nil, msg, code  [suspends]
function M.connect_unix(path, opts)
  if type(path) ~= "string" then
    error(("connect_unix: path must be a string, got %s"):format(type(path)), 2)
  end
  opts = opts or {}
  local s, err, code = C.connect_unix(path)
  if s and opts.limit then s:_set_limit(opts.limit) end
  return s, err, code
end

-- ---- streams: what is policy over the C methods --------------------------------------------

local Stream = C._methods("corio.net.Stream")

-- for line in s:lines() do ... end: lines without their "\n" / "\r\n". The loop ends at the
-- end of the stream or when the stream is closed meanwhile (by another task: ECANCELED); an I/O
-- error or a line over the limit is raised.
function Stream:lines()
  return function()
    if self.closed then return nil end
    local line, err, code = self:read_line()
    if line == nil and err and code ~= "ECANCELED" then error(err, 2) end
    return line
  end
end

-- ---- serve --------------------------------------------------------------------------------

local Server = {__name = "corio.net.Server"}
Server.__index = Server
local WEAK_KEYS = {__mode = "k"}

-- Each connection runs the handler in a task that owns the stream: the stream is closed when
-- the handler returns or fails (the task's entry holds it to-be-closed: no wrapper frame, which
-- an idle connection would pay for). An error is kept in the task and reported (with its
-- traceback) like any task's.
local spawn_owning = require("corio.core")._spawn_owning

local function accept_loop(srv)
  local l = srv._l
  local guard <close> = setmetatable({}, {__close = function() l:close() end})
  while not l.closed do  -- server:close() may come before this task first runs
    local s, err, code = l:accept()
    if s then
      srv._clients[s] = spawn_owning(srv._handler, s)
    elseif code == "ECANCELED" or l.closed then
      return
    else
      -- Out of descriptors or memory: say so, and retry a little later rather than spin.
      io.stderr:write(("corio.net: %s\n"):format(err))
      corio.sleep(0.1)
    end
  end
end

-- net.serve(handler, {host="127.0.0.1", port=0, path=, backlog=511, reuseport=, limit=65536})
--   -> server | nil, msg, code
-- handler(stream) runs in its own task for each connection.
function M.serve(handler, opts)
  if type(handler) ~= "function" then
    error(("serve: handler must be a function, got %s"):format(type(handler)), 2)
  end
  opts = opts or {}
  local args = {path = opts.path, backlog = opts.backlog, reuseport = opts.reuseport,
                limit = opts.limit, port = opts.port}
  if not opts.path then
    if opts.port ~= nil then check_port("serve", opts.port, 2) end
    local host, err, code = M.resolve_host(opts.host or "127.0.0.1", opts.port)
    if not host then return nil, err, code end
    args.host = host
  end
  local l, err, code = C.listen(args)
  if not l then return nil, err, code end
  -- _clients: stream -> its handler's task. Weak keys: a closed stream nobody holds leaves it.
  local srv = setmetatable({_l = l, _clients = setmetatable({}, WEAK_KEYS), _handler = handler,
                            port = l.port, sockname = l.sockname, path = opts.path}, Server)
  srv._acceptor = corio.spawn(accept_loop, srv)
  srv._acceptor.name = "net.serve"  -- corio.pstree: "net.serve [...] accept tcp 127.0.0.1:80"
  return srv
end

-- server:close(): stop accepting (connections being served go on).
function Server:close()
  self._l:close()
end
Server.__close = Server.close

-- server:close_clients([abort]): close every open connection (abort: reset them).
function Server:close_clients(abort)
  for s in pairs(self._clients) do
    if abort then s:abort() else s:close() end
  end
end

-- server:wait_closed()  [suspends until the server is closed and every connection's handler
-- has finished]
function Server:wait_closed()
  while true do
    local list = {self._acceptor}
    for _, t in pairs(self._clients) do list[#list + 1] = t end
    local busy = false
    for _, t in ipairs(list) do
      if not t:done() then busy = true; break end
    end
    if not busy then return true end
    core._wait(list, #list, false, "Server:wait_closed")  -- corio.ps names it
  end
end

-- server:clients() -> number of open connections
function Server:clients()
  local n = 0
  for s in pairs(self._clients) do
    if not s.closed then n = n + 1 end
  end
  return n
end

-- ---- UDP ----------------------------------------------------------------------------------

local UDP = C._methods("corio.net.UDP")
local udp_send, udp_connect = UDP.send, UDP.connect

-- sock:send(data [, host, port]): host may be a name.
function UDP:send(data, host, port)
  if host ~= nil and type(host) == "string" and not is_ip(host) then
    local addrs, err, code = resolve("send", host, port, "dgram")
    if not addrs then return nil, err, code end
    host = addrs[1]
  end
  return udp_send(self, data, host, port)
end

-- sock:connect(host, port): host may be a name.
function UDP:connect(host, port)
  if type(host) == "string" and not is_ip(host) then
    local addrs, err, code = resolve("connect", host, port, "dgram")
    if not addrs then return nil, err, code end
    host = addrs[1]
  end
  return udp_connect(self, host, port)
end

-- net.udp{host="127.0.0.1", port=0, reuseaddr=, remote_host=, remote_port=}
--   -> socket | nil, msg, code
function M.udp(opts)
  opts = opts or {}
  local host, err, code = M.resolve_host(opts.host or "127.0.0.1", opts.port)
  if not host then return nil, err, code end
  local s
  s, err, code = C.udp{host = host, port = opts.port, reuseaddr = opts.reuseaddr}
  if not s then return nil, err, code end
  if opts.remote_host then
    local ok
    ok, err, code = s:connect(opts.remote_host, opts.remote_port)
    if not ok then s:close(); return nil, err, code end
  end
  return s
end

-- ---- standard streams ---------------------------------------------------------------------

local std = {}
local function stdio(fd)
  local s = std[fd]
  if s and not s.closed then return s end
  local err, code
  s, err, code = C.stdio(fd)
  if not s then return nil, err, code end
  std[fd] = s
  return s
end

-- corio.stdin() / net.stdin() -> the stream on standard input (the same one each time, until
-- it is closed); stdout(), stderr() likewise for writing.
-- net.from_fd(fd) -> stream | nil, msg, code: a descriptor this process inherited (a pipe or
-- socket a parent passed down, as process.spawn's fds do) as a stream; closing the stream
-- closes the descriptor.
function M.from_fd(fd)
  if math.type(fd) ~= "integer" or fd < 3 then
    error(("from_fd: expected a descriptor above 2 (stdin() and the like are for 0-2), got %s")
      :format(tostring(fd)), 2)
  end
  return C.stdio(fd)
end

function M.stdin() return stdio(0) end
function M.stdout() return stdio(1) end
function M.stderr() return stdio(2) end

M.Server = Server
return M
