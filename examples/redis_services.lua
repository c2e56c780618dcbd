-- The event-driven order pipeline of examples/pipeline.lua, with each service in a process of
-- its own: every process has its own corio.Bus, and redis.bridge joins them into one, through
-- Redis pub/sub. No service knows where the others run, or that they are processes at all:
-- the code of a service is the same as in the single-process version.
--
--   shop (this process)  --orders.created-->  payment  --orders.paid / orders.declined-->
--   shipping <--orders.paid--  shipping --orders.shipped-->   shop audits orders.#
--
-- Run: corio examples/redis_services.lua   (needs redis-server; it starts its own on a
-- temporary Unix socket and removes it afterwards). A service alone:
--   corio examples/redis_services.lua payment|shipping SOCKET
local corio = require "corio"
local redis = require "corio.redis"
local process = require "corio.process"
local fs = require "corio.fs"

local ORDERS = {
  {id = 1, item = "book", qty = 2, price = 12.50},
  {id = 2, item = "lamp", qty = 1, price = 39.90},
  {id = 3, item = "piano", qty = 1, price = 2400.00},   -- over the card limit: declined
  {id = 4, item = "pen", qty = 10, price = 1.20},
  {id = 5, item = "desk", qty = 1, price = 189.00},
}
local CARD_LIMIT = 500

local function total(order) return order.qty * order.price end

local function say(...)
  io.stdout:write(...)
  io.stdout:write("\n")
  io.stdout:flush()
end

-- A Bus of this process, bridged to every other process's over Redis.
local function bridged_bus(path)
  local r = assert(redis.connect{path = path})
  local bus = corio.Bus()
  local bridge = assert(redis.bridge(bus, r, {patterns = {"orders.#"}}))
  return bus, bridge, r
end

-- ---- the services (as in pipeline.lua) ------------------------------------------------------

local SERVICES = {}

function SERVICES.payment(bus, sub)
  for _, order in sub do
    corio.sleep(0.03)                       -- talk to the payment provider
    local outcome = total(order) <= CARD_LIMIT and "orders.paid" or "orders.declined"
    say(("[payment] order %d: %s"):format(order.id, outcome))
    bus:publish(outcome, order)
  end
end

function SERVICES.shipping(bus, sub)
  for _, order in sub do
    corio.sleep(0.05)                       -- pack the parcel
    say(("[shipping] order %d: shipped"):format(order.id))
    bus:publish("orders.shipped", order)
  end
end

local LISTENS = {payment = "orders.created", shipping = "orders.paid"}

local function service(name, path)
  local bus, bridge, r = bridged_bus(path)
  local sub = bus:subscribe(LISTENS[name])
  local worker = corio.spawn(SERVICES[name], bus, sub)
  -- Run until the shop says the day is over.
  local control = assert(r:subscribe("shop.closed"))
  say(("[%s] ready"):format(name))     -- both Redis subscriptions are confirmed
  control:get()
  control:close()
  sub:close()
  corio.gather({worker})
  bridge:close()
  r:close()
end

-- ---- the shop: a Redis server, the two services, the orders and the audit log ---------------

local function start_redis()
  local dir = assert(fs.mkdtemp("/tmp/corio-example-"))
  local path = dir .. "/redis.sock"
  local server = assert(process.spawn{"redis-server", "--port", "0", "--unixsocket", path,
    "--unixsocketperm", "700", "--dir", dir, "--save", "", "--appendonly", "no",
    stdout = "null"})
  for _ = 1, 500 do
    local r = redis.connect{path = path, timeout = 0.1}
    if r then r:close() return server, path, dir end
    corio.sleep(0.01)
  end
  error("redis-server did not start")
end

local function shop()
  local server, path, dir = start_redis()
  local children, followers = {}, {}
  local ready = corio.Queue()
  for _, name in ipairs {"payment", "shipping"} do
    local p = assert(process.spawn{arg[-1] or "corio", arg[0], name, path, stdout = "pipe"})
    children[#children + 1] = p
    followers[#followers + 1] = corio.spawn(function()
      for line in p.stdout:lines() do
        print(line)
        if line:match("^%[%a+%] ready$") then ready:put(line) end
      end
    end)
  end
  for _ = 1, #children do corio.wait_for(function() return ready:get() end, 30) end

  local bus, bridge, r = bridged_bus(path)
  local audit = bus:subscribe("orders.#")
  for _, order in ipairs(ORDERS) do
    bus:publish("orders.created", order)
    corio.sleep(0.01)
  end

  -- The audit log sees every event, whichever process published it.
  local shipped, declined, revenue = 0, 0, 0
  corio.wait_for(function()
    while shipped + declined < #ORDERS do
      local topic, order = audit:get()
      print(("[audit] %-16s order %d: %d x %s (%.2f)"):format(topic, order.id, order.qty,
                                                             order.item, total(order)))
      if topic == "orders.shipped" then shipped = shipped + 1
      elseif topic == "orders.declined" then declined = declined + 1
      elseif topic == "orders.paid" then revenue = revenue + total(order) end
    end
  end, 30)

  r:publish("shop.closed", "bye")
  for _, p in ipairs(children) do assert(p:wait() == 0, "a service failed") end
  corio.gather(followers)
  audit:close()
  bridge:close()
  r:close()
  print(("summary: %d orders, %d shipped, %d declined, revenue %.2f, %d events received "
         .. "from other processes"):format(#ORDERS, shipped, declined, revenue, bridge.received))
  server:kill("TERM")
  server:wait()
  fs.remove(dir, true)
end

corio.run(function()
  if SERVICES[arg[1]] then service(arg[1], arg[2]) else shop() end
end)
