-- Reload a configuration file on SIGHUP; stop cleanly on SIGTERM or Ctrl-C.
--   corio examples/reload_config.lua conf.lua &   then   kill -HUP %1
-- The configuration is a Lua file returning a table, e.g. `return {greeting = "hello"}`.
local corio = require "corio"
local fs = require "corio.fs"
local signal = require "corio.signal"

local path = arg[1] or error("usage: reload_config.lua CONFIG.lua")

local function load_config()
  local src = assert(fs.read_file(path))
  return assert(load(src, "@" .. path, "t", {}))()
end

corio.run(function()
  -- watch first: a HUP that arrives while we start must not end the process
  local signals <close> = signal.watch{"HUP", "TERM", "INT"}
  local config = load_config()
  print("config: greeting = " .. tostring(config.greeting))
  io.stdout:flush()
  for sig in signals do
    if sig ~= "HUP" then
      print("stopping on " .. sig)
      break
    end
    local ok, new = pcall(load_config)
    if ok then
      config = new
      print("reloaded: greeting = " .. tostring(config.greeting))
    else
      print("reload failed, keeping the old configuration: " .. tostring(new))
    end
    io.stdout:flush()
  end
end)
