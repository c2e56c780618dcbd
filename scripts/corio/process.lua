-- corio.process: subprocesses whose pipes are corio.net streams. The mechanism is C
-- (corio._process: uv_spawn, process groups, reaping); this module is the policy: options and
-- their errors, communicate (both pipes read concurrently, so no pipe deadlock), run, and
-- terminating the process group of a cancelled wait.
local corio = require "corio"
local fs = require "corio.fs"
require "corio.net"   -- the pipes are corio.net streams: this adds their Lua methods (lines)
local C = require "corio._process"

local M = {getpid = C.getpid, environ = C.environ, exepath = C.exepath}

local type, error, pairs, ipairs, tostring = type, error, pairs, ipairs, tostring
local pcall, setmetatable, getmetatable = pcall, setmetatable, getmetatable
local is_cancelled, is_timeout = corio.is_cancelled, corio.is_timeout
local concat = table.concat

local IO = {inherit = true, null = true, pipe = true}
local STDIO = {"stdin", "stdout", "stderr"}

-- The validated value of opts[name] (stdin, stdout or stderr), or its default.
local function io_option(opts, name, defaults, fname)
  local m = opts[name]
  if m == nil then m = defaults[name] end
  if not (IO[m] or (name == "stderr" and m == "stdout")) then
    error(("%s: %s must be \"pipe\", \"inherit\" or \"null\"%s, got %s"):format(fname, name,
      name == "stderr" and " or \"stdout\"" or "", tostring(m)), 5)
  end
  return m
end

-- Validate spawn's options; raises (misuse) with `fname` in the message.
local function parse(opts, fname, defaults)
  if type(opts) ~= "table" then
    error(("%s: expected a table {cmd, args...}, got %s"):format(fname, type(opts)), 4)
  end
  local argv = {}
  for i, a in ipairs(opts) do
    if type(a) == "number" then a = tostring(a) end
    if type(a) ~= "string" then
      error(("%s: argument %d must be a string, got %s"):format(fname, i, type(a)), 4)
    end
    argv[i] = a
  end
  if #argv == 0 then error(("%s: no command given"):format(fname), 4) end
  local env
  if opts.env ~= nil then
    if type(opts.env) ~= "table" then
      error(("%s: env must be a table, got %s"):format(fname, type(opts.env)), 4)
    end
    env = {}
    for k, v in pairs(opts.env) do
      if type(k) ~= "string" or k == "" or k:find("=", 1, true) then
        error(("%s: env name %s is not a valid variable name"):format(fname, tostring(k)), 4)
      end
      if type(v) ~= "string" then
        error(("%s: env value for '%s' must be a string, got %s"):format(fname, k, type(v)), 4)
      end
      env[#env + 1] = k .. "=" .. v
    end
    table.sort(env)
  end
  if opts.cwd ~= nil and type(opts.cwd) ~= "string" then
    error(("%s: cwd must be a string, got %s"):format(fname, type(opts.cwd)), 4)
  end
  local sin = io_option(opts, "stdin", defaults, fname)
  local sout = io_option(opts, "stdout", defaults, fname)
  local serr = io_option(opts, "stderr", defaults, fname)
  local kill_after = opts.kill_after or 5
  if type(kill_after) ~= "number" or kill_after < 0 then
    error(("%s: kill_after must be a number of seconds >= 0"):format(fname), 4)
  end
  local group = opts.group
  if group == nil then group = true end
  if opts.fds ~= nil and type(opts.fds) ~= "table" then
    error(("%s: fds must be a table {[3] = descriptor | \"pipe\", ...}, got %s"):format(fname,
      type(opts.fds)), 4)
  end
  return argv, env, sin, sout, serr, kill_after, group
end

local function spawn_failed(cmd, msg, code)
  if code == "ENOENT" then
    msg = ("spawn %s: no such file or directory (the command was not found%s)"):format(cmd,
      cmd:find("/", 1, true) and "" or " in PATH")
  elseif code == "EACCES" then
    msg = ("spawn %s: permission denied (not an executable file)"):format(cmd)
  end
  return nil, msg, code
end

-- ---- Process -------------------------------------------------------------------------------

local Process = {__name = "corio.Process"}
Process.__index = Process

local function do_spawn(opts, fname, defaults)
  local argv, env, sin, sout, serr, kill_after, group = parse(opts, fname, defaults)
  local cmd = argv[1]
  if opts.cwd then
    local st, msg, code = fs.stat(opts.cwd)
    if not st then
      return nil, ("spawn %s: cwd %s"):format(cmd, (msg:gsub("^stat ", ""))), code
    end
    if st.type ~= "directory" then
      return nil, ("spawn %s: cwd %s: not a directory"):format(cmd, opts.cwd), "ENOTDIR"
    end
  end
  local h, pid, pin, pout, perr, pipes = C.spawn(argv, env, opts.cwd, sin, sout, serr, group,
    kill_after, opts.fds)
  if not h then return spawn_failed(cmd, pid, pin) end
  return setmetatable({
    _h = h, pid = pid, args = argv,
    stdin = pin or nil, stdout = pout or nil, stderr = perr or nil, fds = pipes,
  }, Process)
end

-- process.spawn{"cmd", "arg", ..., stdin =, stdout =, stderr =, env =, cwd =, kill_after = 5,
--               group = true} -> Process | nil, msg, code
-- stdin/stdout/stderr: "inherit" (the default), "null", "pipe" (then p.stdin, p.stdout,
-- p.stderr are corio.net streams), and stderr = "stdout" (into the same pipe or place).
-- env replaces the environment (values must be strings); cwd must be a directory.
-- fds = {[3] = descriptor | "pipe", ...} gives the child more descriptors: one of ours (an
-- integer, inherited), or a two-way pipe whose end here is the stream p.fds[n].
-- The child leads a new process group (and session: no controlling terminal) so that
-- terminating it reaches its descendants; group = false keeps it in ours.
function M.spawn(opts)
  return do_spawn(opts, "spawn", {stdin = "inherit", stdout = "inherit", stderr = "inherit"})
end

-- p:wait() -> exit code, nil | nil, signal name ("TERM", "KILL", ...)  [suspends]
-- Returns when the child exits, even if a descendant still holds its pipes. If the waiting task
-- is cancelled, the child's process group is terminated: SIGTERM, then SIGKILL after
-- kill_after seconds; the loop still reaps it.
function Process:wait()
  local h = self._h
  local ok, code, sig = pcall(h.wait, h)
  if not ok then
    if is_cancelled(code) then h:terminate() end
    error(code, 0)
  end
  self.code, self.signal = code, sig
  return code, sig
end

-- p:kill([signal = "TERM"[, group]]) -> true | nil, msg, code
function Process:kill(sig, group)
  return self._h:kill(sig, group)
end

-- p:terminate(): SIGTERM to the process group, SIGKILL after kill_after. Does not wait.
function Process:terminate()
  self._h:terminate()
end

-- Read a stream to its end: the bytes | nil, msg, code.
local function collect(stream)
  local parts, n = {}, 0
  while true do
    local data, msg, code = stream:read(65536)
    if data == nil then
      if msg then return nil, msg, code end
      return n == 1 and parts[1] or concat(parts)
    end
    n = n + 1
    parts[n] = data
  end
end

-- Write the input, then close stdin: true | nil, msg, code. A child that exits without
-- reading all of its input is not an error (EPIPE).
local function feed(stdin, input)
  local ok, msg, code = true, nil, nil
  if input and #input > 0 then
    ok, msg, code = stdin:write(input)
    if not ok and (code == "EPIPE" or code == "ECANCELED") then ok = true end
  end
  stdin:close()
  if not ok then return nil, msg, code end
  return true
end

-- Up to this much input is queued by write without waiting (the stream's high-water mark).
local WRITE_AT_ONCE = 65536

local function close_streams(self, abort)
  for i = 1, 3 do
    local s = self[STDIO[i]]
    if s then
      if abort then s:abort() else s:close() end
    end
  end
  if abort then
    for _, s in pairs(self.fds) do s:abort() end
  end
end

-- communicate's body. The common cases need no task besides the caller's: an input that the
-- stream queues at once is written here, and one pipe is read here. A helper task writes a
-- larger input, or reads stderr while this one reads stdout, so that no pipe fills while we
-- wait on another (the pipe deadlock). Helpers are kept in self._helpers for a cancellation.
-- Returns stdout, stderr, and the first failure's msg and code.
local function talk(self, input)
  local sin, sout, serr = self.stdin, self.stdout, self.stderr
  local feeder, reader, fmsg, fcode, out, err, ok, msg, code
  if sin then
    if input and #input > WRITE_AT_ONCE then
      feeder = corio.spawn(feed, sin, input)
    else
      ok, fmsg, fcode = feed(sin, input)
    end
  end
  if sout and serr then
    reader = corio.spawn(collect, serr)
  end
  if feeder or reader then self._helpers = {feeder, reader} end
  if sout then
    out, msg, code = collect(sout)
    if out == nil and not fmsg then fmsg, fcode = msg, code end
  end
  if serr then
    if reader then err, msg, code = reader:await() else err, msg, code = collect(serr) end
    if err == nil and not fmsg then fmsg, fcode = msg, code end
  end
  if feeder then
    ok, msg, code = feeder:await()
    if not ok and not fmsg then fmsg, fcode = msg, code end
  end
  self._helpers = nil
  self:wait()
  return out, err, fmsg, fcode
end

-- p:communicate([input]) -> stdout, stderr (strings; nil for a stream that is not a pipe)
--   | nil, msg, code  [suspends]
-- Writes input (then closes stdin), reads stdout and stderr to their end concurrently, and
-- waits for the child to exit. Cancelled, it terminates the process group and closes the pipes.
function Process:communicate(input)
  if input ~= nil and type(input) ~= "string" then
    error(("communicate: input must be a string, got %s"):format(type(input)), 2)
  end
  if input and not self.stdin then
    error("communicate: input needs stdin = \"pipe\"", 2)
  end
  local ok, out, err, msg, code = pcall(talk, self, input)
  if not ok then
    local helpers = self._helpers
    self._helpers = nil
    if helpers then
      for i = 1, 2 do
        if helpers[i] then helpers[i]:cancel() end
      end
    end
    self._h:terminate()
    close_streams(self, true)
    error(out, 0)
  end
  if self.stdout then self.stdout:close() end
  if self.stderr then self.stderr:close() end
  if msg then return nil, msg, code end
  return out, err
end

-- p:close(): close the pipes; a child still running is killed (its group with it) and reaped
-- now. Idempotent; also the <close> handler.
function Process:close()
  close_streams(self, true)
  self._h:close()
end
Process.__close = Process.close

function Process:__tostring()
  return ("corio.Process (pid %d, %s)"):format(self.pid, self.args[1])
end

-- ---- run -----------------------------------------------------------------------------------

-- A ProcessError prints its message and carries the run's result table in `result`.
local ProcessError = {__name = "corio.ProcessError"}
function ProcessError:__tostring() return self.message end
M.ProcessError, M.is_process_error = require("corio.errors").register(ProcessError)

-- process.run{"cmd", ..., input =, check = false, timeout =, kill_after = 5, + spawn's options}
--   -> {code =, signal =, stdout =, stderr =} | nil, msg, code
-- stdout and stderr default to "pipe" (captured), stdin to "pipe" with input, else "null".
-- With `timeout` (seconds) the process group is terminated when the time is up, reaped, and
-- run returns nil, "run cmd: timed out after N s", "ETIMEDOUT". With `check`, a non-zero exit
-- (or death by a signal) raises a ProcessError whose `result` is the table above.
function M.run(opts)
  if type(opts) ~= "table" then
    error(("run: expected a table {cmd, args...}, got %s"):format(type(opts)), 2)
  end
  local input, timeout = opts.input, opts.timeout
  if input ~= nil and type(input) ~= "string" then
    error(("run: input must be a string, got %s"):format(type(input)), 2)
  end
  if timeout ~= nil and (type(timeout) ~= "number" or timeout < 0) then
    error("run: timeout must be a number of seconds >= 0", 2)
  end
  local p, msg, code = do_spawn(opts, "run",
    {stdin = input and "pipe" or "null", stdout = "pipe", stderr = "pipe"})
  if not p then return nil, msg, code end
  local ok, out, err, ecode
  if timeout then
    ok, out, err, ecode = pcall(corio.timeout, timeout, p.communicate, p, input)
  else
    ok, out, err, ecode = pcall(p.communicate, p, input)
  end
  if not ok then
    if is_timeout(out) then
      -- communicate terminated the group: wait until the child is gone (at most kill_after)
      local wok, werr = pcall(p.wait, p)
      if not wok and is_cancelled(werr) then error(werr, 0) end
      p:close()
      return nil, ("run %s: timed out after %g s"):format(p.args[1], timeout), "ETIMEDOUT"
    end
    error(out, 0)  -- cancelled (the group is being terminated) or a bug
  end
  if out == nil and err then
    p:close()
    return nil, err, ecode
  end
  local xcode, sig = p.code, p.signal  -- communicate waited for the exit
  p:close()
  local res = {code = xcode, signal = sig, stdout = out, stderr = err}
  if opts.check and xcode ~= 0 then
    local why = sig and ("was killed by SIG%s"):format(sig) or ("exited with code %d"):format(xcode)
    error(setmetatable({message = ("run %s: %s"):format(p.args[1], why), result = res,
      code = xcode, signal = sig, stdout = out, stderr = err}, ProcessError), 2)
  end
  return res
end

return M
