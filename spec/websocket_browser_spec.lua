-- examples/ws_chat.lua in a real browser: headless Chromium opens the chat page twice and the
-- two pages talk through corio's server. Chromium is driven over its DevTools protocol, which
-- is JSON over WebSocket: corio's own client (http.websocket) is the driver. Skipped, with a
-- message saying so, when chromium is not installed.
local corio = require "corio"
local web = require "corio.web"
local http = require "corio.http"
local json = require "corio.json"
local process = require "corio.process"

local have_chromium = os.execute("command -v chromium >/dev/null 2>&1")

-- One DevTools connection: call(method, params) -> result (events in between are skipped).
local function devtools(url)
  local ws = assert(http.websocket(url))
  local id = 0
  local function call(method, params)
    id = id + 1
    assert(ws:send(json.encode {id = id, method = method, params = params or json.object()}))
    while true do
      local m = assert(ws:receive())
      local r = json.decode(m)
      if r.id == id then
        assert(not r.error, r.error and r.error.message)
        return r.result
      end
    end
  end
  return ws, call
end

-- The value of expr in the page; JSON null (document.body while the page is still loading,
-- say) is nil: json.null is a table, so it would count as true, and a poll for "the socket is
-- open" would pass before the page had even parsed its body (the race behind an empty log).
local function eval(call, expr)
  local r = call("Runtime.evaluate", {expression = expr, returnByValue = true})
  local v = r.result.value
  if v == json.null then return nil end
  return v
end

local function poll(call, expr, what)
  local deadline = corio.now() + 15
  repeat
    local v = eval(call, expr)
    if v then return v end
    corio.sleep(0.05)
  until corio.now() > deadline
  error("timed out waiting for " .. what)
end

if not have_chromium then
  io.stderr:write("websocket_browser_spec: chromium is not installed; the browser test is "
                  .. "skipped (apt-get install chromium to run it)\n")
end
local pit = have_chromium and it
  or function(name) pending(name .. " (skipped: chromium is not installed)") end

describe("ws_chat in headless Chromium", function()
  pit("two pages exchange messages through the server", function()
    corio.run(function()
      local s = assert(web.Application():listen {host = "127.0.0.1", port = 0})
      local port = s.port
      s:close()
      local chat <close> = assert(process.spawn {os.getenv("CORIO") or "build/corio",
                                                 "examples/ws_chat.lua", tostring(port),
                                                 stdout = "null", stderr = "inherit"})
      local profile = os.tmpname()
      os.remove(profile)
      local browser <close> = assert(process.spawn {"chromium", "--headless", "--no-sandbox",
        "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--user-data-dir=" .. profile, "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0", "about:blank", stdout = "null", stderr = "pipe"})
      local endpoint
      corio.timeout(30, function()
        while not endpoint do
          local line = assert(browser.stderr:read_line(), "chromium exited")
          endpoint = line:match("DevTools listening on (ws://%S+)")
        end
      end)
      local dport = endpoint:match(":(%d+)/")
      -- the chat server may still be starting: wait for its page
      for _ = 1, 100 do
        if http.get("http://127.0.0.1:" .. port .. "/") then break end
        corio.sleep(0.05)
      end
      local bws, bcall = devtools(endpoint)
      local pages = {}
      for i, name in ipairs {"ada", "bob"} do
        local t = bcall("Target.createTarget", {url = ("http://127.0.0.1:%d/?name=%s"):format(
          port, name)})
        local ws, call = devtools(("ws://127.0.0.1:%s/devtools/page/%s"):format(dport,
                                                                           t.targetId))
        pages[i] = {ws = ws, call = call}
        poll(call, "document.body && document.body.dataset.open === '1'", name .. "'s socket")
      end
      local ada, bob = pages[1].call, pages[2].call
      for _, p in ipairs(pages) do
        assert.equal("chat", eval(p.call, "ws.protocol"))
        assert.truthy(eval(p.call, "ws.extensions"):find("permessage-deflate", 1, true))
      end
      poll(ada, "document.getElementById('log').innerText.includes('* bob joined')",
           "ada to see bob join")
      eval(ada, "document.getElementById('text').value = 'hello from ada';"
                .. "document.getElementById('f').requestSubmit(); true")
      poll(bob, "document.getElementById('log').innerText.includes('ada: hello from ada')",
           "bob to get ada's message")
      eval(bob, "document.getElementById('text').value = 'héllo ada ✓';"
                .. "document.getElementById('f').requestSubmit(); true")
      poll(ada, "document.getElementById('log').innerText.includes('bob: héllo ada ✓')",
           "ada to get bob's message")
      for _, p in ipairs(pages) do p.ws:close() end
      pcall(bcall, "Browser.close")
      bws:close()
      corio.timeout(10, function() browser:wait() end)
      os.execute("rm -rf '" .. profile .. "'")
      chat:terminate()
      chat:wait()
    end)
  end)
end)
