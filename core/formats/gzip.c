#include "core/formats/gzip.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "core/vec.h"

/* gzread takes an unsigned count and returns an int: stay well inside both. */
#define GZIN_CHUNK ((size_t)1 << 30)
#define GZIN_FIRST_CAP ((size_t)1 << 20)

fg_status fg_gzin_open(fg_gzin *in, const char *path, fg_err *e) {
  memset(in, 0, sizeof *in);
  in->path = path;
  struct stat st;
  if (stat(path, &st) != 0)
    return fg_err_set(e, FG_E_IO, "%s: cannot open: %s", path, strerror(errno));
  if (S_ISDIR(st.st_mode))
    return fg_err_set(e, FG_E_IO, "%s: is a directory, not a data file", path);
  errno = 0;
  gzFile gz = gzopen(path, "rb");
  if (!gz) {
    if (errno == 0) return fg_err_set(e, FG_E_NOMEM, "%s: out of memory opening it", path);
    return fg_err_set(e, FG_E_IO, "%s: cannot open: %s", path, strerror(errno));
  }
  gzbuffer(gz, 1u << 17);
  in->gz = gz;
  return FG_OK;
}

void fg_gzin_close(fg_gzin *in) {
  if (in->gz) gzclose_r((gzFile)in->gz);
  in->gz = NULL;
}

/* The stream's error after gzread returned -1 or a quiet 0 (a truncated gzip member only
 * shows up here, as Z_BUF_ERROR). */
static fg_status gzin_check(fg_gzin *in, fg_err *e) {
  int errnum = Z_OK;
  const char *msg = gzerror((gzFile)in->gz, &errnum);
  unsigned long long at = (unsigned long long)in->pos;
  switch (errnum) {
    case Z_OK:
      return FG_OK;
    case Z_BUF_ERROR:
      return fg_err_set(
          e, FG_E_FORMAT,
          "%s: gzip data ends early after %llu decompressed bytes (truncated .gz file)", in->path,
          at);
    case Z_MEM_ERROR:
      return fg_err_set(e, FG_E_NOMEM, "%s: out of memory decompressing", in->path);
    case Z_ERRNO:
      return fg_err_set(e, FG_E_IO, "%s: read error after %llu bytes: %s", in->path, at,
                        strerror(errno));
    default:
      return fg_err_set(e, FG_E_FORMAT, "%s: corrupt gzip data after %llu decompressed bytes: %s",
                        in->path, at, msg);
  }
}

fg_status fg_gzin_read(fg_gzin *in, void *buf, size_t n, size_t *got, fg_err *e) {
  size_t total = 0;
  while (total < n) {
    size_t want = n - total < GZIN_CHUNK ? n - total : GZIN_CHUNK;
    int r = gzread((gzFile)in->gz, (char *)buf + total, (unsigned)want);
    if (r < 0) {
      *got = total;
      fg_status st = gzin_check(in, e);
      return st != FG_OK ? st : fg_err_set(e, FG_E_IO, "%s: read error", in->path);
    }
    if (r == 0) break;
    total += (size_t)r;
    in->pos += (uint64_t)r;
  }
  *got = total;
  return total < n ? gzin_check(in, e) : FG_OK;
}

fg_status fg_gzin_read_upto(fg_gzin *in, uint64_t limit, uint8_t **data, size_t *len, fg_err *e) {
  *data = NULL;
  *len = 0;
  uint64_t most = SIZE_MAX < INT64_MAX ? SIZE_MAX : INT64_MAX; /* what the buffer can hold */
  if (limit > most) limit = most;
  uint8_t *buf = NULL;
  int64_t cap = 0;
  size_t have = 0;
  while (have < limit) {
    /* room for a first chunk, then at least as much again as has been read; never past limit */
    uint64_t need = have < GZIN_FIRST_CAP ? GZIN_FIRST_CAP : (uint64_t)have + 1;
    if (need > limit) need = limit;
    if (!FG_VEC_RESERVE(buf, cap, need)) {
      free(buf);
      return fg_err_set(e, FG_E_NOMEM, "%s: out of memory for %llu bytes", in->path,
                        (unsigned long long)need);
    }
    size_t want = (size_t)((uint64_t)cap < limit ? (uint64_t)cap : limit) - have, got;
    fg_status st = fg_gzin_read(in, buf + have, want, &got, e);
    have += got;
    if (st != FG_OK) {
      free(buf);
      return st;
    }
    if (got < want) break; /* a short read: the data ended */
  }
  *data = buf;
  *len = have;
  return FG_OK;
}

fg_status fg_gzin_at_end(fg_gzin *in, bool *at_end, fg_err *e) {
  uint8_t byte;
  size_t got;
  fg_status st = fg_gzin_read(in, &byte, 1, &got, e);
  *at_end = got == 0;
  return st;
}

fg_status fg_gzin_read_exact(fg_gzin *in, void *buf, size_t n, const char *what, fg_err *e) {
  size_t got;
  fg_status st = fg_gzin_read(in, buf, n, &got, e);
  if (st == FG_OK && got < n)
    st = fg_err_set(e, FG_E_FORMAT, "%s: truncated: the file ends inside the %s (%zu of %zu bytes)",
                    in->path, what, got, n);
  return st;
}

fg_status fg_gzin_read_rest(fg_gzin *in, uint64_t bytes, const char *what, uint8_t **data,
                            fg_err *e) {
  size_t len;
  fg_status st = fg_gzin_read_upto(in, bytes, data, &len, e);
  if (st != FG_OK) return st;
  bool at_end = true;
  if (len < bytes)
    st = fg_err_set(e, FG_E_FORMAT,
                    "%s: truncated: the header declares %s but the file holds %zu data bytes",
                    in->path, what, len);
  else
    st = fg_gzin_at_end(in, &at_end, e);
  if (st == FG_OK && !at_end)
    st = fg_err_set(e, FG_E_FORMAT, "%s: trailing data after the %s the header declares",
                    in->path, what);
  if (st != FG_OK) {
    free(*data);
    *data = NULL;
  }
  return st;
}
