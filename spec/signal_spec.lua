-- corio.signal: real signals, sent to this process and to a child corio.
local corio = require "corio"
local signal = require "corio.signal"
local process = require "corio.process"
local support = require "support"
local os_support = require "os_support"

local function kill(sig)
  -- a real kill(1), from another process
  assert(process.run{"kill", "-" .. sig, tostring(process.getpid()), check = true})
end

describe("corio.signal", function()
  os_support.track_fds(before_each, after_each)

  it("iterates over the signals it watches, in order, none lost", function()
    corio.run(function()
      local got = {}
      local t = corio.spawn(function()
        for sig in signal.watch{"HUP", "USR1"} do
          got[#got + 1] = sig
          if #got == 3 then break end
        end
      end)
      corio.sleep(0)
      kill("HUP")
      kill("USR1")
      kill("SIGHUP")
      corio.wait_for(t, 2)
      assert.same({"HUP", "USR1", "HUP"}, got)
    end)
  end)

  it("takes over INT and TERM while watched, and says so", function()
    corio.run(function()
      assert.equal(0, signal.watched("INT"))
      local w = signal.watch{"INT", "TERM"}
      assert.equal(1, signal.watched("INT"))
      assert.equal(1, signal.watched("SIGTERM"))
      kill("INT")   -- would end the process without the watch
      kill("TERM")
      assert.equal("INT", w:next())
      assert.equal("TERM", w:next())
      w:close()
      w:close()
      assert.is_nil(w:next())
      assert.equal(0, signal.watched("INT"))
      assert.equal(0, signal.watched("TERM"))
    end)
  end)

  it("runs a callback per arrival with signal.on", function()
    corio.run(function()
      local n = 0
      local h = signal.on("USR2", function(sig) assert.equal("USR2", sig); n = n + 1 end)
      kill("USR2")
      local deadline = corio.now() + 2
      while n < 1 and corio.now() < deadline do corio.sleep(0.01) end
      kill("USR2")
      while n < 2 and corio.now() < deadline do corio.sleep(0.01) end
      assert.equal(2, n)
      h:close()
    end)
  end)

  it("raises on misuse and cancels a waiting task cleanly", function()
    corio.run(function()
      assert.has_error(function() signal.watch{"NOPE"} end, "signal watch: unknown signal 'NOPE'")
      assert.has_error(function() signal.watch{"KILL"} end, "signal watch: KILL cannot be caught")
      assert.has_error(function() signal.watch(42) end)
      assert.has_error(function() signal.on("HUP") end, "signal.on: expected a function, got nil")
      local w <close> = signal.watch{"WINCH"}
      local t = corio.spawn(function() return w:next() end)
      corio.sleep(0)
      t:cancel()
      assert.is_true(corio.is_cancelled(select(2, pcall(t.await, t))))
      local other = corio.spawn(function() return w:next() end)
      corio.sleep(0)
      assert.has_error(function() w:next() end, "signal watch: another task is already waiting")
      w:close()
      assert.is_nil(other:await())
    end)
  end)

  it("reloads a child's configuration on kill -HUP (examples/reload_config.lua)", function()
    local dir = os_support.tmpdir()
    local conf = dir .. "/conf.lua"
    local f = io.open(conf, "w"); f:write("return {greeting = 'hello'}"); f:close()
    corio.run(function()
      local p = assert(process.spawn{"build/corio", "examples/reload_config.lua", conf,
        stdout = "pipe", stdin = "null"})
      assert.equal("config: greeting = hello", p.stdout:read_line())
      local g = io.open(conf, "w"); g:write("return {greeting = 'bonjour'}"); g:close()
      assert(process.run{"kill", "-HUP", tostring(p.pid), check = true})
      assert.equal("reloaded: greeting = bonjour", p.stdout:read_line())
      assert(p:kill("TERM"))
      assert.equal("stopping on TERM", p.stdout:read_line())
      assert.same({0}, {p:wait()})
      p:close()
    end)
    os.remove(conf)
    os.remove(dir)
  end)
end)
