#!/bin/sh
# WebSocket interoperability with Node's `ws` (npm, so not part of the test suite, which must
# not need npm; Python's websockets is checked there, spec/websocket_spec.lua):
#   1. the `ws` client against corio.web's app:websocket (compress = true),
#   2. corio's http.websocket client against a `ws` server (perMessageDeflate: true).
# Both ways: text (ASCII, UTF-8, 1 MiB), binary (70,000 bytes, empty), permessage-deflate
# negotiated, echoes checked byte for byte, close 1000. Prints "interop: ok" or fails.
# Usage: bench/websocket/interop.sh   env: CORIO=build/corio PORT=18660
set -eu
CORIO=${CORIO:-$(dirname "$0")/../../build/corio}
case $CORIO in /*) ;; *) CORIO=$(cd "$(dirname "$CORIO")" && pwd)/$(basename "$CORIO") ;; esac
cd "$(dirname "$0")"
PORT=${PORT:-18660}
TMP=$(mktemp -d)
SPID=
cleanup() {
  [ -n "$SPID" ] && kill "$SPID" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT
if ! [ -d node_modules/ws ]; then npm install --silent --no-save --prefix . ws >/dev/null 2>&1; fi

# wait until the server started in the background prints "ready" to $TMP/out
ready() {
  for _ in $(seq 100); do grep -q ready "$TMP/out" 2>/dev/null && return 0; sleep 0.05; done
  echo "interop: server did not start" >&2; cat "$TMP/out" >&2; exit 1
}

cat > "$TMP/server.lua" <<LUA
local web = require "corio.web"
local app = web.Application()
app:websocket("/", function(ws)
  for message, kind in ws:messages() do ws:send(message, kind) end
end, {compress = true})
web.run_app(app, {host = "127.0.0.1", port = $PORT, print = false,
                  on_ready = function() print("ready"); io.stdout:flush() end})
LUA
"$CORIO" "$TMP/server.lua" > "$TMP/out" 2>&1 & SPID=$!
ready
printf 'ws client -> corio server: '
node interop_ws.js client "ws://127.0.0.1:$PORT/"
kill "$SPID"; wait "$SPID" 2>/dev/null || true; SPID=

: > "$TMP/out"
node interop_ws.js server "$PORT" > "$TMP/out" 2>&1 & SPID=$!
ready
printf 'corio client -> ws server: '
"$CORIO" interop_client.lua "ws://127.0.0.1:$PORT/"
echo "interop: ok"
