/* Ref-counted, 64-byte aligned memory shared by tensors, programs and parameter sets. */
#ifndef FG_BUFFER_H
#define FG_BUFFER_H

#include <stddef.h>

#include "core/status.h"

typedef struct fg_buffer {
  size_t refcount;
  size_t bytes;
  void *data; /* zero-filled on creation */
} fg_buffer;

/* A new buffer of `bytes` zero bytes with refcount 1 in *out; on failure (out of memory, or a
 * size that overflows) *out is NULL. */
fg_status fg_buffer_new(fg_buffer **out, size_t bytes, fg_err *e);
/* Adds a reference and returns b (NULL stays NULL). */
fg_buffer *fg_buffer_retain(fg_buffer *b);
/* Drops one reference; frees the memory with the last.  NULL is a no-op. */
void fg_buffer_release(fg_buffer *b);

#endif
