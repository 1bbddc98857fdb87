/* Internal: a byte stream over a file that may or may not be gzip-compressed (zlib's gzread
 * passes plain files through), for the data loaders.  Reads are exact-or-EOF and report gzip
 * corruption and truncation, which gzread alone reports as a quiet end of file. */
#ifndef FG_GZIN_H
#define FG_GZIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct fg_gzin {
  void *gz; /* gzFile; void so that users need not include zlib.h */
  const char *path;
  uint64_t pos; /* decompressed bytes consumed so far, for messages */
} fg_gzin;

/* Opens path into *in (path is borrowed: it must outlive the stream).  On failure there is
 * nothing to close (fg_gzin_close is still safe). */
fg_status fg_gzin_open(fg_gzin *in, const char *path, fg_err *e);
void fg_gzin_close(fg_gzin *in);

/* Reads up to n bytes; *got < n only at the end of the data, or on failure (*got then counts
 * the bytes read before it). */
fg_status fg_gzin_read(fg_gzin *in, void *buf, size_t n, size_t *got, fg_err *e);

/* Reads up to `limit` bytes into a new malloc'd buffer (*data, *len; free with free()).  The
 * buffer grows with the data actually read, never to `limit` up front, so a header that
 * declares an absurd size costs no memory before the data runs out.  On failure *data is NULL
 * and *len 0. */
fg_status fg_gzin_read_upto(fg_gzin *in, uint64_t limit, uint8_t **data, size_t *len, fg_err *e);

/* Reads exactly n bytes of a file's header (called `what` in messages, e.g. "header length"):
 * a short read is a truncated file, FG_E_FORMAT "<path>: truncated: the file ends inside the
 * <what> (<got> of <n> bytes)". */
fg_status fg_gzin_read_exact(fg_gzin *in, void *buf, size_t n, const char *what, fg_err *e);

/* Reads the rest of the data into a new malloc'd buffer (*data; free with free()), which must
 * be exactly `bytes` long: fewer is a truncated file, more is trailing data (FG_E_FORMAT, the
 * message quoting `what`, what the header declares: "10 images (7840 data bytes)").  On failure
 * *data is NULL. */
fg_status fg_gzin_read_rest(fg_gzin *in, uint64_t bytes, const char *what, uint8_t **data,
                            fg_err *e);

/* Whether the data ends here (reads one byte to find out). */
fg_status fg_gzin_at_end(fg_gzin *in, bool *at_end, fg_err *e);

#endif
