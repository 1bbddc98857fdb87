/* Tensors: a dtype, a shape, strides and an offset viewing a ref-counted buffer.  Views share
 * the buffer; every fg_tensor_* that returns a new tensor hands the caller one reference to
 * free with fg_tensor_free.
 *
 * Ownership: the constructors put the new tensor in *out and only read src (a view retains
 * src's buffer, never src itself, so src may be freed first).  On failure *out is NULL and
 * nothing was allocated. */
#ifndef FG_TENSOR_H
#define FG_TENSOR_H

#include <stdbool.h>
#include <stdint.h>

#include "core/buffer.h"
#include "core/shape.h"

typedef struct fg_tensor {
  fg_buffer *buf;
  fg_dtype dtype;
  fg_shape shape;
  int64_t strides[FG_MAX_DIMS]; /* in elements */
  int64_t offset;               /* in elements */
} fg_tensor;

/* A new zero-filled contiguous tensor. */
fg_status fg_tensor_new(fg_tensor **out, fg_dtype t, const fg_shape *shape, fg_err *e);
/* A new contiguous tensor holding a copy of `numel` values at `data` (of dtype t). */
fg_status fg_tensor_from_data(fg_tensor **out, fg_dtype t, const fg_shape *shape,
                              const void *data, fg_err *e);
/* A view over the same buffer (retains it). */
fg_status fg_tensor_view(fg_tensor **out, const fg_tensor *src, fg_err *e);
/* A view of rows [start, stop) along axis 0 (e.g. a minibatch). */
fg_status fg_tensor_slice0(fg_tensor **out, const fg_tensor *src, int64_t start, int64_t stop,
                           fg_err *e);
/* A view with a new shape; src must be contiguous and the element counts equal. */
fg_status fg_tensor_reshape(fg_tensor **out, const fg_tensor *src, const fg_shape *shape,
                            fg_err *e);
/* A view with axes permuted: result axis i is src axis perm[i]. */
fg_status fg_tensor_permute(fg_tensor **out, const fg_tensor *src, const int *perm, fg_err *e);
/* A new contiguous tensor with the values of src converted to dtype t (a copy even if equal). */
fg_status fg_tensor_copy(fg_tensor **out, const fg_tensor *src, fg_dtype t, fg_err *e);
void fg_tensor_free(fg_tensor *t);

bool fg_tensor_is_contiguous(const fg_tensor *t);
int64_t fg_tensor_numel(const fg_tensor *t);
/* Pointer to the first element (buffer + offset); valid for contiguous reads when
 * fg_tensor_is_contiguous. */
void *fg_tensor_data(const fg_tensor *t);
/* Element at a flat row-major index of the logical shape (follows strides), as double. */
double fg_tensor_get(const fg_tensor *t, int64_t flat_index);
void fg_tensor_set(fg_tensor *t, int64_t flat_index, double v);
/* Whether every element is finite (no NaN, no infinity). */
bool fg_tensor_all_finite(const fg_tensor *t);
/* Fills every element with v. */
void fg_tensor_fill(fg_tensor *t, double v);

#endif
