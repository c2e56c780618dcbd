-- The corio.process / corio.fs examples run with the built binary and do what they promise.
local corio = require "corio"
local fs = require "corio.fs"
local process = require "corio.process"
local os_support = require "os_support"

describe("os examples", function()
  os_support.track_fds(before_each, after_each)

  it("concurrent_grep.lua greps every file, at most -j at a time", function()
    corio.run(function()
      local dir = os_support.tmpdir()
      local files = {}
      for i = 1, 12 do
        files[i] = ("%s/f%02d"):format(dir, i)
        assert(fs.write_file(files[i], ("needle\nhay\n"):rep(i % 3)))
      end
      local argv = {"build/corio", "examples/concurrent_grep.lua", "-j", "3", "needle"}
      table.move(files, 1, #files, #argv + 1, argv)
      local r = assert(process.run(argv))
      assert.equal("", r.stderr)
      assert.equal(0, r.code)
      local lines = {}
      for l in r.stdout:gmatch("[^\n]+") do lines[#lines + 1] = l end
      assert.equal(("1\t%s/f01"):format(dir), lines[1])
      assert.equal(("2\t%s/f02"):format(dir), lines[2])
      assert.equal("12 matching lines in 8 of 12 files, at most 3 greps at a time", lines[#lines])
      assert(fs.remove(dir, true))
    end)
  end)

  it("follow_log.lua prints the lines appended to a file", function()
    corio.run(function()
      local dir = os_support.tmpdir()
      local log = dir .. "/app.log"
      assert(fs.write_file(log, "old line\n"))
      local p <close> = assert(process.spawn{"build/corio", "examples/follow_log.lua", log, "3",
        stdout = "pipe"})
      assert.equal("following " .. log, p.stdout:read_line())
      local f = assert(fs.open(log, "a"))
      assert(f:write("first\nsec"))
      corio.sleep(0.05)
      assert(f:write("ond\nthird\nfourth\n"))
      f:close()
      local out = {}
      for _ = 1, 3 do out[#out + 1] = p.stdout:read_line() end
      assert.same({"first", "second", "third"}, out)
      assert.same({0}, {corio.wait_for(corio.spawn(function() return p:wait() end), 5)})
      assert(fs.remove(dir, true))
    end)
  end)
end)
