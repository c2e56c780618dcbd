-- The producer/consumer example of "Messaging and event-driven architecture with Asyncio"
-- (seed post 001), in corio: one consumer task takes messages from a queue and processes
-- each for a second; main puts three messages, waits until every one is processed (join),
-- then cancels the consumer. Prints what the Python version prints, in about 3 seconds.
local corio = require "corio"

local function process_message(message)
  print(("Processing message: %s"):format(message))
  corio.sleep(1)
  print("Message processed successfully")
end

local function receive_messages(queue)
  while true do
    local message = queue:get()
    process_message(message)
    queue:task_done()
  end
end

local function send_messages(queue, messages)
  for _, message in ipairs(messages) do
    queue:put(message)
  end
end

local function main()
  local queue = corio.Queue()
  local messages = {"Hello", "World", "Asyncio"}

  -- Start the consumer
  local consumer_task = corio.spawn(receive_messages, queue)

  -- Produce messages
  send_messages(queue, messages)

  -- Wait for all the messages to be processed
  queue:join()
  consumer_task:cancel()
end

corio.run(main)
