-- The seed post's Example 3: a handler that awaits a 1-second sleep (standing for I/O) and
-- answers "Hello, world!"; many requests are served concurrently.
-- Run: corio examples/web_hello.lua [port] [workers]
local corio = require "corio"
local web = require "corio.web"

local function handle_request(request)
  corio.sleep(1)  -- simulate an I/O operation
  return "Hello, world!"
end

local app = web.Application()
app:get("/", handle_request)

web.run_app(app, {host = "127.0.0.1", port = tonumber(arg[1]) or 8080,
                  workers = tonumber(arg[2]) or 1})
