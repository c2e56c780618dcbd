#!/bin/sh
# Install corio into a temporary prefix, then build examples/embed against it twice -- with
# pkg-config (its Makefile) and with find_package(corio) (its CMakeLists.txt) -- and run it.
# Usage: install_test.sh SOURCE_DIR BUILD_DIR
set -eu
src=$1 build=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
cmake --install "$build" --prefix "$prefix" >/dev/null
libdir=$prefix/lib
[ -d "$libdir/pkgconfig" ] || libdir=$(dirname "$(find "$prefix" -name corio.pc | head -1)")/..
for f in "$prefix/bin/corio" "$prefix/include/corio.h" "$libdir/libcorio.a" \
         "$libdir/pkgconfig/corio.pc" "$libdir/cmake/corio/corioConfig.cmake" \
         "$prefix/share/man/man1/corio.1"; do
  [ -e "$f" ] || { echo "not installed: $f"; exit 1; }
done
ls "$libdir"/libcorio.so.0* >/dev/null
man -l "$prefix/share/man/man1/corio.1" >/dev/null 2>&1 || groff -man -Tutf8 \
  "$prefix/share/man/man1/corio.1" >/dev/null 2>&1 || true
"$prefix/bin/corio" -e 'local c = require "corio" c.sleep(0.01) print("installed corio: ok")'

export PKG_CONFIG_PATH=$libdir/pkgconfig
export LD_LIBRARY_PATH=$libdir
pkg-config --cflags --libs corio
cp -r "$src/examples/embed" "$tmp/embed"
make -s -C "$tmp/embed" >/dev/null
(cd "$tmp/embed" && ./embed) > "$tmp/out.txt"
cat "$tmp/out.txt"
grep -q '^\[lua\] primes below 100000:  9592$' "$tmp/out.txt"
grep -q '^\[lua\] gave up on a long computation:	true$' "$tmp/out.txt"
grep -q '^main() returned: 27608$' "$tmp/out.txt"
grep -q '^loop closed cleanly: yes$' "$tmp/out.txt"

cmake -S "$tmp/embed" -B "$tmp/embed-cmake" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$tmp/embed-cmake" >/dev/null
(cd "$tmp/embed" && "$tmp/embed-cmake/embed") | grep -q '^main() returned: 27608$'
echo "install: ok"
