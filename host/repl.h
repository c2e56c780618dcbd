/* The interactive loop of the corio command (shared between main.c and repl.c). */
#ifndef CORIO_REPL_H
#define CORIO_REPL_H

#include <lua.h>

/* Run a chunk (function + narg arguments on the stack) under the message handler, with
 * Ctrl-C interrupting it. Returns a Lua status; on error the message is on the stack.
 * (main.c's, for scripts and -e; the REPL runs its chunks with its own interrupt handling.) */
int corio__docall(lua_State *L, int narg, int nres);

/* Read-eval-print until end of input, as lua's REPL does, with the loop running meanwhile.
 * On a terminal: libedit line editing, history in $CORIO_HISTORY (default ~/.corio_history,
 * empty to keep none; at most 1000 entries), tab completion, Ctrl-C interrupting the running
 * chunk or clearing the line. Otherwise it prompts and echoes each line (lua -i with piped
 * input), the loop running while a pipe has no line yet. The globals `corio` and `tasks` are set when absent; errors of background tasks are
 * reported as they happen. At the end of input the remaining tasks are cancelled and their
 * cleanup runs before it returns 0; os.exit(code) ends the same way, then exits the process.
 * stdin's file status flags and terminal settings are left as they were found. */
int corio__repl(lua_State *L);

#endif
