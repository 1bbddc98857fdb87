/* Kernels' work buffers (ops/kernels/work.c): a buffer given back is handed out again in the
 * same thread, so repeated kernel calls touch no new pages; what is cached stays bounded; a
 * thread's cache goes with the thread; and under AddressSanitizer a cached buffer and the bytes
 * past what was asked for are still guarded. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>

#include "ops/kernels/work.h"

static long minor_faults(void) {
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  return u.ru_minflt;
}

Test(work, a_buffer_given_back_is_handed_out_again_for_any_size_it_holds) {
  void *a = fg_work_alloc(300000);
  cr_assert_not_null(a);
  cr_assert_eq((uintptr_t)a % 64, 0, "64-byte aligned");
  memset(a, 1, 300000);
  fg_work_free(a);
  void *b = fg_work_alloc(200000); /* smaller: the same buffer */
  cr_assert_eq(b, a);
  void *c = fg_work_alloc(300000); /* the cached one is in use: a new one */
  cr_assert_neq(c, a);
  fg_work_free(b);
  fg_work_free(c);
  fg_work_free(NULL);
}

/* Without the cache, glibc maps every block over 128 KiB afresh (until a large block has been
 * freed): each of these rounds then faulted in all 256 pages. */
Test(work, repeated_calls_touch_no_new_pages) {
  enum { BYTES = 1 << 20, ROUNDS = 20 };
  void *w = fg_work_alloc(BYTES);
  memset(w, 1, BYTES);
  fg_work_free(w);
  long before = minor_faults();
  for (int r = 0; r < ROUNDS; r++) {
    void *p = fg_work_alloc(BYTES), *q = fg_work_alloc(1000);
    memset(p, r, BYTES);
    memset(q, r, 1000);
    fg_work_free(q);
    fg_work_free(p);
  }
  long faults = minor_faults() - before;
  cr_assert_lt(faults, ROUNDS, "%ld page faults in %d rounds of a 1 MiB buffer", faults, ROUNDS);
}

/* More buffers than the cache keeps: the largest stay, and each is handed out again. */
Test(work, the_cache_keeps_a_bounded_number_of_the_largest_buffers) {
  enum { N = 20 };
  void *p[N];
  for (int i = 0; i < N; i++) p[i] = fg_work_alloc((size_t)(i + 1) * 4096);
  for (int i = 0; i < N; i++) fg_work_free(p[i]);
  void *big = fg_work_alloc((size_t)N * 4096);
  cr_assert_eq(big, p[N - 1], "the largest buffer was kept");
  void *small = fg_work_alloc(4096); /* the smallest kept: 8 slots, so p[N - 8] */
  cr_assert_eq(small, p[N - 8], "the 8 largest were kept, the others given back");
  fg_work_free(big);
  fg_work_free(small);
}

static void *use_and_exit(void *arg) {
  (void)arg;
  for (int i = 0; i < 4; i++) fg_work_free(fg_work_alloc((size_t)(i + 1) << 18));
  return NULL;
}

/* A thread's cached buffers are released when it exits (LeakSanitizer checks this at exit in
 * the sanitizer build); the main thread goes on with a cache of its own. */
Test(work, a_threads_cache_goes_with_the_thread) {
  for (int t = 0; t < 3; t++) {
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, use_and_exit, NULL), 0);
    cr_assert_eq(pthread_join(th, NULL), 0);
  }
  void *p = fg_work_alloc(1 << 18);
  cr_assert_not_null(p);
  fg_work_free(p);
}

#if defined(__SANITIZE_ADDRESS__)
/* The buffer is larger than asked for (its capacity, or a cached larger one): the bytes past
 * the request are poisoned, so an overflow into them is an error. */
Test(work, an_overflow_past_the_bytes_asked_for_is_caught, .exit_code = 1) {
  fg_work_free(fg_work_alloc(8192));
  volatile char *p = fg_work_alloc(1000); /* the cached 8 KiB buffer */
  p[1000] = 1;
}

Test(work, a_buffer_used_after_it_is_given_back_is_caught, .exit_code = 1) {
  volatile char *p = fg_work_alloc(5000);
  fg_work_free((void *)p);
  p[10] = 1;
}
#endif
