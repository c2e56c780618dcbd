-- The corio.net examples run with the built binary and print what they promise.
local support = require "support"

describe("net examples", function()
  after_each(support.assert_clean)

  it("echo.lua: an echo server and three clients", function()
    local out, err, code = support.run_corio("examples/echo.lua")
    assert.equal("", err)
    assert.equal(0, code)
    assert.truthy(out:find("^echo server on 127%.0%.0%.1:%d+\n"))
    for _, name in ipairs {"ann", "bob", "cid"} do
      assert.truthy(out:find(name .. " got 3 echoes", 1, true))
    end
    assert.truthy(out:find("server closed\n$"))
  end)

  it("chat.lua: a broadcast that a slow client does not stall", function()
    local t0 = os.time()
    local out, err, code = support.run_corio("examples/chat.lua")
    assert.equal("", err)
    assert.equal(0, code)
    assert.equal("bob received 1000 messages\ncid received 1000 messages\n"
                 .. "slow was disconnected having fallen behind: true\n", out)
    assert.is_true(os.time() - t0 < 20)
  end)
end)
