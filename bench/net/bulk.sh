#!/bin/sh
# Bulk: MIB MiB through one TCP connection (64 KiB writes), corio and Node interleaved; MiB/s.
# Usage: bench/net/bulk.sh [ROUNDS=5] [MIB=1024]   (from the repository root)
ROUNDS=${1:-5}; MIB=${2:-1024}
CORIO=${CORIO:-build/corio}
D=$(dirname "$0")
# Below the ephemeral range (32768-60999): a port there may be held by some client's socket,
# and the listen fails. The offset keeps two runs of these scripts apart.
PORT=$((20000 + $$ % 400 * 25))
OUT=$(mktemp)
run() {
  PORT=$((PORT + 1))
  $2 server $PORT > /tmp/bulk_srv.$$ 2>&1 &
  pid=$!
  for _ in $(seq 50); do grep -q ready /tmp/bulk_srv.$$ && break; sleep 0.1; done
  r=$($2 client $PORT $MIB)
  kill $pid 2>/dev/null; wait $pid 2>/dev/null
  echo "$1 $r" | tee -a "$OUT"
}
for i in $(seq "$ROUNDS"); do
  run corio "$CORIO $D/bulk_corio.lua"
  run node "node $D/bulk_node.js"
done
/usr/bin/python3 - "$OUT" <<'PY'
import sys, statistics
rows = {}
for line in open(sys.argv[1]):
    name, v = line.split()
    rows.setdefault(name, []).append(float(v))
med = {k: statistics.median(v) for k, v in rows.items()}
print("\n| contender | median MiB/s | runs | corio / contender |")
print("| --- | ---: | --- | ---: |")
for k, v in med.items():
    print("| %s | %.0f | %s | %.2f |" % (k, v, " ".join("%.0f" % x for x in rows[k]), med["corio"] / v))
PY
rm -f "$OUT" /tmp/bulk_srv.$$
