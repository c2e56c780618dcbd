-- Every "unknown option" error names what is accepted, so that a user who guessed another
-- client's spelling (requests' data, params, auth, verify) learns corio's from the message.
local http = require "corio.http"

-- the error message of fn(), or fails
local function message(fn)
  local ok, err = pcall(fn)
  assert.is_false(ok)
  return tostring(err)
end

-- the accepted names listed in an "unknown option" message
local function accepted(msg)
  local list = assert(msg:match("%(accepted: ([^)]*)%)$"), "no accepted list in: " .. msg)
  local names = {}
  for name in list:gmatch("[%w_]+") do names[#names + 1] = name end
  return names
end

describe("unknown option errors", function()
  it("http.request lists every request option", function()
    local msg = message(function() http.request {url = "http://127.0.0.1:1/", bogus = 1} end)
    assert.matches('http%.request: unknown option "bogus" %(accepted: ', msg)
    local names = accepted(msg)
    assert.same({"allow_redirects", "body", "body_file", "ca_file", "decompress", "form",
                 "headers", "http2", "insecure", "json", "max_redirects", "max_size", "method",
                 "proxy", "query", "stream", "timeout", "url"}, names)
  end)

  it("each module-level method and session method says the same", function()
    for _, m in ipairs {"get", "post", "put", "patch", "delete", "head", "options"} do
      local msg = message(function() http[m]("http://127.0.0.1:1/", {nope = true}) end)
      assert.matches('unknown option "nope" %(accepted: allow_redirects,', msg)
    end
    local s <close> = http.Session()
    local msg = message(function() s:get("http://127.0.0.1:1/", {nope = true}) end)
    assert.matches('unknown option "nope" %(accepted: allow_redirects,', msg)
  end)

  it("http.Session lists every session option", function()
    local msg = message(function() http.Session {bogus = 1} end)
    assert.matches('http%.Session: unknown option "bogus" %(accepted: ', msg)
    assert.same({"base_url", "ca_file", "cookies", "decompress", "headers", "http2", "insecure",
                 "max_connections", "max_idle", "max_per_host", "max_redirects", "proxy",
                 "timeout"}, accepted(msg))
  end)

  it("names corio's spelling of other clients' options", function()
    local cases = {
      data = "body %(a string%) or form %(a table%)", params = "query",
      auth = "headers %(Authorization%)", verify = "insecure = true, or ca_file",
    }
    for name, spelling in pairs(cases) do
      local msg = message(function() http.get("http://127.0.0.1:1/", {[name] = 1}) end)
      assert.matches('unknown option "' .. name .. '"; corio spells it ' .. spelling
                     .. ' %(accepted: ', msg)
    end
  end)

  it("the accepted lists are the options the documentation describes", function()
    local f = assert(io.open("doc/http.md"))
    local doc = f:read("a")
    f:close()
    for _, fn in ipairs {function() http.request {url = "http://x/", bogus = 1} end,
                         function() http.Session {bogus = 1} end} do
      for _, name in ipairs(accepted(message(fn))) do
        assert.truthy(doc:find("`" .. name .. "`", 1, true) or doc:find(name .. " =", 1, true),
                      "doc/http.md does not describe option " .. name)
      end
    end
  end)
end)

describe("the sources", function()
  it("have no unknown-option error that does not list the accepted options", function()
    local p = io.popen("grep -rn 'unknown option' scripts/ bindings/")
    local offenders = {}
    for line in p:lines() do
      -- comments may speak of unknown options; a message must list what is accepted
      if not line:match(":%d+:%s*%-%-") and not line:find("accepted", 1, true) then
        offenders[#offenders + 1] = line
      end
    end
    p:close()
    assert.same({}, offenders)
  end)
end)
