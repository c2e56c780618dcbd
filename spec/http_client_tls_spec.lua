local corio = require "corio"
local hs = require "http_support"
local http = require "corio.http"

describe("corio.http over TLS", function()
  local certs, srv, url, ip_url
  lazy_setup(function()
    certs = hs.certs()
    srv = hs.server(("--tls %s %s"):format(certs.cert, certs.key))
    url = ("https://localhost:%d/hello"):format(srv.port)
    ip_url = ("https://127.0.0.1:%d/hello"):format(srv.port)
  end)
  lazy_teardown(function()
    http.default_session():close()
    srv.stop()
    certs.remove()
  end)

  it("verifies the server with ca_file", function()
    local r = assert(http.get(url, {ca_file = certs.ca}))
    assert.equal(200, r.status)
    assert.equal("hello", r.body)
  end)

  it("a session's ca_file applies to its requests", function()
    local s = http.Session {ca_file = certs.ca}
    assert.equal("hello", assert(s:get(url)).body)
    assert.equal("hello", assert(s:get(url)).body)
    assert.equal(1, s:stats().connects)
    s:close()
  end)

  it("fails with ETLS without the private CA (system store only)", function()
    local r, msg, code = http.get(url)
    assert.is_nil(r)
    assert.equal("ETLS", code)
    assert.matches("^GET https://localhost:%d+/hello: .*certificate", msg)
  end)

  it("fails with ETLS on a wrong host name", function()
    local r, msg, code = http.get(ip_url, {ca_file = certs.ca})
    assert.is_nil(r)
    assert.equal("ETLS", code)
    assert.matches("127%.0%.0%.1", msg)
  end)

  it("insecure = true skips verification, and only then", function()
    local r = assert(http.get(ip_url, {insecure = true}))
    assert.equal("hello", r.body)
    local s = http.Session {insecure = true}
    assert.equal("hello", assert(s:get(ip_url)).body)
    s:close()
  end)

  it("fails with ETLS when the server does not speak TLS", function()
    local plain = hs.server()
    local r, _, code = http.get(("https://127.0.0.1:%d/hello"):format(plain.port))
    plain.stop()
    assert.is_nil(r)
    assert.equal("ETLS", code)
  end)

  it("runs TLS requests concurrently", function()
    local fns = {}
    for i = 1, 5 do fns[i] = function() return http.get(url, {ca_file = certs.ca}).body end end
    local results = corio.gather(fns)
    for i = 1, 5 do assert.equal("hello", results[i]) end
  end)
end)
