-- corio.repl: the Lua half of the interactive REPL (the terminal half is host/repl.c):
-- the globals a session starts with (`corio`, `tasks`), the task table printed by tasks(),
-- and the candidates for tab completion of globals and table fields.
local corio = require "corio"

local M = {}

local getmetatable, getupvalue = debug.getmetatable, debug.getupvalue
local next, type, rawget, tostring = next, type, rawget, tostring
local sort, concat = table.sort, table.concat

local function fmt_age(s)
  if s < 60 then return ("%.1fs"):format(s) end
  if s < 3600 then return ("%dm%02ds"):format(s // 60, s % 60 // 1) end
  return ("%dh%02dm"):format(s // 3600, s % 3600 // 60)
end

-- The live tasks as rows of strings (from corio.ps): id, parent, name, state, age, waited,
-- and what it waits on with the line it waits at.
function M.task_rows()
  local rows = {}
  for _, r in ipairs(corio.ps()) do
    local at = r.where:match(" at (.*)$")
    rows[#rows + 1] = {tostring(r.id), r.parent and tostring(r.parent) or "-", r.name, r.state,
                       fmt_age(r.age), r.waited and fmt_age(r.waited) or "-",
                       at and (r.reason .. " at " .. at) or r.reason}
  end
  return rows
end

-- tasks(): print a table of the tasks that are not done, oldest first.
function M.tasks()
  local rows = M.task_rows()
  if #rows == 0 then
    print("no tasks")
    return
  end
  table.insert(rows, 1, {"id", "parent", "name", "state", "age", "waited", "what"})
  local width = {}
  for _, row in ipairs(rows) do
    for i = 1, #row - 1 do width[i] = math.max(width[i] or 0, utf8.len(row[i]) or #row[i]) end
  end
  for _, row in ipairs(rows) do
    local cells = {}
    for i = 1, #row - 1 do
      local pad = width[i] - (utf8.len(row[i]) or #row[i])
      -- numbers align right, text left
      cells[i] = i <= 2 and (" "):rep(pad) .. row[i] or row[i] .. (" "):rep(pad)
    end
    cells[#row] = row[#row]
    print(concat(cells, "  "))
  end
end

-- What Ctrl-D would stop: a message naming the live tasks (a server's acceptor among them)
-- and how to stop them, or nil when nothing runs.
function M.running_summary()
  local live = corio.all_tasks()
  if #live == 0 then return nil end
  local names = {}
  for i, t in ipairs(live) do
    if i > 3 then names[#names + 1] = "..."; break end
    names[#names + 1] = ("%s (%s)"):format(t.name, t.where)
  end
  return ("corio: still running: %d task%s: %s\n"
    .. "corio: Ctrl-D again cancels %s and exits; tasks() lists them, task:cancel() stops one")
    :format(#live, #live == 1 and "" or "s", concat(names, ", "), #live == 1 and "it" or "them")
end

-- ---- completion ------------------------------------------------------------------------------

local keywords = {
  "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if", "in",
  "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while",
}

-- The table an __index leads to, without calling anything: a table, or the methods table a C
-- __index keeps as its first upvalue (corio.Task does).
local function index_table(v)
  local mt = getmetatable(v)
  if type(mt) ~= "table" then return nil end
  local idx = rawget(mt, "__index")
  if type(idx) == "function" then
    local _, up = getupvalue(idx, 1)
    idx = up
  end
  return type(idx) == "table" and idx or nil
end

-- Look a field up as indexing would, through __index tables only: no user code runs.
local function lookup(v, k)
  for _ = 1, 16 do
    if type(v) == "table" then
      local x = rawget(v, k)
      if x ~= nil then return x end
    end
    v = index_table(v)
    if v == nil then return nil end
  end
end

local function field_names(v, out)
  for _ = 1, 16 do
    if type(v) == "table" then
      for k in next, v do
        if type(k) == "string" and k:match("^[%a_][%w_]*$") then out[k] = true end
      end
    end
    v = index_table(v)
    if v == nil then return end
  end
end

-- complete(word) -> sorted list of completions of `word`, an identifier or a path such as
-- "corio.sl" or "t:aw" (the line editor splits words at everything but '.' and ':').
function M.complete(word)
  local head, sep, last = word:match("^(.*)([.:])([%w_]*)$")
  local names = {}
  if head then
    local v = _G
    for part in (head .. "."):gmatch("(.-)[.:]") do
      if not part:match("^[%a_][%w_]*$") then return {} end
      v = lookup(v, part)
      if v == nil then return {} end
    end
    field_names(v, names)
    head = head .. sep
  else
    head, last = "", word
    field_names(_G, names)
    for _, k in ipairs(keywords) do names[k] = true end
  end
  local out = {}
  local private = last:sub(1, 1) == "_"  -- _names are offered only when asked for
  for k in next, names do
    if k:sub(1, #last) == last and (private or k:sub(1, 1) ~= "_") then
      out[#out + 1] = head .. k
    end
  end
  sort(out)
  return out
end

-- The globals of a session: corio itself and tasks().
function M.setup()
  if rawget(_G, "corio") == nil then _G.corio = corio end
  if rawget(_G, "tasks") == nil then _G.tasks = M.tasks end
end

return M
