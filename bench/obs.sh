#!/bin/sh
# What observability costs (issue 14): a corio built without it against this tree's, with the
# stall watchdog off and on, on the core workloads and the web hello benchmark. Runs are
# interleaved (before, after, after+slow, before, ...): back-to-back runs of one binary
# flatter it on these VMs (FACTS.md). Prints the medians as a Markdown table, then every
# sample.
#   W1: bench/spawn_gather.lua      100k tasks spawn + sleep(0) + gather, CPU s
#   W2: bench/sleep_many.lua        100k tasks sleeping 1 s: wall s, peak RSS, bytes/task
#   W3: bench/queue.lua             Queue(1000) 1M items, Bus 10 x 200k, 2M publishes, CPU s
#   hello: bench/web_hello_fast.lua, wrk -t1 -c100 -d${HELLO_SECS}s: req/s, server CPU us/req
#   ir: W1, W2 (10k tasks) and W3 run once each under callgrind: instructions executed, which
#       no other load on the machine changes (the VMs have no hardware counters for perf)
# "after+slow" runs with CORIO_DEBUG=slow=0.1 (the watchdog thread on, nothing reported).
# Usage: bench/obs.sh BEFORE [AFTER]   BEFORE, AFTER: corio binaries (AFTER: build/corio)
#   env: RUNS=9 HELLO_SECS=5 SERVER_CPU=0 WRK_CPU=1 PORT=18632 WHAT="w1 w2 w3 hello"
# To build BEFORE: git worktree add /tmp/pre-obs 6e9036a && cmake -S /tmp/pre-obs -B
# /tmp/pre-obs/build -DCMAKE_BUILD_TYPE=RelWithDebInfo && cmake --build /tmp/pre-obs/build
# --target corio (6e9036a: main just before observability landed).
set -eu
cd "$(dirname "$0")/.."
BEFORE=${1:?usage: bench/obs.sh BEFORE [AFTER]}
AFTER=${2:-build/corio}
RUNS=${RUNS:-9}
HELLO_SECS=${HELLO_SECS:-5}
SERVER_CPU=${SERVER_CPU:-0}
WRK_CPU=${WRK_CPU:-1}
PORT=${PORT:-18632}
WHAT=${WHAT:-w1 w2 w3 hello}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
ulimit -n "$(ulimit -Hn)"

# contender name -> runs the command that follows with its binary and environment
run_as() {
  c=$1; shift
  case $c in
    before) "$BEFORE" "$@" ;;
    after) "$AFTER" "$@" ;;
    slow) CORIO_DEBUG=slow=0.1 "$AFTER" "$@" ;;
  esac
}

w1() { run_as "$1" bench/spawn_gather.lua | awk '{print $(NF-1)}' >>"$TMP/$1.w1"; }

# the number before `word` in sleep_many.lua's line ("... 1.234 s wall, peak RSS 150.0 MiB,
# 1573 bytes/task"), or after it (after = 1)
field() { echo "$out" | awk -v w="$1" -v after="${2:-0}" '{
  for (i = 1; i <= NF; i++) if ($i ~ "^" w) { print after ? $(i + 1) : $(i - 1); exit } }'; }

w2() {
  out=$(run_as "$1" bench/sleep_many.lua | sed 's/ s wall/ s-wall/')
  field s-wall >>"$TMP/$1.w2wall"
  field RSS 1 >>"$TMP/$1.w2rss"
  field bytes >>"$TMP/$1.w2bytes"
}

w3() {
  out=$(run_as "$1" bench/queue.lua)
  echo "$out" | awk '$1 == "queue" {print $3}' >>"$TMP/$1.w3queue"
  echo "$out" | awk '$1 == "bus" {print $3}' >>"$TMP/$1.w3bus"
  echo "$out" | awk '$1 == "nobody" {print $3}' >>"$TMP/$1.w3nobody"
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }

hello() {
  case $1 in
    before) taskset -c "$SERVER_CPU" "$BEFORE" bench/web_hello_fast.lua "$PORT" >/dev/null 2>&1 & ;;
    after) taskset -c "$SERVER_CPU" "$AFTER" bench/web_hello_fast.lua "$PORT" >/dev/null 2>&1 & ;;
    slow) CORIO_DEBUG=slow=0.1 taskset -c "$SERVER_CPU" "$AFTER" bench/web_hello_fast.lua \
            "$PORT" >/dev/null 2>&1 & ;;
  esac
  spid=$!
  i=0
  until curl -s -o /dev/null "http://127.0.0.1:$PORT/"; do
    i=$((i + 1)); [ $i -gt 100 ] && { echo "$1 did not start" >&2; exit 1; }
    sleep 0.1
  done
  c0=$(cpu_ticks $spid)
  out=$(taskset -c "$WRK_CPU" wrk -t1 -c100 -d"${HELLO_SECS}s" "http://127.0.0.1:$PORT/")
  c1=$(cpu_ticks $spid)
  kill -TERM $spid 2>/dev/null || true
  wait $spid 2>/dev/null || true
  echo "$out" | awk '/Requests\/sec/ {print $2}' >>"$TMP/$1.rps"
  nreq=$(echo "$out" | awk '/requests in/ {print $1}')
  awk -v c="$((c1 - c0))" -v hz="$(getconf CLK_TCK)" -v n="$nreq" \
    'BEGIN {printf "%.2f\n", c * 1e6 / hz / n}' >>"$TMP/$1.cpu"
}

# instructions executed (callgrind's Ir, threads included) by contender $1 running "$@"
irs() {
  c=$1; shift
  case $c in
    before) b=$BEFORE; e= ;; after) b=$AFTER; e= ;; slow) b=$AFTER; e=slow=0.1 ;;
  esac
  CORIO_DEBUG=$e valgrind --tool=callgrind --callgrind-out-file=/dev/null "$b" "$@" 2>&1 \
    >/dev/null | awk '/Collected :/ {print $NF}'
}

ir() {
  irs "$1" bench/spawn_gather.lua >>"$TMP/$1.irw1"
  irs "$1" bench/sleep_many.lua 10000 >>"$TMP/$1.irw2"
  irs "$1" bench/queue.lua >>"$TMP/$1.irw3"
}

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
med() { if [ -s "$TMP/$1.$2" ]; then median <"$TMP/$1.$2"; else echo nan; fi; }
ratio() {
  awk -v a="$1" -v b="$2" 'BEGIN {
    if (b + 0 == 0) print "-"; else printf "%+.1f%%", (a / b - 1) * 100 }'
}

echo "observability cost: $RUNS interleaved runs (before, after, after+slow), medians;"
echo "before = $BEFORE, after = $AFTER; $(nproc) CPUs shared with other work"
r=0
while [ $r -lt "$RUNS" ]; do
  for w in $WHAT; do
    for c in before after slow; do $w $c; done
  done
  r=$((r + 1))
  echo "  run $r done" >&2
done

row() { # label file unit
  b=$(med before "$2"); a=$(med after "$2"); s=$(med slow "$2")
  printf '| %s | %s | %s (%s) | %s (%s) |\n' "$1" "$b" "$a" "$(ratio "$a" "$b")" \
    "$s" "$(ratio "$s" "$b")"
}
echo
echo "| workload | before | after, slow off | after, slow = 0.1 |"
echo "| --- | ---: | ---: | ---: |"
for w in $WHAT; do
  case $w in
    w1) row "W1 spawn+sleep(0)+gather 100k, CPU s" w1 ;;
    w2) row "W2 100k tasks sleeping 1 s, wall s" w2wall
        row "W2 peak RSS, MiB" w2rss
        row "W2 bytes/task (peak RSS / 100k)" w2bytes ;;
    w3) row "W3 Queue(1000) 1M items, CPU s" w3queue
        row "W3 Bus 10 subscribers x 200k, CPU s" w3bus
        row "W3 2M publishes to nobody, CPU s" w3nobody ;;
    hello) row "hello, req/s" rps
           row "hello, server CPU us/req" cpu ;;
    ir) row "W1 instructions (callgrind)" irw1
        row "W2, 10k tasks, instructions" irw2
        row "W3 instructions" irw3 ;;
  esac
done
if command -v gdb >/dev/null 2>&1; then
  sz() { gdb -batch -ex "p sizeof(struct $2)" "$1" 2>/dev/null | awk '{print $3}'; }
  echo
  echo "task record: $(sz "$BEFORE" corio_task) bytes before, $(sz "$AFTER" corio_task) after;" \
       "runtime record: $(sz "$BEFORE" corio_runtime) before, $(sz "$AFTER" corio_runtime) after"
fi
echo
echo "samples:"
for f in "$TMP"/*.*; do
  printf '  %-16s %s\n' "$(basename "$f")" "$(tr '\n' ' ' <"$f")"
done
