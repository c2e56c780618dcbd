/* The floor for bench/spawn_echo: posix_spawn of /bin/echo x with stdout on a pipe, read to
 * EOF and reaped, 8 in flight, one poll() loop. Prints runs/s.
 * cc -O2 -o /tmp/spawn_floor bench/spawn_floor.c */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int start(pid_t *pid) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) < 0) abort();
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  char *argv[] = {"/bin/echo", "x", NULL};
  if (posix_spawn(pid, "/bin/echo", &fa, NULL, argv, environ) != 0) abort();
  posix_spawn_file_actions_destroy(&fa);
  close(fds[1]);
  return fds[0];
}

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 1000, j = argc > 2 ? atoi(argv[2]) : 8;
  struct pollfd pf[64];
  pid_t pids[64];
  int started = 0, done = 0, live = 0;
  double t0 = now();
  for (; live < j && started < n; live++, started++) pf[live].fd = start(&pids[live]);
  while (done < n) {
    for (int i = 0; i < live; i++) pf[i].events = POLLIN;
    poll(pf, live, -1);
    for (int i = 0; i < live; i++) {
      if (!pf[i].revents) continue;
      char buf[64];
      if (read(pf[i].fd, buf, sizeof buf) > 0) continue;
      close(pf[i].fd);
      waitpid(pids[i], NULL, 0);
      done++;
      if (started < n) {
        pf[i].fd = start(&pids[i]);
        started++;
      } else {
        pf[i] = pf[--live];
        pids[i] = pids[live];
        i--;
      }
    }
  }
  printf("%.0f\n", n / (now() - t0));
  return 0;
}
