/* Test helper: moves every parameter of a flow off its initial value, so that zero-initialised
 * (identity) layers are exercised by gradient and round-trip comparisons. */
#ifndef FG_TESTS_PERTURB_H
#define FG_TESTS_PERTURB_H

#include "core/rng.h"
#include "flows/flow.h"

static inline void perturb(fg_flow *f, double std, uint64_t seed) {
  fg_params *ps = fg_flow_params(f);
  for (int i = 0; i < fg_params_count(ps); i++) {
    fg_tensor *p = fg_params_tensor(ps, i);
    for (int64_t j = 0; j < fg_tensor_numel(p); j++)
      fg_tensor_set(p, j, fg_tensor_get(p, j) + std * fg_rng_normal(seed + (uint64_t)i, (uint64_t)j));
  }
}

#endif
