-- corio.web_run: web.run_app, the part of corio.web that runs a server as a program: print
-- where it listens, serve until SIGINT/SIGTERM, shut down gracefully; with workers = n, a
-- supervisor starts n processes sharing the port (SO_REUSEPORT), restarts one that dies and
-- forwards the shutdown signals. Exports: run_app.
local corio = require "corio"
local sup = require "corio._web_workers"

local M = {}

local WORKER_ENV = "CORIO_WEB_WORKER"

local function say(opts, fmt, ...)
  local msg = fmt:format(...)
  if opts.print == false then return end
  if type(opts.print) == "function" then opts.print(msg) else
    io.stdout:write(msg, "\n")
    io.stdout:flush()
  end
end

-- Serve in this process until a shutdown signal, then drain.
local function serve(app, opts, worker)
  local signals = sup.signals({"SIGINT", "SIGTERM"})
  local listen = {}
  for k, v in pairs(opts) do listen[k] = v end
  listen.reuseport = worker or opts.reuseport
  local server, err = app:listen(listen)
  if not server then
    signals:close()
    error("run_app: " .. err, 0)
  end
  if not worker then
    say(opts, "corio.web: listening on http://%s:%d (Ctrl-C to stop)", server.host, server.port)
  end
  if opts.on_ready then opts.on_ready(server) end
  local sig = signals:wait()
  if not worker then say(opts, "corio.web: %s: shutting down", sig) end
  -- While draining, the signals stay caught: a second one in a plain server means "now"
  -- (as a second Ctrl-C does for most servers); a worker ignores them, since Ctrl-C reaches
  -- it and then its supervisor's SIGTERM follows (the supervisor decides when to kill).
  local watcher = corio.spawn(function()
    while true do
      local again = signals:wait()
      if not worker then
        say(opts, "corio.web: %s again: closing every connection now", again)
        server:abort()
        return
      end
    end
  end)
  local clean = server:shutdown(opts.grace or 10)
  watcher:cancel()
  signals:close()
  return clean
end

-- The supervisor: keeps n workers running until a shutdown signal.
local function supervise(app, opts)
  local n = opts.workers
  local exe = assert(sup.exepath())
  local argv = {exe}
  local script_args = _G.arg or {}
  if not script_args[0] then error("run_app: workers need the script path (arg[0])", 0) end
  argv[2] = script_args[0]
  for i = 1, #script_args do argv[#argv + 1] = script_args[i] end
  -- the workers inherit this environment, plus the mark that makes run_app serve
  local env = {WORKER_ENV .. "=1"}

  local signals = sup.signals({"SIGINT", "SIGTERM"})
  local stopping = false
  local workers = {}
  local function start(slot)
    local w, err = sup.spawn(exe, argv, env)
    if not w then
      io.stderr:write("corio.web: cannot start a worker: ", err, "\n")
      return nil
    end
    workers[slot] = w
    return corio.spawn(function()
      local started = corio.now()
      local status, sig = w:wait()
      workers[slot] = nil
      if stopping then return end
      io.stderr:write(("corio.web: worker %d exited (%s); restarting\n"):format(
        slot, sig or ("status " .. status)))
      -- a worker that dies at once (a bad script) is not restarted in a tight loop
      if corio.now() - started < 1 then corio.sleep(1) end
      if not stopping then start(slot) end
    end)
  end
  for i = 1, n do start(i) end
  say(opts, "corio.web: listening on http://%s:%d with %d workers (Ctrl-C to stop)",
      opts.host or "127.0.0.1", opts.port or 8080, n)
  local sig = signals:wait()
  stopping = true
  say(opts, "corio.web: %s: stopping the workers", sig)
  for _, w in pairs(workers) do w:kill("SIGTERM") end
  local deadline = corio.now() + (opts.grace or 10) + 5
  while next(workers) and corio.now() < deadline do corio.sleep(0.05) end
  for _, w in pairs(workers) do w:kill("SIGKILL") end
  while next(workers) do corio.sleep(0.05) end
  signals:close()
  return true
end

-- web.run_app(app, {host = "127.0.0.1", port = 8080, workers = 1, grace = 10,
--                   print = true | false | function(line), on_ready = function(server),
--                   ...limits as in app:listen})
function M.run_app(app, opts)
  if type(opts) ~= "table" then error("run_app: options must be a table", 2) end
  local worker = os.getenv(WORKER_ENV) == "1"
  local n = opts.workers or 1
  if type(n) ~= "number" or n < 1 or math.type(n) ~= "integer" then
    error("run_app: workers must be a positive integer", 2)
  end
  if n > 1 and not worker then
    if (opts.port or 8080) == 0 then
      error("run_app: workers need a fixed port (port 0 would give each its own)", 2)
    end
    return corio.run(supervise, app, opts)
  end
  return corio.run(serve, app, opts, worker)
end

return M
