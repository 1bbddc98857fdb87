#include "core/buffer.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

enum { BUFFER_ALIGN = 64 }; /* one cache line; enough for AVX-512 loads */

/* A buffer this large (a program's arena, a data set) gets pages of its own: they are zero
 * without a pass over them, resident only once used, and returned to the system when the
 * buffer is released.  From malloc, a freed arena stays in the heap (glibc raises its mapping
 * threshold with every large block freed), so the memory of a program freed, such as a flow's
 * data-dependent initialisation, stays in the resident size of a process that goes on to
 * train.  Under AddressSanitizer every buffer comes from malloc, whose red zones guard it. */
#if defined(__SANITIZE_ADDRESS__)
#define BUFFER_MAP_MIN SIZE_MAX
#else
#define BUFFER_MAP_MIN ((size_t)1 << 20)
#endif

static void *buffer_alloc(size_t rounded) {
  if (rounded >= BUFFER_MAP_MIN) {
    void *p = mmap(NULL, rounded, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
  }
  void *p = aligned_alloc(BUFFER_ALIGN, rounded);
  if (p) memset(p, 0, rounded);
  return p;
}

static void buffer_free(void *data, size_t rounded) {
  if (!data) return;
  if (rounded >= BUFFER_MAP_MIN)
    munmap(data, rounded);
  else
    free(data);
}

static size_t rounded_size(size_t bytes) {
  size_t rounded = (bytes + BUFFER_ALIGN - 1) / BUFFER_ALIGN * BUFFER_ALIGN;
  return rounded == 0 ? BUFFER_ALIGN : rounded;
}

fg_status fg_buffer_new(fg_buffer **out, size_t bytes, fg_err *e) {
  *out = NULL;
  if (bytes > SIZE_MAX - BUFFER_ALIGN) /* would wrap when aligned */
    return fg_err_set(e, FG_E_OVERFLOW, "a buffer of %zu bytes overflows when aligned", bytes);
  size_t rounded = rounded_size(bytes);
  fg_buffer *b = malloc(sizeof *b);
  void *data = b ? buffer_alloc(rounded) : NULL;
  if (!b || !data) {
    free(b);
    return fg_err_set(e, FG_E_NOMEM, "out of memory for a buffer of %zu bytes", bytes);
  }
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
  buffer_free(b->data, rounded_size(b->bytes));
  free(b);
}
