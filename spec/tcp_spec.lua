-- corio._tcp: the raw client used by the web specs.
local corio = require "corio"
local tcp = require "corio._tcp"
local web = require "corio.web"

describe("corio._tcp", function()
  local function echo_server()
    local app = web.Application()
    app:post("/", function(r) return r:body() end)
    return assert(app:listen{port = 0})
  end

  it("connects, writes, reads and sees the end of the stream", function()
    corio.run(function()
      local s = echo_server()
      local c = assert(tcp.connect("127.0.0.1", s.port))
      assert.is_true(c:write("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
        .. "Connection: close\r\n\r\nhi"))
      local got = {}
      while true do
        local d = c:read()
        if not d then break end
        got[#got + 1] = d
      end
      assert.truthy(table.concat(got):find("\r\n\r\nhi$"))
      assert.is_nil(c:read())  -- still the end
      c:close()
      c:close()  -- idempotent
      assert.has_error(function() c:write("x") end, "tcp: the connection is closed")
      s:shutdown(1)
    end)
  end)

  it("reads at most max bytes", function()
    corio.run(function()
      local s = echo_server()
      local c = assert(tcp.connect("127.0.0.1", s.port))
      c:write("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
      assert.equal("HTTP", c:read(4))
      c:close()
      s:shutdown(1)
    end)
  end)

  it("returns the failure triple for a refused connection", function()
    corio.run(function()
      local s = echo_server()
      local port = s.port
      s:shutdown(1)
      local c, msg, code = tcp.connect("127.0.0.1", port)
      assert.is_nil(c)
      assert.equal("ECONNREFUSED", code)
      assert.truthy(msg:find("connect 127.0.0.1:" .. port, 1, true))
    end)
    local c, msg, code = tcp.connect("not an address", 80)
    assert.is_nil(c)
    assert.equal("EINVAL", code)
    assert.truthy(msg)
  end)

  it("can be cancelled while reading, and the connection stays usable", function()
    corio.run(function()
      local s = echo_server()
      local c = assert(tcp.connect("127.0.0.1", s.port))
      local reader = corio.spawn(function() return c:read() end)
      corio.sleep(0.05)
      reader:cancel()
      assert.is_false(pcall(reader.await, reader))
      c:write("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
      assert.truthy(c:read():find("ok$"))
      c:close()
      s:shutdown(1)
    end)
  end)

  it("allows one reader and one writer at a time, and says so otherwise", function()
    corio.run(function()
      local s = echo_server()
      local c = assert(tcp.connect("127.0.0.1", s.port))
      local reader = corio.spawn(function() return c:read() end)
      corio.sleep(0.01)
      assert.has_error(function() c:read() end,
        "tcp read: another task is already reading on this connection")
      c:write("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nConnection: close\r\n\r\nz")
      assert.truthy(reader:await():find("^HTTP/1.1 200"))
      c:close()
      s:shutdown(1)
    end)
  end)

  it("half-closes with shutdown and still reads the answer", function()
    corio.run(function()
      local s = echo_server()
      local c <close> = assert(tcp.connect("127.0.0.1", s.port))
      c:write("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
      assert.is_true(c:shutdown())
      assert.truthy(c:read():find("abc$"))
      s:shutdown(1)
    end)
  end)

  it("cannot be used where the caller cannot suspend", function()
    corio.run(function()
      local ok, err = pcall(table.sort, {1, 2}, function() tcp.connect("127.0.0.1", 1) end)
      assert.is_false(ok)
      assert.truthy(err:find("cannot suspend here", 1, true))
    end)
  end)
end)
