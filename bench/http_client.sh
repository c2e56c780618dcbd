#!/bin/sh
# HTTP client benchmark: N GETs (default 10000), at most C (default 100) in flight, bodies
# read, against nginx serving a small fixed response pinned to core 0; the clients run on
# core 1: corio.http, curl --parallel over a config file of N urls, aiohttp (Debian's python3)
# with a semaphore. Reports the median req/s of RUNS runs (default 5), peak RSS and the
# connections nginx saw (distinct $connection serials in its access log), and the client's
# CPU time (user + sys: steadier than req/s when other jobs share the cores).
# Usage: bench/http_client.sh [N] [C] [RUNS]   (from the source tree, after building)
set -eu
N=${1:-10000}
C=${2:-100}
RUNS=${3:-5}
CORIO=${CORIO:-build/corio}
PY=/usr/bin/python3
DIR=$(mktemp -d)
trap 'kill $(cat "$DIR/nginx.pid" 2>/dev/null) 2>/dev/null; rm -rf "$DIR"' EXIT

PORT=$($PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])')
URL="http://127.0.0.1:$PORT/"
cat > "$DIR/nginx.conf" <<CONF
worker_processes 1;
pid $DIR/nginx.pid;
error_log $DIR/error.log;
events { worker_connections 4096; }
http {
  log_format conn '\$connection';
  access_log $DIR/access.log conn buffer=64k flush=100ms;
  client_body_temp_path $DIR; proxy_temp_path $DIR; fastcgi_temp_path $DIR;
  uwsgi_temp_path $DIR; scgi_temp_path $DIR;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$PORT;
    location / { default_type text/plain; return 200 "hello, world\n"; }
  }
}
CONF
taskset -c 0 nginx -c "$DIR/nginx.conf" -g 'daemon off;' &
for _ in 1 2 3 4 5 6 7 8 9 10; do
  curl -s -o /dev/null "$URL" && break
  sleep 0.2
done

i=0
: > "$DIR/curl.conf"
while [ $i -lt "$N" ]; do
  printf 'url = "%s"\noutput = "/dev/null"\n' "$URL" >> "$DIR/curl.conf"
  i=$((i + 1))
done

# run NAME CMD...: one timed run; appends "reqs_per_s rss_kib connections cpu_s" to $DIR/NAME
run() {
  name=$1; shift
  sleep 0.2
  before=$(wc -l < "$DIR/access.log" 2>/dev/null || echo 0)
  t0=$(date +%s%N)
  /usr/bin/time -f '%M %U %S' -o "$DIR/rss" taskset -c 1 "$@" > /dev/null
  t1=$(date +%s%N)
  sleep 0.3   # let nginx flush its log
  conns=$(tail -n +$((before + 1)) "$DIR/access.log" | sort -u | wc -l)
  reqs=$(tail -n +$((before + 1)) "$DIR/access.log" | wc -l)
  rps=$(awk -v n="$N" -v ns=$((t1 - t0)) 'BEGIN { printf "%.0f", n / (ns / 1e9) }')
  [ "$reqs" -eq "$N" ] || echo "warning: $name: nginx saw $reqs requests, not $N" >&2
  set -- $(cat "$DIR/rss")
  echo "$rps $1 $conns $(awk -v u="$2" -v s="$3" 'BEGIN { print u + s }')" >> "$DIR/$name"
}

r=0
while [ $r -lt "$RUNS" ]; do
  run corio "$CORIO" bench/http_client.lua "$URL" "$N" "$C"
  run curl curl -s --no-progress-meter --parallel --parallel-max "$C" --config "$DIR/curl.conf"
  run aiohttp $PY bench/http_client_aiohttp.py "$URL" "$N" "$C"
  r=$((r + 1))
done

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
echo "HTTP client: $N GETs, $C in flight, $RUNS runs, nginx on core 0, clients on core 1"
printf '%-8s %10s %12s %12s %8s   %s\n' client "req/s" "peak RSS MiB" connections "CPU s" \
  "all runs (req/s)"
for name in corio curl aiohttp; do
  rps=$(cut -d' ' -f1 "$DIR/$name" | median)
  rss=$(cut -d' ' -f2 "$DIR/$name" | median)
  conns=$(cut -d' ' -f3 "$DIR/$name" | median)
  cpu=$(cut -d' ' -f4 "$DIR/$name" | median)
  printf '%-8s %10s %12.1f %12s %8s   %s\n' $name "$rps" "$(echo "$rss" | awk '{print $1/1024}')" \
    "$conns" "$cpu" \
    "$(cut -d' ' -f1 "$DIR/$name" | tr '\n' ' ')"
  eval "RPS_$name=$rps"
done
awk -v a="$RPS_corio" -v b="$RPS_curl" -v c="$RPS_aiohttp" \
  'BEGIN { printf "corio/curl = %.2f   corio/aiohttp = %.2f\n", a / b, a / c }'
echo "(2 shared cores: other jobs on this machine make these numbers noisy)"
