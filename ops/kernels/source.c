/* The source kernels (ops/source.c defines the ops): a constant fill and counter-based random
 * draws, so element i's value depends only on (seed, run, i), never on the split. */
#include "core/rng.h"
#include "ops/kernels/kernels.h"

/* One body for both dtypes: T is the element type, VALUE(i) the value of element i. */
#define SOURCE_KERNEL(name, T, sfx, VALUE)                                            \
  fg_status fg_kernel_##name##_##sfx(const fg_kargs *k) {                             \
    const fg_source_attr *at = k->attr;                                               \
    int64_t b, e;                                                                     \
    fg_split_range(fg_shape_count(&k->out_shape), k->ith, k->nth, &b, &e);            \
    T *out = k->out;                                                                  \
    for (int64_t i = b; i < e; i++) out[i] = (T)(VALUE);                              \
    return FG_OK;                                                                     \
  }
#define SOURCE_KERNELS(name, VALUE) \
  SOURCE_KERNEL(name, float, f32, VALUE) SOURCE_KERNEL(name, double, f64, VALUE)

/* The per-run offset moves the counter by whole strides of 2^40 elements, so runs never
 * overlap for any tensor that fits in memory. */
#define RNG_COUNTER(i) ((k->rng_offset << 40) + (uint64_t)(i))

SOURCE_KERNELS(fill, at->a)
SOURCE_KERNELS(random_uniform,
               at->a + (at->b - at->a) * fg_rng_uniform(at->seed, RNG_COUNTER(i)))
SOURCE_KERNELS(random_normal, at->a + at->b * fg_rng_normal(at->seed, RNG_COUNTER(i)))
