/* corio._signal, as seen from C: signal names, and whether a script took over SIGINT/SIGTERM
 * (the host's Ctrl-C handling asks before doing its own thing) or SIGUSR1 (the command's task
 * dump stays quiet then). */
#ifndef CORIO_SIGNAL_H
#define CORIO_SIGNAL_H

/* The number of the signal called `name` ("HUP" or "SIGHUP"), or 0 if there is none. */
int corio__signum(const char *name);
/* The short name ("HUP") of signal `num`, or NULL. */
const char *corio__signame(int num);
/* How many open signal watches of this process include `num` (counted for SIGINT, SIGTERM
 * and SIGUSR1 only; 0 for any other signal). */
int corio__signal_watchers(int num);

#endif
