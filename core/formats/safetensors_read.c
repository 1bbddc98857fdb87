/* Reading safetensors files: opening one (its header parsed and validated by
 * safetensors_header.c), then the tensors' data on demand from the open file. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/formats/safetensors_internal.h"

void fg_safetensors_close(fg_safetensors *f) {
  if (!f) return;
  if (f->fd >= 0) close(f->fd);
  for (size_t i = 0; i < f->n; i++) {
    free((char *)f->entries[i].info.name);
    free((int64_t *)f->entries[i].info.dims);
  }
  for (size_t i = 0; i < f->n_meta; i++) {
    free(f->meta[i].key);
    free(f->meta[i].value);
  }
  free(f->entries);
  free(f->meta);
  free(f->path);
  free(f);
}

static fg_status st_pread(const fg_safetensors *f, void *buf, size_t n, uint64_t off,
                          const char *what, fg_err *e) {
  size_t done = 0;
  while (done < n) {
    ssize_t r = pread(f->fd, (char *)buf + done, n - done, (off_t)(off + done));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0)
      return fg_err_set(e, FG_E_IO, "%s: cannot read %s: %s", f->path, what, strerror(errno));
    if (r == 0)
      return fg_err_set(e, FG_E_IO, "%s: the file ends inside %s (did it shrink?)", f->path, what);
    done += (size_t)r;
  }
  return FG_OK;
}

static fg_status st_open_file(fg_safetensors *f, uint64_t *size, fg_err *e) {
  f->fd = open(f->path, O_RDONLY | O_CLOEXEC);
  if (f->fd < 0) return fg_err_set(e, FG_E_IO, "%s: cannot open: %s", f->path, strerror(errno));
  struct stat st;
  if (fstat(f->fd, &st) != 0)
    return fg_err_set(e, FG_E_IO, "%s: cannot stat: %s", f->path, strerror(errno));
  if (!S_ISREG(st.st_mode)) return fg_err_set(e, FG_E_IO, "%s: not a regular file", f->path);
  *size = (uint64_t)st.st_size;
  return FG_OK;
}

/* Reads the header length (checked against the file) and the header text, which *text gets
 * malloc'd and NUL-terminated. */
static fg_status st_read_header(fg_safetensors *f, uint64_t size, char **text, uint64_t *hlen,
                                fg_err *e) {
  *text = NULL;
  if (size < 8)
    return fg_err_set(e, FG_E_FORMAT,
                      "%s: %" PRIu64
                      " bytes is too short for a safetensors file (the header "
                      "length alone takes 8)",
                      f->path, size);
  uint8_t lb[8];
  fg_status st = st_pread(f, lb, 8, 0, "the header length", e);
  if (st != FG_OK) return st;
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--) n = n << 8 | lb[i];
  if (n > FG_SAFETENSORS_MAX_HEADER)
    return fg_err_set(e, FG_E_FORMAT,
                      "%s: header length %" PRIu64
                      " exceeds the %u-byte limit (not a "
                      "safetensors file, or a corrupt one)",
                      f->path, n, FG_SAFETENSORS_MAX_HEADER);
  if (n > size - 8)
    return fg_err_set(e, FG_E_FORMAT,
                      "%s: header length %" PRIu64 " runs past the end of the %" PRIu64
                      "-byte file (truncated?)",
                      f->path, n, size);
  *text = malloc(n + 1);
  if (!*text) return fg_err_set(e, FG_E_NOMEM, "%s: out of memory for the header", f->path);
  st = st_pread(f, *text, n, 8, "the header", e);
  (*text)[n] = '\0';
  *hlen = n;
  return st;
}

static fg_status st_load(fg_safetensors *f, fg_err *e) {
  uint64_t size = 0, hlen = 0;
  char *text;
  fg_status st = st_open_file(f, &size, e);
  if (st != FG_OK) return st;
  st = st_read_header(f, size, &text, &hlen, e);
  f->data_start = 8 + hlen;
  if (st == FG_OK) st = fg__st_parse_header(f, text, (size_t)hlen, size - 8 - hlen, e);
  free(text);
  return st;
}

fg_status fg_safetensors_open(fg_safetensors **out, const char *path, fg_err *e) {
  *out = NULL;
  fg_safetensors *f = calloc(1, sizeof *f);
  if (!f) return fg_err_set(e, FG_E_NOMEM, "%s: out of memory", path);
  f->fd = -1;
  f->path = strdup(path);
  fg_status st = f->path ? st_load(f, e) : fg_err_set(e, FG_E_NOMEM, "%s: out of memory", path);
  if (st != FG_OK) {
    fg_safetensors_close(f);
    return st;
  }
  *out = f;
  return FG_OK;
}

/* ---- access ---- */

size_t fg_safetensors_count(const fg_safetensors *f) { return f->n; }

const fg_safetensors_info *fg_safetensors_entry(const fg_safetensors *f, size_t i) {
  return i < f->n ? &f->entries[i].info : NULL;
}

static const st_entry *st_find(const fg_safetensors *f, const char *name) {
  st_entry key = {.info = {.name = name}};
  return bsearch(&key, f->entries, f->n, sizeof *f->entries, fg__st_cmp_entry_name);
}

const fg_safetensors_info *fg_safetensors_find(const fg_safetensors *f, const char *name) {
  const st_entry *en = st_find(f, name);
  return en ? &en->info : NULL;
}

static fg_status st_lookup(const fg_safetensors *f, const char *name, const st_entry **en,
                           fg_err *e) {
  *en = st_find(f, name);
  if (!*en)
    return fg_err_set(e, FG_E_NOTFOUND, "%s: no tensor named '%s' (the file holds %zu)", f->path,
                      name, f->n);
  return FG_OK;
}

static fg_status st_read_entry(const fg_safetensors *f, const st_entry *en, void *dst, fg_err *e) {
  char what[96];
  snprintf(what, sizeof what, "tensor '%.60s'", en->info.name);
  fg_status st = st_pread(f, dst, (size_t)en->info.nbytes, f->data_start + en->begin, what, e);
  if (st == FG_OK && !st_host_le())
    st_swap(dst, (size_t)en->info.nbytes, fg__st_dtypes[en->dtype].unit);
  return st;
}

fg_status fg_safetensors_get(fg_tensor **out, const fg_safetensors *f, const char *name,
                             fg_err *e) {
  *out = NULL;
  const st_entry *en;
  fg_status st = st_lookup(f, name, &en, e);
  if (st != FG_OK) return st;
  bool f32 = strcmp(en->info.dtype, "F32") == 0, f64 = strcmp(en->info.dtype, "F64") == 0;
  if (!f32 && !f64)
    return fg_err_set(e, FG_E_DTYPE,
                      "%s: tensor '%s' has dtype %s; only F32 and F64 become tensors (read "
                      "others with fg_safetensors_read_raw)",
                      f->path, name, en->info.dtype);
  if (en->info.ndim > FG_MAX_DIMS)
    return fg_err_set(e, FG_E_SHAPE, "%s: tensor '%s' has %" PRId64 " dimensions (at most %d)",
                      f->path, name, en->info.ndim, FG_MAX_DIMS);
  fg_shape shape = {.ndim = en->info.ndim};
  memcpy(shape.d, en->info.dims, sizeof *shape.d * (size_t)en->info.ndim);
  st = fg_tensor_new(out, f32 ? FG_F32 : FG_F64, &shape, e);
  if (st == FG_OK) st = st_read_entry(f, en, fg_tensor_data(*out), e);
  if (st != FG_OK) {
    fg_tensor_free(*out);
    *out = NULL;
  }
  return st;
}

fg_status fg_safetensors_read_raw(const fg_safetensors *f, const char *name, void *dst, size_t cap,
                                  fg_err *e) {
  const st_entry *en;
  fg_status st = st_lookup(f, name, &en, e);
  if (st != FG_OK) return st;
  if (en->info.nbytes > cap)
    return fg_err_set(e, FG_E_MISUSE, "%s: tensor '%s' is %" PRIu64 " bytes; the buffer holds %zu",
                      f->path, name, en->info.nbytes, cap);
  return st_read_entry(f, en, dst, e);
}

const char *fg_safetensors_meta(const fg_safetensors *f, const char *key) {
  if (f->n_meta == 0) return NULL; /* f->meta may be NULL, which bsearch must not see */
  st_meta k = {.key = (char *)key};
  const st_meta *m = bsearch(&k, f->meta, f->n_meta, sizeof *f->meta, fg__st_cmp_meta_key);
  return m ? m->value : NULL;
}

size_t fg_safetensors_meta_count(const fg_safetensors *f) { return f->n_meta; }

const char *fg_safetensors_meta_key(const fg_safetensors *f, size_t i) {
  return i < f->n_meta ? f->meta[i].key : NULL;
}

