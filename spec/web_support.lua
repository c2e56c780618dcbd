-- Helpers for the web specs: a raw TCP client, curl run in the background (the server lives
-- in the same process, so a blocking io.popen would stall it), and a response parser.
local corio = require "corio"
local tcp = require "corio._tcp"

local W = {}

-- Send `data` (a string or a list of pieces, with `gap` seconds between them), optionally
-- half-close, then read until the server closes or `wait` seconds pass. Returns all bytes.
function W.raw(port, data, opts)
  opts = opts or {}
  local c = assert(tcp.connect("127.0.0.1", port))
  local got, done = {}, false
  -- read while writing, as a real client does: a server that answers early and closes must
  -- not have its answer destroyed by a reset
  local reader = corio.spawn(function()
    local ok, err = pcall(corio.timeout, opts.wait or 5, function()
      while true do
        local s = c:read()
        if not s then break end
        got[#got + 1] = s
        if opts.until_ and table.concat(got):find(opts.until_, 1, true) then break end
      end
    end)
    done = true
    if not ok and not corio.is_timeout(err) then error(err, 0) end
    return ok
  end)
  local pieces = type(data) == "table" and data or {data}
  for i, p in ipairs(pieces) do
    if done then break end
    if #p > 0 and not c:write(p) then break end
    if opts.gap and i < #pieces then corio.sleep(opts.gap) end
  end
  if opts.half_close and not done then c:shutdown() end
  local ok = reader:await()
  c:close()
  return table.concat(got), ok
end

-- Parse every response in a byte string: {status=, headers={lower=value}, body=} list.
function W.parse(s, head_only)
  local out, pos = {}, 1
  while pos <= #s do
    local e = s:find("\r\n\r\n", pos, true)
    if not e then break end
    local head = s:sub(pos, e - 1)
    local status = tonumber(head:match("^HTTP/1%.%d (%d%d%d)"))
    local h = {}
    for k, v in head:gmatch("\r\n([^:\r\n]+):%s*([^\r\n]*)") do h[k:lower()] = v end
    pos = e + 4
    local body = ""
    if head_only or status == 304 or status == 204 or (status and status < 200) then
      -- no body
    elseif h["transfer-encoding"] == "chunked" then
      local parts = {}
      while true do
        local le = s:find("\r\n", pos, true)
        if not le then break end
        local n = tonumber(s:sub(pos, le - 1), 16)
        pos = le + 2
        if not n or n == 0 then pos = pos + 2; break end
        parts[#parts + 1] = s:sub(pos, pos + n - 1)
        pos = pos + n + 2
      end
      body = table.concat(parts)
    elseif h["content-length"] then
      local n = tonumber(h["content-length"])
      body = s:sub(pos, pos + n - 1)
      pos = pos + n
    else
      body = s:sub(pos)
      pos = #s + 1
    end
    out[#out + 1] = {status = status, headers = h, body = body}
  end
  return out
end

-- Run curl (or any shell command) in the background; poll until it ends.
-- Returns stdout, exit status.
function W.sh(cmd, timeout)
  local base = os.tmpname()
  local out, rc = base .. ".out", base .. ".rc"
  os.execute(("(%s >%s 2>/dev/null; echo $? >%s.tmp; mv %s.tmp %s) &"):format(
    cmd, out, rc, rc, rc))
  local deadline = corio.now() + (timeout or 20)
  local code
  while corio.now() < deadline do
    local f = io.open(rc)
    if f then code = tonumber(f:read("a")); f:close(); break end
    corio.sleep(0.02)
  end
  local f = io.open(out)
  local s = f and f:read("a") or ""
  if f then f:close() end
  os.remove(out); os.remove(rc); os.remove(base)
  return s, code
end

function W.curl(args, timeout)
  return W.sh("curl -s --max-time 15 " .. args, timeout)
end

-- Serve an app on 127.0.0.1, port 0: setup(app) adds its routes, opts are listen's; then
-- fn(base_url, port, server) runs, and the server shuts down (grace 1 s) whatever fn did.
function W.serve(setup, opts, fn)
  local web = require "corio.web"
  return corio.run(function()
    local app = web.Application()
    setup(app)
    opts = opts or {}
    opts.port = 0
    local server = assert(app:listen(opts))
    local ok, err = pcall(fn, "http://127.0.0.1:" .. server.port, server.port, server)
    server:shutdown(1)
    if not ok then error(err, 0) end
  end)
end

return W
