#!/bin/sh
# Durable queue, corio.redis vs BullMQ: one producer process and one consumer process; N jobs
# put, processed (a no-op) and acked. Throughput = N / (first put -> last ack); then latency
# (put -> acked, p50/p99) with the producer paced at RATE jobs/s for LAT_N jobs. Redis on CPU 0,
# both processes of a contender on CPU 1; contenders interleaved, ROUNDS rounds; the database is
# flushed before each run. bullmq goes to bench/redis/node_modules (git-ignored).
# Usage: bench/redis/queue.sh [N=100000] [ROUNDS=3] [RATE=5000] [LAT_N=25000]
set -e
cd "$(dirname "$0")"
N=${1:-100000}; ROUNDS=${2:-3}; RATE=${3:-5000}; LAT_N=${4:-25000}; PORT=${PORT:-6391}
CORIO=${CORIO:-../../build/corio}
DIR=$(mktemp -d)
taskset -c 0 redis-server --port $PORT --save '' --appendonly no --dir "$DIR" --daemonize yes \
  --pidfile "$DIR/pid" --logfile "$DIR/log"
trap 'kill $(cat "$DIR/pid"); sleep 0.3; rm -rf "$DIR"' EXIT
sleep 0.3
[ -d node_modules/bullmq ] || npm install --silent --prefix . --no-save --no-package-lock bullmq >/dev/null 2>&1
echo "bullmq $(node -p "require('bullmq/package.json').version"), redis $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/')"

# one NAME N [RATE]: prints "NAME N jobs_per_s p50_ms p99_ms"
one() {
  name=$1; n=$2; rate=${3:-}
  redis-cli -p $PORT flushall >/dev/null
  case $name in
    corio) cmd="$CORIO queue.lua" ;;
    bullmq) cmd="node queue_bullmq.js" ;;
  esac
  taskset -c 1 $cmd consume $PORT $n > "$DIR/consume" &
  cpid=$!
  sleep 0.5
  taskset -c 1 $cmd produce $PORT $n $rate > "$DIR/produce"
  wait $cpid
  start=$(awk '/^start/ {print $2}' "$DIR/produce")
  awk -v s="$start" -v n=$n -v name=$name -v rate="$rate" '/^end/ {
    printf "%s %s %.0f %s %s\n", name, (rate == "" ? "max" : rate "/s"), n / ($2 - s), $4, $6 }' "$DIR/consume"
}

echo "contender rate jobs/s p50_ms p99_ms"
for i in $(seq "$ROUNDS"); do
  one corio $N
  one bullmq $N
done
for i in $(seq "$ROUNDS"); do
  one corio $LAT_N $RATE
  one bullmq $LAT_N $RATE
done
