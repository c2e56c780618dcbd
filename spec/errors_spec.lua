-- corio.errors: one mechanism for every error class, the C core's included; and the public
-- corio table, which keeps the core's internals out of sight.
local corio = require "corio"
local errors = require "corio.errors"
local web = require "corio.web"
local http = require "corio.http"

describe("corio.errors", function()
  it("registers every class with __name, __tostring, new and is", function()
    local names = {}
    for name, class in pairs(errors.classes) do
      names[#names + 1] = name
      assert.equal(name, class.__name)
      assert.is_function(class.__tostring)
      assert.equal(class, class.__index)
      local e = class.new("m")
      assert.equal(class, getmetatable(e))
      assert.is_true(class.is(e))
      assert.is_true(errors.is_instance(e, class))
      assert.is_false(class.is("m"))
      assert.is_false(class.is(setmetatable({}, {})))
    end
    table.sort(names)
    assert.same({"corio.BrokenBarrier", "corio.Cancelled", "corio.QueueEmpty", "corio.QueueFull",
                 "corio.QueueShutDown", "corio.SliceExceeded", "corio.TaskGroupError",
                 "corio.Timeout", "corio.http.HTTPError", "corio.web.ClientGone", "corio.web.HTTPError"}, names)
  end)

  it("holds the C core's Cancelled and Timeout, as corio exports them", function()
    assert.equal(corio.Cancelled, errors.Cancelled)
    assert.equal(corio.Timeout, errors.Timeout)
    assert.equal(corio.is_cancelled, errors.Cancelled.is)
    local t = corio.spawn(corio.sleep, 10)
    corio.sleep(0)
    t:cancel("enough")
    local ok, err = pcall(t.await, t)
    assert.is_false(ok)
    assert.is_true(errors.is_instance(err, errors.Cancelled))
    assert.equal("cancelled: enough", tostring(err))
    ok, err = pcall(corio.wait_for, function() corio.sleep(1) end, 0.001)
    assert.is_true(errors.Timeout.is(err) and corio.is_timeout(err))
    assert.equal("timeout: timed out after 0.001 seconds", tostring(err))
  end)

  it("gives the messaging and HTTP classes to their modules", function()
    assert.equal(errors.QueueFull, corio.QueueFull)
    assert.equal(errors.BrokenBarrier, corio.BrokenBarrier)
    assert.equal(errors.TaskGroupError, corio.TaskGroupError)
    assert.equal("corio.QueueEmpty: the queue is empty", tostring(corio.QueueEmpty.new()))
    assert.equal("corio.TaskGroupError: 2 tasks failed",
                 tostring(corio.TaskGroupError.new("2 tasks failed")))
    assert.is_true(web.is_http_error(web.HTTPError(418)))
    assert.equal(http.HTTPError, errors.classes["corio.http.HTTPError"])
  end)

  it("refuses a class without a name or registered twice", function()
    assert.has_error(function() errors.register({}) end,
                     "register: an error class needs __name and __tostring")
    assert.has_error(function() errors.class("corio.QueueFull", "again") end,
                     "register: corio.QueueFull is already registered")
  end)
end)

describe("the corio table", function()
  it("is its own table, with the core's public names and none of its internals", function()
    local core = require "corio.core"
    assert.are_not.equal(core, corio)
    for k, v in pairs(core) do
      if k:sub(1, 1) == "_" then assert.is_nil(corio[k], k) else assert.equal(v, corio[k], k) end
    end
    for k in pairs(corio) do
      assert.is_true(k:sub(1, 1) ~= "_" or k == "_VERSION", k)
    end
    for _, k in ipairs {"_wait", "_collect", "_cancel_all", "_stats"} do
      assert.is_function(core[k], k)
    end
  end)
end)
