#!/bin/sh
# WebSocket echo, side by side: corio.web against Node's `ws` and aiohttp. 100 connections
# each send a 64-byte text message and wait for the echo before the next (one message in
# flight per connection), for SECS seconds after a second of warm-up. The load generator is
# bench/websocket/client.c (one thread, epoll: it prints its own CPU share, far below a core),
# the same for every server. Server on CPU 0, client on CPU 1 (taskset); contenders
# interleaved (corio ws aiohttp corio ws aiohttp ...) for ROUNDS rounds; medians of msgs/s
# and of the server's CPU time per message (utime + stime from /proc, which moves less than
# msgs/s on a shared machine). Then each server's resident memory per connection: RSS with
# HOLD idle WebSocket connections open minus RSS before, over HOLD.
# npm's `ws` goes to bench/websocket/node_modules (git-ignored); aiohttp is Debian's
# (/usr/bin/python3). Usage: bench/websocket/run.sh [secs=10] [rounds=5]
#   env: CONNS=100 SIZE=64 HOLD=5000 CORIO=build/corio SERVER_CPU=0 CLIENT_CPU=1
set -eu
# CORIO relative to where the script was started (the repository root, say)
CORIO=${CORIO:-$(dirname "$0")/../../build/corio}
case $CORIO in /*) ;; *) CORIO=$(cd "$(dirname "$CORIO")" && pwd)/$(basename "$CORIO") ;; esac
cd "$(dirname "$0")"
SECS=${1:-10}
ROUNDS=${2:-5}
CONNS=${CONNS:-100}
SIZE=${SIZE:-64}
HOLD=${HOLD:-5000}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
PORT=${PORT:-18650}
PY=/usr/bin/python3
ulimit -n "$(ulimit -Hn)"
TMP=$(mktemp -d)
SPID=
cleanup() {
  [ -n "$SPID" ] && kill "$SPID" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

cc -O2 -o "$TMP/client" client.c
if ! [ -d node_modules/ws ]; then
  npm install --silent --no-save --prefix . ws >/dev/null 2>&1 || true
fi
SERVERS="corio aiohttp"
[ -d node_modules/ws ] && SERVERS="corio ws aiohttp" || echo "(npm could not install ws: Node is left out)"

start() { # name -> SPID
  case $1 in
    corio) taskset -c "$SERVER_CPU" "$CORIO" echo.lua "$PORT" >/dev/null 2>&1 & SPID=$! ;;
    ws) taskset -c "$SERVER_CPU" node echo_ws.js "$PORT" >/dev/null 2>&1 & SPID=$! ;;
    aiohttp) taskset -c "$SERVER_CPU" $PY echo_aiohttp.py "$PORT" >/dev/null 2>&1 & SPID=$! ;;
  esac
  i=0
  until curl -s -o /dev/null "http://127.0.0.1:$PORT/"; do
    i=$((i + 1)); [ $i -gt 100 ] && { echo "$1 did not start" >&2; exit 1; }
    sleep 0.1
  done
}
stop() {
  kill "$SPID" 2>/dev/null || true
  wait "$SPID" 2>/dev/null || true
  SPID=
  PORT=$((PORT + 1))  # no waiting for TIME_WAIT or a slow exit
}
ticks() { awk '{print $14 + $15}' "/proc/$SPID/stat"; }
rss() { awk '/VmRSS/ {print $2}' "/proc/$SPID/status"; }
median() { sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
HZ=$(getconf CLK_TCK)

echo "WebSocket echo: $CONNS connections, $SIZE-byte messages, ${SECS} s, $ROUNDS rounds (server CPU $SERVER_CPU, client CPU $CLIENT_CPU)"
for r in $(seq "$ROUNDS"); do
  for s in $SERVERS; do
    start "$s"
    t0=$(ticks)
    set -- $(taskset -c "$CLIENT_CPU" "$TMP/client" echo "$PORT" "$CONNS" "$SECS" "$SIZE" 1)
    t1=$(ticks)
    # CPU per message: the ticks cover the warm-up second too, so count its messages in
    us=$(awk -v t="$((t1 - t0))" -v hz="$HZ" -v n="$2" -v rate="$1" \
      'BEGIN {printf "%.2f", t * 1e6 / hz / (n + rate)}')
    busy=$(awk -v t="$((t1 - t0))" -v hz="$HZ" -v secs="$SECS" 'BEGIN {printf "%.0f", t * 100 / hz / (secs + 1)}')
    echo "$s $1 $us" >>"$TMP/results"
    printf '  round %d %-8s %8s msgs/s  %6s us/msg  (server CPU %s%%, client CPU %s%%)\n' \
      "$r" "$s" "$1" "$us" "$busy" "$3"
    stop
  done
done

echo
printf '%-8s %10s %10s %12s\n' server msgs/s us/msg RSS/conn
for s in $SERVERS; do
  rate=$(awk -v s="$s" '$1 == s {print $2}' "$TMP/results" | median)
  us=$(awk -v s="$s" '$1 == s {print $3}' "$TMP/results" | median)
  start "$s"
  taskset -c "$CLIENT_CPU" "$TMP/client" echo "$PORT" 10 1 "$SIZE" 0 >/dev/null  # warm
  before=$(rss)
  taskset -c "$CLIENT_CPU" "$TMP/client" hold "$PORT" "$HOLD" 3 >"$TMP/hold" &
  HPID=$!
  until grep -q ready "$TMP/hold" 2>/dev/null; do sleep 0.1; done
  sleep 0.5
  after=$(rss)
  wait $HPID
  stop
  per=$(awk -v a="$after" -v b="$before" -v n="$HOLD" 'BEGIN {printf "%.1f KiB", (a - b) / n}')
  printf '%-8s %10s %10s %12s\n' "$s" "$rate" "$us" "$per"
  echo "$s $rate" >>"$TMP/medians"
done
c=$(awk '$1 == "corio" {print $2}' "$TMP/medians")
for s in $SERVERS; do
  [ "$s" = corio ] && continue
  awk -v c="$c" -v s="$s" '$1 == s {printf "corio / %s: %.2fx\n", s, c / $2}' "$TMP/medians"
done
