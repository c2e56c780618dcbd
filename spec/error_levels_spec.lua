-- Misuse errors name the caller's line, not a line inside corio: each case below misuses an
-- API on the line where its function is defined, and the error must point at that line.
local corio = require "corio"
local web = require "corio.web"
local http = require "corio.http"

-- fn makes one misuse on the line where it is written: its error must start with that line.
-- Every case of a test is checked; the test then fails listing the wrong ones.
local wrong
local function points_here(fn)
  local info = debug.getinfo(fn, "S")
  local ok, err = pcall(fn)
  local where = ("%s:%d: "):format(info.short_src, info.linedefined)
  if ok then
    wrong[#wrong + 1] = where .. "no error"
  elseif type(err) ~= "string" or err:sub(1, #where) ~= where then
    wrong[#wrong + 1] = where .. "got " .. tostring(err)
  end
end

before_each(function() wrong = {} end)
after_each(function() assert(#wrong == 0, "\n" .. table.concat(wrong, "\n")) end)

describe("misuse errors point at the caller's line", function()
  it("in corio.bus", function()
    local bus = corio.Bus()
    points_here(function() bus:subscribe(42) end)
    points_here(function() bus:subscribe("a..b") end)
    points_here(function() bus:subscribe("a.b", {size = 0}) end)
    points_here(function() bus:subscribe("a.b", {policy = "later"}) end)
    points_here(function() bus:publish("a.*", 1) end)
    points_here(function() bus:publish("a..b", 1) end)
    points_here(function() bus:publish(false, 1) end)
    points_here(function() bus:subscribers("x#") end)
    bus:close()
    points_here(function() bus:publish("a.b", 1) end)
    points_here(function() bus:subscribe("a.b") end)
  end)

  it("in corio.queue", function()
    points_here(function() corio.Queue(1.5) end)
    points_here(function() corio.LifoQueue("x") end)
    points_here(function() corio.PriorityQueue(4, 5) end)
    points_here(function() corio.PriorityQueue(1.5) end)
    local q = corio.Queue()
    points_here(function() q:put(nil) end)
    points_here(function() q:put_nowait(nil) end)
    points_here(function() q.put(1) end)
    points_here(function() q:task_done() end)
    local pq = corio.PriorityQueue()
    points_here(function() pq:put(nil) end)
  end)

  it("in corio.sync", function()
    points_here(function() corio.Semaphore(-1) end)
    points_here(function() corio.BoundedSemaphore(0.5) end)
    points_here(function() corio.BoundedSemaphore(1):release() end)
    points_here(function() corio.Lock():release() end)
    points_here(function() corio.Lock():with(5) end)
    points_here(function() corio.Condition(5) end)
    points_here(function() corio.Condition():notify() end)
    points_here(function() corio.Condition():notify_all() end)
    points_here(function() corio.Condition():wait() end)
    points_here(function() corio.Barrier(0) end)
  end)

  it("in corio.group and the composition functions", function()
    points_here(function() corio.group(5) end)
    points_here(function() corio.TaskGroup():spawn(5) end)
    points_here(function() corio.run(5) end)
    points_here(function() corio.gather(5) end)
    points_here(function() corio.gather({5}) end)
    points_here(function() corio.map(5, {}) end)
    points_here(function() corio.map(print, {}, {concurrency = 0}) end)
    points_here(function() corio.timeout("x", print) end)
    points_here(function() corio.wait_for(5, 1) end)
    points_here(function() corio.wait({5}) end)
    points_here(function() corio.wait({}, {return_when = "SOMETIMES"}) end)
    points_here(function() corio.shield(5) end)
  end)

  it("in corio.web and corio.http", function()
    points_here(function() web.HTTPError(200) end)
    local app = web.Application()
    points_here(function() app:get("/{1x}", print) end)
    points_here(function() app:route("GET", "/{1x}", print) end)
    points_here(function() app:post("nope", print) end)
    points_here(function() http.get("http://x/a b") end)
    points_here(function() http.get("http://x/", {timeout = -1}) end)
    points_here(function() http.get("http://x/", {headers = 5}) end)
    points_here(function() http.get("http://x/", {nonsense = 1}) end)
    points_here(function() http.Session{timeout = -1} end)
    points_here(function() http.Session{base_url = "a b"} end)
  end)
end)
