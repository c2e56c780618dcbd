#!/bin/sh
# TCP echo: CONNS connections each sending a 64-byte message and waiting for its echo, for SECS
# seconds; messages per second. Each contender is a server and a client of the same runtime, in
# two processes. Contenders run interleaved (A B C D E, A B C D E, ...), never back to back; the
# medians and the ratios to corio are printed at the end.
# Usage: bench/net/echo.sh [ROUNDS=3] [SECS=10] [CONNS=100]   (from the repository root)
ROUNDS=${1:-3}; SECS=${2:-10}; CONNS=${3:-100}
CORIO=${CORIO:-build/corio}
PY=/usr/bin/python3
D=$(dirname "$0")
# Below the ephemeral range (32768-60999): a port there may be held by some client's socket,
# and the listen fails. The offset keeps two runs of these scripts apart.
PORT=$((20000 + $$ % 400 * 25))
OUT=$(mktemp)
run() { # name, server command, client command
  PORT=$((PORT + 1))
  $2 server $PORT ${4:-} > /tmp/echo_srv.$$ 2>&1 &
  pid=$!
  for _ in $(seq 50); do grep -q ready /tmp/echo_srv.$$ && break; sleep 0.1; done
  r=$($3 client $PORT $CONNS $SECS ${4:-})
  kill $pid 2>/dev/null; wait $pid 2>/dev/null
  echo "$1 $r" | tee -a "$OUT"
}
for i in $(seq "$ROUNDS"); do
  run corio "$CORIO $D/echo_corio.lua" "$CORIO $D/echo_corio.lua"
  run luv "lua5.4 $D/echo_luv.lua" "lua5.4 $D/echo_luv.lua"
  run asyncio "$PY $D/echo_asyncio.py" "$PY $D/echo_asyncio.py"
  run uvloop "$PY $D/echo_asyncio.py" "$PY $D/echo_asyncio.py" uvloop
  run node "node $D/echo_node.js" "node $D/echo_node.js"
done
$PY - "$OUT" <<'PY'
import sys, statistics
rows = {}
for line in open(sys.argv[1]):
    name, v = line.split()
    rows.setdefault(name, []).append(float(v))
med = {k: statistics.median(v) for k, v in rows.items()}
print("\n| contender | median msgs/s | runs | corio / contender |")
print("| --- | ---: | --- | ---: |")
for k, v in med.items():
    print("| %s | %.0f | %s | %.2f |" % (k, v, " ".join("%.0f" % x for x in rows[k]), med["corio"] / v))
PY
rm -f "$OUT" /tmp/echo_srv.$$
