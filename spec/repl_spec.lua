-- The REPL: driven for real in a pseudo-terminal (tmux), and with piped stdin as lua -i.
local corio = require "corio"
local support = require "support"

local CORIO = os.getenv("CORIO") or "build/corio"
local have_tmux = os.execute("command -v tmux >/dev/null 2>&1")
local have_python = os.execute("command -v python3 >/dev/null 2>&1")

local function shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function slurp(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- A terminal running `corio` under tmux on a server of its own. After corio exits, the pane
-- shows its exit status and whether stdin (the pty, shared with the shell) was left
-- non-blocking, then stays open so that the screen can still be read.
local Term = {}
Term.__index = Term
local serial = 0

function Term.new(opts)
  opts = opts or {}
  serial = serial + 1
  local self = setmetatable({}, Term)
  self.socket = ("corio-repl-spec-%d-%d-%d"):format(os.time(), math.random(1e9), serial)
  self.history = opts.history or os.tmpname()
  local after = "echo EXIT=$?"
  if have_python then
    after = after .. "; python3 -c " .. shell_quote("import fcntl, os; "
      .. "print('NONBLOCK=%d' % (fcntl.fcntl(0, fcntl.F_GETFL) & os.O_NONBLOCK != 0))")
  end
  -- the shell traps SIGINT so that it outlives a corio killed by one
  local cmd = ("trap : INT; CORIO_HISTORY=%s %s%s; %s; sleep 600"):format(
    shell_quote(self.history), CORIO, opts.args and " " .. opts.args or "", after)
  self:tmux("new-session -d -s main -x 120 -y 40 " .. shell_quote(cmd))
  self:wait_for("^>$", 5, "the first prompt")
  return self
end

function Term:tmux(args, read)
  local line = ("env -u TMUX tmux -L %s -f /dev/null %s"):format(self.socket, args)
  if read then
    local p = assert(io.popen(line .. " 2>/dev/null"))
    local out = p:read("a")
    p:close()
    return out
  end
  local ok = os.execute(line .. " >/dev/null 2>&1")
  assert(ok, "tmux failed: " .. line)
end

-- The screen as text: wrapped lines joined, trailing spaces and blank lines dropped (so an
-- empty prompt reads ">").
function Term:screen()
  local text = self:tmux("capture-pane -p -J -t main", true)
  return (text:gsub("[ \t]+\n", "\n"):gsub("%s+$", ""))
end

function Term:last_line()
  return self:screen():match("([^\n]*)$")
end

-- Poll the screen until `pattern` matches (the whole screen, or the last line when it starts
-- with ^ and ends with $), or fail after `timeout` seconds.
function Term:wait_for(pattern, timeout, what)
  local deadline = corio.now() + (timeout or 5)
  local anchored = pattern:sub(1, 1) == "^"
  repeat
    local text = anchored and self:last_line() or self:screen()
    local found = text:match(pattern)
    if found then return found end
    corio.sleep(0.03)
  until corio.now() > deadline
  error(("timed out waiting for %s (%q); screen:\n%s"):format(what or pattern, pattern,
    self:screen()), 2)
end

function Term:type(text)
  self:tmux("send-keys -t main -l " .. shell_quote(text))
  self:tmux("send-keys -t main Enter")
end

function Term:keys(...)
  self:tmux("send-keys -t main " .. table.concat({...}, " "))
end

-- Count the prompts on screen: a way to know the REPL is back for more.
function Term:prompts()
  local n = 0
  for line in (self:screen() .. "\n"):gmatch("([^\n]*)\n") do
    if line:match("^> ") or line == ">" then n = n + 1 end
  end
  return n
end

-- Type a line and wait for the next prompt.
function Term:run(text, timeout)
  local before = self:prompts()
  self:type(text)
  local deadline = corio.now() + (timeout or 5)
  while self:prompts() <= before or not self:last_line():match("^>$") do
    if corio.now() > deadline then
      error(("no prompt after %q; screen:\n%s"):format(text, self:screen()), 2)
    end
    corio.sleep(0.03)
  end
  return self:screen()
end

function Term:close()
  self:tmux("kill-server")
  os.remove(self.history)
end

describe("corio.repl, the Lua half", function()
  local repl = require "corio.repl"

  it("completes globals, keywords and fields without running user code", function()
    assert.same({"string.rep", "string.reverse"}, repl.complete("string.re"))
    assert.same({"while"}, repl.complete("whil"))
    assert.same({"_G.string"}, repl.complete("_G.strin"))
    assert.same({}, repl.complete("nosuchglobal.x"))
    assert.same({}, repl.complete("string.rep.x"))
    local touched = false
    rawset(_G, "probe", setmetatable({}, {__index = function() touched = true end}))
    assert.same({}, repl.complete("probe.anything.x"))
    assert.is_false(touched)
    -- methods of a corio.Task (kept by its C __index) and of strings
    rawset(_G, "probe", corio.spawn(function() end))
    assert.same({"probe:await"}, repl.complete("probe:awa"))
    probe:await()
    rawset(_G, "probe", "text")
    assert.same({"probe:upper"}, repl.complete("probe:upp"))
    rawset(_G, "probe", nil)
  end)

  it("offers names starting with _ only when asked", function()
    rawset(_G, "corio", corio)
    local fields = repl.complete("corio.")
    rawset(_G, "corio", nil)
    for _, name in ipairs(fields) do assert.not_matches("^corio%._", name) end
    assert.truthy(#fields > 10)
    rawset(_G, "corio", corio)
    assert.same({"corio._VERSION"}, repl.complete("corio._VER"))
    rawset(_G, "corio", nil)
  end)

  it("lists the live tasks for tasks()", function()
    local t = corio.spawn(corio.sleep, 10)
    t.name = "napper"
    corio.sleep(0)
    local rows = repl.task_rows()
    assert.equal(1, #rows)
    assert.same({tostring(t.id), "-", "napper", "waiting"},
                {rows[1][1], rows[1][2], rows[1][3], rows[1][4]})
    assert.matches("^%d+%.%ds$", rows[1][5])
    assert.matches("^%d+%.%ds$", rows[1][6])
    assert.equal("sleep 10.00 s", rows[1][7]) -- a C function: no line to show
    t:cancel()
    corio.sleep(0)
    assert.same({}, repl.task_rows())
  end)
end)

describe("the REPL in a terminal", function()
  if not have_tmux then
    pending("tmux is not installed: the terminal tests need it (apt-get install tmux)")
    return
  end

  local term
  after_each(function()
    if term then term:close() end
    term = nil
  end)

  it("prints the values of expressions and runs statements", function()
    term = Term.new()
    term:run("1+1")
    assert.matches("\n> 1%+1\n2\n>$", term:screen())
    term:run("corio.sleep")
    assert.matches("\n> corio%.sleep\nfunction: 0x%x+\n>$", term:screen())
    term:run("x = 20")
    assert.matches("\n> x = 20\n>$", term:screen())
    term:run("=x * 2")
    assert.matches("\n> =x %* 2\n40\n>$", term:screen())
    term:run("x, 'two', nil")
    assert.matches("\n20%s+two%s+nil\n>$", term:screen())
    term:run("error('boom')")
    assert.matches("\nstdin:1: boom\nstack traceback:\n", term:screen())
  end)

  it("continues an incomplete chunk on a >> prompt", function()
    term = Term.new()
    term:type("for i = 1, 3 do")
    term:wait_for("^>>$")
    term:type("print(i * 10)")
    term:wait_for("^>>$")
    term:run("end")
    assert.matches("> for i = 1, 3 do\n>> print%(i %* 10%)\n>> end\n10\n20\n30\n>$", term:screen())
  end)

  it("recalls history with the Up arrow and keeps it across sessions", function()
    term = Term.new()
    term:run("answer = 42")
    term:run("answer + 1")
    term:keys("Up", "Up")
    term:wait_for("^> answer = 42$")
    term:run("")
    term:keys("C-d")
    term:wait_for("EXIT=0")
    local saved = slurp(term.history)
    assert.truthy(saved and saved:find("answer", 1, true), "history file written")
    local path = term.history
    term.history = os.tmpname()  -- close() removes this one, not the saved file
    term:close()

    term = Term.new({history = path})
    term:keys("Up")
    term:wait_for("^> answer = 42$")
    term:run("")
    term:keys("Up", "Up")
    term:wait_for("^> answer %+ 1$")
    term:run("")
    assert.matches("\n43\n>$", term:screen())
  end)

  it("completes globals and table fields with Tab", function()
    term = Term.new()
    term:tmux("send-keys -t main -l corio.sl")
    term:keys("Tab")
    term:wait_for("^> corio%.sleep$")
    term:keys("C-u")
    term:tmux("send-keys -t main -l 'string.rev'")
    term:keys("Tab")
    term:wait_for("^> string%.reverse$")
    term:keys("C-u")
    term:run("t = corio.spawn(function() end)")
    term:tmux("send-keys -t main -l 't:awa'")
    term:keys("Tab")
    term:wait_for("^> t:await$")
    term:keys("C-u")
  end)

  it("keeps background tasks running while the prompt waits", function()
    term = Term.new()
    term:run("n = 0; t = corio.spawn(function() "
      .. "while true do n = n + 1; corio.sleep(0.02) end end)")
    corio.sleep(0.5)  -- the REPL is idle, waiting for a line
    term:run("n > 5, n")
    local ok, n = term:screen():match("\n(%a+)%s+(%d+)\n>$")
    assert.equal("true", ok)
    assert.truthy(tonumber(n) > 5)
    term:run("s = corio.spawn(function() corio.sleep(100) end); s.name = 'sleeper'")
    term:run("tasks()")
    local screen = term:screen()
    assert.matches("\nid%s+parent%s+name%s+state%s+age%s+waited%s+what\n", screen)
    -- the ticker sleeps 20 ms at a time: tasks() finds it asleep or, now and then, ready
    local ticker = assert(screen:match("\n(%s*1%s+%-%s+Task%-1%s+[^\n]*)\n"), screen)
    assert.is_truthy(ticker:match("waiting%s+[%d.]+s%s+[%d.]+s%s+sleep 0%.02 s at stdin:1$")
                     or ticker:match("ready%s+[%d.]+s%s+%-%s+ready at stdin:1$"), ticker)
    assert.matches("\n%s*2%s+%-%s+sleeper%s+waiting%s+[%d.]+s%s+[%d.]+s%s+" ..
                   "sleep 100.00 s at stdin:1\n>$", screen)
  end)

  it("draws output of background tasks above the line being typed", function()
    term = Term.new()
    term:run("corio.spawn(function() "
      .. "for i = 1, 3 do corio.sleep(0.2); print('tick ' .. i) end end)")
    term:tmux("send-keys -t main -l 'half typed'")
    term:wait_for("tick 3")
    term:wait_for("^> half typed$")
    assert.matches("\ntick 1\ntick 2\ntick 3\n> half typed$", term:screen())
    term:keys("C-u")
    term:run("corio.spawn(function() corio.sleep(0.2); error('task failed') end)")
    term:tmux("send-keys -t main -l 'more'")
    term:wait_for("nobody awaited")
    term:wait_for("^> more$")
    assert.matches("error in task 'Task%-%d+' that nobody awaited: stdin:1: task failed",
                   term:screen())
  end)

  it("interrupts a busy chunk with Ctrl-C and leaves background tasks alone", function()
    term = Term.new()
    term:run("n = 0; bg = corio.spawn(function() "
      .. "while true do n = n + 1; corio.sleep(0.01) end end)")
    term:type("while true do end")
    corio.sleep(0.3)
    term:keys("C-c")
    term:wait_for("interrupted!")
    term:wait_for("^>$")
    term:run("before = n")
    corio.sleep(0.3)
    term:run("n > before, bg:done()")
    assert.matches("\ntrue%s+false\n>$", term:screen())
  end)

  it("interrupts a chunk waiting at top level with Ctrl-C", function()
    term = Term.new()
    local t0 = corio.now()
    term:type("corio.sleep(100)")
    corio.sleep(0.3)
    term:keys("C-c")
    term:wait_for("interrupted!")
    term:wait_for("^>$")
    assert.truthy(corio.now() - t0 < 5)
    -- awaiting a task: the wait is interrupted, the task is not cancelled
    term:run("t = corio.spawn(corio.sleep, 100)")
    term:type("t:await()")
    corio.sleep(0.3)
    term:keys("C-c")
    term:wait_for("interrupted!")
    term:wait_for("^>$")
    term:run("t.state")
    assert.matches("\nwaiting\n>$", term:screen())
  end)

  it("stops a background task that never yields on a second Ctrl-C", function()
    term = Term.new()
    term:run("spin = corio.spawn(function() corio.sleep(0.2); while true do end end)")
    corio.sleep(0.5)  -- the loop is stuck in the task: the prompt cannot answer
    term:keys("C-c")
    corio.sleep(0.2)
    term:keys("C-c")
    term:wait_for("error in task 'Task%-1' that nobody awaited: interrupted!")
    term:wait_for("^>$")
    term:run("spin.state, 1 + 1")
    assert.matches("\nfailed%s+2\n>$", term:screen())
  end)

  it("clears the line on Ctrl-C at the prompt", function()
    term = Term.new()
    term:tmux("send-keys -t main -l 'not valid lua'")
    term:wait_for("^> not valid lua$")
    term:keys("C-c")
    term:wait_for("^>$")
    term:type("for i = 1, 2 do")
    term:wait_for("^>>$")
    term:keys("C-c")
    term:wait_for("^>$")
    term:run("1 + 2")
    assert.matches("\n> 1 %+ 2\n3\n>$", term:screen())
    assert.not_matches("syntax error", term:screen())
  end)

  it("cancels running tasks with their cleanup on Ctrl-D and restores stdin", function()
    term = Term.new()
    local marker = os.tmpname()
    os.remove(marker)
    term:run(("c = corio.spawn(function() local h <close> = setmetatable({}, {__close = function() "
      .. "local f = io.open(%q, 'w'); f:write('closed'); f:close() end}); corio.sleep(1000) end)")
      :format(marker))
    term:keys("C-d")
    term:wait_for("Ctrl%-D again cancels it")
    term:keys("C-d")
    term:wait_for("EXIT=0")
    assert.equal("closed", slurp(marker))
    os.remove(marker)
    if have_python then
      term:wait_for("NONBLOCK=%d")
      assert.matches("NONBLOCK=0", term:screen())
    end
  end)

  it("says what runs on Ctrl-D with a task or server running; a second Ctrl-D leaves", function()
    term = Term.new()
    term:run("srv = corio.spawn(function() corio.sleep(1000) end); srv.name = 'server'")
    term:keys("C-d")
    term:wait_for("Ctrl%-D again cancels it and exits")
    assert.matches("still running: 1 task: server %(sleep", term:screen())
    term:wait_for("^>$")
    term:run("1 + 1")                 -- another line: the next Ctrl-D warns again
    term:keys("C-d")
    term:wait_for("^>$")
    assert.matches("\n2\n> %^D\ncorio: still running", term:screen())
    term:keys("C-d")
    term:wait_for("EXIT=0")
  end)

  it("says so when a cancelled task does not finish, and Ctrl-C then quits", function()
    term = Term.new()
    term:run("stubborn = corio.spawn(function() while true do pcall(corio.sleep, 10) end end)")
    term:keys("C-d")
    term:wait_for("Ctrl%-D again")
    term:keys("C-d")
    term:wait_for("waiting for 1 cancelled task to finish")
    term:keys("C-c")
    term:wait_for("EXIT=130")
    if have_python then
      term:wait_for("NONBLOCK=%d")
      assert.matches("NONBLOCK=0", term:screen())
    end
  end)

  it("leaves through os.exit the same way, with the exit code", function()
    term = Term.new()
    local marker = os.tmpname()
    os.remove(marker)
    term:run(("c = corio.spawn(function() local h <close> = setmetatable({}, {__close = function() "
      .. "local f = io.open(%q, 'w'); f:write('closed'); f:close() end}); corio.sleep(1000) end)")
      :format(marker))
    term:type("corio.spawn(function() corio.sleep(0.1); os.exit(3) end)")
    term:wait_for("EXIT=3")
    assert.equal("closed", slurp(marker))
    os.remove(marker)
  end)
end)

describe("the REPL with piped stdin", function()
  it("prompts and echoes each line as lua -i does", function()
    local out, err, code = support.run_corio("-i",
      "x = 1\nx + 1\nfor i = 1, 2 do\nprint(i)\nend\nerror('boom')\nprint(x)")
    local banner, rest = out:match("^(corio [^\n]*)\n(.*)$")
    assert.truthy(banner, out)
    assert.equal("> x = 1\n> x + 1\n2\n> for i = 1, 2 do\n>> print(i)\n>> end\n1\n2\n"
      .. "> error('boom')\n> print(x)\n1\n> \n", rest)
    assert.matches("^stdin:1: boom\nstack traceback:\n", err)
    assert.equal(0, code)
  end)

  it("drops an incomplete chunk at the end of input with its error", function()
    local out, err, code = support.run_corio("-i", "for i = 1, 2 do\n")
    assert.matches("\n> for i = 1, 2 do\n>> > \n$", out)
    assert.matches("'end' expected near <eof>", err)
    assert.equal(0, code)
  end)

  it("honours _PROMPT and _PROMPT2", function()
    local out = support.run_corio("-i", "_PROMPT = 'lua% '\n_PROMPT2 = setmetatable({}, "
      .. "{__tostring = function() return '..% ' end})\ndo\nend\n")
    assert.matches("\nlua%% do\n%.%.%% end\nlua%% \n$", out)
  end)

  it("cancels background tasks at the end of input, their cleanup running", function()
    local marker = os.tmpname()
    os.remove(marker)
    local out, _, code = support.run_corio("-i", ("t = corio.spawn(function() "
      .. "local h <close> = setmetatable({}, {__close = function() "
      .. "local f = io.open(%q, 'w'); f:write('closed'); f:close() end}); corio.sleep(1000) end)\n")
      :format(marker))
    assert.matches("> \n$", out)
    assert.equal(0, code)
    assert.equal("closed", slurp(marker))
    os.remove(marker)
  end)

  it("runs top-level waits and background tasks between lines", function()
    local out = support.run_corio("-i",
      "n = 0\nt = corio.spawn(function() for i = 1, 3 do n = n + 1; corio.sleep(0.01) end end)\n"
      .. "corio.sleep(0.2)\nn\nt:await()\nt.state\n")
    assert.matches("\n> n\n3\n> t:await%(%)\n> t.state\ndone\n", out)
  end)

  it("keeps the loop running while a pipe has no line yet", function()
    local out = os.tmpname()
    local cmd = ("(echo %s; sleep 1; echo %s) | %s -i >%s 2>&1"):format(
      shell_quote("t = corio.spawn(function() corio.sleep(0.1); print('background') end)"),
      shell_quote("print('next line')"), CORIO, out)
    assert.truthy(os.execute(cmd))
    local text = slurp(out)
    os.remove(out)
    assert.matches("\n> background\nprint%('next line'%)\nnext line\n> \n$", text)
  end)

  it("exits with os.exit's code", function()
    local out, _, code = support.run_corio("-i", "print('a')\nos.exit(7)\nprint('b')\n")
    assert.matches("\na\n> os.exit%(7%)\n$", out)
    assert.equal(7, code)
  end)

  it("reads a script from stdin without -i, as lua does", function()
    local out, err, code = support.run_corio("", "print('from stdin')\nprint(select('#', ...))")
    assert.equal("from stdin\n0\n", out)
    assert.equal("", err)
    assert.equal(0, code)
    out, _, code = support.run_corio("- a b", "print(...)")
    assert.equal("a\tb\n", out)
    assert.equal(0, code)
  end)
end)
