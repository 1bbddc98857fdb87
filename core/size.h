/* Overflow-checked size arithmetic: the one place where counts, products and byte sizes that may
 * come from untrusted input (file headers, spec text, checkpoint metadata, command lines) are
 * formed and checked against limits, before anything is allocated.  Shapes (fg_shape_numel),
 * growable arrays (fg_vec_reserve), the file loaders and the layers' C x C matrices all go
 * through these.  Sizes are int64_t and never negative. */
#ifndef FG_SIZE_H
#define FG_SIZE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/status.h"

/* a·b and a + b for sizes a, b >= 0 into *out; false (and *out unchanged) when an operand is
 * negative or the result does not fit in int64. */
bool fg_size_mul(int64_t a, int64_t b, int64_t *out);
bool fg_size_add(int64_t a, int64_t b, int64_t *out);
/* The product of n sizes (1 for n = 0) into *out.  Also the product with every 0 counted as 1
 * must fit: a shape with a zero size has no elements, but its strides are the products of the
 * other sizes, which must not overflow either.  false (and *out unchanged) otherwise. */
bool fg_size_product(const int64_t *dims, int n, int64_t *out);
/* FG_OK when v <= cap; else FG_E_LIMIT with "<what> is <v>; flowgrad accepts at most <cap>". */
fg_status fg_size_limit(int64_t v, int64_t cap, const char *what, fg_err *e);
/* A double that must be an integer in [lo, hi] (a count or a seed written as a number): true
 * and *out set when it is; false (and *out unchanged) for NaN, infinities, fractions and values
 * out of range, whose conversion to an integer type would be undefined or wrong. */
bool fg_size_from_double(double v, int64_t lo, int64_t hi, int64_t *out);

#endif
