#!/bin/sh
# Side-by-side: corio.redis vs redis-benchmark, redis-py asyncio and ioredis (auto-pipelining).
# Redis on CPU 0, clients on CPU 1, contenders interleaved, ROUNDS rounds of SECS seconds.
# npm packages go to bench/redis/node_modules (git-ignored). Usage: bench/redis/run.sh [secs] [rounds]
set -e
cd "$(dirname "$0")"
SECS=${1:-10}; ROUNDS=${2:-3}; PORT=${PORT:-6390}
CORIO=${CORIO:-../../build/corio}
DIR=$(mktemp -d)
taskset -c 0 redis-server --port $PORT --save '' --dir "$DIR" --daemonize yes --pidfile "$DIR/pid" --logfile "$DIR/log"
trap 'kill $(cat "$DIR/pid"); rm -rf "$DIR"' EXIT
sleep 0.3
HAVE_NODE=0
if command -v npm >/dev/null; then
  [ -d node_modules/ioredis ] || npm install --silent --prefix . ioredis >/dev/null 2>&1 || true
  [ -d node_modules/ioredis ] && HAVE_NODE=1
fi
for i in $(seq "$ROUNDS"); do
  echo "corio $(taskset -c 1 "$CORIO" cmd.lua $PORT "$SECS")"
  n=$(taskset -c 1 redis-benchmark -p $PORT -c 50 -t set,get -n $((SECS * 45000)) --csv | awk -F'","' 'NR>1 {gsub(/"/,"",$2); s+=$2; k++} END {printf "%.0f", s/k}')
  echo "redis-benchmark $n"
  echo "redis-py $(taskset -c 1 /usr/bin/python3 cmd_redispy.py $PORT "$SECS")"
  [ $HAVE_NODE = 1 ] && echo "ioredis $(taskset -c 1 node cmd_ioredis.js $PORT "$SECS")"
done
