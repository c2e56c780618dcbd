-- An event-driven order pipeline on corio.Bus: independent services that only know topics.
--
--   orders   --orders.created-->   payment  --orders.paid / orders.declined-->
--   shipping <--orders.paid--      shipping --orders.shipped-->
--   audit    <--#-- (everything)   revenue  <--orders.paid--
--
-- No service calls another or knows who listens. The audit log and the revenue counter were
-- added without touching the other services: that is the loose coupling the bus buys.
-- Run: corio examples/pipeline.lua
local corio = require "corio"

local bus = corio.Bus()

local ORDERS = {
  {id = 1, item = "book", qty = 2, price = 12.50},
  {id = 2, item = "lamp", qty = 1, price = 39.90},
  {id = 3, item = "piano", qty = 1, price = 2400.00},   -- over the card limit: declined
  {id = 4, item = "pen", qty = 10, price = 1.20},
  {id = 5, item = "desk", qty = 1, price = 189.00},
}
local CARD_LIMIT = 500

local function total(order) return order.qty * order.price end

-- Each service subscribes before the orders start flowing, then handles events until the bus
-- closes (the for loop ends when its subscription does).
local function payment_service(sub)
  for _, order in sub do
    corio.sleep(0.03)                       -- talk to the payment provider
    if total(order) <= CARD_LIMIT then
      bus:publish("orders.paid", order)
    else
      bus:publish("orders.declined", order)
    end
  end
end

local function shipping_service(sub)
  for _, order in sub do
    corio.sleep(0.05)                       -- pack the parcel
    bus:publish("orders.shipped", order)
  end
end

local function audit_log(sub)
  for topic, order in sub do
    print(("[audit] %-16s order %d: %d x %s (%.2f)"):format(topic, order.id, order.qty,
                                                           order.item, total(order)))
  end
end

local revenue = 0
local function revenue_counter(sub)
  for _, order in sub do revenue = revenue + total(order) end
end

corio.run(function()
  -- Subscribing is the only wiring there is.
  local services = {
    corio.spawn(payment_service, bus:subscribe("orders.created")),
    corio.spawn(shipping_service, bus:subscribe("orders.paid")),
    corio.spawn(audit_log, bus:subscribe("orders.#")),
    corio.spawn(revenue_counter, bus:subscribe("orders.paid")),
  }
  -- The storefront wants to know when each order reached its end.
  local outcomes <close> = bus:subscribe("orders.*")

  for _, order in ipairs(ORDERS) do
    bus:publish("orders.created", order)
    corio.sleep(0.01)
  end

  local shipped, declined = 0, 0
  while shipped + declined < #ORDERS do
    local topic = outcomes:get()
    if topic == "orders.shipped" then shipped = shipped + 1
    elseif topic == "orders.declined" then declined = declined + 1 end
  end

  bus:close()              -- every service drains its subscription and returns
  corio.gather(services)
  print(("summary: %d orders, %d shipped, %d declined, revenue %.2f")
        :format(#ORDERS, shipped, declined, revenue))
end)
