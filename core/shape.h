/* Shapes and dtypes: row-major, up to FG_MAX_DIMS dimensions, int64 sizes whose products are
 * overflow-checked everywhere they are formed. */
#ifndef FG_SHAPE_H
#define FG_SHAPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#define FG_MAX_DIMS 8

typedef enum fg_dtype { FG_F32 = 0, FG_F64 = 1, FG_DTYPE_COUNT } fg_dtype;

typedef struct fg_shape {
  int64_t ndim; /* int64 like the sizes: no padding, so shapes hash and compare bytewise */
  int64_t d[FG_MAX_DIMS];
} fg_shape;

const char *fg_dtype_name(fg_dtype t);
size_t fg_dtype_size(fg_dtype t);

/* Builds a shape from ndim sizes; fails (E_SHAPE) on ndim outside 0..8 or a negative size, and
 * (E_OVERFLOW) when the element count overflows; *out is then not a valid shape. */
fg_status fg_shape_make(fg_shape *out, int ndim, const int64_t *dims, fg_err *e);
/* Scalar (0-d) shape and shapes of 1..4 dims, for terse code; sizes must be valid. */
fg_shape fg_shape0(void);
fg_shape fg_shape1(int64_t a);
fg_shape fg_shape2(int64_t a, int64_t b);
fg_shape fg_shape3(int64_t a, int64_t b, int64_t c);
fg_shape fg_shape4(int64_t a, int64_t b, int64_t c, int64_t d);

/* Number of elements; FG_E_SHAPE for a negative size, FG_E_OVERFLOW when the product does not
 * fit in int64, nor the product of the sizes with zeros counted as 1 (the strides of a shape
 * with no elements), so every valid shape has valid strides (*numel is unchanged on failure). */
fg_status fg_shape_numel(const fg_shape *s, int64_t *numel, fg_err *e);
/* numel of a shape already known to be valid (checked when its node or tensor was made). */
int64_t fg_shape_count(const fg_shape *s);
/* Bytes of numel elements of t, overflow-checked (*bytes is unchanged on failure). */
fg_status fg_shape_bytes(const fg_shape *s, fg_dtype t, size_t *bytes, fg_err *e);

bool fg_shape_equal(const fg_shape *a, const fg_shape *b);
/* NumPy broadcasting of a and b; false when they do not broadcast. */
bool fg_shape_broadcast(const fg_shape *a, const fg_shape *b, fg_shape *out);
/* Row-major contiguous strides, in elements. */
void fg_shape_strides(const fg_shape *s, int64_t *strides);
/* Strides of `in` when read as if broadcast to `out` (0 on broadcast axes); `in` must
 * broadcast to `out`.  Result has out->ndim entries. */
void fg_shape_broadcast_strides(const fg_shape *in, const fg_shape *out, int64_t *strides);
/* "[2, 3, 4]" into buf; returns buf. */
const char *fg_shape_str(const fg_shape *s, char *buf, size_t cap);

#endif
