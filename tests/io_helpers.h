/* Helpers for the file-format tests: a fresh temporary directory per test (made by the suite's
 * .init, removed by its .fini even when the test fails), and writers of plain, gzip and
 * deliberately broken files. */
#ifndef FG_TEST_IO_HELPERS_H
#define FG_TEST_IO_HELPERS_H

#include <criterion/criterion.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static char io_dir[64];

static inline void io_setup(void) {
  snprintf(io_dir, sizeof io_dir, "/tmp/fg-io-test-XXXXXX");
  cr_assert_not_null(mkdtemp(io_dir), "mkdtemp");
}

static inline int io_rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(p);
}

static inline void io_teardown(void) {
  if (io_dir[0]) nftw(io_dir, io_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* cr_skip does not run the suite's .fini: remove the directory first. */
#define io_skip(...)      \
  do {                    \
    io_teardown();        \
    cr_skip(__VA_ARGS__); \
  } while (0)

/* "<tmpdir>/<name>" in one of a few rotating buffers, so several can be live at once. */
static inline const char *io_path(const char *name) {
  static char bufs[8][256];
  static int next;
  char *b = bufs[next++ % 8];
  snprintf(b, sizeof bufs[0], "%s/%s", io_dir, name);
  return b;
}

static inline void io_write(const char *path, const void *data, size_t len) {
  FILE *f = fopen(path, "wb");
  cr_assert_not_null(f, "fopen %s", path);
  cr_assert_eq(fwrite(data, 1, len, f), len);
  cr_assert_eq(fclose(f), 0);
}

static inline void io_write_gz(const char *path, const void *data, size_t len) {
  gzFile g = gzopen(path, "wb");
  cr_assert_not_null(g, "gzopen %s", path);
  cr_assert_eq(gzwrite(g, data, (unsigned)len), (int)len);
  cr_assert_eq(gzclose(g), Z_OK);
}

/* A version 1.0 .npy file at path as numpy writes it: dict (its header, e.g. "{'descr': '<f4',
 * 'fortran_order': False, 'shape': (2, 3), }") padded to 64 bytes, then len data bytes. */
static inline void io_write_npy(const char *path, const char *dict, const void *data, size_t len) {
  static uint8_t buf[1 << 16];
  size_t dlen = strlen(dict), hlen = (10 + dlen + 1 + 63) / 64 * 64 - 10;
  cr_assert_leq(10 + hlen + len, sizeof buf);
  memcpy(buf, "\x93NUMPY\x01\x00", 8);
  buf[8] = (uint8_t)hlen, buf[9] = (uint8_t)(hlen >> 8);
  memcpy(buf + 10, dict, dlen);
  memset(buf + 10 + dlen, ' ', hlen - dlen - 1);
  buf[10 + hlen - 1] = '\n';
  if (len) memcpy(buf + 10 + hlen, data, len);
  io_write(path, buf, 10 + hlen + len);
}

/* The whole file in a malloc'd buffer. */
static inline uint8_t *io_read(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  cr_assert_not_null(f, "fopen %s", path);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *buf = malloc((size_t)n + 1);
  cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  *len = (size_t)n;
  return buf;
}

/* Asserts that status is `want` and the message mentions the file and `needle`. */
#define io_assert_error(status, want, err, path, needle)                                          \
  do {                                                                                            \
    cr_assert_eq((status), (want), "status %d, expected %d: %s", (int)(status), (int)(want),      \
                 (err).msg);                                                                      \
    cr_assert(strstr((err).msg, (path)) != NULL, "message names the file: %s", (err).msg);        \
    cr_assert(strstr((err).msg, (needle)) != NULL, "message says '%s': %s", (needle), (err).msg); \
  } while (0)

#endif
