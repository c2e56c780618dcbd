-- corio.fs: files without blocking the loop.
local corio = require "corio"
local fs = require "corio.fs"
local support = require "support"
local os_support = require "os_support"

describe("corio.fs", function()
  os_support.track_fds(before_each, after_each)
  local dir
  before_each(function() dir = os_support.tmpdir() end)
  after_each(function() corio.run(function() assert(fs.remove(dir, true)) end) end)

  it("writes and reads whole files", function()
    corio.run(function()
      local p = dir .. "/a.txt"
      assert.is_true(fs.write_file(p, "hello"))
      assert.equal("hello", fs.read_file(p))
      assert.is_true(fs.write_file(p, " world", {append = true}))
      assert.equal("hello world", fs.read_file(p))
      assert.is_true(fs.write_file(p, "new", {atomic = true, mode = 384}))
      assert.equal("new", fs.read_file(p))
      local st = fs.stat(p)
      assert.equal("file", st.type)
      assert.equal(3, st.size)
      assert.equal(384, st.mode)  -- 0600
      assert.equal("", fs.read_file("/dev/null"))
      -- no temporary file left behind
      local names = {}
      for name in assert(fs.scandir(dir)) do names[#names + 1] = name end
      assert.same({"a.txt"}, names)
    end)
  end)

  it("makes private temporary directories with mkdtemp", function()
    corio.run(function()
      local a = assert(fs.mkdtemp(dir .. "/t-"))
      local b = assert(fs.mkdtemp(dir .. "/t-"))
      assert.not_equal(a, b)
      assert.matches("^" .. dir:gsub("%p", "%%%0") .. "/t%-%w%w%w%w%w%w$", a)
      local st = assert(fs.stat(a))
      assert.equal("directory", st.type)
      assert.equal(448, st.mode) -- 0700
      local d = assert(fs.mkdtemp())
      assert.matches("/corio%-%w+$", d)
      assert(fs.remove(d))
      local ok, msg, code = fs.mkdtemp(dir .. "/missing/t-")
      assert.is_nil(ok)
      assert.equal("ENOENT", code)
      assert.equal("mkdtemp " .. dir .. "/missing/t-XXXXXX: no such file or directory", msg)
      assert.has_error(function() fs.mkdtemp(42) end, "mkdtemp: path must be a string, got number")
    end)
  end)

  it("reads a file larger than its stat size says (a /proc file)", function()
    corio.run(function()
      local s = assert(fs.read_file("/proc/self/status"))
      assert.truthy(s:find("Pid:", 1, true))
    end)
  end)

  it("returns the failure triple for missing files and directories", function()
    corio.run(function()
      local missing = dir .. "/nope"
      local r, msg, code = fs.read_file(missing)
      assert.is_nil(r)
      assert.equal("ENOENT", code)
      assert.equal("read_file " .. missing .. ": no such file or directory", msg)
      for _, call in ipairs {
        {fs.stat, missing}, {fs.lstat, missing}, {fs.open, missing}, {fs.realpath, missing},
        {fs.scandir, missing}, {fs.remove, missing}, {fs.rename, missing, missing .. "2"},
        {fs.watch, missing}, {fs.write_file, missing .. "/x/y", "data"},
        {fs.mkdir, missing .. "/a/b"},
      } do
        local ok, m, c = call[1](table.unpack(call, 2))
        assert.is_nil(ok)
        assert.equal("ENOENT", c)
        assert.truthy(m:find(missing, 1, true), m)
      end
      local ok, m, c = fs.mkdir(dir)
      assert.is_nil(ok)
      assert.equal("EEXIST", c)
      assert.equal("mkdir " .. dir .. ": file already exists", m)
    end)
  end)

  it("raises on misuse", function()
    corio.run(function()
      assert.has_error(function() fs.write_file(dir .. "/x", 42) end,
        "write_file: data must be a string, got number")
      assert.has_error(function() fs.write_file(dir .. "/x", "", {append = true, atomic = true}) end,
        "write_file: append and atomic exclude each other")
      assert.has_error(function() fs.open(dir .. "/x", "q") end)
      assert.has_error(function() fs.mkdir(nil) end, "mkdir: path must be a string, got nil")
    end)
  end)

  it("makes directories with parents, lists them and removes them recursively", function()
    corio.run(function()
      assert.is_true(fs.mkdir(dir .. "/a/b/c", true))
      assert.is_true(fs.mkdir(dir .. "/a/b/c", true))  -- exists: fine with parents
      assert.is_true(fs.write_file(dir .. "/a/f", "x"))
      assert.is_nil((fs.mkdir(dir .. "/a/f/g", true)))  -- a file in the way
      local seen = {}
      for name, kind in assert(fs.scandir(dir .. "/a")) do seen[name] = kind end
      assert.same({b = "directory", f = "file"}, seen)
      local ok, _, code = fs.remove(dir .. "/a")
      assert.is_nil(ok)
      assert.equal("ENOTEMPTY", code)
      assert.is_true(fs.remove(dir .. "/a", true))
      assert.is_nil((fs.stat(dir .. "/a")))
    end)
  end)

  it("renames, resolves real paths and tells links apart", function()
    corio.run(function()
      assert.is_true(fs.write_file(dir .. "/x", "1"))
      assert.is_true(fs.rename(dir .. "/x", dir .. "/y"))
      assert.equal("1", fs.read_file(dir .. "/y"))
      assert.equal(dir .. "/y", fs.realpath(dir .. "/./y"))
      os.execute(("ln -s y %s/l"):format(dir))
      assert.equal("link", fs.lstat(dir .. "/l").type)
      assert.equal("file", fs.stat(dir .. "/l").type)
      local ok, msg, code = fs.rename(dir .. "/nope", dir .. "/z")
      assert.is_nil(ok)
      assert.equal("ENOENT", code)
      assert.equal(("rename %s/nope -> %s/z: no such file or directory"):format(dir, dir), msg)
    end)
  end)

  it("opens files to read, write, seek and iterate lines", function()
    corio.run(function()
      local p = dir .. "/f"
      do
        local f <close> = assert(fs.open(p, "w"))
        assert.is_true(f:write("one\ntwo\n"))
        assert.is_true(f:write("three"))
        assert.equal(13, f:seek())
      end
      local f = assert(fs.open(p))
      assert.equal("one", f:read("l"))
      assert.equal("two\n", f:read("L"))
      assert.equal("three", f:read("a"))
      assert.equal("", f:read("a"))
      assert.is_nil(f:read())
      assert.equal(0, f:seek("set"))
      assert.equal("one", f:read(3))
      assert.equal(13, f:seek("end"))
      f:seek("set", 4)
      local lines = {}
      for l in f:lines() do lines[#lines + 1] = l end
      assert.same({"two", "three"}, lines)
      f:close()
      f:close()  -- idempotent
      assert.has_error(function() f:read() end, "read: the file is closed")
      local a = assert(fs.open(p, "a"))
      a:write("!")
      a:close()
      assert.equal("one\ntwo\nthree!", fs.read_file(p))
      local x, _, code = fs.open(p, "wx")
      assert.is_nil(x)
      assert.equal("EEXIST", code)
    end)
  end)

  it("streams a large file in chunks", function()
    corio.run(function()
      local p = dir .. "/big"
      local chunk = ("0123456789abcdef"):rep(4096)  -- 64 KiB
      local w = assert(fs.open(p, "w"))
      for _ = 1, 64 do assert(w:write(chunk)) end  -- 4 MiB
      w:close()
      local r = assert(fs.open(p))
      local total, biggest = 0, 0
      while true do
        local data = r:read()
        if not data then break end
        total = total + #data
        biggest = math.max(biggest, #data)
      end
      r:close()
      assert.equal(4 * 1024 * 1024, total)
      assert.equal(65536, biggest)
    end)
  end)

  it("cancels a pending operation with nothing left open", function()
    corio.run(function()
      local p = dir .. "/c"
      assert(fs.write_file(p, ("x"):rep(1 << 20)))
      for _ = 1, 20 do
        local t = corio.spawn(function() return fs.read_file(p) end)
        local u = corio.spawn(function() local f = fs.open(p); return f end)
        corio.sleep(0)
        t:cancel()
        u:cancel()
        pcall(t.await, t)
        pcall(u.await, u)
      end
      -- the threadpool finishes what was running; the requests close what they opened
      local deadline = corio.now() + 2
      while require("corio.core")._stats().anchors > 0 and corio.now() < deadline do corio.sleep(0.01) end
    end)
  end)

  it("works at top level, outside any task", function()
    local p = dir .. "/top"
    assert.is_true(fs.write_file(p, "top"))
    assert.equal("top", fs.read_file(p))
  end)

  it("watches a directory", function()
    corio.run(function()
      local events = {}
      local watcher = corio.spawn(function()
        for name, what in assert(fs.watch(dir)) do
          events[#events + 1] = name .. ":" .. what
          if name == "stop" then break end
        end
      end)
      corio.sleep(0.05)
      assert(fs.write_file(dir .. "/new", "1"))
      assert(fs.write_file(dir .. "/stop", "1"))
      corio.wait_for(watcher, 2)
      assert.truthy(events[1]:find("^new:"))
      assert.equal("stop", events[#events]:match("^[^:]+"))
      -- closing a watch wakes its waiting task with nil
      local w = assert(fs.watch(dir))
      local t = corio.spawn(function() return w:next() end)
      corio.sleep(0)
      w:close()
      assert.is_nil(t:await())
    end)
  end)
end)
