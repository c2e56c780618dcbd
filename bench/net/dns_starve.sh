#!/bin/sh
# Does DNS on libuv's thread pool starve file I/O? Files read while LOOKUPS slow lookups are in
# flight, against the same reads alone, and how long a lookup of localhost waits meanwhile:
# corio (4 threads, the default, and 16) and Node (dns.lookup and fs.promises share libuv's
# pool too). The resolver is pointed at a DNS server
# on 127.0.0.1 that never answers (options timeout:2 attempts:1: each lookup takes 2 s), in a
# private mount namespace (unshare -m, bind-mounted /etc/resolv.conf): /etc is not changed.
# Needs root (port 53, mount). Usage: bench/net/dns_starve.sh [ROUNDS=3] [LOOKUPS=64]
set -e
ROUNDS=${1:-3}; LOOKUPS=${2:-64}
CORIO=$(realpath "${CORIO:-build/corio}")
D=$(cd "$(dirname "$0")" && pwd)
DIR=$(mktemp -d)
trap 'kill $BH 2>/dev/null; rm -rf "$DIR"' EXIT
/usr/bin/python3 -c "
import os
b = os.urandom(4096)
os.mkdir('$DIR/files')
for i in range(1, 10001):
    open('$DIR/files/%d' % i, 'wb').write(b)"
printf 'nameserver 127.0.0.1\noptions timeout:2 attempts:1\n' > "$DIR/resolv.conf"
/usr/bin/python3 "$D/dns_blackhole.py" > "$DIR/bh.out" 2>&1 &
BH=$!
for _ in $(seq 50); do grep -q ready "$DIR/bh.out" && break; sleep 0.1; done
# run a command with our resolv.conf over /etc/resolv.conf, in a mount namespace of its own
jail() {
  unshare -m sh -c "mount --bind '$DIR/resolv.conf' /etc/resolv.conf && exec \"\$@\"" jail "$@"
}
F="$DIR/files"
for i in $(seq "$ROUNDS"); do
  echo "corio $(jail "$CORIO" "$D/dns_starve.lua" "$F" "$LOOKUPS")" | tee -a "$DIR/out"
  echo "corio16 $(UV_THREADPOOL_SIZE=16 jail "$CORIO" "$D/dns_starve.lua" "$F" "$LOOKUPS")" \
    | tee -a "$DIR/out"
  echo "node $(jail node "$D/dns_starve.js" "$F" "$LOOKUPS")" | tee -a "$DIR/out"
done
/usr/bin/python3 - "$DIR/out" <<'PY'
import sys, statistics
rows = {}
for line in open(sys.argv[1]):
    name, *v = line.split()
    rows.setdefault(name, []).append([float(x) for x in v])
print("\n| contender | files/s alone | files/s with lookups | ratio | reads took | "
      "localhost took | slowest lookup |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for k, runs in rows.items():
    m = [statistics.median(r[i] for r in runs) for i in range(5)]
    print("| %s | %.0f | %.0f | %.2f | %.2f s | %.2f s | %.2f s |"
          % (k, m[0], m[1], m[1] / m[0], m[2], m[3], m[4]))
PY
