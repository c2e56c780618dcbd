-- corio.process: subprocesses, their pipes, their process groups, and what is left behind
-- (nothing: no zombie, no survivor, no descriptor).
local corio = require "corio"
local process = require "corio.process"
local fs = require "corio.fs"
local support = require "support"
local os_support = require "os_support"

-- Wait (up to 3 s) until no live process has `marker` in its command line.
local function gone(marker)
  local deadline = corio.now() + 3
  while #os_support.pids_with(marker) > 0 and corio.now() < deadline do corio.sleep(0.02) end
  return #os_support.pids_with(marker) == 0
end

-- A sleep whose command line is unique to this call, to find it in /proc.
local n = 0
local function marker()
  n = n + 1
  return ("30.%d%04d"):format(process.getpid(), n)
end

describe("corio.process", function()
  os_support.track_fds(before_each, after_each)

  it("spawns with pipes, reads stdout and waits for the exit code", function()
    corio.run(function()
      local p = assert(process.spawn{"sh", "-c", "echo hi; exit 3", stdout = "pipe"})
      assert.is_number(p.pid)
      assert.is_nil(p.stdin)
      assert.equal("hi", p.stdout:read_line())
      assert.is_nil(p.stdout:read_line())
      assert.same({3}, {p:wait()})
      assert.same({3}, {p:wait()})  -- again: the same answer
      p:close()
      p:close()
    end)
  end)

  it("writes to stdin and closes it", function()
    corio.run(function()
      local p <close> = assert(process.spawn{"cat", stdin = "pipe", stdout = "pipe"})
      assert(p.stdin:write("abc"))
      assert(p.stdin:close_write())
      assert.equal("abc", p.stdout:read_exactly(3))
      assert.same({0}, {p:wait()})
    end)
  end)

  it("communicates megabytes both ways with no pipe deadlock", function()
    corio.run(function()
      local input = ("0123456789"):rep(300000)  -- 3 MB in, 3 MB out, 1 MB on stderr
      local p <close> = assert(process.spawn{"sh", "-c", "head -c 1000000 /dev/zero >&2; cat",
        stdin = "pipe", stdout = "pipe", stderr = "pipe"})
      local out, err = p:communicate(input)
      assert.equal(#input, #out)
      assert.equal(input, out)
      assert.equal(1000000, #err)
      assert.same({0}, {p:wait()})
    end)
  end)

  it("runs a command and captures its output", function()
    corio.run(function()
      local r = assert(process.run{"sh", "-c", "echo out; echo err >&2; exit 2"})
      assert.same({code = 2, stdout = "out\n", stderr = "err\n"}, r)
      r = assert(process.run{"sh", "-c", "echo out; echo err >&2", stderr = "stdout"})
      assert.equal("out\nerr\n", r.stdout)
      assert.is_nil(r.stderr)
      r = assert(process.run{"tr", "a-z", "A-Z", input = "shout"})
      assert.equal("SHOUT", r.stdout)
      r = assert(process.run{"sh", "-c", "kill -KILL $$"})
      assert.is_nil(r.code)
      assert.equal("KILL", r.signal)
      r = assert(process.run{"sh", "-c", "echo $FOO; pwd", env = {FOO = "bar"}, cwd = "/tmp"})
      assert.equal("bar\n/tmp\n", r.stdout)
    end)
  end)

  it("raises a ProcessError carrying the result with check", function()
    corio.run(function()
      local ok, e = pcall(process.run, {"sh", "-c", "echo oops >&2; exit 4", check = true})
      assert.is_false(ok)
      assert.is_true(process.is_process_error(e))
      assert.equal("run sh: exited with code 4", tostring(e))
      assert.equal(4, e.result.code)
      assert.equal("oops\n", e.result.stderr)
      assert.equal(0, process.run{"true", check = true}.code)
    end)
  end)

  it("names what was wrong: command, cwd, env", function()
    corio.run(function()
      local p, msg, code = process.spawn{"no-such-command-xyz"}
      assert.is_nil(p)
      assert.equal("ENOENT", code)
      assert.equal("spawn no-such-command-xyz: no such file or directory "
        .. "(the command was not found in PATH)", msg)
      p, msg, code = process.run{"/no/such/file"}
      assert.equal("ENOENT", code)
      assert.truthy(msg:find("^spawn /no/such/file: "))
      p, msg, code = process.run{"ls", cwd = "/no/such/dir"}
      assert.equal("ENOENT", code)
      assert.equal("spawn ls: cwd /no/such/dir: no such file or directory", msg)
      p, msg, code = process.run{"ls", cwd = "/etc/passwd"}
      assert.equal("ENOTDIR", code)
      assert.equal("spawn ls: cwd /etc/passwd: not a directory", msg)
      p, msg, code = process.run{"/etc/passwd"}
      assert.equal("EACCES", code)
      assert.has_error(function() process.spawn{"env", env = {A = 1}} end,
        "spawn: env value for 'A' must be a string, got number")
      assert.has_error(function() process.run{"env", env = {["A=B"] = "x"}} end,
        "run: env name A=B is not a valid variable name")
      assert.has_error(function() process.spawn{} end, "spawn: no command given")
      assert.has_error(function() process.spawn{"ls", stdout = "file"} end)
      assert.has_error(function() process.spawn{"ls", stdin = "stdout"} end)
      assert.has_error(function() process.run{"ls", timeout = "1"} end,
        "run: timeout must be a number of seconds >= 0")
    end)
  end)

  it("starts the child with default signals, an empty mask, and pipes on its output", function()
    corio.run(function()
      -- we ignore SIGPIPE and may block or handle others; the child must not inherit that
      -- (grep reads its own status: the shell's may show the mask it holds around a fork)
      local r = assert(process.run{"sh", "-c", 'test -p /dev/stdout && echo pipe; '
        .. 'test -S /dev/stdin && echo socket; exec grep -E "^Sig(Ign|Blk)" /proc/self/status',
        input = ""})
      assert.equal("pipe\nsocket\nSigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n",
        r.stdout)
    end)
  end)

  it("runs as execvp would: a new env's PATH, a script without #!", function()
    corio.run(function()
      local dir = os.tmpname()
      assert(fs.remove(dir))
      assert(fs.mkdir(dir))
      assert(fs.write_file(dir .. "/hello-no-shebang", "echo \"hi $1 from $0\"\n", {mode = 493}))
      -- found through the new environment's PATH, which is not ours
      local r = assert(process.run{"hello-no-shebang", "there", env = {PATH = dir}})
      assert.same({0, "hi there from " .. dir .. "/hello-no-shebang\n", ""},
        {r.code, r.stdout, r.stderr})
      -- a file without #! is run by /bin/sh, with stdio, cwd and the group as usual
      r = assert(process.run{dir .. "/hello-no-shebang", "again", cwd = dir, stderr = "stdout"})
      assert.same({0, "hi again from " .. dir .. "/hello-no-shebang\n"}, {r.code, r.stdout})
      assert(fs.remove(dir, true))
    end)
  end)

  it("times out, terminates the whole group and reaps it", function()
    corio.run(function()
      local m = marker()
      local t0 = corio.now()
      local r, msg, code = process.run{"sh", "-c", "sleep " .. m .. " & sleep " .. m,
        timeout = 0.2}
      assert.is_nil(r)
      assert.equal("ETIMEDOUT", code)
      assert.equal("run sh: timed out after 0.2 s", msg)
      assert.is_true(corio.now() - t0 < 2)
      assert.is_true(gone(m), "a process of the group survived")
    end)
  end)

  it("kills what ignores SIGTERM after kill_after", function()
    corio.run(function()
      local m = marker()
      local p = assert(process.spawn{"sh", "-c", "trap '' TERM; sleep " .. m .. " & sleep " .. m,
        kill_after = 0.2})
      local t = corio.spawn(function() return p:wait() end)
      corio.sleep(0.1)
      t:cancel()
      assert.is_true(corio.is_cancelled(select(2, pcall(t.await, t))))
      corio.sleep(0.05)
      assert.equal(3, #os_support.pids_with(m))  -- sh and two sleeps ignore SIGTERM...
      assert.is_true(gone(m))                      -- ...SIGKILL is not
      assert.same({nil, "KILL"}, {p:wait()})
      assert.is_false(os_support.zombie(p.pid))
      p:close()
    end)
  end)

  it("terminates the process tree when a task waiting in wait() is cancelled", function()
    corio.run(function()
      local m = marker()
      local p = assert(process.spawn{"sh", "-c", "sleep " .. m .. " & sleep " .. m})
      local t = corio.spawn(function() return p:wait() end)
      corio.sleep(0.1)
      assert.equal(3, #os_support.pids_with(m))  -- sh and two sleeps
      t:cancel()
      pcall(t.await, t)
      assert.is_true(gone(m), "a process of the tree survived")
      assert.same({nil, "TERM"}, {p:wait()})
      assert.is_false(os_support.zombie(p.pid))
      p:close()
    end)
  end)

  it("cancels communicate with nothing left open", function()
    corio.run(function()
      local m = marker()
      local p = assert(process.spawn{"sh", "-c", "echo started; sleep " .. m .. " & sleep " .. m,
        stdin = "pipe", stdout = "pipe", stderr = "pipe"})
      local t = corio.spawn(function() return p:communicate("input") end)
      corio.sleep(0.1)
      t:cancel()
      assert.is_true(corio.is_cancelled(select(2, pcall(t.await, t))))
      assert.is_true(gone(m))
      p:wait()
      p:close()
    end)
  end)

  it("returns from wait() when the child exits, though a grandchild holds its pipes", function()
    corio.run(function()
      local m = marker()
      local p = assert(process.spawn{"sh", "-c", "sleep " .. m .. " & echo up",
        stdout = "pipe", stderr = "pipe"})
      assert.equal("up", p.stdout:read_line())
      local code = corio.wait_for(corio.spawn(function() return p:wait() end), 2)
      assert.equal(0, code)
      -- the grandchild lives on, holding the pipes (its exec of sleep may still be under way:
      -- /proc shows no command line for a moment then)
      local deadline = corio.now() + 2
      while #os_support.pids_with(m) == 0 and corio.now() < deadline do corio.sleep(0.01) end
      assert.equal(1, #os_support.pids_with(m))
      assert.is_true(p:kill("KILL", true))        -- the group outlives its leader
      assert.is_true(gone(m))
      p:close()
    end)
  end)

  it("kills and reaps a running child on close and on collection", function()
    corio.run(function()
      local m = marker()
      local p = assert(process.spawn{"sleep", m})
      local pid = p.pid
      p:close()
      assert.is_false(os_support.alive(pid))
      assert.is_false(os_support.zombie(pid))
      local q = assert(process.spawn{"sleep", m, stdout = "pipe"})
      pid = q.pid
      q = nil
      collectgarbage()
      collectgarbage()
      assert.is_false(os_support.alive(pid))
      assert.is_false(os_support.zombie(pid))
      assert.is_true(gone(m))
    end)
  end)

  it("sends signals", function()
    corio.run(function()
      local p <close> = assert(process.spawn{"sleep", marker()})
      assert.is_true(p:kill("USR1"))
      assert.same({nil, "USR1"}, {p:wait()})
      local ok, msg, code = p:kill()
      assert.is_nil(ok)
      assert.equal("ESRCH", code)
      assert.equal("kill pid " .. p.pid .. ": no such process", msg)
      assert.has_error(function() p:kill("BOGUS") end, "process kill: unknown signal 'BOGUS'")
    end)
  end)

  it("gives the child more descriptors: one of ours, and a two-way pipe", function()
    corio.run(function()
      local sock <close> = assert(require("corio._http_server").socket {port = 0})
      local fd = sock:fileno()
      local p <close> = assert(process.spawn {"sh", "-c",
        "readlink /proc/self/fd/3; echo up >&4; read line <&4; echo \"got $line\" >&4",
        stdout = "pipe", fds = {[3] = fd, [4] = "pipe"}})
      local ours = assert(io.popen("readlink /proc/" .. process.getpid() .. "/fd/" .. fd))
      assert.equal(ours:read("l"), p.stdout:read_line())  -- the same socket
      ours:close()
      local ctl = p.fds[4]
      assert.equal("up", ctl:read_line())
      assert(ctl:write("hello\n"))
      assert.equal("got hello", ctl:read_line())
      assert.same({0}, {p:wait()})
      assert.is_nil(ctl:read_line())
      local plain <close> = assert(process.spawn {"true"})
      assert.same({}, plain.fds)
      assert.has_error(function() process.spawn {"true", fds = {[2] = "pipe"}} end,
        "spawn: fds keys must be 3 to 15")
      assert.has_error(function() process.spawn {"true", fds = {[3] = "file"}} end,
        "spawn: fds[3] must be a descriptor or \"pipe\"")
      assert.has_error(function() process.spawn {"true", fds = 3} end,
        "spawn: fds must be a table {[3] = descriptor | \"pipe\", ...}, got number")
    end)
  end)

  it("tells this process's environment and executable", function()
    local env = process.environ()
    assert.equal(os.getenv("PATH"), env.PATH)
    assert.equal(os.getenv("HOME"), env.HOME)
    local exe = assert(process.exepath())
    local f = assert(io.popen("readlink -f /proc/" .. process.getpid() .. "/exe"))
    assert.equal(f:read("l"), exe)
    f:close()
  end)

  it("works at top level, outside any task", function()
    local r = assert(process.run{"echo", "top"})
    assert.equal("top\n", r.stdout)
  end)
end)
