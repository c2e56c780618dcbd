-- corio.websocket: WebSocket connections (RFC 6455) over corio.net streams, one implementation
-- for both ends: corio.web's app:websocket hands it the upgraded server connection, corio.http's
-- http.websocket the client's. Masking and the handshake's SHA-1 are in C (corio._websocket).
-- Exports new(stream, opts), connect(url, opts), accept_key(key); ws objects ("corio.WebSocket")
-- with receive, send, messages, ping, close and <close>.
local corio = require "corio"
local C = require "corio._websocket"
local sync = require "corio.sync"

local byte, sub, find, format, lower = string.byte, string.sub, string.find, string.format,
                                       string.lower
local pack, unpack, concat = string.pack, string.unpack, table.concat
local mask, parse, frame, valid_utf8 = C.mask, C.parse, C.frame, C.utf8
local pcall, error = pcall, error

local M = {}

local OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
local CLOSE_TIMEOUT = 5         -- seconds close() waits for the peer's close frame
local MAX_MESSAGE = 16 * 1024 * 1024

local WebSocket = {__name = "corio.WebSocket"}
WebSocket.__index = WebSocket
M.WebSocket = WebSocket

-- Close codes a peer may send (RFC 6455 7.4, the IANA registry, and 3000-4999 for
-- libraries and applications). 1005, 1006 and 1015 are never sent on the wire.
local function valid_code(code)
  return (code >= 1000 and code <= 1003) or (code >= 1007 and code <= 1014)
      or (code >= 3000 and code <= 4999)
end

-- ---- writing ----------------------------------------------------------------------------

-- One frame, written whole under the connection's lock (sends from several tasks interleave
-- by frame, never inside one). A client masks every frame with a fresh key; a server never
-- masks. Returns true | nil, msg, code.
local function write_frame(ws, b1, data)
  local s, n = ws._s, #data
  if n < 4096 then return s:write(frame(b1, data, ws._client)) end
  -- A big frame goes in two writes (no copy of the payload, unless it is masked). A task
  -- cancelled between them (its first write waited for the peer) leaves half a frame on the
  -- wire: the connection cannot go on, and is cut (send_frame sees _partial).
  local mbit = ws._client and 0x80 or 0
  local head = n < 65536 and pack(">BBI2", b1, mbit | 126, n) or pack(">BBI8", b1, mbit | 127, n)
  if mbit ~= 0 then
    local key = C.random(4)
    head, data = head .. key, mask(data, key)
  end
  ws._partial = true
  local ok, msg, code = s:write(head)
  if ok then ok, msg, code = s:write(data) end
  ws._partial = false
  return ok, msg, code
end

local function send_frame(ws, op, data)
  local b1 = 0x80 | op
  if ws._inflater and op < 8 then  -- permessage-deflate: data messages only, RSV1 set
    data, b1 = C.deflate(data), b1 | 0x40
  end
  local lock = ws._lock
  lock:acquire()
  local ok, r, msg, code = pcall(write_frame, ws, b1, data)
  lock:release()
  if not ok then
    if ws._partial then
      ws._partial = false
      ws:_abort(1006, "a send was cancelled part way through a frame")
    end
    error(r, 0)
  end
  return r, msg, code
end

-- The connection is over: remember why (the first reason wins), close the stream (abortive
-- when the peer broke the protocol or is dead), stop the keepalive task.
local function finish(ws, code, reason, abort)
  if not ws._closed then
    ws._closed, ws.close_code, ws.close_reason = true, code, reason
  end
  if abort then ws._s:abort() else ws._s:close() end
  local p = ws._pinger
  ws._pinger = nil
  if p and p ~= corio.current_task() then p:cancel() end
end

local function send_close(ws, code, reason)
  if ws._sent_close then return end
  ws._sent_close = true
  local payload = code and pack(">I2", code) .. (reason or "") or ""
  send_frame(ws, OP_CLOSE, payload)
end

-- Fail the connection (RFC 6455 7.1.7): tell the peer why, then drop it.
local function fail(ws, code, reason)
  pcall(send_close, ws, code, reason)
  finish(ws, code, reason, false)
  return nil, ws.close_code, ws.close_reason
end

-- ---- reading ----------------------------------------------------------------------------

-- The TCP connection ended without a close frame (or was closed meanwhile by close()).
local function lost(ws, msg)
  finish(ws, 1006, msg or "connection closed without a close frame", true)
  return nil, ws.close_code, ws.close_reason
end

local function message(ws, data, op, compressed)
  if compressed then
    local why
    data, why = ws._inflater:inflate(data, ws._max)
    if not data then
      if why == "too big" then
        return fail(ws, 1009, format("message longer than %d bytes", ws._max))
      end
      return fail(ws, 1007, "invalid compressed data")
    end
  end
  if op == OP_TEXT then
    if not valid_utf8(data) then return fail(ws, 1007, "text message is not valid UTF-8") end
    return data, "text"
  end
  return data, "binary"
end

local function on_close(ws, data)
  local code, reason = 1005, ""
  if #data == 1 then return fail(ws, 1002, "close frame with a 1-byte payload") end
  if #data >= 2 then
    code, reason = unpack(">I2", data), sub(data, 3)
    if not valid_code(code) then return fail(ws, 1002, "invalid close code " .. code) end
    if not valid_utf8(reason) then return fail(ws, 1007, "close reason is not valid UTF-8") end
  end
  ws._got_close = true
  if not ws._sent_close then
    -- echo the peer's code (none if it sent none)
    pcall(send_close, ws, code ~= 1005 and code or nil, nil)
  end
  finish(ws, code, reason, false)
  return nil, code, reason
end

-- Frames are parsed (in C) from ws._buf at ws._pos, what was read and not yet taken: a frame
-- is taken only once it is all there, and reads are whole (read: what has come; read_exactly:
-- the rest of a frame, taken only once it is all there), so a receive cancelled part way
-- (corio.wait_for, a timeout) leaves the connection where the next receive goes on.
local function receive(ws)
  while true do
    if ws._closed then return nil, ws.close_code, ws.close_reason end
    local buf, pos = ws._buf, ws._pos
    local op, fin, rsv, masked, len, data, nxt = parse(buf, pos)
    if not op then  -- not even the header yet
      local more, msg = ws._s:read()
      if not more then return lost(ws, msg) end
      if pos <= #buf then more = sub(buf, pos) .. more end
      ws._buf, ws._pos = more, 1
    else
      local rsv1 = rsv & 4 ~= 0
      if rsv & 3 ~= 0 or (rsv1 and not ws._inflater) then
        return fail(ws, 1002, "reserved bits set without an extension")
      end
      if rsv1 and (op >= 8 or op == OP_CONT) then
        return fail(ws, 1002, "RSV1 on a control or continuation frame")
      end
      if masked == ws._client then
        return fail(ws, 1002, ws._client and "masked frame from the server"
                                         or "unmasked frame from the client")
      end
      if op >= 8 then
        if op > OP_PONG then return fail(ws, 1002, "unknown opcode " .. op) end
        if not fin then return fail(ws, 1002, "fragmented control frame") end
        if len > 125 then return fail(ws, 1002, "control frame longer than 125 bytes") end
      elseif op > OP_BINARY then
        return fail(ws, 1002, "unknown opcode " .. op)
      elseif op == OP_CONT and not ws._parts then
        return fail(ws, 1002, "continuation frame outside a message")
      elseif op ~= OP_CONT and ws._parts then
        return fail(ws, 1002, "new message inside a fragmented message")
      end
      if len < 0 then return fail(ws, 1009, "frame length out of range") end
      if op < 8 and ws._size + len > ws._max then
        return fail(ws, 1009, format("message longer than %d bytes", ws._max))
      end
      if not data then  -- the payload is still coming: the rest of the frame in one read
        local rest, msg = ws._s:read_exactly(nxt - pos - (#buf - pos + 1))
        if not rest then return lost(ws, msg) end
        ws._buf, ws._pos = sub(buf, pos) .. rest, 1
      else
        if nxt > #buf then ws._buf, ws._pos = "", 1 else ws._pos = nxt end
        ws._frames = ws._frames + 1
        if op == OP_PING then
          if not ws._sent_close then pcall(send_frame, ws, OP_PONG, data) end
        elseif op == OP_PONG then -- counting it in _frames is all a pong is for
        elseif op == OP_CLOSE then
          return on_close(ws, data)
        elseif fin and not ws._parts then
          return message(ws, data, op, rsv1)
        else
          if op ~= OP_CONT then ws._parts, ws._op, ws._size, ws._z = {}, op, 0, rsv1 end
          local parts = ws._parts
          parts[#parts + 1] = data
          ws._size = ws._size + #data
          if fin then
            ws._parts, ws._size = nil, 0
            return message(ws, concat(parts), ws._op, ws._z)
          end
        end
      end
    end
  end
end

-- ws:receive() -> message, "text" | "binary"  |  nil, close code, reason (closed)  [suspends]
-- Pings are answered and pongs noted meanwhile. One task receives at a time.
function WebSocket:receive()
  if self._reading then error("receive: busy: another task is receiving", 2) end
  self._reading = true
  local ok, m, kind, reason = pcall(receive, self)
  self._reading = false
  if not ok then error(m, 0) end
  if m then return m, kind end
  return m, kind, reason
end

-- for message, kind in ws:messages() do ... end: until the connection closes.
function WebSocket:messages()
  return function()
    local m, kind = self:receive()
    if m then return m, kind end
    return nil
  end
end

-- ws:send(data [, "text" | "binary"]) -> true | nil, msg, code  [may suspend: back-pressure]
function WebSocket:send(data, kind)
  if type(data) ~= "string" then
    error(format("send: data must be a string, got %s", type(data)), 2)
  end
  local op = OP_TEXT
  if kind == "binary" then op = OP_BINARY
  elseif kind ~= nil and kind ~= "text" then
    error(format("send: kind must be 'text' or 'binary', got %s", tostring(kind)), 2)
  end
  if op == OP_TEXT and not valid_utf8(data) then error("send: text is not valid UTF-8", 2) end
  if self._closed or self._sent_close then
    return nil, "send: the websocket is closed", "ECLOSED"
  end
  return send_frame(self, op, data)
end

-- ws:ping([data]) -> true | nil, msg, code
function WebSocket:ping(data)
  data = data or ""
  if type(data) ~= "string" or #data > 125 then
    error("ping: data must be a string of at most 125 bytes", 2)
  end
  if self._closed or self._sent_close then
    return nil, "ping: the websocket is closed", "ECLOSED"
  end
  return send_frame(self, OP_PING, data)
end

-- ws:close([code = 1000 [, reason]]) -> true  [suspends: waits up to 5 s for the peer's close]
-- The close handshake: our close frame, then the peer's answer (a task receiving meanwhile
-- gets it: close returns at once then), then the TCP connection closes. Idempotent.
function WebSocket:close(code, reason)
  code = code or 1000
  if math.type(code) ~= "integer" or not valid_code(code) then
    error(format("close: invalid close code %s", tostring(code)), 2)
  end
  reason = reason or ""
  if type(reason) ~= "string" or #reason > 123 or not utf8.len(reason) then
    error("close: reason must be a UTF-8 string of at most 123 bytes", 2)
  end
  if self._closed then return true end
  pcall(send_close, self, code, reason)
  if self._reading then return true end
  self._reading = true
  local ok, err = pcall(corio.timeout, self._close_timeout, function()
    while not self._closed do
      local m, c = receive(self)
      if not m and c then break end
    end
  end)
  self._reading = false
  if not ok and corio.is_cancelled(err) then
    finish(self, 1006, "cancelled while closing", true)
    error(err, 0)
  end
  if not self._closed then finish(self, 1006, "no close frame from the peer", true) end
  return true
end

WebSocket.__close = function(ws) ws:close() end

-- For corio.web's server shutdown: a close frame without waiting (the handler's receive gets
-- the answer), and the abortive end.
function WebSocket:_going_away()
  if not self._closed then pcall(send_close, self, 1001, "server shutdown") end
end
function WebSocket:_abort(code, reason)
  finish(self, code or 1006, reason or "aborted", true)
end

-- Keepalive: a ping every `interval` seconds; a peer that sent nothing (no pong, no frame)
-- within `timeout` seconds of it is dead, and the connection ends with 1006.
local function pinger(ws, interval, timeout)
  while not ws._closed do
    corio.sleep(interval)
    if ws._closed or ws._sent_close then return end
    local frames = ws._frames
    if not pcall(send_frame, ws, OP_PING, "") then return end
    corio.sleep(timeout)
    if ws._closed then return end
    if ws._frames == frames then  -- nothing since the ping
      ws._pinger = nil
      finish(ws, 1006, "ping timeout: the peer did not answer", true)
      return
    end
  end
end

-- websocket.new(stream, {client =, max_message =, ping_interval =, ping_timeout =,
--                        protocol =, buffered =, close_timeout =, deflate =}) -> ws
-- deflate: permessage-deflate was negotiated (server side: server_no_context_takeover)
function M.new(stream, opts)
  opts = opts or {}
  local ws = setmetatable({
    _s = stream, _client = opts.client and true or false, _buf = opts.buffered or "", _pos = 1,
    _partial = false,
    _max = opts.max_message or MAX_MESSAGE, _lock = sync.Lock(), _size = 0,
    _closed = false, _sent_close = false, _got_close = false, _reading = false,
    _frames = 0, _close_timeout = opts.close_timeout or CLOSE_TIMEOUT,
    protocol = opts.protocol,
    _inflater = opts.deflate and C.inflater() or nil,
  }, WebSocket)
  if stream.set_nodelay then stream:set_nodelay(true) end
  local interval = opts.ping_interval
  if interval then
    ws._pinger = corio.spawn(pinger, ws, interval, opts.ping_timeout or interval)
  end
  return ws
end

M.accept_key = C.accept

-- The server's answer to a client's Sec-WebSocket-Extensions (a string, or nil): the
-- permessage-deflate response to accept, or nil. We compress each message on its own
-- (server_no_context_takeover, always announced) with a 32 KiB window, and inflate with one:
-- offers asking for a smaller server window, or with unknown parameters, are declined.
function M.negotiate_deflate(header)
  for offer in (header or ""):gmatch("[^,]+") do
    local name, params = offer:match("^%s*([%w%-]+)%s*(.*)$")
    if name == "permessage-deflate" then
      local ok = true
      for param in params:gmatch(";%s*([^;]+)") do
        local k, v = param:match("^([%w_]+)%s*=?%s*\"?([^\"%s]*)")
        if k == "server_max_window_bits" then ok = ok and v == "15"
        elseif k ~= "client_max_window_bits" and k ~= "server_no_context_takeover"
            and k ~= "client_no_context_takeover" then ok = false end
      end
      if ok then return "permessage-deflate; server_no_context_takeover" end
    end
  end
  return nil
end

-- ---- the client -------------------------------------------------------------------------

-- The server's answer to our permessage-deflate offer: acceptable if it is that extension
-- alone, with parameters we can honour. Our inflater has a 32 KiB window, so any
-- server_max_window_bits will do; client_max_window_bits was not offered (we deflate with a
-- full window), so the server may not ask for it.
local function accept_deflate(answer)
  local name, params = answer:match("^%s*([%w%-]+)%s*(.-)%s*$")
  if name ~= "permessage-deflate" then return false end
  for param in params:gmatch(";%s*([^;]+)") do
    local k, v = param:match("^([%w_]+)%s*=?%s*\"?([^\"%s]*)")
    if k == "server_max_window_bits" then
      local bits = tonumber(v)
      if not bits or bits < 8 or bits > 15 then return false end
    elseif k ~= "server_no_context_takeover" and k ~= "client_no_context_takeover" then
      return false
    end
  end
  return true
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = byte(s, i, i + 2)
    local v = (a << 16) | ((b or 0) << 8) | (c or 0)
    local function ch(k) return sub(B64, k + 1, k + 1) end
    out[#out + 1] = ch(v >> 18) .. ch((v >> 12) & 63) .. (b and ch((v >> 6) & 63) or "=")
                    .. (c and ch(v & 63) or "=")
  end
  return concat(out)
end

local function split_tokens(s)
  local t = {}
  for tok in (s or ""):gmatch("[^,%s]+") do t[#t + 1] = tok end
  return t
end
M.split_tokens = split_tokens

-- websocket.connect("ws://host[:port]/path", {headers =, protocols =, timeout =,
--                   max_message =, ping_interval =, ping_timeout =}) -> ws | nil, msg, code
function M.connect(url, opts)
  if type(url) ~= "string" then error("websocket: url must be a string", 2) end
  opts = opts or {}
  local scheme, rest = url:match("^(%a+)://(.*)$")
  scheme = scheme and lower(scheme)
  if scheme ~= "ws" then
    if scheme == "wss" then return nil, "websocket " .. url .. ": wss:// is not supported",
                                    "EPROTONOSUPPORT" end
    error(format("websocket: expected a ws:// URL, got %q", url), 2)
  end
  local authority, path = rest:match("^([^/?#]*)(.*)$")
  if path == "" then path = "/" end
  path = path:gsub("#.*$", "")
  local host, port = authority:match("^%[(.+)%]:?(%d*)$")
  if not host then host, port = authority:match("^([^:]+):?(%d*)$") end
  if not host then error(format("websocket: no host in %q", url), 2) end
  port = tonumber(port) or 80
  local net = require "corio.net"
  local s, msg, code = net.connect(host, port, {timeout = opts.timeout})
  if not s then return nil, msg, code end
  local key = base64(C.random(16))
  local lines = {
    "GET " .. path .. " HTTP/1.1",
    "Host: " .. (find(host, ":", 1, true) and "[" .. host .. "]" or host)
      .. (port ~= 80 and ":" .. port or ""),
    "Upgrade: websocket", "Connection: Upgrade",
    "Sec-WebSocket-Key: " .. key, "Sec-WebSocket-Version: 13",
  }
  if opts.compress then  -- each message compressed on its own: no client context to keep
    lines[#lines + 1] = "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover"
  end
  if opts.protocols and #opts.protocols > 0 then
    lines[#lines + 1] = "Sec-WebSocket-Protocol: " .. concat(opts.protocols, ", ")
  end
  for k, v in pairs(opts.headers or {}) do
    if find(k, "[\r\n:]") or find(tostring(v), "[\r\n]") then
      s:abort()
      error(format("websocket: invalid header %q", k), 2)
    end
    lines[#lines + 1] = k .. ": " .. tostring(v)
  end
  lines[#lines + 1] = "\r\n"
  local function refuse(why, c)
    s:abort()
    return nil, format("websocket %s: %s", url, why), c or "EPROTO"
  end
  local ok, werr, wcode = s:write(concat(lines, "\r\n"))
  if not ok then return refuse(werr, wcode) end
  local head, rerr, rcode = s:read_until("\r\n\r\n", 16384)
  if not head then return refuse(rerr or "connection closed during the handshake", rcode) end
  local status = tonumber(head:match("^HTTP/1%.%d (%d%d%d)"))
  if status ~= 101 then
    return refuse(format("handshake refused with status %s", tostring(status)), "EHANDSHAKE")
  end
  local hdrs = {}
  for name, value in head:gmatch("\r\n([^:\r\n]+):[ \t]*([^\r\n]*)") do
    hdrs[lower(name)] = value:gsub("[ \t]+$", "")
  end
  if lower(hdrs["upgrade"] or "") ~= "websocket"
      or not find(lower(hdrs["connection"] or ""), "upgrade", 1, true) then
    return refuse("the server did not switch to websocket", "EHANDSHAKE")
  end
  if hdrs["sec-websocket-accept"] ~= C.accept(key) then
    return refuse("wrong Sec-WebSocket-Accept", "EHANDSHAKE")
  end
  local proto = hdrs["sec-websocket-protocol"]
  if proto then
    local offered = false
    for _, p in ipairs(opts.protocols or {}) do if p == proto then offered = true end end
    if not offered then return refuse("the server chose a subprotocol not offered: " .. proto,
                                      "EHANDSHAKE") end
  end
  local ext, deflate = hdrs["sec-websocket-extensions"], false
  if ext then
    if not opts.compress or not accept_deflate(ext) then
      return refuse("the server chose an extension not offered: " .. ext, "EHANDSHAKE")
    end
    deflate = true
  end
  return M.new(s, {client = true, protocol = proto, max_message = opts.max_message,
                   ping_interval = opts.ping_interval, ping_timeout = opts.ping_timeout,
                   deflate = deflate})
end

return M
