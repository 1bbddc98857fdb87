/* What the fuzz targets share: the input as a file (the loaders take paths) in one memfd that
 * lives for the whole run, as text (NUL-terminated), and a registry of the built-in types.
 * Each target is a libFuzzer entry point, LLVMFuzzerTestOneInput (README.md, "Fuzzing"). */
#ifndef FG_FUZZ_INPUT_H
#define FG_FUZZ_INPUT_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "flows/registry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* "/proc/self/fd/<n>" of a memfd now holding data[0..size). */
static inline const char *fuzz_file(const uint8_t *data, size_t size) {
  static int fd = -1;
  static char path[64];
  if (fd < 0) {
    fd = memfd_create("flowgrad-fuzz", 0);
    if (fd < 0) abort();
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  }
  if (ftruncate(fd, 0) != 0 || (size && pwrite(fd, data, size, 0) != (ssize_t)size)) abort();
  return path;
}

/* data as a NUL-terminated string (freed by the caller). */
static inline char *fuzz_text(const uint8_t *data, size_t size) {
  char *s = malloc(size + 1);
  if (!s) abort();
  if (size) memcpy(s, data, size);
  s[size] = '\0';
  return s;
}

/* One registry with the built-in types for the whole run (types are static). */
static inline const fg_registry *fuzz_registry(void) {
  static fg_registry *r;
  if (!r && (fg_registry_new(&r, NULL) != FG_OK || fg_registry_add_builtins(r, NULL) != FG_OK)) abort();
  return r;
}

#endif
