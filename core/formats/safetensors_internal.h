/* Internal to the safetensors module: what its reader (safetensors_read.c), writer
 * (safetensors_write.c) and header parser (safetensors_header.c) share — the dtype table, byte
 * order, and the opened file's layout.  The format is described in core/formats/safetensors.h. */
#ifndef FG_SAFETENSORS_INTERNAL_H
#define FG_SAFETENSORS_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "core/formats/safetensors.h"

typedef struct st_dtype {
  const char *name;
  size_t size; /* bytes per element */
  size_t unit; /* bytes per byte-swapped unit (a complex number swaps as two floats) */
} st_dtype;

/* In the order of the reference's Dtype enum (increasing alignment), which its writer sorts
 * by, descending.  Sub-byte types (F4, F6_*) are not supported. */
enum { ST_NDTYPES = 17 };
extern const st_dtype fg__st_dtypes[ST_NDTYPES];
#define ST_DTYPE_LIST                                                                       \
  "BOOL, U8, I8, F8_E5M2, F8_E4M3, F8_E8M0, I16, U16, F16, BF16, I32, U32, F32, C64, F64, " \
  "I64, U64"

/* Index of the dtype called name in fg__st_dtypes, or -1. */
int fg__st_dtype_find(const char *name);

static inline bool st_host_le(void) {
  const uint16_t one = 1;
  uint8_t first;
  memcpy(&first, &one, 1);
  return first == 1;
}

/* Reverses the bytes of every `unit`-byte group (little-endian file <-> big-endian host). */
static inline void st_swap(uint8_t *p, size_t nbytes, size_t unit) {
  for (size_t at = 0; unit > 1 && at + unit <= nbytes; at += unit)
    for (size_t i = 0, j = unit - 1; i < j; i++, j--) {
      uint8_t t = p[at + i];
      p[at + i] = p[at + j];
      p[at + j] = t;
    }
}

/* ---- the opened file ---- */

typedef struct st_entry {
  fg_safetensors_info info;
  int dtype;
  uint64_t begin, end;
} st_entry;

typedef struct st_meta {
  char *key, *value;
} st_meta;

struct fg_safetensors {
  char *path;
  int fd;
  uint64_t data_start; /* 8 + N */
  st_entry *entries;   /* sorted by name */
  size_t n;
  st_meta *meta; /* sorted by key */
  size_t n_meta;
};

/* Orders of entries by name and of metadata by key (qsort and bsearch). */
int fg__st_cmp_entry_name(const void *a, const void *b);
int fg__st_cmp_meta_key(const void *a, const void *b);

/* safetensors_header.c: checks the header text (n bytes, NUL-terminated) and fills f's
 * entries and metadata from it, validated against the buffer_len bytes of data that follow
 * the header.  On failure f holds what was parsed so far, for fg_safetensors_close. */
fg_status fg__st_parse_header(fg_safetensors *f, const char *text, size_t n, uint64_t buffer_len,
                              fg_err *e);

#endif
