-- Local servers for the corio.http specs: spec/fixtures/http_server.py started as a child
-- process (bound to 127.0.0.1, port read back), and a CA plus a server certificate made by
-- openssl at test time.
local H = {}

local function sh_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- H.server([args]) -> {port=, base=, stop=fn}: starts the fixture server; stop() kills it and
-- reaps the process.
function H.server(args)
  local cmd = "sh -c " .. sh_quote("exec 2>/dev/null; /usr/bin/python3 "
    .. "spec/fixtures/http_server.py " .. (args or "") .. " & echo PID $!; wait")
  local f = assert(io.popen(cmd))
  local pid = assert(f:read("l"), "test server did not start"):match("^PID (%d+)")
  local line = f:read("l")
  local port = line and line:match("^PORT (%d+)")
  local s = {pid = pid, port = tonumber(port)}
  function s.stop()
    if s.pid then
      os.execute("kill " .. s.pid .. " 2>/dev/null")
      f:close()
      s.pid = nil
    end
  end
  if not port then
    s.stop()
    error("test server did not report its port")
  end
  s.base = "http://127.0.0.1:" .. port
  return s
end

local function run(cmd)
  local ok = os.execute(cmd .. " >/dev/null 2>&1")
  assert(ok, "command failed: " .. cmd)
end

-- H.certs() -> {dir=, ca=, cert=, key=, remove=fn}: a private CA and a certificate for the
-- name "localhost" only (so that https://127.0.0.1 fails the host name check).
function H.certs()
  local dir = os.tmpname()
  os.remove(dir)
  run("mkdir -p " .. dir)
  local c = {dir = dir, ca = dir .. "/ca.pem", cert = dir .. "/server.pem",
             key = dir .. "/server.key"}
  local ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
  run(("cd %s && openssl req -x509 %s -keyout ca.key -out ca.pem -days 2 -subj '/CN=corio test CA'")
    :format(dir, ec))
  run(("cd %s && openssl req %s -keyout server.key -out server.csr -subj '/CN=localhost'")
    :format(dir, ec))
  local ext = assert(io.open(dir .. "/ext", "w"))
  ext:write("subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n")
  ext:close()
  run(("cd %s && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
    .. "-out server.pem -days 2 -extfile ext"):format(dir))
  function c.remove() os.execute("rm -rf " .. dir) end
  return c
end

-- H.nginx(certs) -> {port=, stop=fn} | nil when nginx is not installed: nginx on 127.0.0.1
-- serving HTTPS with HTTP/2 (certificate from H.certs()), "/" answering "hello h2" and
-- "/big" a 1 MiB body.
function H.nginx(certs)
  if not os.execute("command -v nginx >/dev/null 2>&1") then return nil end
  local p = assert(io.popen("/usr/bin/python3 -c 'import socket; s=socket.socket(); "
    .. "s.bind((\"127.0.0.1\",0)); print(s.getsockname()[1])'"))
  local port = tonumber(p:read("l"))
  p:close()
  local dir = certs.dir
  local conf = assert(io.open(dir .. "/nginx.conf", "w"))
  local text = ([[
worker_processes 1;
pid DIR/nginx.pid;
error_log DIR/error.log;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path DIR; proxy_temp_path DIR; fastcgi_temp_path DIR;
  uwsgi_temp_path DIR; scgi_temp_path DIR;
  server {
    listen 127.0.0.1:PORT ssl http2;
    ssl_certificate DIR/server.pem;
    ssl_certificate_key DIR/server.key;
    location = / { default_type text/plain; return 200 "hello h2"; }
    location = /big { alias DIR/big; }
  }
}
]]):gsub("DIR", dir):gsub("PORT", tostring(port))
  conf:write(text)
  conf:close()
  local big = assert(io.open(dir .. "/big", "wb"))
  big:write(("0123456789abcdef"):rep(65536))
  big:close()
  run("nginx -c " .. dir .. "/nginx.conf")   -- daemonizes once it listens
  local s = {port = port}
  function s.stop()
    os.execute("kill $(cat " .. dir .. "/nginx.pid) 2>/dev/null")
    os.execute("sleep 0.1")
  end
  return s
end

return H
