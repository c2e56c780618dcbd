-- Shared by the specs: leak checks run after every test, and small helpers.
-- spec/helper.lua runs support.assert_clean after every test of every spec file.
local corio = require "corio"

local luassert = require "luassert"  -- busted's assert lives in the specs' environment only

local S = {}

-- Let what is about to finish finish: a few loop turns.
function S.settle()
  for _ = 1, 3 do corio.sleep(0) end
end

-- Let the other tasks run `n` (default 3) loop turns.
function S.turns(n)
  for _ = 1, n or 3 do corio.sleep(0) end
end

-- Call fn(...), expect it to raise, and check the error with pred; returns the error.
function S.errors_with(pred, fn, ...)
  local ok, err = pcall(fn, ...)
  luassert.is_false(ok)
  luassert.is_true(pred(err), "unexpected error: " .. tostring(err))
  return err
end

-- Task errors nobody retrieved, reported so far (each test may add none).
local reported = require("corio.core")._stats().unretrieved

-- Let the test's tasks finish, collect, and raise if a task error nobody retrieved was
-- reported since the last check (spec/helper.lua runs this at the end of every test body, so
-- the test that leaked it fails, and again from assert_clean).
function S.assert_no_lost_errors(level)
  S.settle()
  collectgarbage()
  collectgarbage()
  local now = require("corio.core")._stats().unretrieved
  if now > reported then
    local n = now - reported
    reported = now
    error(("%d task error%s nobody retrieved (reported above)"):format(n, n == 1 and "" or "s"),
          level or 2)
  end
end

-- No task, anchor, timer or libuv handle may outlive a test; garbage goes with collection.
-- A task error nobody retrieved fails the test that leaked it (its report, with the task's
-- error and tracebacks, went to stderr when the task was collected).
function S.assert_clean()
  S.assert_no_lost_errors(3)
  local st = require("corio.core")._stats()
  local leftover = {}
  for _, t in ipairs(corio.all_tasks()) do
    leftover[#leftover + 1] = tostring(t)
    t:cancel()
  end
  if #leftover > 0 then
    S.settle()
    error("tasks left running after the test: " .. table.concat(leftover, "; "), 2)
  end
  assert(st.tasks == 0, ("%d tasks left"):format(st.tasks))
  -- A thread-pool request (a name lookup, a file operation) that a cancel found already
  -- running cannot be stopped: it keeps its anchor until its callback, which a slow resolver
  -- can delay by seconds. Wait for those, a bounded time; a real leak never drains.
  local deadline = corio.now() + 10
  while st.anchors > 0 and corio.now() < deadline do
    corio.sleep(0.01)
    collectgarbage()
    st = require("corio.core")._stats()
  end
  assert(st.anchors == 0, ("%d anchors left"):format(st.anchors))
  assert(st.timers == 0, ("%d timers left"):format(st.timers))
  assert(st.handles == 0, ("%d libuv handles left"):format(st.handles))
end

-- Run a shell command with `stdin` (a string; default: nothing) as its input: returns its
-- stdout, stderr and exit code.
function S.run(cmd, stdin)
  local out, err = os.tmpname(), os.tmpname()
  local inp = "/dev/null"
  if stdin then
    inp = os.tmpname()
    local f = assert(io.open(inp, "w")); f:write(stdin); f:close()
  end
  local _, _, code = os.execute(("%s >%s 2>%s <%s"):format(cmd, out, err, inp))
  local function slurp(p) local f = io.open(p); local s = f:read("a"); f:close(); os.remove(p); return s end
  if stdin then os.remove(inp) end
  return slurp(out), slurp(err), code
end

-- Run the built corio (or $CORIO) with `args` in a separate process: stdout, stderr, code.
function S.run_corio(args, stdin)
  return S.run((os.getenv("CORIO") or "build/corio") .. " " .. args, stdin)
end

-- Write a temporary Lua script and return its path.
function S.script(code)
  local p = os.tmpname() .. ".lua"
  local f = assert(io.open(p, "w")); f:write(code); f:close()
  return p
end

return S
