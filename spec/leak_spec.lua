-- The leak check itself: a TCP connection or a child process left open must fail it (the
-- runtime counts every handle that holds a descriptor or a process, active or not), and
-- closing them must make it pass. The failing half runs in its own process.
local corio = require "corio"
local support = require "support"
local tcp = require "corio._tcp"
local process = require "corio.process"
local web = require "corio.web"

-- Opens a TCP connection and a child process, closes them unless arg[1] is "leave", then runs
-- the specs' leak check.
local CHILD = [[
package.path = "spec/?.lua;" .. package.path
local corio = require "corio"
local support = require "support"
local tcp = require "corio._tcp"
local process = require "corio.process"
local web = require "corio.web"
local conn, worker
corio.run(function()
  local app = web.Application()
  app:get("/", function() return "hi" end)
  local server = assert(app:listen{port = 0})
  conn = assert(tcp.connect("127.0.0.1", server.port))
  worker = assert(process.spawn {"/bin/sleep", "5"})
  server:close()
  if arg[1] ~= "leave" then
    conn:close()
    worker:kill()
    worker:wait()
  end
end)
support.assert_clean()
print("clean")
]]

describe("the leak check", function()
  after_each(support.assert_clean)

  local path
  setup(function() path = support.script(CHILD) end)
  teardown(function() os.remove(path) end)

  it("fails when a TCP connection and a child process are left open", function()
    local out, err, code = support.run_corio(path .. " leave")
    assert.are_not.equal(0, code)
    assert.equal("", out)
    assert.matches("2 libuv handles left", err, 1, true)
  end)

  it("passes once they are closed", function()
    local out, err, code = support.run_corio(path .. " close")
    assert.equal(0, code, err)
    assert.equal("clean\n", out)
  end)

  it("counts an open connection and an unreaped process in this process too", function()
    corio.run(function()
      local before = require("corio.core")._stats().handles
      local app = web.Application()
      app:get("/", function() return "hi" end)
      local server = assert(app:listen{port = 0})
      local conn = assert(tcp.connect("127.0.0.1", server.port))
      local worker = assert(process.spawn {"/bin/sleep", "5"})
      server:close()
      support.settle()
      assert.equal(before + 2, require("corio.core")._stats().handles)
      conn:close()
      assert.is_true(worker:kill())
      worker:wait()
      support.settle()
      assert.equal(before, require("corio.core")._stats().handles)
    end)
  end)
end)
