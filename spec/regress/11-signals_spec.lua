-- Issue 11: Ctrl-C and termination signals follow asyncio.run's rules. Each case runs a real
-- corio process and sends it real signals once it has printed "ready".
local corio = require "corio"
local support = require "support"

local CORIO = os.getenv("CORIO") or "build/corio"

local function slurp(p)
  local f = io.open(p)
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

-- Run `code` as a script; after it prints "ready", send each signal of `signals` (waiting
-- `gap` seconds between them). Returns stdout, stderr, exit status (128+n if killed by n).
local function run_signalled(code, signals, gap)
  local script = support.script(code)
  local out, err, rc = os.tmpname(), os.tmpname(), os.tmpname()
  local sh = io.popen(("exec sh -c '%s %s >%s 2>%s & echo $!; wait $!; echo $? >%s'")
                      :format(CORIO, script, out, err, rc))
  local pid = assert(tonumber(sh:read("l")))
  local deadline = corio.now() + 10
  while not slurp(out):find("ready\n", 1, true) do
    assert(corio.now() < deadline, "the script never printed ready: " .. slurp(err))
    corio.sleep(0.01)
  end
  for i, sig in ipairs(signals) do
    if i > 1 then corio.sleep(gap or 0.2) end
    os.execute(("kill -%s %d 2>/dev/null"):format(sig, pid))
  end
  sh:close()
  local o, e, c = slurp(out), slurp(err), tonumber(slurp(rc))
  for _, p in ipairs {out, err, rc, script} do os.remove(p) end
  return o, e, c
end

-- the process printed want on stdout, lua's "interrupted!" on stderr, and exited with status
local function interrupted(out, err, code, want, status)
  assert.equal(want, out)
  assert.matches("interrupted!", err)
  assert.equal(status, code)
end

local CLEANUP = [[
local corio = require "corio"
local guard <close> = setmetatable({}, {__close = function()
  corio.sleep(0.01)            -- cleanup can await
  print("cleanup ran")
end})
]]

describe("signals (issue 11)", function()
  it("SIGINT during a top-level await cancels it: cleanup runs, status 130", function()
    local out, err, code = run_signalled(CLEANUP .. [[
      print("ready"); io.stdout:flush()
      corio.sleep(10)
      print("not reached")
    ]], {"INT"})
    interrupted(out, err, code, "ready\ncleanup ran\n", 130)
  end)

  it("SIGINT inside corio.run cancels run's task: cleanup runs, status 130", function()
    local out, err, code = run_signalled([[
      local corio = require "corio"
      corio.run(function()
        local guard <close> = setmetatable({}, {__close = function()
          corio.sleep(0.01)
          print("cleanup ran")
        end})
        print("ready"); io.stdout:flush()
        corio.sleep(10)
      end)
      print("not reached")
    ]], {"INT"})
    interrupted(out, err, code, "ready\ncleanup ran\n", 130)
  end)

  it("SIGINT interrupts a CPU-bound loop as lua does", function()
    local out, err, code = run_signalled([[
      require "corio"
      print("ready"); io.stdout:flush()
      while true do end
    ]], {"INT"})
    interrupted(out, err, code, "ready\n", 130)
  end)

  it("a script that never touches corio keeps lua's behaviour (message, status 1)", function()
    local out, err, code = run_signalled([[
      print("ready"); io.stdout:flush()
      while true do end
    ]], {"INT"})
    interrupted(out, err, code, "ready\n", 1)
  end)

  -- the chunk ends with a task still sleeping; a signal cancels it and its cleanup runs
  for _, case in ipairs {{"INT", 130, "SIGINT after the chunk ended cancels the remaining tasks"},
                         {"TERM", 143, "SIGTERM after the chunk ended does the same"}} do
    local sig, status, title = case[1], case[2], case[3]
    it(("%s: cleanup, status %d"):format(title, status), function()
      local out, _, code = run_signalled([[
        local corio = require "corio"
        corio.spawn(function()
          local guard <close> = setmetatable({}, {__close = function()
            corio.sleep(0.01)
            print("task cleanup ran")
          end})
          corio.sleep(10)
        end)
        print("ready"); io.stdout:flush()
      ]], {sig})
      assert.equal("ready\ntask cleanup ran\n", out)
      assert.equal(status, code)
    end)
  end

  it("a second SIGINT during cleanup exits at once", function()
    local t0 = corio.now()
    local out, _, code = run_signalled([[
      local corio = require "corio"
      local guard <close> = setmetatable({}, {__close = function()
        print("cleaning"); io.stdout:flush()
        corio.sleep(10)
        print("not reached")
      end})
      print("ready"); io.stdout:flush()
      corio.sleep(10)
    ]], {"INT", "INT"}, 0.3)
    assert.equal("ready\ncleaning\n", out)
    assert.equal(130, code)
    assert.is_true(corio.now() - t0 < 5)
  end)
end)
