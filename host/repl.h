/* The interactive loop of the corio command (shared between main.c and repl.c). */
#ifndef CORIO_REPL_H
#define CORIO_REPL_H

#include <lua.h>

/* Run a chunk (function + narg arguments on the stack) under the message handler, with
 * Ctrl-C interrupting it. Returns a Lua status; on error the message is on the stack. */
int corio__docall(lua_State *L, int narg, int nres);

/* Read-eval-print until end of input. Returns 0. */
int corio__repl(lua_State *L);

#endif
