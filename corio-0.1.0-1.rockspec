-- `luarocks make` in a source tree builds corio.so (require "corio") and the corio command.
-- Needs CMake, a C compiler and the Debian packages of README.md's build command that the
-- build links (liblua5.4-dev, libuv1-dev, lua-cjson-dev, libedit-dev, libhiredis-dev,
-- node-llhttp, pkgconf); CMakeLists.txt's CORIO_ROCK option says what is installed. CI runs
-- it: .ci/rock.
rockspec_format = "3.0"
package = "corio"
version = "0.1.0-1"
source = {
  url = "git+file://.",
}
description = {
  summary = "asyncio for Lua: tasks, timers and cancellation on libuv",
  detailed = [[
corio runs Lua 5.4 coroutines as tasks on a libuv event loop, with asyncio's vocabulary:
spawn, gather, wait_for, timeout, shield, cancellation. Loaded into a stock lua5.4 with
require "corio", top-level async calls drive the loop.
]],
}
dependencies = {
  "lua >= 5.4, < 5.5",
}
external_dependencies = {
  LIBUV = { header = "uv.h" },
}
build = {
  type = "cmake",
  variables = {
    CMAKE_BUILD_TYPE = "Release",
    CMAKE_INSTALL_PREFIX = "$(PREFIX)",
    CMAKE_INSTALL_BINDIR = "bin",
    CORIO_INSTALL_LUA_CMOD = "$(LIBDIR)",
    CORIO_ROCK = "ON",
    CORIO_BUILD_TESTS = "OFF",
  },
}
