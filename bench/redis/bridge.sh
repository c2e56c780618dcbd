#!/bin/sh
# Bus bridge between two processes: messages/s (N messages, as fast as the bridge goes) and
# one-way latency p50/p99 at RATE msgs/s (LAT_N messages). Redis on CPU 0, both processes on
# CPU 1; ROUNDS rounds. With CORIO_BEFORE=<another corio binary>, it runs interleaved with
# $CORIO as "before" (to measure a change to the bridge).
# Usage: bench/redis/bridge.sh [N=100000] [ROUNDS=3] [RATE=5000] [LAT_N=25000]
set -e
cd "$(dirname "$0")"
N=${1:-100000}; ROUNDS=${2:-3}; RATE=${3:-5000}; LAT_N=${4:-25000}; PORT=${PORT:-6392}
CORIO=${CORIO:-../../build/corio}
DIR=$(mktemp -d)
taskset -c 0 redis-server --port $PORT --save '' --appendonly no --dir "$DIR" --daemonize yes \
  --pidfile "$DIR/pid" --logfile "$DIR/log"
trap 'kill $(cat "$DIR/pid"); sleep 0.3; rm -rf "$DIR"' EXIT
sleep 0.3

one() {
  name=$1; bin=$2; n=$3; rate=${4:-}
  taskset -c 1 $bin bridge.lua recv $PORT $n > "$DIR/recv" &
  rpid=$!
  while ! grep -q ready "$DIR/recv" 2>/dev/null; do sleep 0.05; done
  taskset -c 1 $bin bridge.lua send $PORT $n $rate > "$DIR/send"
  wait $rpid
  start=$(awk '/^start/ {print $2}' "$DIR/send")
  awk -v s="$start" -v n=$n -v name=$name -v rate="$rate" '/^recv/ {
    printf "%s %s %.0f %s %s %s\n", name, (rate == "" ? "max" : rate "/s"), (n - $8) / ($2 - s), $4, $6, $8 }' "$DIR/recv"
}

echo "contender rate msgs/s p50_ms p99_ms lost"
for i in $(seq "$ROUNDS"); do
  [ -n "${CORIO_BEFORE:-}" ] && one before "$CORIO_BEFORE" $N
  one corio "$CORIO" $N
done
for i in $(seq "$ROUNDS"); do
  [ -n "${CORIO_BEFORE:-}" ] && one before "$CORIO_BEFORE" $LAT_N $RATE
  one corio "$CORIO" $LAT_N $RATE
done
