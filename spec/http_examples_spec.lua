local corio = require "corio"
local support = require "support"

-- The examples run as their own corio processes, with their built-in local servers.
describe("corio.http examples", function()
  it("api_calls.lua fetches three endpoints concurrently and prints them in order", function()
    local out, err, code = support.run_corio("examples/api_calls.lua")
    assert.equal(0, code)
    local json = require "corio.json"
    local n = 0
    for line in out:gmatch("[^\n]+") do
      n = n + 1
      assert.same({endpoint = n, value = n * 111}, json.decode(line))
    end
    assert.equal(3, n)
    -- three endpoints of 0.5 s each, fetched at once: about 0.5 s, not 1.5
    local secs = tonumber(err:match("^fetched 3 URLs in ([%d.]+) s\n$"))
    assert.is_true(secs >= 0.5 and secs < 1.2, err)
  end)

  it("api_calls.lua reports a failing URL and exits non-zero", function()
    local out, err, code = support.run_corio("examples/api_calls.lua http://127.0.0.1:1/x")
    assert.equal("", out)
    assert.equal(1, code)
    assert.matches("api_calls: GET http://127.0.0.1:1/x: Connection refused", err, 1, true)
  end)

  it("fanout.lua fetches every URL with a limit and reports progress and failures", function()
    local out, err, code = support.run_corio("examples/fanout.lua -c 4")
    assert.equal(0, code)
    assert.matches("%[202/202%] 2 failed", err)
    assert.matches("failed: 404 File not found: http://127%.0%.0%.1:%d+/missing%.txt", out)
    -- keep-alive: at most one connection per worker (4), not one per URL
    assert.matches("202 URLs, 2 failed, [1-5] connections opened", out)
    assert.matches("failed: GET http://127%.0%.0%.1:1/refused: Connection refused", out)
    assert.matches("202 URLs, 2 failed, %d+ connections opened", out)
  end)
end)
