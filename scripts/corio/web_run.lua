-- corio.web_run: web.run_app, the part of corio.web that runs a server as a program: print
-- where it listens, serve until SIGINT/SIGTERM, shut down gracefully. With workers = n, this
-- process becomes a supervisor: it binds the listening socket once and starts n copies of the
-- program that all serve it, restarts one that dies, replaces them one by one on SIGHUP
-- (graceful reload) and stops them on SIGINT/SIGTERM. Built on corio.signal and
-- corio.process. Exports: run_app.
local corio = require "corio"
local signal = require "corio.signal"
local process = require "corio.process"
local net = require "corio.net"
local Queue = require("corio.queue").Queue
local C = require "corio._http_server"

local M = {}

-- A worker finds its two inherited descriptors in these variables: the listening socket, and
-- a pipe to the supervisor ("ready" goes up it once the worker serves; its end of file tells
-- the worker that the supervisor is gone).
local LISTEN_ENV, CONTROL_ENV = "CORIO_WEB_WORKER", "CORIO_WEB_CONTROL"
local LISTEN_FD, CONTROL_FD = 3, 4
-- How long a new worker may take to say it serves before it counts as a failed start.
local START_TIMEOUT = 60

local function say(opts, fmt, ...)
  local msg = fmt:format(...)
  if opts.print == false then return end
  if type(opts.print) == "function" then opts.print(msg) else
    io.stdout:write(msg, "\n")
    io.stdout:flush()
  end
end

local function warn(fmt, ...)
  io.stderr:write("corio.web: ", fmt:format(...), "\n")
end

-- Serve in this process until a shutdown signal (or, in a worker, until its supervisor is
-- gone), then drain. worker: nil, or {fd =, control =} (the inherited descriptors).
local function serve(app, opts, worker)
  local watch = assert(signal.watch {"INT", "TERM"})
  local listen = {}
  for k, v in pairs(opts) do listen[k] = v end
  if worker then listen.fd = worker.fd end
  local server, err = app:listen(listen)
  if not server then
    watch:close()
    error("run_app: " .. err, 0)
  end
  if not worker then
    say(opts, "corio.web: listening on http://%s:%d (Ctrl-C to stop)", server.host, server.port)
  end
  if opts.on_ready then opts.on_ready(server) end
  -- why to stop: a signal, or the supervisor's end of the control pipe closing
  local stop = Queue()
  local tasks = {corio.spawn(function()
    while true do stop:put("SIG" .. watch:next()) end
  end)}
  local control
  if worker then
    control = assert(net.from_fd(worker.control))
    assert(control:write("ready\n"))
    tasks[2] = corio.spawn(function()
      while control:read() do end
      warn("worker %d: the supervisor is gone; shutting down", process.getpid())
      stop:put("the supervisor is gone")
    end)
  end
  local why = stop:get()
  if not worker then say(opts, "corio.web: %s: shutting down", why) end
  -- While draining, the signals stay caught: a second one in a plain server means "now"
  -- (as a second Ctrl-C does for most servers); a worker ignores them, since Ctrl-C reaches
  -- it and then its supervisor's SIGTERM follows (the supervisor decides when to kill).
  tasks[#tasks + 1] = corio.spawn(function()
    while true do
      local again = stop:get()
      if not worker then
        say(opts, "corio.web: %s again: closing every connection now", again)
        server:abort()
        return
      end
    end
  end)
  local clean = server:shutdown(opts.grace or 10)
  for _, t in ipairs(tasks) do t:cancel() end
  watch:close()
  if control then control:close() end
  return clean
end

-- ---- the supervisor ------------------------------------------------------------------------

-- The supervisor keeps one worker in each of n slots. A worker record: {p = Process, slot =,
-- ready = bool, retired = bool}.
local function supervise(app, opts)
  local n = opts.workers
  local script_args = _G.arg or {}
  if not script_args[0] then error("run_app: workers need the script path (arg[0])", 0) end
  local host, port = opts.host or "127.0.0.1", opts.port or 8080
  local ip, err = net.resolve_host(host, port)
  if not ip then error("run_app: " .. err, 0) end
  local sock, serr = C.socket {host = ip, port = port, backlog = opts.backlog,
                               reuseport = opts.reuseport}
  if not sock then error("run_app: " .. serr, 0) end
  port = sock:port()
  -- the workers: this program again, with this environment plus where their descriptors are
  local cmd = {assert(process.exepath()), script_args[0], table.unpack(script_args)}
  local env = process.environ()
  env[LISTEN_ENV], env[CONTROL_ENV] = tostring(LISTEN_FD), tostring(CONTROL_FD)
  cmd.env, cmd.stdin, cmd.group = env, "null", false
  cmd.fds = {[LISTEN_FD] = sock:fileno(), [CONTROL_FD] = "pipe"}

  local watch = assert(signal.watch {"INT", "TERM", "HUP"})
  local slots, live = {}, {}  -- slot -> its worker; every worker not yet reaped -> true
  local stopping = false
  local restart  -- forward

  -- Make w the worker of its slot; the one it replaces (if still running) stops gracefully
  -- (SIGTERM: it stops accepting and drains its requests within the grace period).
  local function install(w)
    local old = slots[w.slot]
    slots[w.slot] = w
    if old and old ~= w and live[old] then
      old.retired = true
      old.p:kill("TERM")
    end
  end

  -- Start a worker for `slot`; once it serves, it is the slot's worker. -> worker | nil (it
  -- did not start, and was killed)
  local function launch(slot)
    local p, perr = process.spawn(cmd)
    if not p then
      warn("cannot start a worker: %s", perr)
      return nil
    end
    local w = {p = p, slot = slot, started = corio.now()}
    live[w] = true
    -- its reaper: the one task that waits for this process
    corio.spawn(function()
      local code, sig = p:wait()
      p:close()
      live[w] = nil
      if stopping or w.retired or not w.ready or slots[slot] ~= w then return end
      warn("worker %d exited (%s); restarting", slot, sig and "SIG" .. sig or "status " .. code)
      restart(slot, w)
    end)
    local control = p.fds[CONTROL_FD]
    local ok, line = pcall(corio.timeout, START_TIMEOUT, control.read_line, control)
    if ok and line == "ready" then
      w.ready = true
      install(w)
      return w
    end
    if not ok and not corio.is_timeout(line) then
      p:kill("KILL")
      error(line, 0)  -- cancelled
    end
    if not stopping then
      warn("worker %d (pid %d) did not start%s", slot, p.pid,
        ok and line == nil and " (it exited)" or "")
    end
    p:kill("KILL")
    return nil
  end

  -- Keep trying to fill `slot` (its worker `dead` is gone), not in a tight loop: a worker
  -- that dies at once (a bad script) is restarted once a second.
  local restarting = {}
  function restart(slot, dead)
    if restarting[slot] then return end
    restarting[slot] = corio.spawn(function()
      if dead and corio.now() - dead.started < 1 then corio.sleep(1) end
      while not stopping and not launch(slot) do corio.sleep(1) end
      restarting[slot] = nil
    end)
  end

  -- SIGHUP: a new worker per slot, each serving before the one it replaces is told to stop.
  -- A new worker that does not start leaves the old one serving and ends the reload. (A slot
  -- being restarted gets a new worker anyway.)
  local reloading, again = false, false
  local function reload()
    reloading = true
    repeat
      again = false
      local replaced = 0
      for slot = 1, n do
        if stopping then break end
        if not restarting[slot] then
          if not launch(slot) then break end
          replaced = replaced + 1
        end
      end
      if not stopping then
        local pids = {}
        for slot = 1, n do pids[slot] = slots[slot] and slots[slot].p.pid or "-" end
        say(opts, "corio.web: reload: %d of %d workers replaced (pids %s)", replaced, n,
          table.concat(pids, " "))
      end
    until not again or stopping
    reloading = false
  end

  local first = {}
  for slot = 1, n do first[slot] = function() launch(slot) end end
  corio.gather(first)
  for slot = 1, n do
    if not slots[slot] then restart(slot, {started = corio.now()}) end
  end
  say(opts, "corio.web: listening on http://%s:%d with %d workers (Ctrl-C to stop)", host,
      port, n)

  local sig, reloader
  repeat
    sig = watch:next()
    if sig == "HUP" then
      say(opts, "corio.web: SIGHUP: replacing the workers")
      if reloading then again = true else reloader = corio.spawn(reload) end
    end
  until sig ~= "HUP"
  -- The watch stays open until the end: a second Ctrl-C does not kill the supervisor while
  -- its workers drain.
  stopping = true
  say(opts, "corio.web: SIG%s: stopping the workers", sig)
  if reloader then reloader:cancel() end
  for _, t in pairs(restarting) do t:cancel() end
  for w in pairs(live) do w.p:kill("TERM") end
  local deadline = corio.now() + (opts.grace or 10) + 5
  while next(live) and corio.now() < deadline do corio.sleep(0.05) end
  for w in pairs(live) do w.p:kill("KILL") end
  while next(live) do corio.sleep(0.05) end
  sock:close()
  watch:close()
  return true
end

-- web.run_app(app, {host = "127.0.0.1", port = 8080, workers = 1, grace = 10,
--                   print = true | false | function(line), on_ready = function(server),
--                   ...limits as in app:listen})
function M.run_app(app, opts)
  if type(opts) ~= "table" then error("run_app: options must be a table", 2) end
  local fd = tonumber(os.getenv(LISTEN_ENV) or "")
  local worker = fd and {fd = fd, control = tonumber(os.getenv(CONTROL_ENV) or "")}
  local n = opts.workers or 1
  if type(n) ~= "number" or n < 1 or math.type(n) ~= "integer" then
    error("run_app: workers must be a positive integer", 2)
  end
  if n > 1 and not worker then return corio.run(supervise, app, opts) end
  return corio.run(serve, app, opts, worker)
end

return M
