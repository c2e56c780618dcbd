-- Issue 3: after a waiter of a Barrier was cancelled, a later arrival took an index that a
-- waiter still held; indices are now given in arrival order when the barrier fills.
local corio = require "corio"
local support = require "support"

describe("Barrier indices after a cancelled waiter", function()
  it("are 0 .. parties-1, each once, in arrival order", function()
    corio.run(function()
      local b = corio.Barrier(3)
      local first = corio.spawn(function() return b:wait() end)
      local second = corio.spawn(function() return b:wait() end)
      support.turns()
      first:cancel()
      support.turns()
      local third = corio.spawn(function() return b:wait() end)
      support.turns()
      local last = b:wait()
      assert.same({0, 1, 2}, {second:await(), third:await(), last})
      assert.is_true(first:cancelled())
    end)
  end)
end)
