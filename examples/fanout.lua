-- Fan out to many URLs with a concurrency limit, printing a progress line.
--
--   corio examples/fanout.lua [-c CONCURRENCY] [url ...]
--
-- Fetches every URL, at most CONCURRENCY (default 10) at a time through one pooled session,
-- and prints a progress line on stderr as they complete, then a summary. Without URLs it
-- serves 200 small files from a temporary directory with a small Python standard-library
-- server on a free port of 127.0.0.1 (no internet needed) and fetches those, plus two that
-- fail.
local corio = require "corio"
local http = require "corio.http"

local args, concurrency = {...}, 10
if args[1] == "-c" then
  concurrency = assert(math.tointeger(tonumber(args[2])), "-c needs a number")
  table.remove(args, 1)
  table.remove(args, 1)
end

-- A throwaway local server: Python's standard library, HTTP/1.1 with keep-alive (unlike
-- `python3 -m http.server`, which closes every connection), serving a temporary directory.
local SERVER = [[
import functools, http.server, sys
class H(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # head and body go out in two writes
    def log_message(self, *a): pass
class S(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
s = S(("127.0.0.1", 0), functools.partial(H, directory=sys.argv[1]))
print(s.server_address[1], flush=True)
s.serve_forever()
]]

local function local_server(n)
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir " .. dir))
  for i = 1, n do
    local f = assert(io.open(("%s/item%d.txt"):format(dir, i), "w"))
    f:write(("item %d\n"):format(i):rep(i))
    f:close()
  end
  local script = dir .. "/.server.py"
  local f = assert(io.open(script, "w"))
  f:write(SERVER)
  f:close()
  local p = assert(io.popen(("sh -c 'exec 2>/dev/null; /usr/bin/python3 %s %s & echo $!; wait'")
    :format(script, dir)))
  local pid = p:read("l")
  local port = assert(p:read("l"), "the local server did not start")
  return "http://127.0.0.1:" .. port, function()
    os.execute("kill " .. pid)
    p:close()
    os.execute("rm -rf " .. dir)
  end
end

local urls, stop = args, nil
if #urls == 0 then
  local base
  base, stop = local_server(200)
  for i = 1, 200 do urls[i] = ("%s/item%d.txt"):format(base, i) end
  urls[#urls + 1] = base .. "/missing.txt"           -- a 404
  urls[#urls + 1] = "http://127.0.0.1:1/refused"       -- nothing listens there
end

local session = http.Session {timeout = {connect = 5, total = 30}}
local done, failed, bytes = 0, 0, 0
local t0 = corio.now()
local tty = os.getenv("TERM") and os.execute("test -t 2")

local function progress(final)
  local dt = corio.now() - t0
  local line = ("[%d/%d] %d failed, %.1f KiB, %.0f req/s"):format(done, #urls, failed,
    bytes / 1024, done / math.max(dt, 1e-6))
  if tty then io.stderr:write("\r", line, final and "\n" or "")
  elseif final or done % 50 == 0 then io.stderr:write(line, "\n") end
end

local results = corio.map(function(url)
  local resp, err = session:get(url)
  done = done + 1
  local outcome
  if not resp then
    failed = failed + 1
    outcome = err
  elseif not resp.ok then
    failed = failed + 1
    outcome = ("%d %s: %s"):format(resp.status, resp.reason, url)
  else
    bytes = bytes + #resp.body
    outcome = true
  end
  progress(false)
  return outcome
end, urls, {concurrency = concurrency})
progress(true)

local stats = session:stats()
session:close()
if stop then stop() end
for _, r in ipairs(results) do
  if r ~= true then print("failed: " .. r) end
end
print(("%d URLs, %d failed, %d connections opened, %.2f s"):format(#urls, failed,
  stats.connects, corio.now() - t0))
