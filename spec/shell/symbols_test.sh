#!/bin/sh
# The shared library exports the corio_* API and nothing else; corio.so only luaopen_corio.
# Usage: symbols_test.sh libcorio.so corio.so
set -eu
lib=$1 mod=$2
bad=$(nm -D --defined-only "$lib" | awk '{print $3}' | grep -v '^corio_[a-z]' || true)
if [ -n "$bad" ]; then echo "libcorio.so exports more than corio_*:"; echo "$bad"; exit 1; fi
nm -D --defined-only "$lib" | grep -q ' corio_open_ex$' || { echo "corio_open_ex missing"; exit 1; }
internal=$(nm -D --defined-only "$lib" | awk '{print $3}' \
  | grep -E '^(corio__|strbuf_|fpconv_|llhttp)' || true)
if [ -n "$internal" ]; then echo "internal symbols leak: $internal"; exit 1; fi
modsyms=$(nm -D --defined-only "$mod" | awk '{print $3}')
if [ "$modsyms" != "luaopen_corio" ]; then echo "corio.so exports: $modsyms"; exit 1; fi
if nm -D "$mod" | grep -q ' [TD] lua_'; then echo "corio.so carries its own Lua"; exit 1; fi
echo "symbols: ok ($(nm -D --defined-only "$lib" | wc -l) corio_* functions exported)"
