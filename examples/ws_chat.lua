-- A chat room over WebSocket: GET / serves the page, /ws is the room. Every message a client
-- sends goes to everyone as "name: text"; joins and leaves are announced. Each client has its
-- own outgoing queue and sender task, so one slow reader never holds up the others (a client
-- more than 100 messages behind is dropped).
-- Run: corio examples/ws_chat.lua [port], then open http://127.0.0.1:8080/?name=ada in two tabs.
local corio = require "corio"
local web = require "corio.web"

local PAGE = [[<!doctype html>
<meta charset="utf-8"><title>corio chat</title>
<ul id="log"></ul>
<form id="f"><input id="text" autocomplete="off" autofocus><button>Send</button></form>
<script>
  const name = new URLSearchParams(location.search).get("name") || "";
  const ws = new WebSocket(`ws://${location.host}/ws?name=${encodeURIComponent(name)}`,
                           ["chat"]);
  const log = document.getElementById("log");
  ws.onmessage = (e) => {
    const li = document.createElement("li");
    li.textContent = e.data;
    log.appendChild(li);
    document.title = e.data;   // the last line, for headless tests
  };
  ws.onopen = () => { document.body.dataset.open = "1"; };
  document.getElementById("f").onsubmit = (e) => {
    e.preventDefault();
    const t = document.getElementById("text");
    if (t.value) ws.send(t.value);
    t.value = "";
  };
</script>
]]

local clients = {}  -- ws -> outgoing queue
local count = 0

local function broadcast(line)
  for ws, q in pairs(clients) do
    if not pcall(q.put_nowait, q, line) then ws:close(1008, "too slow") end
  end
end

local app = web.Application()
app:get("/", function() return web.Response {body = PAGE, content_type = "text/html; charset=utf-8"} end)

app:websocket("/ws", function(ws, request)
  count = count + 1
  local name = (request.query.name or ""):gsub("[^%w_-]", ""):sub(1, 20)
  if name == "" then name = "guest" .. count end
  local q = corio.Queue(100)
  local sender = corio.spawn(function()
    while true do
      if not ws:send(q:get()) then return end
    end
  end)
  local guard <close> = setmetatable({}, {__close = function()
    clients[ws] = nil
    sender:cancel()
    broadcast("* " .. name .. " left")
  end})
  clients[ws] = q
  broadcast("* " .. name .. " joined")
  for text in ws:messages() do broadcast(name .. ": " .. text) end
end, {protocols = {"chat"}, ping_interval = 30, max_message = 4096, compress = true})

web.run_app(app, {host = "127.0.0.1", port = tonumber(arg[1]) or 8080})
