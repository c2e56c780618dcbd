-- corio.signal: signals as events, never as handlers that interrupt Lua code. The watches are
-- C (corio._signal, one uv_signal_t per signal); this module adds the iterator form and
-- callbacks run by a task of their own.
local corio = require "corio"
local C = require "corio._signal"

local M = {watched = C.watched, kill = C.kill}

-- signal.watch{"HUP", "USR1", ...} -> watch, nil, nil, watch
--   for sig in signal.watch{"HUP"} do reload() end     -- sig: "HUP"
-- From now until the watch is closed (leaving the loop closes it), these signals no longer
-- have their default effect: watching INT or TERM takes over Ctrl-C and `kill`.
-- watch:next() waits for the next one; watch:close() stops watching.
function M.watch(names)
  if type(names) == "string" then names = {names} end
  if type(names) ~= "table" then
    error(("signal.watch: expected a list of signal names, got %s"):format(type(names)), 2)
  end
  local w, msg, code = C.watch(names)
  if not w then return nil, msg, code end
  return w, nil, nil, w
end

local Handler = {}
Handler.__index = Handler
Handler.__name = "corio.signal.Handler"

-- handler:close(): stop watching; a call of fn in progress is cancelled. Idempotent.
function Handler:close()
  if self.task then
    self.task:cancel()
    self.task = nil
  end
  self.watch:close()
end
Handler.__close = Handler.close

-- signal.on(name, fn) -> handler
-- Calls fn(name) in a task of its own each time the signal arrives, one call at a time (an
-- arrival during a call is queued). An error in fn ends the handler and is reported like any
-- task's. handler:close() stops it.
function M.on(name, fn)
  if type(name) ~= "string" then
    error(("signal.on: expected a signal name, got %s"):format(type(name)), 2)
  end
  if type(fn) ~= "function" then
    error(("signal.on: expected a function, got %s"):format(type(fn)), 2)
  end
  local w, msg, code = C.watch({name})
  if not w then return nil, msg, code end
  local h = setmetatable({watch = w}, Handler)
  h.task = corio.spawn(function()
    for sig in w do fn(sig) end
  end)
  return h
end

return M
