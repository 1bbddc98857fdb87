/* Counter-based random numbers: a value is a pure function of (seed, stream offset, index),
 * so results never depend on thread count or evaluation order, and there is no global state. */
#ifndef FG_RNG_H
#define FG_RNG_H

#include <stdint.h>

/* A well-mixed 64-bit hash of (seed, counter) (SplitMix64 finaliser applied twice). */
uint64_t fg_rng_bits(uint64_t seed, uint64_t counter);
/* Uniform in [0, 1) with 53 random bits. */
double fg_rng_uniform(uint64_t seed, uint64_t counter);
/* Standard normal (Box-Muller on two uniforms drawn at 2·counter and 2·counter+1). */
double fg_rng_normal(uint64_t seed, uint64_t counter);

#endif
