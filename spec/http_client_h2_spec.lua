local corio = require "corio"
local hs = require "http_support"
local http = require "corio.http"

-- HTTP/2 over TLS against a local nginx (skipped when nginx is not installed).
describe("corio.http with HTTP/2", function()
  local certs, nginx
  lazy_setup(function()
    certs = hs.certs()
    nginx = hs.nginx(certs)
  end)
  lazy_teardown(function()
    if nginx then nginx.stop() end
    certs.remove()
  end)

  local function url(path) return ("https://localhost:%d%s"):format(nginx.port, path) end

  it("negotiates HTTP/2 by ALPN and multiplexes requests on one connection", function()
    if not nginx then return pending("nginx is not installed") end
    local s = http.Session {ca_file = certs.ca}
    local r = assert(s:get(url("/")))
    assert.equal("2", r.http_version)
    assert.equal("hello h2", r.body)
    assert.equal("OK", r.reason)  -- HTTP/2 has no reason phrase: the standard one is used
    local fns = {}
    for i = 1, 10 do fns[i] = function() return #assert(s:get(url("/big"))).body end end
    local sizes = corio.gather(fns)
    for i = 1, 10 do assert.equal(1024 * 1024, sizes[i]) end
    assert.equal(1, s:stats().connects)
    s:close()
  end)

  it("http2 = false keeps to HTTP/1.1", function()
    if not nginx then return pending("nginx is not installed") end
    local r = assert(http.get(url("/"), {ca_file = certs.ca, http2 = false}))
    assert.equal("1.1", r.http_version)
    http.default_session():close()
  end)
end)
