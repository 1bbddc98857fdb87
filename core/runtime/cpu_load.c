/* How much of the machine other work took (cpu_load.h): /proc/stat's first line counts every
 * CPU's time by kind since boot, in clock ticks (user nice system idle iowait irq softirq steal
 * ...; guest time is inside user); getrusage counts this process's.  Busy time that is not this
 * process's is someone else's; steal is time the hypervisor gave to other machines, which on
 * a shared host is the usual way a timing is disturbed. */
#include "core/runtime/cpu_load.h"

#include <stdio.h>
#include <sys/resource.h>
#include <unistd.h>

void fg__cpu_sample(fg_cpu_sample *s) {
  *s = (fg_cpu_sample){0};
  FILE *f = fopen("/proc/stat", "r");
  unsigned long long v[8] = {0}; /* user nice system idle iowait irq softirq steal */
  int n = f ? fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                     &v[4], &v[5], &v[6], &v[7])
            : 0;
  if (f) fclose(f);
  long hz = sysconf(_SC_CLK_TCK);
  struct rusage u;
  if (n < 4 || hz <= 0 || getrusage(RUSAGE_SELF, &u) != 0) return;
  double busy = (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]);
  s->busy = busy / (double)hz;
  s->total = (busy + (double)(v[3] + v[4])) / (double)hz;
  s->self = (double)(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
            1e-6 * (double)(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
  s->ok = true;
}

/* The machine's counters move in whole ticks per CPU, so each sample may be short of the truth
 * by up to a tick per CPU: over a tenth of a second that alone could read as a 30 % share.
 * Other work is counted only beyond those two ticks per CPU. */
double fg__cpu_others_share(const fg_cpu_sample *a, const fg_cpu_sample *b) {
  if (!a->ok || !b->ok || b->total <= a->total) return 0;
  long hz = sysconf(_SC_CLK_TCK), cpus = sysconf(_SC_NPROCESSORS_ONLN);
  double slack = 2.0 * (double)(cpus > 0 ? cpus : 1) / (double)(hz > 0 ? hz : 100);
  double others = (b->busy - a->busy) - (b->self - a->self) - slack;
  double share = others / (b->total - a->total);
  return share < 0 ? 0 : share > 1 ? 1 : share;
}
