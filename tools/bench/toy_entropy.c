/* toy_entropy: the differential entropy of each 2-D toy distribution at its published (FFJORD)
 * settings, by Monte Carlo with the exact density (frontends/data/toy2d.h): the floor of the
 * test NLL a perfect model reaches.
 *
 *   build/tools/toy_entropy [--samples 200000] [--seed 1] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontends/data/toy2d.h"

int main(int argc, char **argv) {
  int64_t samples = 200000;
  uint64_t seed = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--samples")) samples = atoll(argv[i + 1]);
    else if (!strcmp(argv[i], "--seed")) seed = strtoull(argv[i + 1], NULL, 10);
    else {
      fprintf(stderr, "usage: toy_entropy [--samples N] [--seed K]\n");
      return 2;
    }
  }
  const char *names[4] = {"moons", "8gaussians", "checkerboard", "rings"};
  printf("%-13s %8s %8s %9s %10s\n", "set", "noise", "scale", "entropy", "std error");
  for (int i = 0; i < 4; i++) {
    double noise, scale, h, se;
    fg_err e;
    if (fg_toy2d_defaults(names[i], &noise, &scale, &e) != FG_OK ||
        fg_toy2d_entropy(names[i], noise, scale, samples, seed, &h, &se, &e) != FG_OK) {
      fprintf(stderr, "%s: %s\n", names[i], e.msg);
      return 1;
    }
    printf("%-13s %8.5f %8.5f %9.4f %10.4f\n", names[i], noise, scale, h, se);
  }
  return 0;
}
