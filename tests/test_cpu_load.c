/* Other work's share of the machine (core/runtime/cpu_load.c): processes spinning on every
 * core while this one sleeps show as a large share; this process's own work never counts. */
#include <criterion/criterion.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/runtime/cpu_load.h"

static void sleep_ms(long ms) {
  struct timespec t = {ms / 1000, ms % 1000 * 1000000L};
  nanosleep(&t, NULL);
}

static double spin_seconds(double s) {
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  volatile double x = 0;
  do {
    for (int i = 0; i < 100000; i++) x += 1e-9;
    clock_gettime(CLOCK_MONOTONIC, &b);
  } while ((double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec) < s);
  return x;
}

Test(cpu_load, processes_spinning_on_every_core_are_others_work) {
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  if (cpus < 1) cpus = 1;
  pid_t kids[64];
  int n = cpus < 64 ? (int)cpus : 64;
  fg_cpu_sample a, b;
  fg__cpu_sample(&a);
  cr_assert(a.ok, "/proc/stat is readable");
  for (int i = 0; i < n; i++)
    if ((kids[i] = fork()) == 0) {
      spin_seconds(0.6);
      _exit(0);
    }
  sleep_ms(500);
  fg__cpu_sample(&b);
  for (int i = 0; i < n; i++) waitpid(kids[i], NULL, 0);
  double share = fg__cpu_others_share(&a, &b);
  cr_expect_gt(share, 0.5, "others' share %.2f with %d spinning processes", share, n);
}

/* The arithmetic on two samples: busy time that was this process's is not others', and a
 * count within the counters' tick granularity is none. */
Test(cpu_load, this_processs_own_time_is_not_others) {
  fg_cpu_sample a = {.ok = true, .busy = 100, .total = 200, .self = 5};
  fg_cpu_sample ours = {.ok = true, .busy = 102, .total = 202, .self = 7};
  fg_cpu_sample theirs = {.ok = true, .busy = 102, .total = 202, .self = 5};
  fg_cpu_sample within_a_tick = {.ok = true, .busy = 100.01, .total = 200.02, .self = 5};
  cr_expect_eq(fg__cpu_others_share(&a, &ours), 0);
  cr_expect_gt(fg__cpu_others_share(&a, &theirs), 0.9);
  cr_expect_eq(fg__cpu_others_share(&a, &within_a_tick), 0);
  cr_expect_eq(fg__cpu_others_share(&theirs, &a), 0, "no time passed backwards");
  fg_cpu_sample failed = {.ok = false};
  cr_expect_eq(fg__cpu_others_share(&failed, &theirs), 0, "a failed sample says nothing");
}
