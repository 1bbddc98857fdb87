#include "core/buffer.h"

#include <stdlib.h>
#include <string.h>

enum { BUFFER_ALIGN = 64 }; /* one cache line; enough for AVX-512 loads */

fg_status fg_buffer_new(fg_buffer **out, size_t bytes, fg_err *e) {
  *out = NULL;
  size_t rounded = (bytes + BUFFER_ALIGN - 1) / BUFFER_ALIGN * BUFFER_ALIGN;
  if (rounded < bytes) /* wrapped */
    return fg_err_set(e, FG_E_OVERFLOW, "a buffer of %zu bytes overflows when aligned", bytes);
  if (rounded == 0) rounded = BUFFER_ALIGN;
  fg_buffer *b = malloc(sizeof *b);
  void *data = aligned_alloc(BUFFER_ALIGN, rounded);
  if (!b || !data) {
    free(b);
    free(data);
    return fg_err_set(e, FG_E_NOMEM, "out of memory for a buffer of %zu bytes", bytes);
  }
  memset(data, 0, rounded);
  *b = (fg_buffer){.refcount = 1, .bytes = bytes, .data = data};
  *out = b;
  return FG_OK;
}

fg_buffer *fg_buffer_retain(fg_buffer *b) {
  if (b) b->refcount++;
  return b;
}

void fg_buffer_release(fg_buffer *b) {
  if (!b || --b->refcount > 0) return;
  free(b->data);
  free(b);
}
