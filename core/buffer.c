#include "core/buffer.h"

#include <stdlib.h>
#include <string.h>

enum { BUFFER_ALIGN = 64 }; /* one cache line; enough for AVX-512 loads */

fg_buffer *fg_buffer_new(size_t bytes) {
  fg_buffer *b = malloc(sizeof *b);
  if (!b) return NULL;
  size_t rounded = (bytes + BUFFER_ALIGN - 1) / BUFFER_ALIGN * BUFFER_ALIGN;
  if (rounded < bytes) { /* wrapped */
    free(b);
    return NULL;
  }
  b->data = aligned_alloc(BUFFER_ALIGN, rounded ? rounded : BUFFER_ALIGN);
  if (!b->data) {
    free(b);
    return NULL;
  }
  memset(b->data, 0, rounded ? rounded : BUFFER_ALIGN);
  b->bytes = bytes;
  b->refcount = 1;
  return b;
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
