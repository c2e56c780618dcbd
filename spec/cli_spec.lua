-- The corio command is a drop-in for lua5.4: same options, arg table, output, errors and exit
-- status for scripts that do not use corio. Each case runs both and compares.
local support = require "support"

local corio_bin = os.getenv("CORIO") or "build/corio"

local sh = support.run

-- Run `args` under both interpreters; stderr has the program name replaced.
local function both(args, stdin, env)
  env = env and (env .. " ") or ""
  local lo, le, lc = sh(env .. "lua5.4 " .. args, stdin)
  local co, ce, cc = sh(env .. corio_bin .. " " .. args, stdin)
  local me = corio_bin:gsub("%p", "%%%0")
  le, lo = le:gsub("lua5%.4", "PROG"), lo:gsub("lua5%.4", "PROG")
  ce, co = ce:gsub(me, "PROG"), co:gsub(me, "PROG")
  return {out = lo, err = le, code = lc}, {out = co, err = ce, code = cc}
end

local function same(args, stdin, env)
  local l, c = both(args, stdin, env)
  assert.same(l, c)
  return c
end

describe("the corio command, compared with lua5.4", function()
  local script
  setup(function()
    script = support.script([[#!/usr/bin/env lua
print("args", select('#', ...), ...)
for i = -3, #arg do io.write(tostring(arg[i]), " ") end
print()
return 1
]])
  end)
  teardown(function() os.remove(script) end)

  it("runs a script with arguments, a #! line and the arg table", function()
    local r = same(script .. " a 'b c' ''")
    assert.matches("args\t3\ta\tb c", r.out)
    assert.equal(0, r.code)
  end)

  it("handles -e, -l, -E, -W, -- and - in order", function()
    same("-e 'x=1' -e 'print(x+1)'")
    same("-l string -e 'print(type(string))'")
    same("-E -e 'print(package.path == package.path)'")
    same("-W -e 'warn(\"careful\")'")
    same("-e 'warn(\"silent\")'")
    same("-- " .. script .. " -e")
    same("- x y", "print(..., #arg, arg[0])")
    same("", "print('from stdin')")
  end)

  it("reports errors the same way, with the same exit status", function()
    local r = same("-e 'error(\"boom\")'")
    assert.equal(1, r.code)
    assert.matches("PROG: %(command line%):1: boom", r.err)
    same("-e 'error({})'")
    same("-e 'error(setmetatable({}, {__tostring = function() return \"obj\" end}))'")
    same("-e 'error()'")
    same("-e 'x = = 1'")
    same("/nonexistent/file.lua")
    same("-e 'os.exit(3)'")
    same("-e 'os.exit(false)'")
  end)

  it("rejects bad options with lua's usage text", function()
    same("-z")
    same("-e")
    same("-l")
    same("-vx")
  end)

  it("honours LUA_INIT and ignores it with -E", function()
    same("-e 'print(INIT)'", nil, "LUA_INIT='INIT=42'")
    same("-E -e 'print(INIT)'", nil, "LUA_INIT='INIT=42'")
    same("-e 'print(INIT)'", nil, "LUA_INIT_5_4='INIT=54' LUA_INIT='INIT=42'")
    same("-e 'print(package.path)'", nil, "LUA_PATH='/x/?.lua'")
    same("-e 'print(package.cpath)'", nil, "LUA_CPATH='/x/?.so'")
    same("-e 'print(package.path, package.cpath)'", nil, "LUA_PATH_5_4='/y/?.lua;;' LUA_CPATH_5_4='/y/?.so'")
  end)

  it("prints the Lua copyright line with -v", function()
    local _, c = both("-v")
    assert.matches("Lua 5%.4%.%d+  Copyright %(C%) 1994%-%d+ Lua%.org, PUC%-Rio\n$", c.out)
    assert.matches("^corio ", c.out)
  end)

  it("runs the top level on the main thread, as lua does", function()
    same("-e 'print(coroutine.isyieldable(), select(2, coroutine.running()))'")
  end)
end)

describe("the corio command with tasks", function()
  it("runs the loop until no task is left after the script ends", function()
    local out, _, code = support.run_corio([[-e 'local c = require "corio"
      c.spawn(function() c.sleep(0.05) print("late") end) print("first")']])
    assert.equal("first\nlate\n", out)
    assert.equal(0, code)
  end)

  it("reports an error nobody retrieved, with both tracebacks, and fails", function()
    local path = support.script([[
local corio = require "corio"
local function worker() corio.sleep(0.01) error("lost error") end
corio.spawn(worker)
]])
    local out, err, code = support.run_corio(path)
    os.remove(path)
    assert.equal("", out)
    assert.equal(1, code)
    assert.matches("error in task 'Task%-%d+' that nobody awaited: .-:2: lost error", err)
    assert.matches("stack traceback:", err)
    assert.matches("in function <.-:2>", err)
    assert.matches("the task was spawned at .-:3", err)
    local _, count = err:gsub("lost error", "")
    assert.equal(1, count)
  end)

  it("survives an error object whose __tostring fails, reported at once or at exit", function()
    for _, eager in ipairs({"false", "true"}) do
      local out, err, code = support.run_corio(([[-e 'local c = require "corio"
        require("corio.core")._set_eager_report(%s)
        c.spawn(function() error(setmetatable({}, {__tostring = function() error("bad tostring") end})) end)
        c.sleep(0.01) print("alive")']]):format(eager))
      assert.equal("alive\n", out)
      assert.equal(1, code)
      assert.matches("__tostring failed: .*bad tostring", err)
    end
  end)

  it("does not report an error that was retrieved, nor a cancellation", function()
    local out, err, code = support.run_corio([[-e 'local c = require "corio"
      local t = c.spawn(error, "x") pcall(t.await, t)
      local u = c.spawn(c.sleep, 10) c.sleep(0) u:cancel() print("ok")']])
    assert.equal("ok\n", out)
    assert.equal("", err)
    assert.equal(0, code)
  end)

  it("loads Debian's Lua C modules (the Lua API is exported)", function()
    local out, _, code = support.run_corio([[-e 'print(type(require("lfs").currentdir()))']])
    assert.equal("string\n", out)
    assert.equal(0, code)
  end)

  it("preloads cjson and the corio modules with no search path", function()
    local out, _, code = support.run_corio(
      [[-e 'package.path = "" package.cpath = "" print(require("cjson").encode({1}), type(require("corio").spawn))']])
    assert.equal("[1]\tfunction\n", out)
    assert.equal(0, code)
  end)

  it("runs the seed examples with the output and timing of the posts", function()
    local cases = {
      {"examples/basic_fetch.lua", "Start fetching\nDone fetching\n{'data': 123}\n", 2},
      {"examples/create_task.lua", table.concat({
        "Fetching data from https://example.com", "Fetching data from https://example.org",
        "Data fetched from https://example.com", "Data fetched from https://example.org", ""}, "\n"), 1},
    }
    local lines = {}
    for i = 0, 4 do lines[#lines + 1] = "Start fetching for task " .. i end
    for i = 0, 4 do lines[#lines + 1] = "Done fetching for task " .. i end
    for i = 0, 4 do lines[#lines + 1] = ("{'task_%d': 123}"):format(i) end
    cases[#cases + 1] = {"examples/gather_tasks.lua", table.concat(lines, "\n") .. "\n", 2}
    local corio = require "corio"
    for _, case in ipairs(cases) do
      local t0 = corio.now()
      local out, err, code = support.run_corio(case[1])
      local elapsed = corio.now() - t0
      assert.equal(case[2], out)
      assert.equal("", err)
      assert.equal(0, code)
      -- five 2-second sleeps take about 2 seconds, not 10
      assert.is_true(elapsed >= case[3] and elapsed < case[3] + 1,
                     case[1] .. " took " .. elapsed .. " s")
    end
  end)
end)
