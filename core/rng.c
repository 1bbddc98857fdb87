#include "core/rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t fg_rng_bits(uint64_t seed, uint64_t counter) {
  return splitmix64(splitmix64(seed) ^ counter);
}

double fg_rng_uniform(uint64_t seed, uint64_t counter) {
  return (double)(fg_rng_bits(seed, counter) >> 11) * 0x1.0p-53;
}

double fg_rng_normal(uint64_t seed, uint64_t counter) {
  double u1 = fg_rng_uniform(seed, 2 * counter), u2 = fg_rng_uniform(seed, 2 * counter + 1);
  /* 1 - u1 lies in (0, 1], so the log is finite */
  return sqrt(-2.0 * log(1.0 - u1)) * cos(6.283185307179586476925 * u2);
}
