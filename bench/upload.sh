#!/bin/sh
# Upload benchmark: a big request body streamed to a file on disk, corio.web's request:save
# (bench/upload_server.lua) against nginx with client_body_in_file_only on (the body goes to
# a temporary file that is kept; a proxy_pass to a second server block answers once the body
# is read, as nginx upload setups do). The client is curl -T (it streams the file; a PUT with
# Expect: 100-continue) from a file made once in $TMP. Runs are interleaved (corio, nginx,
# corio, ...); medians are reported: throughput, the server's peak RSS (VmHWM) and its CPU
# time. Each upload is checked by size, and the first one of each server by SHA-256.
# Installs nothing: needs nginx and curl.
# Usage: bench/upload.sh   env: RUNS=5 SIZE_MIB=1024 CORIO=build/corio PORT=18641
#        SERVER_CPU=0 CLIENT_CPU=1 BUFFER=256k (nginx's client_body_buffer_size; corio's
#        max_body_buffer is 256 KiB by default)
set -eu
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
SIZE_MIB=${SIZE_MIB:-1024}
CORIO=${CORIO:-build/corio}
PORT=${PORT:-18641}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
BUFFER=${BUFFER:-256k}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$TMP/corio" "$TMP/nginx"

echo "making a ${SIZE_MIB} MiB file of random bytes in $TMP (once)"
head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom >"$TMP/payload"
WANT=$(sha256sum "$TMP/payload" | cut -d' ' -f1)
BYTES=$((SIZE_MIB * 1024 * 1024))

cat >"$TMP/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
master_process off;
error_log $TMP/nginx-error.log;
pid $TMP/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  proxy_temp_path $TMP; fastcgi_temp_path $TMP; uwsgi_temp_path $TMP; scgi_temp_path $TMP;
  server {
    listen 127.0.0.1:$PORT;
    client_max_body_size 0;
    client_body_buffer_size $BUFFER;
    client_body_temp_path $TMP/nginx;
    client_body_in_file_only on;
    location /up {
      proxy_pass http://127.0.0.1:$((PORT + 1))/done;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-File \$request_body_file;
    }
    location / { return 200 "up\n"; }
  }
  server {
    listen 127.0.0.1:$((PORT + 1));
    location /done { return 200 "$BYTES"; }
  }
}
NGINX

start_server() { # name
  case $1 in
    corio) taskset -c "$SERVER_CPU" "$CORIO" bench/upload_server.lua "$TMP/corio" "$PORT" \
             >"$TMP/corio.log" 2>&1 & SPID=$! ;;
    nginx) taskset -c "$SERVER_CPU" nginx -c "$TMP/nginx.conf" -p "$TMP" >/dev/null 2>&1 & SPID=$! ;;
  esac
  i=0
  until curl -s -o /dev/null -X PUT --data-binary x "http://127.0.0.1:$PORT/up"; do
    i=$((i + 1)); [ $i -gt 100 ] && { echo "$1 did not start" >&2; exit 1; }
    sleep 0.1
  done
  rm -f "$TMP/$1"/*
}

stop_server() {
  kill -TERM "$SPID" 2>/dev/null || true
  wait "$SPID" 2>/dev/null || true
}

peak_rss() { awk '/VmHWM/ {print $2}' /proc/$SPID/status; }
cpu_ticks() { awk '{print $14 + $15}' /proc/$SPID/stat; }

# run name check -> prints "MiB/s rss_kib cpu_s"
run_once() {
  start_server "$1"
  c0=$(cpu_ticks)
  out=$(taskset -c "$CLIENT_CPU" curl -s -T "$TMP/payload" -w ' %{http_code} %{time_total}' \
          "http://127.0.0.1:$PORT/up")
  c1=$(cpu_ticks)
  rss=$(peak_rss)
  stop_server
  code=$(echo "$out" | awk '{print $2}')
  secs=$(echo "$out" | awk '{print $3}')
  [ "$code" = 200 ] || { echo "$1: HTTP $code ($out)" >&2; exit 1; }
  f=$(ls -S "$TMP/$1" | head -1)
  got=$(stat -c %s "$TMP/$1/$f")
  [ "$got" = "$BYTES" ] || { echo "$1: saved $got bytes, not $BYTES" >&2; exit 1; }
  if [ "$2" = check ]; then
    sum=$(sha256sum "$TMP/$1/$f" | cut -d' ' -f1)
    [ "$sum" = "$WANT" ] || { echo "$1: the saved file differs" >&2; exit 1; }
  fi
  rm -f "$TMP/$1"/*
  echo "$(echo "$SIZE_MIB / $secs" | bc -l) $rss $(echo "($c1 - $c0) / $(getconf CLK_TCK)" | bc -l)"
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "upload of ${SIZE_MIB} MiB with curl -T, server on CPU $SERVER_CPU, curl on CPU $CLIENT_CPU"
echo "($(nproc) CPUs shared with other work: compare within one run), median of $RUNS runs"
: >"$TMP/corio.res"
: >"$TMP/nginx.res"
r=0
while [ $r -lt "$RUNS" ]; do
  check=no; [ $r = 0 ] && check=check
  for s in corio nginx; do run_once $s $check >>"$TMP/$s.res"; done
  r=$((r + 1))
done
printf "%-6s %10s %10s %10s\n" server "MiB/s" "RSS MiB" "CPU s"
for s in corio nginx; do
  printf "%-6s %10.0f %10.1f %10.2f   runs: %s\n" "$s" \
    "$(awk '{print $1}' "$TMP/$s.res" | median)" \
    "$(echo "$(awk '{print $2}' "$TMP/$s.res" | median) / 1024" | bc -l)" \
    "$(awk '{print $3}' "$TMP/$s.res" | median)" \
    "$(awk '{printf "%.0f ", $1}' "$TMP/$s.res")"
done
printf "corio / nginx %.2fx\n" "$(echo "$(awk '{print $1}' "$TMP/corio.res" | median) / $(awk '{print $1}' "$TMP/nginx.res" | median)" | bc -l)"
