-- Every public function of every module, and every public method of its main classes, is
-- documented in its reference page: the spec enumerates them at run time (spec/doc_api.lua)
-- and fails on a name added without documentation. A name counts as documented when the page
-- shows it qualified -- `corio.gather(`, `q:get(`, `http.Session` -- in a heading or inside
-- backticks. Exemptions are listed below, each with its reason.
local corio = require "corio"
package.path = "spec/?.lua;" .. package.path
local enumerate = require "doc_api"

-- module or class (as doc_api names it) -> name -> why it is not documented as `prefix name`
local EXEMPT = {
  Task = {
    set_result = "Future-only (raises on a task): documented as future:set_result",
    set_error = "Future-only (raises on a task): documented as future:set_error",
    set_exception = "Future-only (raises on a task): documented as future:set_exception",
  },
  PriorityQueue = {},  -- the same methods as Queue, documented once as q:
}
-- A Future shares every method of a Task: documented once, as task:, except its own two.
for _, m in ipairs {"add_done_callback", "await", "cancel", "cancelled", "cancelling", "done",
                    "error", "get_name", "result", "set_name", "uncancel"} do
  EXEMPT.Future = EXEMPT.Future or {}
  EXEMPT.Future[m] = "shared with Task: documented as task:" .. m
end

local pages = {}
-- the text of a page's headings and backtick spans, where a documented name must appear
local function documented_text(path)
  if pages[path] then return pages[path] end
  local f = io.open(path)
  if not f then return nil end
  local parts = {}
  local in_code = false
  for line in f:lines() do
    if line:match("^```") then
      in_code = not in_code
    elseif in_code then
      -- signatures in code blocks of the form `-- corio.gather(...)` do not count: only the
      -- prose's headings and spans do
    elseif line:match("^#+ ") then
      parts[#parts + 1] = line
    end
    if not in_code then
      for span in line:gmatch("`([^`]+)`") do parts[#parts + 1] = span end
    end
  end
  f:close()
  pages[path] = "\n" .. table.concat(parts, "\n") .. "\n"
  return pages[path]
end

local function mentions(text, qualified)
  local from = 1
  while true do
    local i, j = text:find(qualified, from, true)
    if not i then return false end
    local after = text:sub(j + 1, j + 1)
    local before = text:sub(i - 1, i - 1)
    if not after:match("[%w_]") and not before:match("[%w_]") then return true end
    from = j + 1
  end
end

describe("the reference documentation", function()
  local api = corio.run(enumerate)

  it("enumerates a non-trivial API (the enumeration itself works)", function()
    local total = 0
    for _, e in ipairs(api) do total = total + #e.names end
    assert.is_true(total > 250, "only " .. total .. " names found")
    for _, e in ipairs(api) do
      if e.module ~= "corio.web Response" then
        assert.is_true(#e.names > 0 or e.module == "Response", "nothing found for " .. e.module)
      end
    end
  end)

  for _, e in ipairs(api) do
    it(("documents every public name of %s in %s"):format(e.module, e.page), function()
      local text = documented_text(e.page)
      assert.is_not_nil(text, e.page .. " does not exist")
      local missing = {}
      local exempt = EXEMPT[e.module] or {}
      for _, name in ipairs(e.names) do
        if not exempt[name] and not mentions(text, e.prefix .. name) then
          missing[#missing + 1] = "`" .. e.prefix .. name .. "`"
        end
      end
      assert(#missing == 0, ("%s: %d undocumented: %s"):format(e.page, #missing,
                                                            table.concat(missing, ", ")))
    end)
  end

  it("lists no exemption for a name that no longer exists", function()
    local names = {}
    for _, e in ipairs(api) do
      names[e.module] = names[e.module] or {}
      for _, n in ipairs(e.names) do names[e.module][n] = true end
    end
    for module, list in pairs(EXEMPT) do
      for name in pairs(list) do
        assert.is_true(names[module] ~= nil and names[module][name] == true,
                       ("exemption %s.%s names nothing"):format(module, name))
      end
    end
  end)
end)

describe("the man page", function()
  local function read(path)
    local f = assert(io.open(path))
    local s = f:read("a")
    f:close()
    return s
  end

  it("lists every environment variable the C sources read", function()
    local man = read("doc/corio.1")
    local p = io.popen([[grep -rhoE 'getenv\("[A-Z_0-9]+"\)' host bindings]])
    local missing = {}
    for call in p:lines() do
      local name = call:match('"(.-)"')
      if not man:find(name, 1, true) then missing[#missing + 1] = name end
    end
    p:close()
    for _, name in ipairs {"LUA_INIT", "LUA_PATH", "LUA_CPATH", "CORIO_ALLOC", "CORIO_HISTORY"} do
      if not man:find(name, 1, true) then missing[#missing + 1] = name end
    end
    assert.same({}, missing)
  end)

  it("has an EXIT STATUS section", function()
    assert.truthy(read("doc/corio.1"):find(".SH EXIT STATUS", 1, true))
  end)
end)
