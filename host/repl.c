/* The REPL of the corio command: Lua 5.4's rules (expressions print their values, incomplete
 * chunks continue on a ">>" prompt). Each chunk runs as top-level code, so an async call in it
 * drives the loop while background tasks keep running. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core.h"
#include "repl.h"

#define MAXINPUT 4096

static const char *prompt(lua_State *L, int first) {
  const char *p = NULL;
  if (lua_getglobal(L, first ? "_PROMPT" : "_PROMPT2") == LUA_TSTRING) p = lua_tostring(L, -1);
  lua_pop(L, 1);
  return p ? p : first ? "> " : ">> ";
}

/* Read a line into a new string on the stack; 0 at end of input. */
static int read_line(lua_State *L, int first) {
  char buf[MAXINPUT];
  fputs(prompt(L, first), stdout);
  fflush(stdout);
  if (fgets(buf, sizeof buf, stdin) == NULL) return 0;
  size_t len = strlen(buf);
  if (!isatty(0)) fputs(buf, stdout);  /* echo, as lua does with piped input */
  if (len > 0 && buf[len - 1] == '\n') buf[--len] = '\0';
  if (first && buf[0] == '=') lua_pushfstring(L, "return %s", buf + 1);
  else lua_pushlstring(L, buf, len);
  return 1;
}

static int incomplete(lua_State *L, int status) {
  if (status == LUA_ERRSYNTAX) {
    size_t lmsg;
    const char *msg = lua_tolstring(L, -1, &lmsg);
    const char *eof = "<eof>";
    size_t leof = strlen(eof);
    if (lmsg >= leof && strcmp(msg + lmsg - leof, eof) == 0) {
      lua_pop(L, 1);
      return 1;
    }
  }
  return 0;
}

/* Compile the line on top, first as `return line`, then as statements across more lines. */
static int load_chunk(lua_State *L) {
  const char *line = lua_tostring(L, -1);
  const char *ret = lua_pushfstring(L, "return %s", line);
  int status = luaL_loadbuffer(L, ret, strlen(ret), "=stdin");
  if (status == LUA_OK) {
    lua_remove(L, -2);
    lua_remove(L, -2);
    return LUA_OK;
  }
  lua_pop(L, 2);
  for (;;) {
    size_t len;
    const char *code = lua_tolstring(L, -1, &len);
    status = luaL_loadbuffer(L, code, len, "=stdin");
    if (!incomplete(L, status)) break;
    if (!read_line(L, 0)) return -1;
    lua_pushliteral(L, "\n");
    lua_insert(L, -2);
    lua_concat(L, 3);
  }
  lua_remove(L, -2);
  return status;
}

static void print_results(lua_State *L) {
  int n = lua_gettop(L);
  if (n > 0) {
    luaL_checkstack(L, LUA_MINSTACK, "too many results to print");
    lua_getglobal(L, "print");
    lua_insert(L, 1);
    if (lua_pcall(L, n, 0, 0) != LUA_OK) {
      fprintf(stderr, "error calling 'print' (%s)\n", lua_tostring(L, -1));
      lua_pop(L, 1);
    }
  }
}

int corio__repl(lua_State *L) {
  for (;;) {
    lua_settop(L, 0);
    if (!read_line(L, 1)) break;
    int status = load_chunk(L);
    if (status < 0) break;
    if (status == LUA_OK) status = corio__docall(L, 0, LUA_MULTRET);
    if (status == LUA_OK) {
      print_results(L);
    } else {
      fprintf(stderr, "%s\n", lua_tostring(L, -1));
      fflush(stderr);
    }
  }
  lua_settop(L, 0);
  fputs("\n", stdout);
  fflush(stdout);
  return 0;
}
