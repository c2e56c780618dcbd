#!/bin/sh
# Memory per idle connection: the server's RSS growth with N open connections (a corio client
# holds them), divided by N. Servers: corio, asyncio streams, Node; interleaved rounds.
# Usage: bench/net/mem.sh [ROUNDS=3] [N=10000]   (from the repository root)
ROUNDS=${1:-3}; N=${2:-10000}
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
CORIO=${CORIO:-build/corio}
D=$(dirname "$0")
# Below the ephemeral range (32768-60999): a port there may be held by some client's socket,
# and the listen fails. The offset keeps two runs of these scripts apart.
PORT=$((20000 + $$ % 400 * 25))
OUT=$(mktemp)
rss() { awk '/VmRSS/ {print $2}' /proc/$1/status; }
run() {
  PORT=$((PORT + 1))
  $2 server $PORT > /tmp/mem_srv.$$ 2>&1 &
  spid=$!
  for _ in $(seq 50); do grep -q ready /tmp/mem_srv.$$ && break; sleep 0.1; done
  before=$(rss $spid)
  $CORIO $D/idle_corio.lua client $PORT $N > /tmp/mem_cli.$$ 2>&1 &
  cpid=$!
  for _ in $(seq 600); do grep -q connected /tmp/mem_cli.$$ && break; sleep 0.1; done
  sleep 1
  after=$(rss $spid)
  kill $cpid $spid 2>/dev/null; wait $cpid $spid 2>/dev/null
  echo "$1 $(( (after - before) * 1024 / N ))" | tee -a "$OUT"
}
for i in $(seq "$ROUNDS"); do
  run corio "$CORIO $D/idle_corio.lua"
  run asyncio "/usr/bin/python3 $D/idle_asyncio.py"
  run node "node $D/idle_node.js"
done
/usr/bin/python3 - "$OUT" <<'PY'
import sys, statistics
rows = {}
for line in open(sys.argv[1]):
    name, v = line.split()
    rows.setdefault(name, []).append(float(v))
print("\n| server | median bytes per idle connection | runs |")
print("| --- | ---: | --- |")
for k, v in rows.items():
    print("| %s | %.0f | %s |" % (k, statistics.median(v), " ".join("%.0f" % x for x in v)))
PY
rm -f "$OUT" /tmp/mem_srv.$$ /tmp/mem_cli.$$
