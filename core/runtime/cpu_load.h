/* Internal to core/runtime/: how much of the machine's CPU time other work took over an
 * interval, so that a choice timed while something else held the cores can be told from one
 * timed on a quiet machine (cpu_load.c). */
#ifndef FG_CPU_LOAD_H
#define FG_CPU_LOAD_H

#include <stdbool.h>

/* The machine's and this process's CPU time at one moment. */
typedef struct fg_cpu_sample {
  bool ok;             /* false where /proc/stat could not be read */
  double busy, total;  /* all CPUs, seconds since boot: busy (stolen by a hypervisor included) */
  double self;         /* this process, all its threads, seconds */
} fg_cpu_sample;

void fg__cpu_sample(fg_cpu_sample *s);
/* The share of the machine's CPU time between a and b that went to other processes or to the
 * hypervisor (0 to 1); 0 when either sample failed or no time passed. */
double fg__cpu_others_share(const fg_cpu_sample *a, const fg_cpu_sample *b);

#endif
