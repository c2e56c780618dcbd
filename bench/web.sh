#!/bin/sh
# Side-by-side HTTP benchmark: corio.web against nginx, Node's http module and aiohttp, all in
# the same run. Installs nothing: needs wrk, nginx, node, /usr/bin/python3 with aiohttp.
# Server and wrk are pinned to different cores with taskset. Two workloads:
#   hello: "Hello, world!" from a handler, wrk -t1 -c100 -d${HELLO_SECS}s
#   slow:  the seed post's handler that sleeps 1 s, wrk -t1 -c1000 -d${SLOW_SECS}s --timeout 5s
# Reports per server the median of $RUNS runs: req/s, p99 latency, peak RSS (VmHWM) and the
# server's CPU time per request (utime+stime / requests: less sensitive to other load on the
# machine than req/s, though not immune to it).
# Runs are interleaved (run 1 of every server, then run 2, ...): these VMs favour a binary run
# back to back (doc/FACTS: page faults after another process freed memory).
# Usage: bench/web.sh [hello|slow|workers|ab|all]   env: RUNS=3 HELLO_SECS=10 SLOW_SECS=10
#        SERVER_CPU=0 WRK_CPU=1 CORIO=build/corio CORIO_B=(another corio, for "ab": hello
#        with both binaries, e.g. before and after a change)
set -eu
cd "$(dirname "$0")/.."
WHAT=${1:-all}
RUNS=${RUNS:-3}
HELLO_SECS=${HELLO_SECS:-10}
SLOW_SECS=${SLOW_SECS:-10}
SERVER_CPU=${SERVER_CPU:-0}
WRK_CPU=${WRK_CPU:-1}
CORIO=${CORIO:-build/corio}
PORT=${PORT:-18631}
PY=/usr/bin/python3
ulimit -n "$(ulimit -Hn)"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# ---- the peers ---------------------------------------------------------------------------
cat >"$TMP/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
master_process off;
error_log $TMP/nginx-error.log;
pid $TMP/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $TMP; proxy_temp_path $TMP; fastcgi_temp_path $TMP;
  uwsgi_temp_path $TMP; scgi_temp_path $TMP;
  server {
    listen 127.0.0.1:$PORT;
    location / { default_type text/plain; return 200 "Hello, world!"; }
  }
}
NGINX
cat >"$TMP/node.js" <<'NODE'
const http = require('http');
const slow = process.argv[3] === 'slow';
http.createServer((req, res) => {
  const send = () => { res.writeHead(200, {'Content-Type': 'text/plain'}); res.end('Hello, world!'); };
  if (slow) setTimeout(send, 1000); else send();
}).listen(+process.argv[2], '127.0.0.1');
NODE
cat >"$TMP/aio.py" <<'PY'
import asyncio, sys
from aiohttp import web
slow = sys.argv[2] == 'slow'
async def handle(request):
    if slow:
        await asyncio.sleep(1)
    return web.Response(text="Hello, world!")
app = web.Application()
app.add_routes([web.get('/', handle)])
web.run_app(app, host='127.0.0.1', port=int(sys.argv[1]), print=None, access_log=None)
PY

start_server() { # name workload -> sets SPID
  case $1 in
    corio) if [ "$2" = slow ]; then set -- "$1" "$2" examples/web_hello.lua; else set -- "$1" "$2" bench/web_hello_fast.lua; fi
           taskset -c "$SERVER_CPU" "$CORIO" "$3" "$PORT" >/dev/null 2>&1 & SPID=$! ;;
    corio2) taskset -c 0,1 "$CORIO" bench/web_hello_fast.lua "$PORT" 2 >/dev/null 2>&1 & SPID=$! ;;
    corio_b) taskset -c "$SERVER_CPU" "$CORIO_B" bench/web_hello_fast.lua "$PORT" >/dev/null 2>&1 & SPID=$! ;;
    nginx) taskset -c "$SERVER_CPU" nginx -c "$TMP/nginx.conf" -p "$TMP" >/dev/null 2>&1 & SPID=$! ;;
    node)  taskset -c "$SERVER_CPU" node "$TMP/node.js" "$PORT" "$2" >/dev/null 2>&1 & SPID=$! ;;
    aiohttp) taskset -c "$SERVER_CPU" $PY "$TMP/aio.py" "$PORT" "$2" >/dev/null 2>&1 & SPID=$! ;;
  esac
  i=0
  until curl -s -o /dev/null "http://127.0.0.1:$PORT/"; do
    i=$((i + 1)); [ $i -gt 100 ] && { echo "$1 did not start" >&2; exit 1; }
    sleep 0.1
  done
}

# peak RSS in KiB of the server (all its processes: workers count too)
peak_rss() {
  total=0
  for p in $SPID $(pgrep -P "$SPID" || true); do
    v=$(awk '/VmHWM/ {print $2}' /proc/$p/status 2>/dev/null || echo 0)
    total=$((total + ${v:-0}))
  done
  echo $total
}

stop_server() {
  kill -TERM "$SPID" 2>/dev/null || true
  wait "$SPID" 2>/dev/null || true
}

cpu_ticks() { # utime + stime of the server and its children (workers), in clock ticks
  t=0
  for p in $SPID $(pgrep -P "$SPID" || true); do
    v=$(awk '{print $14 + $15}' /proc/$p/stat 2>/dev/null || echo 0)
    t=$((t + ${v:-0}))
  done
  echo $t
}

# run name workload -> prints "rps p99_ms rss_kib cpu_us_per_request"
run_once() {
  start_server "$1" "$2"
  c0=$(cpu_ticks)
  if [ "$2" = slow ]; then
    out=$(taskset -c "$WRK_CPU" wrk -t1 -c1000 -d"${SLOW_SECS}s" --timeout 5s --latency "http://127.0.0.1:$PORT/")
  else
    out=$(taskset -c "$WRK_CPU" wrk -t1 -c100 -d"${HELLO_SECS}s" --latency "http://127.0.0.1:$PORT/")
  fi
  rss=$(peak_rss)
  c1=$(cpu_ticks)
  stop_server
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; print v}')
  errs=$(echo "$out" | awk '/Socket errors|Non-2xx/ {print}' | tr '\n' ' ')
  [ -n "$errs" ] && echo "  ($1 $2: $errs)" >&2
  nreq=$(echo "$out" | awk '/requests in/ {print $1}')
  cpu=$(echo "($c1 - $c0) * 1000000 / $(getconf CLK_TCK) / $nreq" | bc -l)
  echo "$rps $p99 $rss $cpu"
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

bench() { # workload servers...
  wl=$1; shift
  echo
  echo "== $wl: $(if [ "$wl" = slow ]; then echo "wrk -t1 -c1000 -d${SLOW_SECS}s --timeout 5s"; else echo "wrk -t1 -c100 -d${HELLO_SECS}s"; fi), median of $RUNS runs"
  printf "%-8s %12s %10s %10s %12s\n" server "req/s" "p99 ms" "RSS MiB" "CPU us/req"
  for s in "$@"; do : >"$TMP/$s.res"; done
  r=0
  while [ $r -lt "$RUNS" ]; do
    for s in "$@"; do run_once "$s" "$wl" >>"$TMP/$s.res"; done
    r=$((r + 1))
  done
  for s in "$@"; do
    rps=$(awk '{print $1}' "$TMP/$s.res" | median)
    p99=$(awk '{print $2}' "$TMP/$s.res" | median)
    rss=$(awk '{print $3}' "$TMP/$s.res" | median)
    cpu=$(awk '{print $4}' "$TMP/$s.res" | median)
    printf "%-8s %12s %10s %10.1f %12.2f   runs: %s\n" "$s" "$rps" "$p99" "$(echo "$rss / 1024" | bc -l)" \
      "$cpu" "$(awk '{printf "%s ", $1}' "$TMP/$s.res")"
    echo "$rps" >"$TMP/$s.$wl.rps"
  done
  if [ -f "$TMP/corio.$wl.rps" ]; then
    for s in "$@"; do
      [ "$s" = corio ] && continue
      printf "corio / %-8s %6.2fx\n" "$s" "$(echo "$(cat "$TMP/corio.$wl.rps") / $(cat "$TMP/$s.$wl.rps")" | bc -l)"
    done
  fi
}

echo "corio.web benchmark: server on CPU $SERVER_CPU, wrk on CPU $WRK_CPU ($(nproc) CPUs;"
echo "other work on this machine shares them: numbers are noisy, compare within one run)"
case $WHAT in
  hello) bench hello corio nginx node aiohttp ;;
  slow) bench slow corio node aiohttp ;;
  workers) bench hello corio corio2 ;;
  ab) [ -x "${CORIO_B:-}" ] || { echo "ab: set CORIO_B to another corio binary" >&2; exit 2; }
      bench hello corio corio_b ;;
  all) bench hello corio nginx node aiohttp; bench slow corio node aiohttp ;;
  *) echo "usage: $0 [hello|slow|workers|ab|all]" >&2; exit 2 ;;
esac
