-- corio.web: an HTTP/1.1 server in aiohttp.web's shape. The transport, parsing, limits and
-- response serialisation are C ("corio._http_server"); this module is the policy: the
-- Application (routing with {name} parts, middleware), Request helpers, Response / json /
-- HTTPError / StreamResponse, static files, the access log and run_app (signals, workers).
-- Exports: Application, Response, StreamResponse, json, HTTPError, ClientGone, sse, run_app,
-- status_text.
local corio = require "corio"
local C = require "corio._http_server"
local json = require "corio.json"
local errors = require "corio.errors"

local M = {}
M.json_codec = json

local respond, sendfile, abort_request = C.respond, C.sendfile, C.abort_request
local stream_start, stream_write, stream_end = C.stream_start, C.stream_write, C.stream_end
local stream_drain = C.stream_drain
local type, setmetatable, getmetatable, pairs, ipairs, error, tostring, tonumber, select =
  type, setmetatable, getmetatable, pairs, ipairs, error, tostring, tonumber, select
local xpcall, traceback = xpcall, debug.traceback
local find, sub, lower, format, gsub, char, byte = string.find, string.sub, string.lower,
  string.format, string.gsub, string.char, string.byte
local concat = table.concat
local is_cancelled, is_timeout = corio.is_cancelled, corio.is_timeout
local SliceExceeded = corio.SliceExceeded

local TEXT = "text/plain; charset=utf-8"

-- ---- errors ------------------------------------------------------------------------------

local HTTPError = {__name = "corio.web.HTTPError"}
HTTPError.__tostring = function(e)
  return format("HTTPError %d: %s", e.status, e.message)
end
errors.register(HTTPError)

-- The reason phrases are the server's own table (bindings/http_reason.c).
local REASONS = require("corio._http_reason").reasons
function M.status_text(status) return REASONS[status] or "Error" end

-- web.HTTPError(status[, message[, headers]]) -> error object; raise it with error(): the
-- client gets that status with the message (default: the reason phrase) as text.
function M.HTTPError(status, message, headers)
  if type(status) ~= "number" or status < 400 or status > 599 then
    error(format("HTTPError: status must be 400..599, got %s", tostring(status)), 2)
  end
  return setmetatable({status = status, message = message or M.status_text(status),
                       headers = headers}, HTTPError)
end
M.is_http_error = HTTPError.is

-- web.ClientGone: raised by a stream write (StreamResponse:write, the send of web.sse) when
-- the client has gone away, so that a loop that writes forever ends. The dispatcher closes
-- the connection and logs nothing: a client that leaves is not a server error.
local ClientGone = errors.class("corio.web.ClientGone", "the client is gone")
M.ClientGone = ClientGone
M.is_client_gone = ClientGone.is

-- ---- responses -------------------------------------------------------------------------

local Response = {__name = "corio.web.Response"}
Response.__index = Response

-- web.Response{status = 200, body = "" | text = "", headers = {name = value | {values}},
--              content_type = "text/plain; charset=utf-8"}
function M.Response(t)
  t = t or {}
  local r = setmetatable({
    status = t.status or 200,
    body = t.body or t.text or "",
    headers = t.headers or {},
    content_type = t.content_type,
  }, Response)
  if type(r.status) ~= "number" or r.status < 100 or r.status > 999 then
    error(format("Response: invalid status %s", tostring(r.status)), 2)
  end
  if type(r.body) ~= "string" then
    error(format("Response: body must be a string, got %s", type(r.body)), 2)
  end
  if r.content_type == nil and not r.headers["Content-Type"] and not r.headers["content-type"] then
    r.content_type = TEXT
  end
  return r
end
function M.is_response(v) return getmetatable(v) == Response end

-- web.json(value[, status[, headers]]) -> Response with an application/json body
function M.json(value, status, headers)
  return setmetatable({status = status or 200, body = json.encode(value),
                       headers = headers or {}, content_type = "application/json"}, Response)
end

-- Headers as the C side wants them: a flat list {name, value, ...}.
local function flat_headers(h)
  if not h or next(h) == nil then return nil end
  local out, n = {}, 0
  for k, v in pairs(h) do
    if type(v) == "table" then
      for _, one in ipairs(v) do out[n + 1] = k; out[n + 2] = tostring(one); n = n + 2 end
    else
      out[n + 1] = k; out[n + 2] = tostring(v); n = n + 2
    end
  end
  return out
end

-- web.StreamResponse{status=, headers=, content_type=}: resp:prepare(request), then
-- resp:write(data) any number of times (chunked encoding), and return resp from the handler.
local StreamResponse = {__name = "corio.web.StreamResponse"}
StreamResponse.__index = StreamResponse
function M.StreamResponse(t)
  t = t or {}
  return setmetatable({status = t.status or 200, headers = t.headers or {},
                       content_type = t.content_type or "application/octet-stream"},
                      StreamResponse)
end

function StreamResponse:prepare(request)
  if self._conn then return true end
  local conn = request._conn
  local ok, err = stream_start(conn, self.status, self.content_type, flat_headers(self.headers))
  if not ok then error(ClientGone.new(err), 2) end
  self._conn = conn
  request._answered = true
  request._stream_status = self.status
  return true
end

-- resp:write(data) -> true; raises web.ClientGone once the client has gone. The data is
-- queued without a copy; above the connection's high-water mark (listen's max_output_buffer)
-- the writer is suspended until the client has read half of it.  [may suspend]
function StreamResponse:write(data)
  if not self._conn then error("StreamResponse: call prepare(request) before write", 2) end
  if type(data) ~= "string" then data = tostring(data) end
  local wait, err = stream_write(self._conn, data)
  if wait == nil then error(ClientGone.new(err), 2) end
  if wait then
    local ok, derr = stream_drain(self._conn)
    if not ok then error(ClientGone.new(derr), 2) end
  end
  return true
end

-- web.sse(request, function(send) ... end[, {keepalive = 15, headers = {}}]) -> response
-- Server-sent events: send(data[, {event =, id =, retry =}]) writes one event (each line of
-- data as a data: field) and flushes it; a comment line keeps idle connections open every
-- `keepalive` seconds. When the client leaves, send raises web.ClientGone and sse returns:
-- return its result from the handler.
function M.sse(request, fn, opts)
  opts = opts or {}
  local headers = {["Cache-Control"] = "no-cache", ["X-Accel-Buffering"] = "no"}
  for k, v in pairs(opts.headers or {}) do headers[k] = v end
  local resp = M.StreamResponse{content_type = "text/event-stream; charset=utf-8",
                                headers = headers}
  resp:prepare(request)
  local gone = false
  local lock = corio.Lock()  -- the keepalive and the events take turns on the stream
  local function write(chunk)
    lock:acquire()
    local ok, err = pcall(resp.write, resp, chunk)
    lock:release()
    if not ok then gone = true; error(err, 0) end
  end
  local function send(data, ev)
    if gone then error(ClientGone.new("the client is gone"), 2) end
    local parts = {}
    if ev then
      if ev.event then parts[#parts + 1] = "event: " .. ev.event .. "\n" end
      if ev.id then parts[#parts + 1] = "id: " .. tostring(ev.id) .. "\n" end
      if ev.retry then parts[#parts + 1] = "retry: " .. tostring(ev.retry) .. "\n" end
    end
    for line in (tostring(data) .. "\n"):gmatch("([^\n]*)\n") do
      parts[#parts + 1] = "data: " .. line:gsub("\r", "") .. "\n"
    end
    parts[#parts + 1] = "\n"
    write(concat(parts))
  end
  local keepalive = opts.keepalive == nil and 15 or opts.keepalive
  local ka = keepalive and keepalive > 0 and corio.spawn(function()
    while not gone do
      corio.sleep(keepalive)
      if not pcall(write, ": keepalive\n\n") then return end
    end
  end)
  local ok, err = pcall(fn, send)
  if ka then ka:cancel() end
  if not ok and not ClientGone.is(err) then error(err, 0) end
  return resp
end

-- ---- requests ----------------------------------------------------------------------------

local function unescape(s)
  if not find(s, "%", 1, true) then return s end
  return (gsub(s, "%%(%x%x)", function(h) return char(tonumber(h, 16)) end))
end
M.unescape = unescape

local function form_unescape(s)
  return unescape((gsub(s, "+", " ")))
end

-- Parse an application/x-www-form-urlencoded string: name -> first value; all values are
-- kept in the second table (name -> list).
local function parse_qs(qs)
  local first, all = {}, {}
  for pair in qs:gmatch("[^&]+") do
    local eq = find(pair, "=", 1, true)
    local k = form_unescape(eq and sub(pair, 1, eq - 1) or pair)
    local v = eq and form_unescape(sub(pair, eq + 1)) or ""
    if first[k] == nil then first[k] = v; all[k] = {v}
    else local l = all[k]; l[#l + 1] = v end
  end
  return first, all
end
M.parse_qs = parse_qs

-- Headers: case-insensitive lookup (h["Content-Type"], h:get(name), h:get_all(name)) over
-- the flat list the parser produced; repeated headers are kept.
local Headers = {__name = "corio.web.Headers"}
local header_methods = {}
function header_methods:get(name, default)
  local list = self._list
  name = lower(name)
  for i = 1, #list, 2 do
    if list[i] == name then return list[i + 1] end
  end
  return default
end
function header_methods:get_all(name)
  local list, out = self._list, {}
  name = lower(name)
  for i = 1, #list, 2 do
    if list[i] == name then out[#out + 1] = list[i + 1] end
  end
  return out
end
-- for name, value in request.headers:items() do ... end (names lowercased, in order)
function header_methods:items()
  local list, i = self._list, -1
  return function()
    i = i + 2
    if list[i] then return list[i], list[i + 1] end
  end
end
Headers.__index = function(self, k)
  local m = header_methods[k]
  if m then return m end
  if type(k) == "string" then return header_methods.get(self, k) end
end
Headers.__pairs = function(self) return header_methods.items(self) end

local Request = {__name = "corio.web.Request"}
local request_methods = {}
local lazy = {}

function lazy.headers(r)
  return setmetatable({_list = r._hdrs}, Headers)
end
function lazy.query(r)
  local first, all = parse_qs(r.query_string)
  r._query_all = all
  return first
end
function lazy.raw_path(r)
  local q = find(r.target, "?", 1, true)
  return q and sub(r.target, 1, q - 1) or r.target
end
function lazy.query_string(r)
  local q = find(r.target, "?", 1, true)
  return q and sub(r.target, q + 1) or ""
end
function lazy.params() return {} end
-- request.disconnected: a corio.Event set when the client goes away (a reset, a failed write,
-- or its end of the connection closed) while this request is in progress.
function lazy.disconnected(r)
  local ev = corio.Event()
  local slot = C.watch_disconnect(r._conn)
  local wait = C.wait_disconnect
  corio.spawn(function()
    if wait(slot) then ev:set() end
  end)
  return ev
end
function lazy.content_type(r)
  local ct = r.headers:get("content-type")
  return ct and lower(ct:match("^[^;]*"):match("^%s*(.-)%s*$")) or nil
end

Request.__index = function(r, k)
  local m = request_methods[k]
  if m then return m end
  local f = lazy[k]
  if f then
    local v = f(r)
    rawset(r, k, v)
    return v
  end
end

-- ---- the request body ----------------------------------------------------------------------
-- A handler runs once the request's head is parsed; its body is read on demand, as it
-- arrives (aiohttp's model): whole (body, text, json, form, kept for later calls), in chunks
-- (read, chunks) or into a file (save). The C side holds at most max_body_buffer unread bytes
-- per connection and stops reading the socket meanwhile. A body that cannot be read to its
-- end raises: HTTPError 413 (past max_body: the server has answered 413 if the handler had
-- not answered yet), 408 (body_timeout), 400 (bad chunked framing), ClientGone (the client
-- left). What a handler leaves unread is dropped after its answer (see doc/web.md).
local body_read, body_all, body_save = C.body_read, C.body_all, C.body_save

-- The error a body read raises. The server has answered 400, 408 or 413 itself if the handler
-- had not answered yet: the request remembers it for the access log.
local function body_failure(req, status, max_body, op)
  if status ~= 499 and status ~= 0 then req._refused = status end
  if status == 499 then
    return ClientGone.new("the client left before the end of the request body")
  elseif status == 413 then
    return M.HTTPError(413, format("request body larger than %d bytes", max_body))
  elseif status == 0 then
    return format("%s: the request is over", op)
  end
  return M.HTTPError(status)
end

local function live_conn(req, op)
  local conn = req._conn
  if not conn then error(format("%s: the request is over", op), 3) end
  return conn
end

-- request:read([n]) -> the next chunk of the body (at most n bytes; default: what has
-- arrived), or nil at its end.  [suspends]
function request_methods:read(n)
  if n ~= nil and (math.type(n) ~= "integer" or n < 1) then
    error("read: n must be a positive integer", 2)
  end
  local conn = live_conn(self, "read")
  if self._body then return nil end  -- body() took it all
  self._partial = true
  local data, status, max_body = body_read(conn, n)
  if data == false then error(body_failure(self, status, max_body, "read"), 2) end
  return data
end

-- for chunk in request:chunks([n]) do ... end
function request_methods:chunks(n)
  return function() return request_methods.read(self, n) end
end

-- request:save(path) -> bytes written | nil, msg, code (the file could not be written; it is
-- removed). The body goes to the file as it arrives, never into Lua strings.  [suspends]
function request_methods:save(path)
  if type(path) ~= "string" then error("save: path must be a string", 2) end
  local conn = live_conn(self, "save")
  local whole = self._body
  if whole then  -- body() read it already
    local ok, msg, code = require("corio.fs").write_file(path, whole)
    if not ok then return nil, msg, code end
    return #whole
  end
  self._partial = true
  local n, status, max_body = body_save(conn, path)
  if n == false then error(body_failure(self, status, max_body, "save"), 2) end
  return n, status, max_body
end

-- request:body() / request:text() -> the whole body, a string (kept: later calls return it)
function request_methods:body()
  local b = self._body
  if b then return b end
  local conn = live_conn(self, "body")
  if self._partial then
    error("body: the body was read in part already (read, chunks or save)", 2)
  end
  local data, status, max_body = body_all(conn)
  if data == false then error(body_failure(self, status, max_body, "body"), 2) end
  self._body = data
  return data
end
request_methods.text = request_methods.body

-- request:json() -> decoded body; invalid JSON raises HTTPError 400
function request_methods:json()
  local ok, v = pcall(json.decode, request_methods.body(self))
  if not ok then error(M.HTTPError(400, "invalid JSON body: " .. tostring(v)), 2) end
  return v
end
-- request:form() -> name -> value for an application/x-www-form-urlencoded body
function request_methods:form()
  local ct = self.content_type
  if ct and ct ~= "application/x-www-form-urlencoded" then
    error(M.HTTPError(415, "expected an application/x-www-form-urlencoded body"), 2)
  end
  return (parse_qs(request_methods.body(self)))
end
-- request:query_all(name) -> every value of a repeated query parameter
function request_methods:query_all(name)
  local _ = self.query
  return self._query_all[name] or {}
end

-- ---- routing -----------------------------------------------------------------------------

local Application = {__name = "corio.web.Application"}
Application.__index = Application

function M.Application(opts)
  return setmetatable({
    _static = {},    -- method -> path -> route (paths without parameters)
    _dynamic = {},   -- list of routes with parameters
    _middleware = {},
    _wrapped = setmetatable({}, {__mode = "k"}),
    _on_startup = {}, _on_shutdown = {},
    _live = 0,       -- servers started and not shut down: the hooks run around them
    opts = opts or {},
  }, Application)
end

-- ---- start and shutdown hooks ------------------------------------------------------------

-- app:on_startup(function(app) ... end) -> app: runs (in the order added) when the app starts
-- serving, before its port accepts anything: open pools here.
function Application:on_startup(fn)
  if type(fn) ~= "function" then error("on_startup: hook must be a function", 2) end
  self._on_startup[#self._on_startup + 1] = fn
  return self
end

-- app:on_shutdown(function(app) ... end) -> app: runs (in the order added) once the server
-- has stopped and its handlers have drained: close pools here. Every hook runs, even after
-- one has failed; failures go to the error log.
function Application:on_shutdown(fn)
  if type(fn) ~= "function" then error("on_shutdown: hook must be a function", 2) end
  self._on_shutdown[#self._on_shutdown + 1] = fn
  return self
end

local function report(opts, msg)
  local log = opts.error_log
  if log then log(msg) else io.stderr:write(msg, "\n") end
end

-- Run every shutdown hook; a failure is reported and the next hook runs. A cancellation is
-- raised again once they all have run.
local function run_shutdown(app, opts)
  local cancelled
  for i, fn in ipairs(app._on_shutdown) do
    local ok, err = xpcall(fn, traceback, app)
    if not ok then
      if is_cancelled(err) then cancelled = cancelled or err
      else report(opts, format("corio.web: on_shutdown hook %d failed: %s", i, tostring(err))) end
    end
  end
  if cancelled then error(cancelled, 0) end
end

-- Run the startup hooks in order. If one fails, the start is over: the shutdown hooks run (to
-- close what the earlier hooks opened), then the failure is raised.
local function run_startup(app, opts)
  for i, fn in ipairs(app._on_startup) do
    local ok, err = xpcall(fn, traceback, app)
    if not ok then
      run_shutdown(app, opts)
      if is_cancelled(err) then error(err, 0) end
      error(format("listen: on_startup hook %d failed: %s", i, tostring(err)), 0)
    end
  end
end

-- Compile "/users/{id}" or "/files/{path:.*}" into a Lua pattern and the parameter names.
-- A part's own pattern is a Lua pattern matched against that part (default: [^/]+).
local function compile(path)
  local names, pat, pos = {}, {"^"}, 1
  while true do
    local s, e, inner = find(path, "{([^}]*)}", pos)
    local lit = sub(path, pos, (s or 0) - 1)
    pat[#pat + 1] = gsub(lit, "[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")
    if not s then break end
    local name, p = inner:match("^([%a_][%w_]*):(.+)$")
    name = name or inner
    if not name:match("^[%a_][%w_]*$") then
      error(format("route: invalid parameter '{%s}' in '%s'", inner, path), 3)
    end
    names[#names + 1] = name
    pat[#pat + 1] = "(" .. (p or "[^/]+") .. ")"
    pos = e + 1
  end
  pat[#pat + 1] = "$"
  return concat(pat), names
end

-- app:route(method, path, handler): handler(request) -> string | Response | json(...)
function Application:route(method, path, handler)
  if type(method) ~= "string" then error("route: method must be a string", 2) end
  if type(path) ~= "string" or byte(path, 1) ~= 47 then
    error(format("route: path must start with '/', got %s", tostring(path)), 2)
  end
  if type(handler) ~= "function" and not (type(handler) == "table" and getmetatable(handler)
      and getmetatable(handler).__call) then
    error("route: handler must be a function", 2)
  end
  method = method:upper()
  local route = {method = method, path = path, handler = handler}
  if find(path, "{", 1, true) then
    route.pattern, route.names = compile(path)
    self._dynamic[#self._dynamic + 1] = route
  else
    local by = self._static[method] or {}
    self._static[method] = by
    by[path] = route
  end
  return self
end

for _, m in ipairs {"get", "post", "put", "patch", "delete", "head", "options"} do
  Application[m] = function(self, path, handler)
    return Application.route(self, m, path, handler)
  end
end

-- app:use(function(request, handler) ... return handler(request) end)
-- Middleware added first is outermost. The handler it gets always returns a Response.
function Application:use(mw)
  if type(mw) ~= "function" then error("use: middleware must be a function", 2) end
  self._middleware[#self._middleware + 1] = mw
  self._wrapped = setmetatable({}, {__mode = "k"})
  return self
end

-- ---- WebSocket ---------------------------------------------------------------------------

-- What a websocket route's handler returns once the connection has left HTTP: the dispatcher
-- sends nothing and must not touch the connection (its record is gone).
local Upgraded = setmetatable({}, {__name = "corio.web.Upgraded"})

local function upgrade(req, fn, opts)
  local h = req.headers
  if not find(lower(h:get("upgrade", "")), "websocket", 1, true)
      or not find(lower(h:get("connection", "")), "upgrade", 1, true) then
    error(M.HTTPError(426, "WebSocket upgrade required",
                      {Upgrade = "websocket", Connection = "Upgrade"}), 0)
  end
  if h:get("sec-websocket-version") ~= "13" then
    error(M.HTTPError(426, "unsupported WebSocket version", {["Sec-WebSocket-Version"] = "13"}),
          0)
  end
  local key = h:get("sec-websocket-key", "")
  if not req.http11 or #key ~= 24 or not find(key, "^[%w+/]+==$") then
    error(M.HTTPError(400, "bad WebSocket handshake"), 0)
  end
  local websocket = require "corio.websocket"
  -- The subprotocol: the server's first choice among those the client offered.
  local proto
  local offered = {}
  for _, p in ipairs(websocket.split_tokens(concat(h:get_all("sec-websocket-protocol"), ","))) do
    offered[p] = true
  end
  for _, p in ipairs(opts.protocols or {}) do
    if offered[p] then proto = p; break end
  end
  local ext = opts.compress and websocket.negotiate_deflate(
    concat(h:get_all("sec-websocket-extensions"), ",")) or nil
  local stream, buffered = C.detach(req._conn)
  if not stream then error(ClientGone.new(buffered), 0) end
  req._detached, req._answered, req._conn = true, true, nil
  local head = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               .. "Sec-WebSocket-Accept: " .. websocket.accept_key(key) .. "\r\n"
               .. (proto and "Sec-WebSocket-Protocol: " .. proto .. "\r\n" or "")
               .. (ext and "Sec-WebSocket-Extensions: " .. ext .. "\r\n" or "") .. "\r\n"
  local ok, werr = stream:write(head)
  if not ok then
    stream:abort()
    error(ClientGone.new(werr), 0)
  end
  local ws = websocket.new(stream, {max_message = opts.max_message, protocol = proto,
                                    ping_interval = opts.ping_interval,
                                    ping_timeout = opts.ping_timeout, buffered = buffered,
                                    deflate = ext ~= nil})
  ws.request = req
  local sessions = req._sessions
  sessions[ws] = true
  local r = table.pack(pcall(fn, ws, req))
  sessions[ws] = nil
  if r[1] then
    ws:close(1000)
    return Upgraded
  end
  if is_cancelled(r[2]) then
    ws:_abort(1001, "cancelled")  -- no handshake: a cancelled task does not wait
  else
    pcall(ws.close, ws, 1011)
  end
  error(r[2], 0)
end

-- app:websocket(path, function(ws, request) ... end [, {max_message =, ping_interval =,
--   ping_timeout =, protocols = {...}}]): a GET route that switches to WebSocket. The
--   connection closes (1000) when the function returns, with 1011 if it fails.
function Application:websocket(path, fn, opts)
  if type(fn) ~= "function" then error("websocket: handler must be a function", 2) end
  opts = opts or {}
  if type(opts) ~= "table" then error("websocket: options must be a table", 2) end
  self:route("GET", path, function(req) return upgrade(req, fn, opts) end)
  local route = find(path, "{", 1, true) and self._dynamic[#self._dynamic] or self._static.GET[path]
  route.websocket = true
  return self
end

local to_response

-- Find the route: returns route, params | nil, allowed methods (405) | nil (404)
function Application:resolve(method, path)
  local by = self._static[method]
  local r = by and by[path]
  if r then return r end
  if method == "HEAD" then
    by = self._static.GET
    r = by and by[path]
    if r then return r end
  end
  local allowed
  for _, route in ipairs(self._dynamic) do
    local caps = {path:match(route.pattern)}
    if caps[1] then
      if route.method == method or (method == "HEAD" and route.method == "GET") then
        local params = {}
        for i, name in ipairs(route.names) do params[name] = caps[i] end
        return route, params
      end
      allowed = allowed or {}
      allowed[route.method] = true
    end
  end
  for m, paths in pairs(self._static) do
    if paths[path] then allowed = allowed or {}; allowed[m] = true end
  end
  if allowed then
    if allowed.GET then allowed.HEAD = true end
    local list = {}
    for m in pairs(allowed) do list[#list + 1] = m end
    table.sort(list)
    return nil, list
  end
  return nil
end

local function not_found() error(M.HTTPError(404), 0) end

-- The handler of a route with the middleware around it (built once per route).
function Application:_handler_for(route)
  local mws = self._middleware
  if #mws == 0 then return route and route.handler or not_found end
  local key = route or not_found
  local h = self._wrapped[key]
  if h then return h end
  local inner = route and route.handler or not_found
  h = function(req) return to_response(inner(req)) end
  for i = #mws, 1, -1 do
    local mw, nexth = mws[i], h
    h = function(req) return to_response(mw(req, nexth)) end
  end
  self._wrapped[key] = h
  return h
end

-- ---- static files ------------------------------------------------------------------------

local MIME = {
  html = "text/html; charset=utf-8", htm = "text/html; charset=utf-8",
  css = "text/css; charset=utf-8", js = "text/javascript; charset=utf-8",
  mjs = "text/javascript; charset=utf-8", json = "application/json",
  txt = "text/plain; charset=utf-8", md = "text/markdown; charset=utf-8",
  csv = "text/csv; charset=utf-8", xml = "application/xml", svg = "image/svg+xml",
  png = "image/png", jpg = "image/jpeg", jpeg = "image/jpeg", gif = "image/gif",
  webp = "image/webp", ico = "image/x-icon", avif = "image/avif", pdf = "application/pdf",
  wasm = "application/wasm", woff = "font/woff", woff2 = "font/woff2", ttf = "font/ttf",
  mp4 = "video/mp4", webm = "video/webm", mp3 = "audio/mpeg", ogg = "audio/ogg",
  zip = "application/zip", gz = "application/gzip", tar = "application/x-tar",
  lua = "text/plain; charset=utf-8",
}
M.mime_types = MIME

local FileResponse = {__name = "corio.web.FileResponse"}

local function http_date(t) return os.date("!%a, %d %b %Y %H:%M:%S GMT", t) end

local MONTHS = {Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6, Jul = 7, Aug = 8,
                Sep = 9, Oct = 10, Nov = 11, Dec = 12}

-- Seconds since the epoch of an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"), or nil.
local function parse_http_date(s)
  local d, mon, y, h, mi, sec =
    s:match("^%a%a%a, (%d%d) (%a%a%a) (%d%d%d%d) (%d%d):(%d%d):(%d%d) GMT$")
  local m = MONTHS[mon or ""]
  if not m then return nil end
  y, m, d = tonumber(y), m, tonumber(d)
  -- days from the civil date (proleptic Gregorian), independent of the local time zone
  if m <= 2 then y = y - 1 end
  local era = y // 400
  local yoe = y - era * 400
  local doy = (153 * (m + (m > 2 and -3 or 9)) + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  local days = era * 146097 + doe - 719468
  return days * 86400 + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(sec)
end
M._parse_http_date = parse_http_date

-- app:static(prefix, directory): serve the files under directory at prefix/...
-- Nothing outside the directory can be reached: "..", encoded dots, NUL bytes and symlinks
-- that lead out are all refused with 404 / 403.
function Application:static(prefix, directory, opts)
  if type(prefix) ~= "string" or byte(prefix, 1) ~= 47 then
    error("static: prefix must start with '/'", 2)
  end
  local root, err = C.realpath(directory)
  if not root then error("static: " .. err, 2) end
  local show_index = opts and opts.index or "index.html"
  prefix = prefix:gsub("/+$", "")
  local function handler(req)
    local rel = req.params.path
    if find(rel, "%z") or find(rel, "\\", 1, true) then error(M.HTTPError(400), 0) end
    for seg in rel:gmatch("[^/]+") do
      if seg == ".." or seg == "." then error(M.HTTPError(403), 0) end
    end
    local full, rerr = C.realpath(root .. "/" .. rel)
    if not full then error(M.HTTPError(rerr and rerr:find("permission") and 403 or 404), 0) end
    if full ~= root and sub(full, 1, #root + 1) ~= root .. "/" then
      error(M.HTTPError(403), 0)  -- a symlink out of the directory
    end
    local size, mtime, regular = C.stat(full)
    if size and not regular and show_index then
      full = full .. "/" .. show_index
      size, mtime, regular = C.stat(full)
    end
    if not size or not regular then error(M.HTTPError(404), 0) end
    local ext = full:match("%.([%w]+)$")
    local lm = http_date(mtime)
    local ims = req.headers:get("if-modified-since")
    if ims then
      local t = parse_http_date(ims)
      if t and mtime <= t then
        return setmetatable({status = 304, headers = {["Last-Modified"] = lm}}, FileResponse)
      end
    end
    return setmetatable({status = 200, path = full,
                         content_type = MIME[ext and lower(ext) or ""]
                           or "application/octet-stream",
                         headers = {["Last-Modified"] = lm}}, FileResponse)
  end
  self:route("GET", prefix .. "/{path:.*}", handler)
  return self
end

-- ---- the dispatcher: one task per request ----------------------------------------------

to_response = function(v)
  local mt = getmetatable(v)
  if mt == Response or mt == StreamResponse or mt == FileResponse or v == Upgraded then
    return v
  end
  if type(v) == "string" then
    return setmetatable({status = 200, body = v, headers = {}, content_type = TEXT}, Response)
  end
  error(format("handler returned %s: expected a string, web.Response or web.json(...)",
               v == nil and "nothing" or type(v)), 0)
end
M.to_response = to_response

local function send(req, v)
  local conn = req._conn
  if type(v) == "string" then
    return 200, respond(conn, 200, v, TEXT)
  end
  if v == Upgraded then return 101, 0 end
  local mt = getmetatable(v)
  if mt == Response then
    return v.status, respond(conn, v.status, v.body, v.content_type, flat_headers(v.headers))
  elseif mt == StreamResponse then
    if not v._conn then v:prepare(req) end
    return v.status, stream_end(conn)
  elseif mt == FileResponse then
    if v.status == 304 then
      return 304, respond(conn, 304, "", nil, flat_headers(v.headers))
    end
    local sent, err = sendfile(conn, v.status, v.content_type, flat_headers(v.headers), v.path)
    if not sent then error(err, 0) end
    return v.status, sent
  end
  error(to_response(v), 0)  -- raises the "handler returned ..." message
end

local function log_error(opts, req, e)
  local log = opts.error_log
  local msg = format("corio.web: error handling %s %s: %s", req.method, req.target,
                     tostring(e))
  if log then log(msg) else io.stderr:write(msg, "\n") end
end

local function send_error(req, status, message, headers)
  local body = (message or M.status_text(status)) .. "\n"
  return status, respond(req._conn, status, body, TEXT, flat_headers(headers))
end

-- One line in the Common Log Format; size is the body bytes sent.
local function log_line(opts, remote, request_line, status, size)
  local fmt_date = os.date("!%d/%b/%Y:%H:%M:%S +0000")
  local line = format('%s - - [%s] "%s" %d %d', remote ~= "" and remote or "-", fmt_date,
                      request_line, status, size or 0)
  local out = opts.access_log
  if type(out) == "function" then out(line) else io.stdout:write(line, "\n") end
end

local function access_log(opts, req, status, size)
  log_line(opts, req.remote, format("%s %s HTTP/1.%d", req.method, req.target,
                                    req.http11 and 1 or 0), status, size)
end

-- Called by the C side in a new task for every request.
-- opts: this server's options (those given to listen, then the Application's)
local function make_dispatcher(app, opts)
  local request_timeout = opts.request_timeout
  local log_access = opts.access_log
  local static = app._static
  local function run(req)
    local route, params = app:resolve(req.method, req.path)
    if route then
      req.params = params or {}
      local h = app:_handler_for(route)
      -- a WebSocket session lasts as long as it lasts: request_timeout is for HTTP answers
      if request_timeout and not route.websocket then
        return corio.timeout(request_timeout, h, req)
      end
      return h(req)
    end
    if params then  -- 405
      error(M.HTTPError(405, nil, {Allow = concat(params, ", ")}), 0)
    end
    local h = app:_handler_for(nil)
    if request_timeout then return corio.timeout(request_timeout, h, req) end
    return h(req)
  end
  local handle = run
  -- Requests of this app: Request's lookups plus request.app.
  local AppRequest = {__name = "corio.web.Request"}
  local request_index = Request.__index
  local sessions = opts._sessions
  AppRequest.__index = function(r, k)
    if k == "app" then return app end
    if k == "_sessions" then return sessions end
    return request_index(r, k)
  end
  return function(conn, method, target, hdrs, http11, remote)
    -- The common case (no query, no escape) costs one find; raw_path, query_string, headers,
    -- query and params are computed when first read.
    local path = target
    if find(target, "[?%%]") then
      local q = find(target, "?", 1, true)
      path = unescape(q and sub(target, 1, q - 1) or target)
    end
    local req = setmetatable({_conn = conn, method = method, target = target, path = path,
                              _hdrs = hdrs, http11 = http11, remote = remote},
                             AppRequest)
    -- Fast path: an exact route, no middleware, no timeout, a string result.
    local status, size
    local by = not request_timeout and #app._middleware == 0 and static[method]
    local route = by and by[req.path]
    local ok, res
    if route then
      ok, res = xpcall(route.handler, traceback, req)
    else
      ok, res = xpcall(handle, traceback, req)
    end
    if ok then
      if type(res) == "string" then  -- cannot fail: no pcall needed
        respond(conn, 200, res, TEXT)
        status, size = 200, #res
      else
        ok, status, size = pcall(send, req, res)
        if not ok then res = status end
      end
    end
    if not ok and req._detached then
      -- the connection left HTTP (WebSocket): nothing more to send on it
      if is_cancelled(res) then req._conn = false; error(res, 0) end
      if getmetatable(res) ~= ClientGone then log_error(opts, req, res) end
      ok, status, size = true, 101, 0
    end
    if not ok then
      local e = res
      if is_cancelled(e) then
        abort_request(conn)
        req._conn = false
        error(e, 0)
      elseif req._answered then
        -- a stream already under way: no other status can be sent, the connection is cut
        local mt = getmetatable(e)
        if mt ~= HTTPError and mt ~= ClientGone then log_error(opts, req, e) end
        status = mt == HTTPError and e.status or mt == ClientGone and req._stream_status or 500
        size = abort_request(conn)
      elseif getmetatable(e) == HTTPError then
        status, size = send_error(req, e.status, e.message, e.headers)
      elseif getmetatable(e) == ClientGone then
        -- the client left while the body was read: nobody to answer (nginx logs 499 too)
        status, size = 499, abort_request(conn)
      elseif is_timeout(e) then
        status, size = send_error(req, 504)
      elseif getmetatable(e) == SliceExceeded then
        log_error(opts, req, e)     -- set_debug{max_slice}: a runaway handler, not a dead server
        status, size = send_error(req, 503)
      else
        log_error(opts, req, e)
        status, size = send_error(req, 500)
      end
    end
    -- The connection record may serve another request now, or be gone: the request's body
    -- methods must not reach it any more (a task the handler left behind may still try).
    req._conn = false
    if log_access then
      -- what the client got: the server's own answer to a bad body, unless one was under way
      if req._refused and not req._answered then status, size = req._refused, 0 end
      access_log(opts, req, status, size)
    end
  end
end

-- ---- serving -----------------------------------------------------------------------------

local LIMIT_KEYS = {"max_header", "max_url", "max_headers", "max_body", "max_body_buffer",
                    "max_connections",
                    "header_timeout", "body_timeout", "idle_timeout", "write_timeout", "backlog",
                    "reuseport", "max_output_buffer", "cancel_on_disconnect"}

-- app:listen{host = "127.0.0.1", port = 8080, ...limits} -> server
-- server.port, server:close() (stop accepting; idle connections close), server:abort(),
-- server:shutdown([grace]) [suspends]: close, wait for in-flight requests, then abort; then
-- the app's on_shutdown hooks run if no other server of the app is up. listen runs the
-- on_startup hooks first when none is.
-- WebSocket sessions get a close frame (1001) at shutdown and are cut (1006) when the grace
-- period is over, or at once by server:abort().
local Server = {__name = "corio.web.Server"}
Server.__index = Server

function Application:listen(opts)
  local o = {}
  for k, v in pairs(self.opts) do o[k] = v end
  for k, v in pairs(opts or {}) do o[k] = v end  -- listen's options win over the app's
  local args = {host = o.host or "127.0.0.1", port = o.port or 8080}
  -- a name ("localhost") is resolved first: the C listener takes numeric addresses only
  local ip, rerr, rcode = require("corio.net").resolve_host(args.host, args.port)
  if not ip then return nil, rerr, rcode end
  args.host = ip
  for _, k in ipairs(LIMIT_KEYS) do args[k] = o[k] end
  args.fd = o.fd  -- an inherited listening socket (run_app's workers), instead of host:port
  local first = self._live == 0
  if first then run_startup(self, o) end  -- raises if a hook fails
  o._sessions = {}  -- this server's WebSocket sessions (they have left the C server)
  local serve_one = make_dispatcher(self, o)
  local next_request = C.next_request
  -- A handler task serves a request, then waits for the next one (a pool of tasks).
  args.dispatch = function(h, ...)
    serve_one(...)
    while true do
      local conn, method, target, hdrs, http11, remote = next_request(h)
      if not conn then
        -- false: a burst is over (the pool let its extra tasks go, this one last). Its
        -- coroutines and requests are garbage that Lua reclaims at its next collector step,
        -- which comes with allocation, so an idle server might keep the burst's memory for
        -- good: take that step now. In generational mode (the corio command's and lua's) it
        -- is a minor collection, or the major one Lua's own rules call for.
        if conn == false and collectgarbage("isrunning") then collectgarbage("step", 0) end
        return
      end
      serve_one(conn, method, target, hdrs, http11, remote)
    end
  end
  args.log_refusals = o.access_log and true or false
  local ok, h, err, code = pcall(C.listen, args)
  if not (ok and h) then  -- the start failed after the hooks: close what they opened
    if first then run_shutdown(self, o) end
    if not ok then error(h, 0) end
    return nil, err, code
  end
  self._live = self._live + 1
  if args.log_refusals then
    -- The requests the server refused itself (callbacks run no Lua: they are kept in C and
    -- logged from here, as they come). The task ends when the server closes.
    local next_refusal = C.next_refusal
    local logger = corio.spawn(function()
      while true do
        local status, line, remote, bytes, http11 = next_refusal(h)
        if not status then return end
        log_line(o, remote, line ~= "" and format("%s HTTP/1.%d", line, http11 and 1 or 0)
                 or "-", status, bytes)
      end
    end)
    logger.name = "web access log"
  end
  return setmetatable({_h = h, port = h:port(), host = o.host or "127.0.0.1",
                       _sessions = o._sessions, _app = self, _opts = o}, Server)
end

-- End the WebSocket sessions: abortive (1006), or a close frame 1001 each ("going away"; the
-- handler's receive gets the answer and returns nil).
local function end_sessions(srv, abort)
  for ws in pairs(srv._sessions) do
    if abort then ws:_abort(1006, "server aborted") else ws:_going_away() end
  end
end

function Server:close() self._h:close() end
function Server:abort()
  self._h:abort()
  end_sessions(self, true)
end
-- server:connections() -> open, busy
function Server:connections() return self._h:connections() end
-- server:stats() -> {connections=, busy=, buffered=, pinned=, refused=, idle_tasks=,
--                    max_output_buffer=}: buffered counts the bytes the server copied into
-- queued writes (heads, small bodies, file chunks), pinned the bytes of response strings
-- queued without a copy.
function Server:stats() return self._h:stats() end

function Server:shutdown(grace)
  grace = grace or 10
  -- a connection waiting for a request gets a second for it to arrive (see server.c)
  self._h:close(true)
  local deadline = corio.now() + grace
  local clean = false
  while corio.now() < deadline do
    local n = self._h:connections()
    if n == 0 then clean = true; break end
    corio.sleep(0.02)
  end
  if not clean then self._h:abort() end
  -- WebSocket sessions: a close frame each, then what is left of the grace period
  if next(self._sessions) then
    end_sessions(self, false)
    while next(self._sessions) and corio.now() < deadline do corio.sleep(0.02) end
    if next(self._sessions) then clean = false; end_sessions(self, true) end
    while next(self._sessions) and corio.now() < deadline + 1 do corio.sleep(0.01) end
  end
  -- Closed connections release their queued writes (and the response strings they pin) in
  -- libuv's close callbacks: wait for those too, so nothing the server held outlives this.
  local limit = corio.now() + 1
  repeat corio.sleep(0) until select(3, self._h:connections()) == 0 or corio.now() > limit
  -- The app's last server is down: its shutdown hooks run (once per server).
  local app = self._app
  if not self._shut then
    self._shut = true
    app._live = app._live - 1
    if app._live == 0 then run_shutdown(app, self._opts) end
  end
  return clean
end

-- web.run_app(app, {host=, port=, workers=, grace=, print=}) serves until SIGINT/SIGTERM,
-- then shuts down gracefully. See corio.web.run for the worker processes.
function M.run_app(app, opts)
  return require("corio.web_run").run_app(app, opts or {})
end

M.Request = Request
M._Server = Server
return M
