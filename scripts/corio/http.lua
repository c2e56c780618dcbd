-- corio.http: an HTTP client with a keep-alive connection pool, on libcurl's multi-socket
-- engine (bindings/http_client.c). This file is the policy: sessions, options, URLs, headers,
-- bodies, the response object. Exports get, post, put, patch, delete, head, options, request,
-- Session, default_session, HTTPError, is_http_error, urlencode, encode_form, json, version.
--
--   local http = require "corio.http"
--   local resp, err, code = http.get(url[, opts])     -- suspends only the calling task
--   http.post(url, {json = {...}})  http.request{method =, url =, ...}
--   local s <close> = http.Session{base_url =, headers =, max_per_host = 8}
--
-- Request options: headers ({Name = value | {values...} | false to drop a default}),
-- query ({k = v} or {{k, v}, ...}), one body among body (string), json (encoded with the
-- JSON rules of corio.json: integers stay integers), form (urlencoded), body_file (a
-- path, streamed from disk); timeout (a number: the total time; or {total =, connect =,
-- idle =}: connect defaults to 30 s, idle is the longest wait for the next received byte);
-- stream (return after the head; read with resp:read() or resp:chunks()); max_redirects
-- (default 10), allow_redirects = false; ca_file, insecure = true (no verification: explicit
-- and named so), proxy (otherwise http_proxy/https_proxy/no_proxy from the environment, as
-- curl does), http2 = false (HTTP/2 is offered over TLS by default), max_size (bytes),
-- decompress = false (gzip, deflate, brotli and zstd are decoded by default).
--
-- A Response has status, reason, headers (case-insensitive: h["content-type"], h:get_all,
-- h:items, pairs), body (nil when streamed), url (after redirects), http_version ("1.1",
-- "2"), ok (status < 400), method; and text(), json(), raise_for_status(), read(), chunks(),
-- close().
--
-- Expected failures return nil, "METHOD url: what happened", code, with code one of:
--   ECONNREFUSED  nothing listens (or the connection was actively refused)
--   ENETUNREACH, EHOSTUNREACH  no route to the network / host
--   EDNS          the host name could not be resolved
--   ETIMEDOUT     a connect, total or idle timeout expired (the message says which)
--   ETLS          TLS handshake or certificate verification failed (wrong CA, wrong name...)
--   EREDIRECTS    more redirects than max_redirects
--   ECONNRESET    the connection was reset or closed before the response was complete
--   EPROTO        the server broke HTTP (malformed reply, bad encoding, HTTP/2 error)
--   ETOOLARGE     the response is larger than max_size
--   EPROXY        the proxy could not be resolved or refused the request
--   EIO           the request body file could not be read
--   ECLOSED       the session was closed while the request was in flight
--   ENOMEM        out of memory while receiving
--   EHTTP         any other libcurl failure (the message has curl's words)
-- A 4xx or 5xx status is a response, not a failure: see resp:raise_for_status(). Misuse (a
-- malformed URL, an unknown option, CR or LF in a header) raises.
local engine = require "corio._http_client"

local M = {}

-- The JSON rules are the server's: corio.json.
local json = require "corio.json"
local errors = require "corio.errors"
M.json = json

local type, pairs, ipairs, tostring, error, select = type, pairs, ipairs, tostring, error, select
local setmetatable, getmetatable, rawget, rawset = setmetatable, getmetatable, rawget, rawset
local concat, lower = table.concat, string.lower
local find, gsub, format = string.find, string.gsub, string.format

M.VERSION = "corio.http 0.1.0"
M.USER_AGENT = "corio/0.1.0"

-- The standard reason phrases (bindings/http_reason.c), for responses that carry none (HTTP/2).
local REASONS = require("corio._http_reason").reasons

-- ---- Headers: case-insensitive, repeated fields kept ------------------------------------

local Headers = {}
local header_methods = {}
local MAP = {}  -- private key: lower-case name -> list of values

Headers.__name = "corio.http.Headers"
-- The value of a field: repeated fields are folded with ", " (RFC 9110 5.3), except
-- Set-Cookie, which cannot be folded: its first value (get_all gives them all).
local function field(h, name)
  local key = lower(name)
  local vals = rawget(h, MAP)[key]
  if not vals then return nil end
  if #vals == 1 or key == "set-cookie" then return vals[1] end
  return concat(vals, ", ")
end

Headers.__index = function(h, k)
  local m = header_methods[k]
  if m then return m end
  if type(k) ~= "string" then return nil end
  return field(h, k)
end
Headers.__newindex = function()
  error("http: response headers are read-only", 2)
end
-- pairs(h) gives lower-case names and their (folded) values
Headers.__pairs = function(h)
  local map = rawget(h, MAP)
  local k
  return function()
    k = next(map, k)
    if k == nil then return nil end
    return k, h[k]
  end
end

-- h:get(name) -> value or nil (as h[name]; use it for a header named like a method)
function header_methods.get(h, name)
  if type(name) ~= "string" then error("http: header names are strings", 2) end
  return field(h, name)
end

-- h:get_all(name) -> list of values (empty if absent), in the order received
function header_methods.get_all(h, name)
  local vals = rawget(h, MAP)[lower(name)]
  local out = {}
  for i, v in ipairs(vals or {}) do out[i] = v end
  return out
end

-- h:items() -> iterator over name, value in the order received (original spelling)
function header_methods.items(h)
  local i = 0
  return function()
    i = i + 1
    local e = rawget(h, i)
    if e then return e[1], e[2] end
  end
end

local function new_headers()
  return setmetatable({[MAP] = {}}, Headers)
end

local function add_header(h, name, value)
  local n = #h + 1
  rawset(h, n, {name, value})
  local key = lower(name)
  local map = rawget(h, MAP)
  local vals = map[key]
  if vals then vals[#vals + 1] = value else map[key] = {value} end
end

-- Parse the raw head block (status line + header lines, as curl received them).
local function parse_head(raw)
  local h = new_headers()
  local reason
  local last
  for line in raw:gmatch("([^\r\n]*)\r?\n") do
    if not reason then
      reason = line:match("^HTTP/[%d.]+%s+%d+%s*(.-)%s*$") or ""
    elseif line ~= "" then
      if find(line, "^[ \t]") and last then
        -- obsolete line folding: continue the previous value
        local map = rawget(h, MAP)[lower(last[1])]
        last[2] = last[2] .. " " .. line:match("^%s*(.-)%s*$")
        map[#map] = last[2]
      else
        local name, value = line:match("^([^:]+):%s*(.-)%s*$")
        if name then
          add_header(h, name, value)
          last = rawget(h, #h)
        end
      end
    end
  end
  return h, reason or ""
end

M.Headers = {new = new_headers}

-- ---- errors -----------------------------------------------------------------------------

-- raise_for_status raises an HTTPError: a class of corio.errors that prints its message.
local HTTPError = {__name = "corio.http.HTTPError"}
HTTPError.__tostring = function(e) return e.message end
M.HTTPError = errors.register(HTTPError)

-- is_http_error(e) -> true for what raise_for_status raises
M.is_http_error = HTTPError.is

-- argerror(fname, what[, level]): raise "http.fname: what" at `level` counted from the
-- function calling argerror (1: that function, 2: its caller ...). The checks below that
-- request and Session call directly use 3: check (1), request or Session (2), the user (3).
local function argerror(fname, what, level)
  error(format("http.%s: %s", fname, what), (level or 1) + 1)
end

-- ---- Response ---------------------------------------------------------------------------

local Response = {}
Response.__name = "corio.http.Response"

-- resp:read() -> next chunk | nil at the end | nil, msg, code  [suspends]
-- (a streamed response; for a buffered one the whole body once, then nil)
function Response:read()
  local x = rawget(self, "_xfer")
  if not x then
    local b = rawget(self, "_unread")
    self._unread = nil
    if b == "" then return nil end
    return b
  end
  local chunk, msg, code = x:read(self.method, self.url)
  if chunk == nil then
    self._xfer = nil
    x:release()
    return nil, msg, code
  end
  return chunk
end

-- for chunk in resp:chunks() do ... end  (raises if the transfer fails midway)
function Response:chunks()
  return function()
    local chunk, msg = self:read()
    if chunk == nil and msg then error(msg, 2) end
    return chunk
  end
end

-- resp:text() -> the body as a string (a streamed response is read to its end)
function Response:text()
  if rawget(self, "_xfer") then
    local parts = {}
    while true do
      local chunk, msg = self:read()
      if chunk == nil then
        if msg then error(msg, 2) end
        break
      end
      parts[#parts + 1] = chunk
    end
    self.body = concat(parts)
  end
  return self.body
end

-- resp:json() -> the body decoded (integers stay integers, null is json.null); raises on
-- malformed JSON
function Response:json()
  local text = self:text()
  local ok, v = pcall(json.decode, text)
  if not ok then
    error(format("http: %s %s: the response is not valid JSON (%s)", self.method, self.url,
                 tostring(v)), 2)
  end
  return v
end

-- resp:raise_for_status() -> resp; raises an HTTPError for a 4xx or 5xx status
function Response:raise_for_status()
  if self.status >= 400 then
    local kind = self.status >= 500 and "server error" or "client error"
    error(setmetatable({
      status = self.status, reason = self.reason, url = self.url, response = self,
      message = format("http: %d %s (%s) for %s %s", self.status, self.reason, kind,
                       self.method, self.url),
    }, HTTPError), 2)
  end
  return self
end

-- resp:close(): stop a streamed transfer (its connection is closed); nothing for a buffered
-- response
function Response:close()
  local x = rawget(self, "_xfer")
  if x then
    self._xfer = nil
    x:release()
  end
end
Response.__close = Response.close
Response.__gc = Response.close

Response.__tostring = function(r)
  return format("corio.http.Response<%d %s %s>", r.status, r.reason, r.url)
end

-- The headers are parsed on first use: many callers only look at the status and the body.
Response.__index = function(r, k)
  if k == "headers" then
    local raw = rawget(r, "_head")
    if raw then
      local h = parse_head(raw)
      rawset(r, "headers", h)
      rawset(r, "_head", nil)
      return h
    end
  end
  return Response[k]
end

local function new_response(x, method, stream)
  local status, version, url, raw = x:head()
  local reason = raw:match("^HTTP/[%d.]+ +%d+ *([^\r\n]-) *\r?\n")
  if not reason or reason == "" then reason = REASONS[status] or "" end
  local r = {
    status = status, reason = reason, _head = raw, url = url, http_version = version,
    method = method, ok = status < 400,
  }
  if stream then
    r._xfer = x
  else
    r.body = x:take()
    r._unread = r.body
    x:release()
  end
  return setmetatable(r, Response)
end

-- ---- building a request -----------------------------------------------------------------

local function urlencode(s)
  return (gsub(tostring(s), "[^%w%-%._~]", function(c) return format("%%%02X", c:byte()) end))
end
M.urlencode = urlencode

-- encode {k = v, ...} or {{k, v}, ...} as k=v&...; list values repeat the key
local function encode_pairs(t, fname, what)
  local out = {}
  local function add(k, v)
    if type(v) == "table" then
      for _, item in ipairs(v) do add(k, item) end
      return
    end
    if type(v) == "boolean" then v = tostring(v) end
    if type(v) ~= "string" and type(v) ~= "number" then
      argerror(fname, format("%s value for %q must be a string or number, got %s", what,
                             tostring(k), type(v)), 3)
    end
    out[#out + 1] = urlencode(k) .. "=" .. urlencode(v)
  end
  if #t > 0 then
    for _, p in ipairs(t) do add(p[1], p[2]) end
  else
    local keys = {}
    for k in pairs(t) do keys[#keys + 1] = tostring(k) end
    table.sort(keys)
    for _, k in ipairs(keys) do add(k, t[k]) end
  end
  return concat(out, "&")
end
M.encode_form = function(t) return encode_pairs(t, "encode_form", "form") end

local TOKEN = "^[!#$%%&'*+%-.^_`|~%w]+$"

-- Merge header tables into a list of "Name: value" lines; later tables override earlier ones
-- by case-insensitive name. Raises on a bad name or a value with CR, LF or NUL.
local function header_lines(fname, ...)
  local order, by_key = {}, {}
  for i = 1, select("#", ...) do
    local t = select(i, ...)
    if t ~= nil then
      if type(t) ~= "table" then argerror(fname, "headers must be a table", 3) end
      for name, value in pairs(t) do
        if type(name) ~= "string" or not find(name, TOKEN) then
          argerror(fname, format("bad header name %q", tostring(name)), 3)
        end
        local values = type(value) == "table" and value or {value}
        for _, v in ipairs(values) do
          if type(v) == "number" then v = tostring(v) end
          if v == false and #values == 1 then v = "" end
          if type(v) ~= "string" then
            argerror(fname, format("header %s: value must be a string, got %s", name, type(v)), 3)
          end
          if find(v, "[\r\n%z]") then
            argerror(fname, format("header %s: value contains CR, LF or NUL (header injection)",
                                   name), 3)
          end
        end
        local key = lower(name)
        if not by_key[key] then order[#order + 1] = key end
        by_key[key] = {name = name, values = values}
      end
    end
  end
  local lines = {}
  for _, key in ipairs(order) do
    local e = by_key[key]
    if e.values[1] == false then
      lines[#lines + 1] = e.name .. ":"  -- false removes a header curl would add
    else
      for _, v in ipairs(e.values) do
        if v == "" then lines[#lines + 1] = e.name .. ";"  -- curl's spelling of an empty value
        else lines[#lines + 1] = e.name .. ": " .. tostring(v) end
      end
    end
  end
  return lines, by_key
end

local KNOWN = {
  method = true, url = true, headers = true, query = true, body = true, json = true,
  form = true, body_file = true, timeout = true, stream = true, max_redirects = true,
  allow_redirects = true, ca_file = true, insecure = true, proxy = true, http2 = true,
  max_size = true, decompress = true,
}

local SESSION_KNOWN = {
  base_url = true, headers = true, timeout = true, max_connections = true,
  max_per_host = true, max_idle = true, cookies = true, ca_file = true, insecure = true,
  max_redirects = true, proxy = true, http2 = true, decompress = true,
}

-- The names other clients (requests, aiohttp, axios) use, and corio's spelling of each.
local ELSEWHERE = {
  data = "body (a string) or form (a table)", params = "query", auth = "headers (Authorization)",
  verify = "insecure = true, or ca_file", verify_ssl = "insecure = true, or ca_file",
  ssl = "insecure = true, or ca_file", cookies = "a Session (cookies = true)",
  allow_redirect = "allow_redirects", follow_redirects = "allow_redirects",
  redirect = "allow_redirects", max_redirect = "max_redirects", timeouts = "timeout",
  compress = "decompress", cert = "ca_file", verify_peer = "insecure = true, or ca_file",
}

-- "unknown option "x" (accepted: a, b, ...)", with corio's spelling of a name another client
-- uses when there is one.
local function unknown_option(k, known)
  local names = {}
  for name in pairs(known) do names[#names + 1] = name end
  table.sort(names)
  local hint = ELSEWHERE[k]
  return format("unknown option %q%s (accepted: %s)", tostring(k),
                hint and format("; corio spells it %s", hint) or "", concat(names, ", "))
end

-- timeout: a number (total seconds) or {total=, connect=, idle=}
local function timeouts(fname, t, into)
  if t == nil then return end
  if type(t) == "number" then
    if not (t > 0) then argerror(fname, "timeout must be a positive number", 3) end
    into.total = t
  elseif type(t) == "table" then
    for k, v in pairs(t) do
      if k ~= "total" and k ~= "connect" and k ~= "idle" then
        argerror(fname, format("unknown timeout %q (total, connect or idle)", tostring(k)), 3)
      end
      if type(v) ~= "number" or not (v > 0) then
        argerror(fname, format("timeout.%s must be a positive number", k), 3)
      end
      into[k] = v
    end
  else
    argerror(fname, "timeout must be a number or a table", 3)
  end
end

local function check_url(fname, url)
  if type(url) ~= "string" then argerror(fname, "url must be a string, got " .. type(url), 3) end
  if find(url, "[%c ]") then
    argerror(fname, format("bad URL %q: it contains spaces or control characters", url), 3)
  end
  local ok, why = engine.check_url(url)
  if not ok then argerror(fname, format("bad URL %q: %s", url, why), 3) end
end

-- ---- Session ----------------------------------------------------------------------------

local Session = {}
Session.__name = "corio.http.Session"
Session.__index = Session

-- http.Session{base_url=, headers=, timeout=, max_connections=, max_per_host=, max_idle=,
--              cookies=true, ca_file=, insecure=, max_redirects=10, proxy=, http2=,
--              decompress=true} -> Session
-- Requests made through a session share its keep-alive connections, cookies and defaults.
-- max_idle (default 100, or more if a limit above is higher) is how many idle connections
-- the pool keeps open.
-- Above max_per_host (or max_connections) connections, requests wait in line for one.
function M.Session(opts)
  opts = opts or {}
  if type(opts) ~= "table" then argerror("Session", "options must be a table", 2) end
  for k in pairs(opts) do
    if not SESSION_KNOWN[k] then argerror("Session", unknown_option(k, SESSION_KNOWN), 2) end
  end
  for _, k in ipairs {"max_connections", "max_per_host", "max_idle"} do
    local v = opts[k]
    if v ~= nil and (math.type(v) ~= "integer" or v < 1) then
      argerror("Session", k .. " must be a positive integer", 2)
    end
  end
  if opts.base_url ~= nil then check_url("Session", opts.base_url) end
  local t = {}
  timeouts("Session", opts.timeout, t)
  local lines = header_lines("Session", {["User-Agent"] = M.USER_AGENT, ["Expect"] = false},
                             opts.headers)
  local s = setmetatable({
    base_url = opts.base_url, _headers = opts.headers or {}, timeouts = t, _lines = lines,
    _valid_urls = {}, _nvalid = 0,
    ca_file = opts.ca_file, insecure = opts.insecure, proxy = opts.proxy, http2 = opts.http2,
    max_redirects = opts.max_redirects or 10,
    decompress = opts.decompress ~= false,
    _multi = engine.new_multi {
      max_connections = opts.max_connections, max_per_host = opts.max_per_host,
      -- idle connections kept: curl's default shrinks with the transfers in flight, which
      -- closes connections a burst of requests is about to want again
      max_idle = opts.max_idle or math.max(100, opts.max_connections or 0, opts.max_per_host or 0),
      cookies = opts.cookies ~= false,
    },
  }, Session)
  return s
end

-- session:close(): requests in flight fail with ECLOSED; pooled connections are closed.
function Session:close()
  local m = rawget(self, "_multi")
  if m then
    self._multi = nil
    m:close()
  end
end
Session.__close = Session.close

-- session:stats() -> {active=, connects=, requests=, sockets=}: connections opened so far,
-- requests finished, transfers in flight, sockets watched now
function Session:stats()
  local m = rawget(self, "_multi")
  if not m then error("http: the session is closed", 2) end
  return m:stats()
end

local function join_url(base, url)
  if not base or find(url, "^%a[%w+.-]*://") then return url end
  if url == "" then return base end
  return (gsub(base, "/+$", "")) .. "/" .. (gsub(url, "^/+", ""))
end

-- session:request{method=, url=, headers=, query=, body= | json= | form= | body_file=,
--                 timeout=, stream=, max_redirects=, allow_redirects=, ca_file=, insecure=,
--                 proxy=, http2=, max_size=, decompress=} -> Response | nil, msg, code
-- session:request(method, url[, opts])   [suspends]
function Session:request(a, b, c)
  local opts
  if type(a) == "table" then
    opts = a
  else
    opts = c or {}
    if type(opts) ~= "table" then argerror("request", "options must be a table", 2) end
    local o = {}
    for k, v in pairs(opts) do o[k] = v end
    o.method, o.url = a, b
    opts = o
  end
  local multi = rawget(self, "_multi")
  if not multi then error("http.request: the session is closed", 2) end
  for k in pairs(opts) do
    if not KNOWN[k] then argerror("request", unknown_option(k, KNOWN), 2) end
  end
  local method = opts.method or "GET"
  if type(method) ~= "string" or not find(method, TOKEN) then
    argerror("request", format("bad method %q", tostring(method)), 2)
  end
  method = method:upper()
  if type(opts.url) ~= "string" then
    argerror("request", "url must be a string, got " .. type(opts.url), 2)
  end
  local url = join_url(self.base_url, opts.url)
  if opts.query ~= nil then
    if type(opts.query) ~= "table" then argerror("request", "query must be a table", 2) end
    local q = encode_pairs(opts.query, "request", "query")
    if q ~= "" then
      local fragment = url:match("#.*$") or ""
      url = url:sub(1, #url - #fragment)
      url = url .. (find(url, "?", 1, true) and "&" or "?") .. q .. fragment
    end
  end
  -- URLs already checked by this session skip the parse (a bounded memo)
  if not self._valid_urls[url] then
    check_url("request", url)
    if self._nvalid >= 256 then self._valid_urls, self._nvalid = {}, 0 end
    self._valid_urls[url] = true
    self._nvalid = self._nvalid + 1
  end

  local body, content_type
  local nbodies = (opts.body ~= nil and 1 or 0) + (opts.json ~= nil and 1 or 0)
    + (opts.form ~= nil and 1 or 0) + (opts.body_file ~= nil and 1 or 0)
  if nbodies > 1 then argerror("request", "give only one of body, json, form, body_file", 2) end
  if opts.body ~= nil then
    body = opts.body
    if type(body) ~= "string" then
      argerror("request", "body must be a string (use body_file for a file), got " .. type(body), 2)
    end
  elseif opts.json ~= nil then
    body = json.encode(opts.json)
    content_type = "application/json"
  elseif opts.form ~= nil then
    if type(opts.form) ~= "table" then argerror("request", "form must be a table", 2) end
    body = encode_pairs(opts.form, "request", "form")
    content_type = "application/x-www-form-urlencoded"
  elseif opts.body_file ~= nil and type(opts.body_file) ~= "string" then
    argerror("request", "body_file must be a path", 2)
  end

  local lines
  if content_type == nil and opts.headers == nil then
    lines = self._lines  -- the session's own lines, checked once
  else
    local defaults = {["User-Agent"] = M.USER_AGENT, ["Expect"] = false}
    if content_type then defaults["Content-Type"] = content_type end
    lines = header_lines("request", defaults, self._headers, opts.headers)
  end

  local t = {total = self.timeouts.total, connect = self.timeouts.connect or 30,
             idle = self.timeouts.idle}
  timeouts("request", opts.timeout, t)

  local redirects = opts.max_redirects or self.max_redirects
  if opts.allow_redirects == false then redirects = 0 end
  if math.type(redirects) ~= "integer" or redirects < 0 then
    argerror("request", "max_redirects must be a non-negative integer", 2)
  end
  local function pick(k)
    local v = opts[k]
    if v == nil then v = self[k] end
    return v
  end
  local decompress = opts.decompress
  if decompress == nil then decompress = self.decompress end
  local stream = opts.stream and true or false
  local x, msg, code = multi:perform {
    method = method, url = url, headers = lines, body = body, body_file = opts.body_file,
    timeout = t.total, connect_timeout = t.connect, idle_timeout = t.idle,
    max_redirects = redirects, decompress = decompress, ca_file = pick("ca_file"),
    insecure = pick("insecure"), proxy = pick("proxy"), http1 = pick("http2") == false,
    max_size = opts.max_size, stream = stream,
  }
  if not x then return nil, msg, code end
  return new_response(x, method, stream)
end

local function method_fn(method)
  return function(self, url, opts)
    if type(self) ~= "table" or getmetatable(self) ~= Session then
      error(format("http: call session:%s(url) with a colon", method:lower()), 2)
    end
    return self:request(method, url, opts)
  end
end

for _, m in ipairs {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"} do
  Session[m:lower()] = method_fn(m)
end

-- ---- the default session ----------------------------------------------------------------

local default
local function default_session()
  if not default or not rawget(default, "_multi") then default = M.Session() end
  return default
end

-- http.default_session() -> the Session behind the module-level functions
M.default_session = default_session

-- http.request{...} / http.request(method, url[, opts]) through the default session
function M.request(a, b, c)
  return default_session():request(a, b, c)
end

for _, m in ipairs {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"} do
  M[m:lower()] = function(url, opts)
    return default_session():request(m, url, opts)
  end
end

M.version = engine.version

-- http.websocket("ws://host[:port]/path" [, {headers =, protocols =, timeout =, max_message =,
--                 ping_interval =, ping_timeout =, compress =}]) -> ws | nil, msg, code  [suspends]
-- A WebSocket client on a corio.net stream (not libcurl); ws is the object corio.web's
-- app:websocket hands its handler (corio.websocket).
local WEBSOCKET_KNOWN = {headers = true, protocols = true, timeout = true, max_message = true,
                         ping_interval = true, ping_timeout = true, compress = true}
function M.websocket(url, opts)
  if opts ~= nil then
    if type(opts) ~= "table" then argerror("websocket", "options must be a table", 2) end
    for k in pairs(opts) do
      if not WEBSOCKET_KNOWN[k] then argerror("websocket", unknown_option(k, WEBSOCKET_KNOWN), 2) end
    end
  end
  return require("corio.websocket").connect(url, opts)
end

-- The pieces that handle untrusted text, for fuzz/fuzz_http_client.c (not API).
M._internal = {parse_head = parse_head, header_lines = header_lines, check_url = check_url,
               join_url = join_url}

return M
