-- Hello world with no sleep: the throughput benchmark's corio server (bench/web.sh).
-- Run: corio bench/web_hello_fast.lua [port] [workers]
local web = require "corio.web"
local app = web.Application()
app:get("/", function() return "Hello, world!" end)
web.run_app(app, {port = tonumber(arg[1]) or 8080, workers = tonumber(arg[2]) or 1,
                  print = false})
