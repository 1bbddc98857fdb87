/* Kernels' work buffers (ops/kernels/work.h).
 *
 * Why a cache: the conv paths need a few buffers per call, often over 128 KiB (a padded image
 * of 128 channels).  glibc serves blocks over its mmap threshold (128 KiB until a large block
 * has been freed) with a fresh mapping each time, so in a process that has not yet freed a
 * large block every call paid page faults on all of its scratch: the direct 128->4 3x3 conv at
 * 14x14 took 2.9 ms a run instead of 1.0 on one thread (AMD EPYC, FG_KERNELS=native in a
 * program of that conv alone).  Each thread keeps up to WORK_SLOTS freed buffers of at most
 * WORK_MAX_CACHED bytes, WORK_BYTES in all, and hands out the smallest that fits; threads of
 * the pool live as long as the process's programs, so their buffers are made once.  The bounds
 * keep the cache out of the peak memory: with 32 MiB per thread and im2col chunks cached, Glow
 * K=16's training peak grew from 392 to 461 MiB.
 *
 * Under AddressSanitizer a cached buffer is poisoned while cached, and the part past the bytes
 * asked for is poisoned while in use, so use after free and overflows are still caught. */
#include "ops/kernels/work.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

enum {
  WORK_ALIGN = 64,
  WORK_SLOTS = 8,
};
#define WORK_BYTES ((size_t)8 << 20)      /* cached per thread, at most */
#define WORK_MAX_CACHED ((size_t)2 << 20) /* larger buffers (im2col chunks) go back at once */

/* A buffer: its capacity in the 64 bytes before the address handed out. */
static size_t *header(void *p) { return (size_t *)((char *)p - WORK_ALIGN); }

typedef struct work_cache {
  void *buf[WORK_SLOTS];
  int n;
  size_t bytes;
} work_cache;

static pthread_key_t cache_key;
static bool key_made;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;

static void release(void *p) {
  UNPOISON(header(p), WORK_ALIGN + *header(p));
  free(header(p));
}

static void cache_destroy(void *v) {
  work_cache *c = v;
  for (int i = 0; i < c->n; i++) release(c->buf[i]);
  free(c);
}

static void make_key(void) { key_made = pthread_key_create(&cache_key, cache_destroy) == 0; }

/* This thread's cache, made on first use; NULL when it cannot be (then nothing is cached). */
static work_cache *cache(void) {
  pthread_once(&cache_once, make_key);
  if (!key_made) return NULL;
  work_cache *c = pthread_getspecific(cache_key);
  if (!c && (c = calloc(1, sizeof *c)) && pthread_setspecific(cache_key, c) != 0) {
    free(c);
    c = NULL;
  }
  return c;
}

static void *take(work_cache *c, size_t bytes) {
  int best = -1;
  for (int i = 0; i < c->n; i++)
    if (*header(c->buf[i]) >= bytes && (best < 0 || *header(c->buf[i]) < *header(c->buf[best])))
      best = i;
  if (best < 0) return NULL;
  void *p = c->buf[best];
  c->buf[best] = c->buf[--c->n];
  c->bytes -= *header(p);
  return p;
}

void *fg_work_alloc(size_t bytes) {
  if (bytes > SIZE_MAX - 2 * WORK_ALIGN) return NULL;
  work_cache *c = cache();
  void *p = c ? take(c, bytes) : NULL;
  if (!p) {
    size_t cap = (bytes + WORK_ALIGN - 1) / WORK_ALIGN * WORK_ALIGN;
    char *raw = aligned_alloc(WORK_ALIGN, WORK_ALIGN + cap);
    if (!raw) return NULL;
    p = raw + WORK_ALIGN;
    *header(p) = cap;
  }
  UNPOISON(p, bytes);
  POISON((char *)p + bytes, *header(p) - bytes);
  return p;
}

void fg_work_free(void *p) {
  if (!p) return;
  work_cache *c = cache();
  size_t cap = *header(p);
  if (c && cap <= WORK_MAX_CACHED && c->n == WORK_SLOTS) { /* room: drop the smallest if smaller */
    int small = 0;
    for (int i = 1; i < c->n; i++)
      if (*header(c->buf[i]) < *header(c->buf[small])) small = i;
    if (*header(c->buf[small]) < cap) {
      c->bytes -= *header(c->buf[small]);
      release(c->buf[small]);
      c->buf[small] = c->buf[--c->n];
    }
  }
  if (!c || cap > WORK_MAX_CACHED || c->n == WORK_SLOTS || c->bytes + cap > WORK_BYTES) {
    release(p);
    return;
  }
  POISON(p, cap);
  c->buf[c->n++] = p;
  c->bytes += cap;
}
