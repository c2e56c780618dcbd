-- The public API of corio, enumerated at run time: each module's public fields and the public
-- methods of its main classes (from the metatables of live instances), for the documentation
-- coverage spec (spec/doc_coverage_spec.lua) and for `corio spec/doc_api.lua` to print.
-- Returns a function (call it inside a task) giving a list of
--   {page =, module =, prefix =, names = {...}}
-- where the page must mention each name as `prefix .. name` (e.g. "corio.gather", "q:get").
local corio = require "corio"

-- public (not "_"-prefixed) names of a table
local function public(t, skip)
  local names = {}
  for k in pairs(t) do
    if type(k) == "string" and k:sub(1, 1) ~= "_" and not (skip and skip[k]) then
      names[#names + 1] = k
    end
  end
  table.sort(names)
  return names
end

-- the method names an instance answers to: its own function fields (a Queue's methods are
-- closures on the instance), its metatable's __index table, or, for an __index function (C
-- objects, lazily computed fields), the metatable's own functions and the method tables among
-- the function's upvalues (a C closure's, or a Lua local named *methods: not `lazy`, the
-- table of a web request's computed fields; an __index that delegates is followed)
local function methods(obj)
  local mt = getmetatable(obj)
  assert(type(mt) == "table", "no metatable")
  local idx = mt.__index
  local set = {}
  local function add(t)
    for k, v in pairs(t) do
      if type(k) == "string" and k:sub(1, 1) ~= "_" and type(v) == "function" then
        set[k] = true
      end
    end
  end
  if type(obj) == "table" then add(obj) end
  if type(idx) == "table" then
    add(idx)
    local up = getmetatable(idx)
    if up and type(up.__index) == "table" then add(up.__index) end
  elseif type(idx) == "function" then
    add(mt)
    local function scan(f)   -- an __index that delegates to another (*_index) is followed
      for i = 1, 20 do
        local name, v = debug.getupvalue(f, i)
        if name == nil then break end
        if type(v) == "table" and v ~= mt and (name == "" or name:find("methods")) then add(v) end
        if type(v) == "function" and name:find("index") then scan(v) end
      end
    end
    scan(idx)
  end
  local names = {}
  for k in pairs(set) do names[#names + 1] = k end
  table.sort(names)
  return names
end

-- the class table that constructor fn (or a function it reaches through its upvalues and
-- their methods) holds in a local named `name`
local function class_of(fn, name)
  local seen = {}
  local function search(f, depth)
    if seen[f] or depth > 4 then return nil end
    seen[f] = true
    for i = 1, 60 do
      local n, v = debug.getupvalue(f, i)
      if n == nil then break end
      if n == name and type(v) == "table" then return v end
      if type(v) == "function" then
        local found = search(v, depth + 1)
        if found then return found end
      elseif type(v) == "table" and type(rawget(v, "__name")) == "string" then
        for _, m in pairs(v) do
          if type(m) == "function" then
            local found = search(m, depth + 1)
            if found then return found end
          end
        end
      end
    end
  end
  return search(fn, 1) or error("no class " .. name .. " behind this constructor")
end

return function()
  local http = require "corio.http"
  local web = require "corio.web"
  local net = require "corio.net"
  local process = require "corio.process"
  local fs = require "corio.fs"
  local signal = require "corio.signal"
  local redis = require "corio.redis"
  local json = require "corio.json"
  local api = {}
  local function add(page, module, prefix, names)
    api[#api + 1] = {page = page, module = module, prefix = prefix, names = names}
  end

  -- modules
  add("doc/corio.md", "corio", "corio.", public(corio))
  add("doc/http.md", "corio.http", "http.", public(http))
  add("doc/web.md", "corio.web", "web.", public(web))
  add("doc/json.md", "corio.json", "json.", public(json))
  add("doc/net.md", "corio.net", "net.", public(net))
  add("doc/os.md", "corio.process", "process.", public(process))
  add("doc/os.md", "corio.fs", "fs.", public(fs))
  add("doc/os.md", "corio.signal", "signal.", public(signal))
  add("doc/redis.md", "corio.redis", "redis.", public(redis))

  -- classes of the core
  local task = corio.spawn(function() end)
  add("doc/corio.md", "Task", "task:", methods(task))
  task:await()
  add("doc/corio.md", "Future", "future:", methods(corio.Future()))
  add("doc/messaging.md", "Queue", "q:", methods(corio.Queue()))
  add("doc/messaging.md", "PriorityQueue", "q:", methods(corio.PriorityQueue()))
  add("doc/messaging.md", "Event", "event:", methods(corio.Event()))
  add("doc/messaging.md", "Lock", "lock:", methods(corio.Lock()))
  add("doc/messaging.md", "Semaphore", "sem:", methods(corio.Semaphore(1)))
  add("doc/messaging.md", "Condition", "cond:", methods(corio.Condition()))
  add("doc/messaging.md", "Barrier", "barrier:", methods(corio.Barrier(2)))
  corio.group(function(g) add("doc/messaging.md", "TaskGroup", "g:", methods(g)) end)
  local bus = corio.Bus()
  add("doc/messaging.md", "Bus", "bus:", methods(bus))
  local sub = bus:subscribe("t")
  add("doc/messaging.md", "Subscription", "sub:", methods(sub))
  sub:close()

  -- corio.web and corio.http against each other, in this process
  local seen = {}
  local app = web.Application()
  add("doc/web.md", "Application", "app:", methods(app))
  app:get("/", function(request)
    seen.request = request
    return "ok"
  end)
  local server = assert(app:listen {host = "127.0.0.1", port = 0})
  add("doc/web.md", "Server", "server:", methods(server))
  local session = http.Session()
  add("doc/http.md", "Session", "session:", methods(session))
  local resp = assert(session:get("http://127.0.0.1:" .. server.port .. "/"))
  add("doc/http.md", "Response", "resp:", methods(resp))
  add("doc/http.md", "Headers", "resp.headers:", methods(resp.headers))
  add("doc/web.md", "Request", "request:", methods(seen.request))
  add("doc/web.md", "Request.headers", "request.headers:", methods(seen.request.headers))
  add("doc/web.md", "Response", "response:", methods(web.Response {body = ""}))
  add("doc/web.md", "StreamResponse", "stream:", methods(web.StreamResponse {}))
  app:websocket("/ws", function(ws) for _ in ws:messages() do end end)
  local ws = assert(http.websocket("ws://127.0.0.1:" .. server.port .. "/ws"))
  add("doc/web.md", "WebSocket", "ws:", methods(ws))
  add("doc/http.md", "WebSocket", "ws:", methods(ws))
  ws:close()
  session:close()
  server:close()

  -- corio.net: a stream, a server, a UDP socket
  local nserver = assert(net.serve(function(s) s:close() end, {host = "127.0.0.1", port = 0}))
  add("doc/net.md", "Server", "server:", methods(nserver))
  local stream = assert(net.connect("127.0.0.1", nserver.port))
  add("doc/net.md", "Stream", "s:", methods(stream))
  stream:close()
  nserver:close()
  local udp = assert(net.udp {host = "127.0.0.1", port = 0})
  add("doc/net.md", "UDP", "sock:", methods(udp))
  udp:close()

  -- corio.process, corio.fs, corio.signal
  local proc = assert(process.spawn {"true"})
  add("doc/os.md", "Process", "p:", methods(proc))
  proc:wait()
  proc:close()
  local path = os.tmpname()
  local file = assert(fs.open(path, "r"))
  add("doc/os.md", "File", "f:", methods(file))
  file:close()
  os.remove(path)
  local watcher = assert(signal.watch {"SIGUSR2"})
  add("doc/os.md", "signal watcher", "w:", methods(watcher))
  watcher:close()

  -- corio.redis: the classes without a server (their method tables are the metatables'
  -- __index); the queue's and the bridge's are reached through their constructors
  add("doc/redis.md", "Client", "r:", methods(setmetatable({}, redis.Client)))
  add("doc/redis.md", "Pool", "pool:", methods(setmetatable({}, redis.Pool)))
  add("doc/redis.md", "Subscription", "sub:", methods(setmetatable({}, redis.Subscription)))
  add("doc/redis.md", "redis queue", "q:",
      methods(setmetatable({}, class_of(require("corio.redis.queue").new, "Queue"))))
  add("doc/redis.md", "redis job", "job:",
      methods(setmetatable({}, class_of(require("corio.redis.queue").new, "Job"))))
  add("doc/redis.md", "bridge", "bridge:",
      methods(setmetatable({}, class_of(require("corio.redis.bridge").new, "Bridge"))))
  return api
end
