/* Kernels' work buffers (an im2col matrix, a padded image), reused within a thread instead of
 * allocated anew on every call.  Internal to ops/. */
#ifndef FG_OPS_WORK_H
#define FG_OPS_WORK_H

#include <stddef.h>

/* A 64-byte aligned buffer of at least `bytes` bytes (contents undefined), or NULL when out of
 * memory.  Give it back with fg_work_free from the same thread. */
void *fg_work_alloc(size_t bytes);
/* Returns p (NULL is ignored) to this thread's cache, or to the system if the cache is full. */
void fg_work_free(void *p);

#endif
