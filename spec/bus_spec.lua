local corio = require "corio"
local support = require "support"

local turns, errors_with = support.turns, support.errors_with

-- Drain what a subscription has buffered, as {topic, message} pairs.
local function drain(sub)
  local out = {}
  while sub:pending() > 0 do
    local topic, msg = sub:get_nowait()
    out[#out + 1] = {topic, msg}
  end
  return out
end

describe("corio.Bus", function()
  it("delivers to every matching subscription and returns the count", function()
    local bus = corio.Bus()
    assert.equal("corio.Bus", getmetatable(bus).__name)
    local a = bus:subscribe("orders.created")
    local b = bus:subscribe("orders.created")
    local c = bus:subscribe("orders.paid")
    assert.equal("corio.Subscription", getmetatable(a).__name)
    assert.equal(2, bus:publish("orders.created", {id = 1}))
    assert.equal(1, bus:publish("orders.paid", "p"))
    assert.equal(0, bus:publish("nobody.here", 1))
    assert.same({{"orders.created", {id = 1}}}, drain(a))
    assert.same({{"orders.created", {id = 1}}}, drain(b))
    assert.same({{"orders.paid", "p"}}, drain(c))
    a:close(); b:close(); c:close()
  end)

  it("matches wildcards: * is one word, # is zero or more", function()
    local bus = corio.Bus()
    local cases = {
      ["orders.*"] = {"orders.created", "orders.paid"},
      ["orders.#"] = {"orders", "orders.created", "orders.paid", "orders.eu.created"},
      ["*.created"] = {"orders.created", "users.created"},
      ["#.created"] = {"orders.created", "users.created", "orders.eu.created", "created"},
      ["orders.*.created"] = {"orders.eu.created"},
      ["#"] = {"orders", "orders.created", "orders.paid", "orders.eu.created", "users.created",
               "created"},
      ["orders.#.created"] = {"orders.created", "orders.eu.created"},
    }
    local subs = {}
    for pattern in pairs(cases) do subs[pattern] = bus:subscribe(pattern, {size = 16}) end
    for _, topic in ipairs {"orders", "orders.created", "orders.paid", "orders.eu.created",
                            "users.created", "created"} do
      bus:publish(topic, true)
    end
    for pattern, expected in pairs(cases) do
      local got = {}
      for _, pair in ipairs(drain(subs[pattern])) do got[#got + 1] = pair[1] end
      table.sort(got)
      table.sort(expected)
      assert.same(expected, got, pattern)
    end
    assert.equal(6, bus:subscribers("orders.created"))
    bus:close()
  end)

  it("rejects bad patterns, topics and options with clear errors", function()
    local bus = corio.Bus()
    assert.error_matches(function() bus:subscribe("a..b") end, "has an empty word")
    assert.error_matches(function() bus:subscribe("a.b*") end, "wildcards only as whole words")
    assert.error_matches(function() bus:subscribe(42) end, "expected a string pattern, got number")
    assert.error_matches(function() bus:publish("a.*", 1) end,
                         "a topic cannot contain the wildcard")
    assert.error_matches(function() bus:publish("", 1) end, "has an empty word")
    assert.error_matches(function() bus:subscribe("a", {size = 0}) end,
                         "size must be a positive integer")
    assert.error_matches(function() bus:subscribe("a", {policy = "lose"}) end, "policy must be")
    bus:close()
    assert.error_matches(function() bus:publish("a", 1) end, "publish: the bus is closed")
    assert.error_matches(function() bus:subscribe("a") end, "subscribe: the bus is closed")
  end)

  it("is iterable in a for loop inside a task, and ends when the bus closes", function()
    corio.run(function()
      local bus = corio.Bus()
      local sub = bus:subscribe("ticks.#")
      local seen = {}
      local reader = corio.spawn(function()
        for topic, msg in sub do seen[#seen + 1] = topic .. "=" .. tostring(msg) end
        return "ended"
      end)
      for i = 1, 3 do bus:publish("ticks.s" .. i, i) end
      bus:publish("ticks", false)
      turns()
      bus:publish("ticks.late", "x")
      bus:close()    -- what is buffered is still delivered, then the loop ends
      assert.equal("ended", reader:await())
      assert.same({"ticks.s1=1", "ticks.s2=2", "ticks.s3=3", "ticks=false", "ticks.late=x"}, seen)
    end)
  end)

  it("is closable with <close>, which unsubscribes", function()
    local bus = corio.Bus()
    do
      local sub <close> = bus:subscribe("x")
      assert.equal(1, bus:publish("x", 1))
    end
    assert.equal(0, bus:publish("x", 1))
    assert.equal(0, bus:subscribers("x"))
  end)

  describe("a slow subscriber", function()
    it("blocks the publisher under the default policy, and loses nothing", function()
      corio.run(function()
        local bus = corio.Bus()
        local slow = bus:subscribe("t", {size = 2})
        local fast = bus:subscribe("t", {size = 100})
        local progress = 0
        local publisher = corio.spawn(function()
          for i = 1, 5 do bus:publish("t", i); progress = i end
        end)
        turns()
        assert.equal(2, progress)      -- the third publish waits for room in `slow`
        assert.equal("waiting", publisher.state)
        -- subscriptions are served in the order they were made: `fast` comes after `slow`
        assert.equal(2, fast:pending())
        local got = {}
        for _ = 1, 5 do
          local _, msg = slow:get()
          got[#got + 1] = msg
        end
        publisher:await()
        assert.same({1, 2, 3, 4, 5}, got)
        assert.equal(5, fast:pending())
        bus:close()
      end)
    end)

    it("loses the oldest messages under drop_oldest, and counts them", function()
      local bus = corio.Bus()
      local sub = bus:subscribe("t", {size = 3, policy = "drop_oldest"})
      for i = 1, 10 do assert.equal(1, bus:publish("t", i)) end
      assert.equal(7, sub.dropped)
      local got = {}
      for _, pair in ipairs(drain(sub)) do got[#got + 1] = pair[2] end
      assert.same({8, 9, 10}, got)
      bus:close()
    end)

    it("makes publish raise QueueFull under error, after delivering to the others", function()
      local bus = corio.Bus()
      local strict = bus:subscribe("t", {size = 1, policy = "error"})
      local other = bus:subscribe("t")
      assert.equal(2, bus:publish("t", 1))
      local err = errors_with(corio.is_queue_full, bus.publish, bus, "t", 2)
      assert.equal(1, err.delivered)
      assert.equal(strict, err.refused[1])
      assert.matches("publish t: 1 subscription%(s%) full", tostring(err))
      assert.equal(2, other:pending())
      assert.equal(1, strict:pending())
      bus:close()
    end)
  end)

  it("lets a subscription close while a publish is in progress", function()
    corio.run(function()
      local bus = corio.Bus()
      local a = bus:subscribe("t", {size = 1})
      local b = bus:subscribe("t", {size = 1})
      local c = bus:subscribe("t", {size = 10})
      bus:publish("t", 1)
      -- the next publish blocks on a (full); b is closed meanwhile
      local publisher = corio.spawn(function() return bus:publish("t", 2) end)
      turns()
      assert.equal("waiting", publisher.state)
      b:close()
      a:close()     -- the publisher was waiting on a: it moves on
      assert.equal(1, publisher:await())   -- only c got it
      assert.same({{"t", 1}, {"t", 2}}, drain(c))
      -- closing from inside a subscriber's loop while others are being published to
      local d = bus:subscribe("u")
      local e = bus:subscribe("u")
      local reader = corio.spawn(function()
        local n = 0
        for _ in d do n = n + 1; if n == 2 then e:close() end end
        return n
      end)
      for i = 1, 4 do bus:publish("u", i); turns(1) end
      assert.equal(0, e:pending())
      assert.is_true(e:closed())
      bus:close()
      assert.equal(4, reader:await())
    end)
  end)

  it("loses no message to a cancelled get; a cancelled publisher inserts nothing", function()
    corio.run(function()
      local bus = corio.Bus()
      local sub = bus:subscribe("t", {size = 1})
      local getter = corio.spawn(function() return sub:get() end)
      turns()
      bus:publish("t", "kept")   -- promised to getter
      getter:cancel()            -- cancelled before it ran
      turns()
      assert.same({{"t", "kept"}}, drain(sub))
      bus:publish("t", "full")
      local publisher = corio.spawn(function() bus:publish("t", "never") end)
      turns()
      publisher:cancel()
      turns()
      assert.same({{"t", "full"}}, drain(sub))
      errors_with(corio.is_timeout, corio.wait_for, function() return sub:get() end, 0.01)
      bus:publish("t", "after")
      assert.same({"t", "after"}, {sub:get()})
      errors_with(corio.is_queue_empty, sub.get_nowait, sub)
      bus:close()
      assert.is_nil(sub:get())
    end)
  end)
end)
