-- corio.errors: every error class of corio, made and looked up one way. Exports class,
-- register, is_instance, classes (by name), and the classes of the core and the messaging
-- modules: Cancelled, Timeout, QueueFull, QueueEmpty, QueueShutDown, BrokenBarrier,
-- TaskGroupError (with their predicates is_cancelled, is_timeout, is_queue_full, ...).
--
-- An error class is the metatable of its instances, which are tables {message = ...}. Every
-- class has __name ("corio.QueueFull"), __tostring, __index (the class itself, so instances
-- see its methods), new(message) -> instance and is(e) -> boolean. Cancelled and Timeout are
-- created by the C core (the scheduler raises them without calling Lua); they are registered
-- here like the others, keeping the core's __tostring and its C predicates.
local core = require "corio.core"

local setmetatable, getmetatable, type, tostring = setmetatable, getmetatable, type, tostring

local E = {}

-- name -> class, for every registered class
E.classes = {}

-- E.is_instance(e, class) -> whether e is an instance of class
function E.is_instance(e, class)
  return type(e) == "table" and getmetatable(e) == class
end

-- E.register(class) -> class, is: adds new/is/__index to a class that has __name and
-- __tostring (made here, by the C core, or by a module with its own __tostring) and records it.
function E.register(class)
  local name = class.__name
  if type(name) ~= "string" or class.__tostring == nil then
    error("register: an error class needs __name and __tostring", 2)
  end
  if E.classes[name] then error(("register: %s is already registered"):format(name), 2) end
  class.__index = class
  if class.new == nil then
    class.new = function(message)
      return setmetatable({message = message}, class)
    end
  end
  if class.is == nil then
    class.is = function(e)
      return type(e) == "table" and getmetatable(e) == class
    end
  end
  E.classes[name] = class
  return class, class.is
end

-- E.class(name, default_text) -> class, is: a new class whose instances print as
-- "name: message" ("name: default_text" without a message).
function E.class(name, text)
  local class = {__name = name}
  class.__tostring = function(e)
    if e.message == nil then return name .. ": " .. text end
    return name .. ": " .. tostring(e.message)
  end
  return E.register(class)
end

-- ---- the classes ---------------------------------------------------------------------------

-- The core's: the C predicates are the ones the scheduler uses; the instances print as the
-- core makes them ("cancelled: message", "timeout: timed out after 1 seconds").
core.Cancelled.is, core.Timeout.is = core.is_cancelled, core.is_timeout
E.Cancelled, E.is_cancelled = E.register(core.Cancelled)
E.Timeout, E.is_timeout = E.register(core.Timeout)

E.QueueFull, E.is_queue_full = E.class("corio.QueueFull", "the queue is full")
E.QueueEmpty, E.is_queue_empty = E.class("corio.QueueEmpty", "the queue is empty")
E.QueueShutDown, E.is_queue_shut_down = E.class("corio.QueueShutDown", "the queue is shut down")
E.BrokenBarrier, E.is_broken_barrier = E.class("corio.BrokenBarrier", "the barrier is broken")
E.TaskGroupError, E.is_task_group_error =
  E.class("corio.TaskGroupError", "tasks of the group failed")

return E
