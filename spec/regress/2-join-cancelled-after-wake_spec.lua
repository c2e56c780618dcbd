-- Issue 2: a task whose join (_wait, behind gather and wait) was woken and which was then
-- cancelled before it ran left the join's other listener nodes linked into tasks still
-- running; once the join was collected, their completion wrote into freed memory.
local corio = require "corio"

describe("a join woken and then cancelled before it runs", function()
  it("leaves no listener behind in the tasks it was waiting for", function()
    local a = corio.spawn(function() corio.sleep(0.005) error("a failed") end)
    local b = corio.spawn(corio.sleep, 0.03)
    local g = corio.spawn(require("corio.core")._wait, {a, b}, 2, true)
    a:add_done_callback(function() g:cancel() end)
    local ok, e = pcall(g.await, g)
    assert.is_false(ok)
    assert.is_true(corio.is_cancelled(e))
    a:error()
    g = nil
    for _ = 1, 3 do collectgarbage() end
    -- churn allocations so that freed join memory would be reused
    local junk = {}
    for i = 1, 2000 do junk[i] = {i, tostring(i)} end
    b:await()
    assert.is_true(b:done())
  end)
end)
