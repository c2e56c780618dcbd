#!/bin/sh
# bench/alloc.sh [RUNS] [N]: the allocators of a runtime side by side, interleaved (pool,
# system, trim, pool, system, trim, ...: back-to-back runs of one binary flatter it on these
# VMs, see FACTS.md). Each run is bench/spawn_gather.lua N (default 100000: W1, a spawn
# burst); prints each contender's median wall time, CPU time and peak RSS, and the ratio of
# the medians to the pool's.
#   pool:   per-size free lists on huge-page arenas (CORIO_ALLOC=pool)
#   system: plain malloc (CORIO_ALLOC=system)
#   trim:   malloc, trimmed after the heap shrank (CORIO_ALLOC=trim)
runs=${1:-9}
n=${2:-100000}
corio=${CORIO:-build/corio}
out=$(mktemp -d)
for i in $(seq "$runs"); do
  for mode in pool system trim; do
    CORIO_ALLOC=$mode /usr/bin/time -f '%e %U %S %M' -a -o "$out/$mode" \
      "$corio" bench/spawn_gather.lua "$n" >/dev/null
  done
done
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
base=$(awk '{print $1}' "$out/pool" | median)
printf '%-7s %9s %9s %10s %8s\n' alloc "wall s" "cpu s" "RSS MiB" "vs pool"
for mode in pool system trim; do
  wall=$(awk '{print $1}' "$out/$mode" | median)
  cpu=$(awk '{print $2 + $3}' "$out/$mode" | median)
  rss=$(awk '{print $4 / 1024}' "$out/$mode" | median)
  printf '%-7s %9s %9s %10.0f %7.2fx\n' "$mode" "$wall" "$cpu" "$rss" "$(echo "$wall / $base" | bc -l)"
done
rm -rf "$out"
