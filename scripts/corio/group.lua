-- corio.group: structured concurrency. Exports TaskGroup, group, TaskGroupError,
-- is_task_group_error.
--
--   corio.group(function(g)            -- or: local g <close> = corio.TaskGroup() ... g:wait()
--     g:spawn(fetch, "a")
--     g:spawn(fetch, "b")
--   end)                               -- returns when every child is done
--
-- The first child that fails (with anything but a cancellation) cancels its siblings and the
-- body of the group; leaving the group then raises one TaskGroupError listing every failure
-- with its traceback. A cancellation of the task running the group cancels the children,
-- waits for them, and is re-raised.
local core = require "corio.core"
local errors = require "corio.errors"

local spawn, current_task, _wait, is_cancelled = core.spawn, core.current_task, core._wait,
                                                  core.is_cancelled
local pcall, error, type, setmetatable, tostring = pcall, error, type, setmetatable, tostring
local pack, unpack, concat = table.pack, table.unpack, table.concat

local M = {}

local TaskGroupError, is_task_group_error = errors.TaskGroupError, errors.is_task_group_error
M.TaskGroupError, M.is_task_group_error = TaskGroupError, is_task_group_error

-- A TaskGroupError lists its failures: err.errors[i] is the error object, err.tasks[i] the
-- task, err.tracebacks[i] the traceback (or nil).
local plain_tostring = TaskGroupError.__tostring
TaskGroupError.__tostring = function(e)
  if e.errors == nil then return plain_tostring(e) end  -- made with TaskGroupError.new
  local lines = {("corio.TaskGroupError: %d of the group's tasks failed"):format(#e.errors)}
  for i, err in ipairs(e.errors) do
    local t = e.tasks[i]
    lines[#lines + 1] = ("  [%d] %s: %s"):format(i, t and t.name or "body", tostring(err))
    local tb = e.tracebacks[i]
    if tb then lines[#lines + 1] = "    " .. tb:gsub("\n", "\n    ") end
  end
  return concat(lines, "\n")
end

local TaskGroup = {__name = "corio.TaskGroup"}
TaskGroup.__index = TaskGroup

-- corio.TaskGroup() -> a group owned by the current task (top-level code included).
function M.TaskGroup()
  return setmetatable({
    _owner = current_task(),   -- nil at top level: there is no task to cancel there
    _children = {},            -- every child, in spawn order
    _errors = {}, _failed_tasks = {}, _tracebacks = {}, _seen = {},
    _failed = false,           -- a child failed: siblings were cancelled
    _cancelled_owner = false,  -- we cancelled the owner to stop the body
    _closed = false,
  }, TaskGroup)
end

local function cancel_children(g)
  for _, t in ipairs(g._children) do t:cancel() end
end

-- A failure's error object; nil (error(nil)) cannot sit in a list, so it is named instead.
local function failure_of(t)
  local e = t:error()
  if e == nil then return "(error object is a nil value)" end
  return e
end

-- The owner is the task the group was made in, or top-level code (owner nil): cancelling it
-- interrupts the body wherever it waits.
local function cancel_owner(g)
  if g._owner then return g._owner:cancel() end
  return core._main_cancel()
end

local function uncancel_owner(g)
  if g._owner then return g._owner:uncancel() end
  return core._main_uncancel()
end

local function child_done(g, t)
  if t.state == "failed" and not g._seen[t] then
    g._seen[t] = true
    local errors = g._errors
    errors[#errors + 1] = failure_of(t)
    g._failed_tasks[#errors] = t
    g._tracebacks[#errors] = t.traceback
    if not g._failed then
      g._failed = true
      cancel_children(g)
      -- stop the body too, unless it is already waiting in wait()
      if not g._closing and cancel_owner(g) then
        g._cancelled_owner, g._owner_cancel_pending = true, true
      end
    end
  end
end

-- g:spawn(fn, ...) -> Task: a child of the group.
function TaskGroup:spawn(fn, ...)
  if self._closed then error("spawn: the task group is finished", 2) end
  if self._failed then error("spawn: the task group is shutting down after a failure", 2) end
  if type(fn) ~= "function" then
    error(("spawn: expected a function, got %s"):format(type(fn)), 2)
  end
  local t = spawn(fn, ...)
  local children = self._children
  children[#children + 1] = t
  t:add_done_callback(function(done) child_done(self, done) end)
  return t
end

-- The pending children, or nil when all are done.
local function pending(g)
  local list
  for _, t in ipairs(g._children) do
    if not t:done() then
      list = list or {}
      list[#list + 1] = t
    end
  end
  return list
end

-- Leave the group: wait for every child; raise TaskGroupError if any failed. `body_failed`
-- says the group's body raised `body_error` (listed first; nil is a valid error object).
local function finish(self, body_failed, body_error)
  if self._closed then return end
  self._closing = true
  local outer_cancel
  if not body_failed then
    body_error = nil
  else
    if body_error == nil then body_error = "(error object is a nil value)" end
    if is_cancelled(body_error) and self._owner_cancel_pending then
      -- our own cancellation of the body, because a child failed
      body_error, self._owner_cancel_pending, self._absorbed = nil, false, true
    elseif is_cancelled(body_error) then
      outer_cancel = body_error
      cancel_children(self)
    else
      cancel_children(self)
    end
  end
  while true do
    local list = pending(self)
    if not list then break end
    local ok, err = pcall(_wait, list, #list, false, "TaskGroup")
    if not ok then
      if not is_cancelled(err) then
        cancel_children(self)
        if body_error == nil then body_error = err end
      elseif self._owner_cancel_pending then
        self._owner_cancel_pending, self._absorbed = false, true  -- ours, delivered late
      else
        outer_cancel = outer_cancel or err
        cancel_children(self)
      end
    end
  end
  -- the callbacks of the last children run soon after they finish: account for them here
  for _, t in ipairs(self._children) do child_done(self, t) end
  self._closed = true
  if self._cancelled_owner and uncancel_owner(self) > 0 and self._absorbed then
    -- Someone else cancelled the owner too, and the one Cancelled delivered was taken as
    -- ours: theirs must not be lost, so the owner's next suspension raises it (as asyncio).
    cancel_owner(self)
    uncancel_owner(self)
  end
  local errors = self._errors
  if body_error ~= nil and not is_cancelled(body_error) then
    table.insert(errors, 1, body_error)
    table.insert(self._failed_tasks, 1, false)
    table.insert(self._tracebacks, 1, false)
  end
  if #errors > 0 then
    local e = TaskGroupError.new(("%d tasks failed"):format(#errors))
    e.errors, e.tracebacks = errors, {}
    e.tasks = {}
    for i = 1, #errors do
      e.tasks[i] = self._failed_tasks[i] or nil
      e.tracebacks[i] = self._tracebacks[i] or nil
    end
    error(e, 0)
  end
  if outer_cancel then error(outer_cancel, 0) end
end

-- g:wait() [suspends]: waits for every child; raises TaskGroupError if any failed.
function TaskGroup:wait()
  return finish(self, false)
end

-- <close>: leaving the scope waits for the children (an error leaving the scope counts as
-- the body's failure).
TaskGroup.__close = function(g, err)
  finish(g, err ~= nil, err)
end

function TaskGroup:children() return {table.unpack(self._children)} end

TaskGroup.__tostring = function(g)
  local n = 0
  for _, t in ipairs(g._children) do if not t:done() then n = n + 1 end end
  return ("corio.TaskGroup (%d children, %d running%s)"):format(#g._children, n,
                                                                 g._failed and ", failed" or "")
end

-- corio.group(fn, ...) -> fn's results [suspends]: runs fn(g, ...) with a new TaskGroup and
-- waits for its children before returning.
function M.group(fn, ...)
  if type(fn) ~= "function" then
    error(("group: expected a function, got %s"):format(type(fn)), 2)
  end
  if not current_task() then
    -- top-level code: run the group in a task so that a failing child can stop the body
    local t = spawn(M.group, fn, ...)
    return t:await()
  end
  local g = M.TaskGroup()
  local r = pack(pcall(fn, g, ...))
  finish(g, not r[1], r[2])
  if not r[1] then error(r[2], 0) end
  return unpack(r, 2, r.n)
end

return M
