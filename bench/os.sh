#!/bin/sh
# corio.process and corio.fs against asyncio and Node, interleaved (A B C A B C ...), medians.
#   sh bench/os.sh [rounds=7]        (from the repository root, after building build/corio)
set -e
R=${1:-7}
CORIO=${CORIO:-build/corio}
PY=${PY:-/usr/bin/python3}
cc -O2 -o /tmp/corio_spawn_floor bench/spawn_floor.c
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
$PY -c "
import os
b = os.urandom(4096)
for i in range(1, 10001):
    open('$DIR/%d' % i, 'wb').write(b)"
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
: >"$DIR.sp.corio"; : >"$DIR.sp.py"; : >"$DIR.sp.node"; : >"$DIR.sp.c"
: >"$DIR.rf.corio"; : >"$DIR.rf.corio16"; : >"$DIR.rf.py"; : >"$DIR.rf.node"
for i in $(seq "$R"); do
  $CORIO bench/spawn_echo.lua >>"$DIR.sp.corio"
  $PY bench/spawn_echo.py >>"$DIR.sp.py"
  node bench/spawn_echo.js >>"$DIR.sp.node"
  /tmp/corio_spawn_floor >>"$DIR.sp.c"
  $CORIO bench/read_files.lua "$DIR" >>"$DIR.rf.corio"
  UV_THREADPOOL_SIZE=16 $CORIO bench/read_files.lua "$DIR" >>"$DIR.rf.corio16"
  $PY bench/read_files.py "$DIR" >>"$DIR.rf.py"
  node bench/read_files.js "$DIR" >>"$DIR.rf.node"
done
sp_corio=$(median <"$DIR.sp.corio"); sp_py=$(median <"$DIR.sp.py")
sp_node=$(median <"$DIR.sp.node"); sp_c=$(median <"$DIR.sp.c")
rf_corio=$(median <"$DIR.rf.corio"); rf_corio16=$(median <"$DIR.rf.corio16")
rf_py=$(median <"$DIR.rf.py"); rf_node=$(median <"$DIR.rf.node")
echo "subprocess: 1000 x /bin/echo x, stdout captured, 8 at a time; runs/s, median of $R"
echo "  corio $sp_corio | asyncio $sp_py | node execFile $sp_node | C posix_spawn floor $sp_c"
awk -v a="$sp_corio" -v p="$sp_py" -v n="$sp_node" -v c="$sp_c" 'BEGIN {
  printf "  corio/asyncio %.2fx (target 1.5x)  corio/node %.2fx (target 2x)  corio/floor %.2f\n", a/p, a/n, a/c }'
echo "files: read 10000 x 4 KiB, 64 at a time; files/s, median of $R"
echo "  corio $rf_corio | corio UV_THREADPOOL_SIZE=16 $rf_corio16 | asyncio to_thread $rf_py | node readFile $rf_node"
awk -v a="$rf_corio" -v p="$rf_py" -v n="$rf_node" 'BEGIN {
  printf "  corio/node %.2fx (target 1.0x)  corio/asyncio %.2fx (target 2x)\n", a/n, a/p }'
rm -f "$DIR".sp.* "$DIR".rf.*
