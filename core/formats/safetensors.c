/* Safetensors reader and atomic writer; the format and the rules are in core/formats/safetensors.h.
 * cJSON parses and prints the header; numbers are printed as raw text so that offsets past
 * 2^31 stay exact integers. */
#include "core/formats/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- dtypes ------------------------------------------------------------------------------ */

typedef struct st_dtype {
  const char *name;
  size_t size; /* bytes per element */
  size_t unit; /* bytes per byte-swapped unit (a complex number swaps as two floats) */
} st_dtype;

/* In the order of the reference's Dtype enum (increasing alignment), which its writer sorts
 * by, descending.  Sub-byte types (F4, F6_*) are not supported. */
static const st_dtype st_dtypes[] = {
    {"BOOL", 1, 1},    {"U8", 1, 1},  {"I8", 1, 1},  {"F8_E5M2", 1, 1}, {"F8_E4M3", 1, 1},
    {"F8_E8M0", 1, 1}, {"I16", 2, 2}, {"U16", 2, 2}, {"F16", 2, 2},     {"BF16", 2, 2},
    {"I32", 4, 4},     {"U32", 4, 4}, {"F32", 4, 4}, {"C64", 8, 4},     {"F64", 8, 8},
    {"I64", 8, 8},     {"U64", 8, 8},
};
#define ST_NDTYPES (int)(sizeof st_dtypes / sizeof *st_dtypes)
#define ST_DTYPE_LIST                                                                       \
  "BOOL, U8, I8, F8_E5M2, F8_E4M3, F8_E8M0, I16, U16, F16, BF16, I32, U32, F32, C64, F64, " \
  "I64, U64"
/* JSON numbers arrive as doubles: integers above this may already have been rounded. */
#define ST_MAX_INT 9007199254740992.0

static int st_dtype_find(const char *name) {
  for (int i = 0; i < ST_NDTYPES; i++)
    if (strcmp(st_dtypes[i].name, name) == 0) return i;
  return -1;
}

static bool st_host_le(void) {
  const uint16_t one = 1;
  uint8_t first;
  memcpy(&first, &one, 1);
  return first == 1;
}

/* Reverses the bytes of every `unit`-byte group (little-endian file <-> big-endian host). */
static void st_swap(uint8_t *p, size_t nbytes, size_t unit) {
  for (size_t at = 0; unit > 1 && at + unit <= nbytes; at += unit)
    for (size_t i = 0, j = unit - 1; i < j; i++, j--) {
      uint8_t t = p[at + i];
      p[at + i] = p[at + j];
      p[at + j] = t;
    }
}

/* ---- UTF-8 ------------------------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (n bytes available), 0 when invalid (overlong forms,
 * surrogates and code points past U+10FFFF are invalid, as in Rust's str::from_utf8). */
static size_t st_utf8_seq(const uint8_t *s, size_t n) {
  uint8_t c = s[0];
  size_t len;
  uint32_t cp, min;
  if (c < 0x80) return 1;
  if ((c & 0xE0) == 0xC0)
    len = 2, cp = c & 0x1Fu, min = 0x80;
  else if ((c & 0xF0) == 0xE0)
    len = 3, cp = c & 0x0Fu, min = 0x800;
  else if ((c & 0xF8) == 0xF0)
    len = 4, cp = c & 0x07u, min = 0x10000;
  else
    return 0;
  if (n < len) return 0;
  for (size_t k = 1; k < len; k++) {
    if ((s[k] & 0xC0) != 0x80) return 0;
    cp = cp << 6 | (s[k] & 0x3Fu);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return len;
}

/* Whether s[0..n) is valid UTF-8; else *bad is the offset of the first invalid byte. */
static bool st_utf8_valid(const char *s, size_t n, size_t *bad) {
  const uint8_t *u = (const uint8_t *)s;
  for (size_t i = 0; i < n;) {
    size_t len = st_utf8_seq(u + i, n - i);
    if (len == 0) {
      *bad = i;
      return false;
    }
    i += len;
  }
  return true;
}

/* ---- the opened file ---------------------------------------------------------------------- */

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

/* Byte-level checks on the header text before JSON parsing sees it. */
static fg_status st_check_text(const fg_safetensors *f, const char *text, size_t n, fg_err *e) {
  size_t bad;
  if (!st_utf8_valid(text, n, &bad))
    return fg_err_set(e, FG_E_FORMAT, "%s: header is not valid UTF-8 (byte %zu of the header)",
                      f->path, bad);
  if (n == 0 || text[0] != '{')
    return fg_err_set(e, FG_E_FORMAT, "%s: header does not start with '{'", f->path);
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)text[i] < 0x20 && text[i] != '\t' && text[i] != '\n' && text[i] != '\r')
      return fg_err_set(e, FG_E_FORMAT,
                        "%s: header holds a raw control character 0x%02x (byte %zu)", f->path,
                        (unsigned)text[i], i);
  if (memmem(text, n, "\\u0000", 6))
    return fg_err_set(e, FG_E_FORMAT, "%s: header holds an escaped NUL (\\u0000)", f->path);
  return FG_OK;
}

/* Reads and checks the header length and text; *text is malloc'd and NUL-terminated. */
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
  if (st == FG_OK) st = st_check_text(f, *text, n, e);
  (*text)[n] = '\0';
  *hlen = n;
  return st;
}

/* ---- header parsing ----------------------------------------------------------------------- */

static bool st_json_uint(const cJSON *v, uint64_t *out) {
  if (!cJSON_IsNumber(v)) return false;
  double d = v->valuedouble;
  if (!(d >= 0) || d > ST_MAX_INT || d != floor(d)) return false;
  *out = (uint64_t)d;
  return true;
}

static fg_status st_entry_dtype(const fg_safetensors *f, st_entry *en, const cJSON *v, fg_err *e) {
  if (!cJSON_IsString(v))
    return fg_err_set(e, FG_E_FORMAT, "%s: tensor '%s': dtype is not a string", f->path,
                      en->info.name);
  en->dtype = st_dtype_find(v->valuestring);
  if (en->dtype < 0)
    return fg_err_set(e, FG_E_FORMAT, "%s: tensor '%s': unknown dtype '%.40s' (known: %s)", f->path,
                      en->info.name, v->valuestring, ST_DTYPE_LIST);
  en->info.dtype = st_dtypes[en->dtype].name;
  en->info.elem_bytes = st_dtypes[en->dtype].size;
  return FG_OK;
}

static fg_status st_entry_shape(const fg_safetensors *f, st_entry *en, const cJSON *v, fg_err *e) {
  if (!cJSON_IsArray(v))
    return fg_err_set(e, FG_E_FORMAT, "%s: tensor '%s': shape is not an array", f->path,
                      en->info.name);
  int ndim = cJSON_GetArraySize(v);
  int64_t *dims = malloc(sizeof *dims * (size_t)(ndim > 0 ? ndim : 1));
  if (!dims) return fg_err_set(e, FG_E_NOMEM, "%s: out of memory for a shape", f->path);
  en->info.dims = dims;
  en->info.ndim = ndim;
  int i = 0;
  for (const cJSON *d = v->child; d; d = d->next, i++) {
    uint64_t x;
    if (!st_json_uint(d, &x))
      return fg_err_set(e, FG_E_FORMAT,
                        "%s: tensor '%s': shape[%d] is not a non-negative integer (at most 2^53)",
                        f->path, en->info.name, i);
    dims[i] = (int64_t)x;
  }
  return FG_OK;
}

static fg_status st_entry_offsets(const fg_safetensors *f, st_entry *en, const cJSON *v,
                                  fg_err *e) {
  if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 2 || !st_json_uint(v->child, &en->begin) ||
      !st_json_uint(v->child->next, &en->end))
    return fg_err_set(e, FG_E_FORMAT,
                      "%s: tensor '%s': data_offsets is not an array of two non-negative "
                      "integers",
                      f->path, en->info.name);
  if (en->end < en->begin)
    return fg_err_set(e, FG_E_FORMAT,
                      "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                      "] end before they "
                      "begin",
                      f->path, en->info.name, en->begin, en->end);
  en->info.nbytes = en->end - en->begin;
  return FG_OK;
}

/* The three fields of an entry, each exactly once and nothing else. */
static fg_status st_entry_fields(const fg_safetensors *f, const char *name, const cJSON *obj,
                                 const cJSON *fields[3], fg_err *e) {
  static const char *const keys[3] = {"dtype", "shape", "data_offsets"};
  for (const cJSON *k = obj->child; k; k = k->next) {
    int which = -1;
    for (int i = 0; i < 3; i++)
      if (strcmp(k->string, keys[i]) == 0) which = i;
    if (which < 0)
      return fg_err_set(e, FG_E_FORMAT,
                        "%s: tensor '%s': unexpected key '%.40s' (an entry has exactly dtype, "
                        "shape and data_offsets)",
                        f->path, name, k->string);
    if (fields[which])
      return fg_err_set(e, FG_E_FORMAT, "%s: tensor '%s': key '%s' appears twice", f->path, name,
                        keys[which]);
    fields[which] = k;
  }
  for (int i = 0; i < 3; i++)
    if (!fields[i])
      return fg_err_set(e, FG_E_FORMAT, "%s: tensor '%s': no '%s'", f->path, name, keys[i]);
  return FG_OK;
}

static fg_status st_parse_entry(fg_safetensors *f, const cJSON *c, fg_err *e) {
  st_entry *en = &f->entries[f->n++];
  en->info.name = strdup(c->string);
  if (!en->info.name) return fg_err_set(e, FG_E_NOMEM, "%s: out of memory", f->path);
  if (!cJSON_IsObject(c))
    return fg_err_set(e, FG_E_FORMAT, "%s: tensor '%s': the entry is not a JSON object", f->path,
                      en->info.name);
  const cJSON *fields[3] = {NULL, NULL, NULL};
  fg_status st = st_entry_fields(f, en->info.name, c, fields, e);
  if (st == FG_OK) st = st_entry_dtype(f, en, fields[0], e);
  if (st == FG_OK) st = st_entry_shape(f, en, fields[1], e);
  if (st == FG_OK) st = st_entry_offsets(f, en, fields[2], e);
  return st;
}

static fg_status st_parse_meta(fg_safetensors *f, const cJSON *c, fg_err *e) {
  if (!cJSON_IsObject(c))
    return fg_err_set(e, FG_E_FORMAT, "%s: __metadata__ is not a JSON object", f->path);
  f->meta = calloc((size_t)cJSON_GetArraySize(c) + 1, sizeof *f->meta);
  if (!f->meta) return fg_err_set(e, FG_E_NOMEM, "%s: out of memory", f->path);
  for (const cJSON *k = c->child; k; k = k->next) {
    if (!cJSON_IsString(k))
      return fg_err_set(e, FG_E_FORMAT, "%s: __metadata__ '%.60s' is not a string", f->path,
                        k->string);
    st_meta *m = &f->meta[f->n_meta++];
    m->key = strdup(k->string);
    m->value = strdup(k->valuestring);
    if (!m->key || !m->value) return fg_err_set(e, FG_E_NOMEM, "%s: out of memory", f->path);
  }
  return FG_OK;
}

static fg_status st_parse_members(fg_safetensors *f, const cJSON *root, fg_err *e) {
  f->entries = calloc((size_t)cJSON_GetArraySize(root) + 1, sizeof *f->entries);
  if (!f->entries) return fg_err_set(e, FG_E_NOMEM, "%s: out of memory", f->path);
  bool seen_meta = false;
  for (const cJSON *c = root->child; c; c = c->next) {
    fg_status st;
    if (strcmp(c->string, "__metadata__") == 0) {
      if (seen_meta) return fg_err_set(e, FG_E_FORMAT, "%s: __metadata__ appears twice", f->path);
      seen_meta = true;
      st = st_parse_meta(f, c, e);
    } else {
      st = st_parse_entry(f, c, e);
    }
    if (st != FG_OK) return st;
  }
  return FG_OK;
}

static fg_status st_parse_json(fg_safetensors *f, const char *text, size_t n, fg_err *e) {
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(text, n, &end, false);
  if (!root)
    return fg_err_set(e, FG_E_FORMAT, "%s: header is not valid JSON (error near byte %zu)", f->path,
                      end ? (size_t)(end - text) : (size_t)0);
  fg_status st = FG_OK;
  for (const char *p = end; st == FG_OK && p < text + n; p++)
    if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
      st = fg_err_set(e, FG_E_FORMAT, "%s: header has text after its JSON object (byte %zu)",
                      f->path, (size_t)(p - text));
  if (st == FG_OK && !cJSON_IsObject(root))
    st = fg_err_set(e, FG_E_FORMAT, "%s: header is not a JSON object", f->path);
  if (st == FG_OK) st = st_parse_members(f, root, e);
  cJSON_Delete(root);
  return st;
}

/* ---- validation --------------------------------------------------------------------------- */

static int st_cmp_entry_name(const void *a, const void *b) {
  return strcmp(((const st_entry *)a)->info.name, ((const st_entry *)b)->info.name);
}

static int st_cmp_meta_key(const void *a, const void *b) {
  return strcmp(((const st_meta *)a)->key, ((const st_meta *)b)->key);
}

static int st_cmp_offsets(const void *a, const void *b) {
  const st_entry *x = *(const st_entry *const *)a, *y = *(const st_entry *const *)b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  return x->end < y->end ? -1 : x->end > y->end;
}

static fg_status st_check_unique(const fg_safetensors *f, fg_err *e) {
  if (f->n > 1) qsort(f->entries, f->n, sizeof *f->entries, st_cmp_entry_name);
  for (size_t i = 1; i < f->n; i++)
    if (strcmp(f->entries[i - 1].info.name, f->entries[i].info.name) == 0)
      return fg_err_set(e, FG_E_FORMAT, "%s: tensor name '%s' appears twice", f->path,
                        f->entries[i].info.name);
  if (f->n_meta > 1) qsort(f->meta, f->n_meta, sizeof *f->meta, st_cmp_meta_key);
  for (size_t i = 1; i < f->n_meta; i++)
    if (strcmp(f->meta[i - 1].key, f->meta[i].key) == 0)
      return fg_err_set(e, FG_E_FORMAT, "%s: __metadata__ key '%s' appears twice", f->path,
                        f->meta[i].key);
  return FG_OK;
}

static void st_shape_str(const st_entry *en, char *buf, size_t cap) {
  size_t used = 0;
  buf[0] = '\0';
  for (int64_t i = 0; i < en->info.ndim && used < cap; i++)
    used += (size_t)snprintf(buf + used, cap - used, "%s%" PRId64, i ? ", " : "", en->info.dims[i]);
}

/* shape product x dtype size == end - begin; like the reference, any overflow while forming
 * the product (left to right) is an error even when a later dimension is 0. */
static fg_status st_check_size(const fg_safetensors *f, const st_entry *en, fg_err *e) {
  uint64_t numel = 1, bytes;
  bool overflow = false;
  for (int64_t i = 0; i < en->info.ndim && !overflow; i++)
    overflow = __builtin_mul_overflow(numel, (uint64_t)en->info.dims[i], &numel);
  if (overflow || __builtin_mul_overflow(numel, (uint64_t)en->info.elem_bytes, &bytes))
    return fg_err_set(e, FG_E_FORMAT, "%s: tensor '%s': shape x dtype size overflows 64 bits",
                      f->path, en->info.name);
  if (bytes != en->info.nbytes) {
    char shape[160];
    st_shape_str(en, shape, sizeof shape);
    return fg_err_set(e, FG_E_FORMAT,
                      "%s: tensor '%s': shape [%s] of %s is %" PRIu64
                      " bytes but data_offsets "
                      "[%" PRIu64 ", %" PRIu64 "] span %" PRIu64,
                      f->path, en->info.name, shape, en->info.dtype, bytes, en->begin, en->end,
                      en->info.nbytes);
  }
  return FG_OK;
}

/* Sorted by offsets, the entries must tile [0, buffer_len) exactly. */
static fg_status st_check_tiling(const fg_safetensors *f, uint64_t buffer_len, fg_err *e) {
  const st_entry **order = malloc(sizeof *order * (f->n + 1));
  if (!order) return fg_err_set(e, FG_E_NOMEM, "%s: out of memory", f->path);
  for (size_t i = 0; i < f->n; i++) order[i] = &f->entries[i];
  qsort(order, f->n, sizeof *order, st_cmp_offsets);
  fg_status st = FG_OK;
  uint64_t at = 0;
  for (size_t i = 0; i < f->n && st == FG_OK; i++) {
    const st_entry *en = order[i];
    if (en->begin < at)
      st = fg_err_set(e, FG_E_FORMAT,
                      "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                      "] overlap tensor "
                      "'%s', which ends at %" PRIu64,
                      f->path, en->info.name, en->begin, en->end, order[i - 1]->info.name, at);
    else if (en->begin > at)
      st = fg_err_set(e, FG_E_FORMAT,
                      "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                      "] leave a gap: "
                      "bytes [%" PRIu64 ", %" PRIu64 ") belong to no tensor",
                      f->path, en->info.name, en->begin, en->end, at, en->begin);
    at = en->end;
  }
  free(order);
  if (st == FG_OK && at != buffer_len)
    st = fg_err_set(e, FG_E_FORMAT,
                    "%s: the tensors cover %" PRIu64
                    " bytes but the data after the header is %" PRIu64 " bytes (%s)",
                    f->path, at, buffer_len,
                    at > buffer_len ? "the file is truncated" : "trailing bytes");
  return st;
}

static fg_status st_validate(fg_safetensors *f, uint64_t buffer_len, fg_err *e) {
  fg_status st = st_check_unique(f, e);
  for (size_t i = 0; i < f->n && st == FG_OK; i++) st = st_check_size(f, &f->entries[i], e);
  return st == FG_OK ? st_check_tiling(f, buffer_len, e) : st;
}

static fg_status st_load(fg_safetensors *f, fg_err *e) {
  uint64_t size = 0, hlen = 0;
  char *text;
  fg_status st = st_open_file(f, &size, e);
  if (st != FG_OK) return st;
  st = st_read_header(f, size, &text, &hlen, e);
  if (st == FG_OK) st = st_parse_json(f, text, (size_t)hlen, e);
  free(text);
  if (st != FG_OK) return st;
  f->data_start = 8 + hlen;
  return st_validate(f, size - 8 - hlen, e);
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

/* ---- access ------------------------------------------------------------------------------- */

size_t fg_safetensors_count(const fg_safetensors *f) { return f->n; }

const fg_safetensors_info *fg_safetensors_entry(const fg_safetensors *f, size_t i) {
  return i < f->n ? &f->entries[i].info : NULL;
}

static const st_entry *st_find(const fg_safetensors *f, const char *name) {
  st_entry key = {.info = {.name = name}};
  return bsearch(&key, f->entries, f->n, sizeof *f->entries, st_cmp_entry_name);
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
    st_swap(dst, (size_t)en->info.nbytes, st_dtypes[en->dtype].unit);
  return st;
}

fg_status fg_safetensors_get(const fg_safetensors *f, const char *name, fg_tensor **out,
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
  const st_meta *m = bsearch(&k, f->meta, f->n_meta, sizeof *f->meta, st_cmp_meta_key);
  return m ? m->value : NULL;
}

size_t fg_safetensors_meta_count(const fg_safetensors *f) { return f->n_meta; }

const char *fg_safetensors_meta_key(const fg_safetensors *f, size_t i) {
  return i < f->n_meta ? f->meta[i].key : NULL;
}

/* ---- writing: plan ------------------------------------------------------------------------ */

/* One item as it will be laid out. */
typedef struct st_plan {
  const fg_safetensors_item *item;
  int dtype;
  fg_shape shape;
  uint64_t nbytes, begin;
} st_plan;

static fg_status st_plan_item(const char *path, const fg_safetensors_item *it, st_plan *p,
                              fg_err *e) {
  p->item = it;
  size_t bad;
  if (!it->name || !st_utf8_valid(it->name, strlen(it->name), &bad))
    return fg_err_set(e, FG_E_MISUSE, "%s: a tensor name is NULL or not valid UTF-8", path);
  if (strcmp(it->name, "__metadata__") == 0)
    return fg_err_set(e, FG_E_MISUSE, "%s: '__metadata__' cannot name a tensor", path);
  if (it->tensor) {
    p->dtype = st_dtype_find(it->tensor->dtype == FG_F64 ? "F64" : "F32");
    p->shape = it->tensor->shape;
  } else {
    p->dtype = it->dtype ? st_dtype_find(it->dtype) : -1;
    if (p->dtype < 0)
      return fg_err_set(e, FG_E_MISUSE, "%s: tensor '%s': unknown dtype '%s' (known: %s)", path,
                        it->name, it->dtype ? it->dtype : "(null)", ST_DTYPE_LIST);
    fg_status st = fg_shape_make(&p->shape, (int)it->shape.ndim, it->shape.d, e);
    if (st != FG_OK) return st;
  }
  int64_t numel;
  if (fg_shape_numel(&p->shape, &numel) != FG_OK ||
      __builtin_mul_overflow((uint64_t)numel, st_dtypes[p->dtype].size, &p->nbytes))
    return fg_err_set(e, FG_E_OVERFLOW, "%s: tensor '%s': size overflows", path, it->name);
  if (!it->tensor && p->nbytes > 0 && !it->data)
    return fg_err_set(e, FG_E_MISUSE, "%s: tensor '%s': no data", path, it->name);
  return FG_OK;
}

static int st_cmp_plan(const void *a, const void *b) {
  const st_plan *x = a, *y = b;
  if (x->dtype != y->dtype) return x->dtype > y->dtype ? -1 : 1;
  return strcmp(x->item->name, y->item->name);
}

static int st_cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Fails when two of the n strings are equal (sorting them). */
static fg_status st_distinct(const char *path, const char **names, size_t n, const char *what,
                             fg_err *e) {
  qsort(names, n, sizeof *names, st_cmp_str);
  for (size_t i = 1; i < n; i++)
    if (strcmp(names[i - 1], names[i]) == 0)
      return fg_err_set(e, FG_E_MISUSE, "%s: %s '%s' is given twice", path, what, names[i]);
  return FG_OK;
}

/* Validates and orders the items as the reference does; offsets assigned in that order. */
static fg_status st_plan_all(const char *path, const fg_safetensors_item *items, size_t n,
                             st_plan *plans, fg_err *e) {
  fg_status st = FG_OK;
  for (size_t i = 0; i < n && st == FG_OK; i++) st = st_plan_item(path, &items[i], &plans[i], e);
  if (st != FG_OK) return st;
  const char **names = malloc(sizeof *names * (n + 1));
  if (!names) return fg_err_set(e, FG_E_NOMEM, "%s: out of memory", path);
  for (size_t i = 0; i < n; i++) names[i] = items[i].name;
  st = st_distinct(path, names, n, "tensor name", e);
  free(names);
  if (st != FG_OK) return st;
  qsort(plans, n, sizeof *plans, st_cmp_plan);
  uint64_t at = 0;
  for (size_t i = 0; i < n; i++) {
    plans[i].begin = at;
    if (__builtin_add_overflow(at, plans[i].nbytes, &at))
      return fg_err_set(e, FG_E_OVERFLOW, "%s: total size overflows", path);
  }
  return FG_OK;
}

static int st_cmp_kv(const void *a, const void *b) {
  return strcmp((*(const fg_safetensors_kv *const *)a)->key,
                (*(const fg_safetensors_kv *const *)b)->key);
}

/* Checks the metadata and sorts pointers to it by key into `sorted`. */
static fg_status st_check_meta(const char *path, const fg_safetensors_kv *meta, size_t n,
                               const fg_safetensors_kv **sorted, fg_err *e) {
  size_t bad;
  for (size_t i = 0; i < n; i++) {
    if (!meta[i].key || !meta[i].value)
      return fg_err_set(e, FG_E_MISUSE, "%s: metadata entry %zu has a NULL key or value", path, i);
    if (!st_utf8_valid(meta[i].key, strlen(meta[i].key), &bad) ||
        !st_utf8_valid(meta[i].value, strlen(meta[i].value), &bad))
      return fg_err_set(e, FG_E_MISUSE, "%s: metadata '%.60s' is not valid UTF-8", path,
                        meta[i].key);
    sorted[i] = &meta[i];
  }
  qsort(sorted, n, sizeof *sorted, st_cmp_kv);
  for (size_t i = 1; i < n; i++)
    if (strcmp(sorted[i - 1]->key, sorted[i]->key) == 0)
      return fg_err_set(e, FG_E_MISUSE, "%s: metadata key '%s' is given twice", path,
                        sorted[i]->key);
  return FG_OK;
}

/* ---- writing: header ---------------------------------------------------------------------- */

/* Adds item to parent (an object when key is set, else an array); false on failure, after
 * which item has been freed. */
static bool st_add(cJSON *parent, const char *key, cJSON *item) {
  if (!item) return false;
  bool ok = key ? cJSON_AddItemToObject(parent, key, item) : cJSON_AddItemToArray(parent, item);
  if (!ok) cJSON_Delete(item);
  return ok;
}

static cJSON *st_uint(uint64_t v) {
  char buf[24];
  snprintf(buf, sizeof buf, "%" PRIu64, v);
  return cJSON_CreateRaw(buf);
}

static cJSON *st_entry_json(const st_plan *p) {
  cJSON *o = cJSON_CreateObject(), *shape = NULL, *offs = NULL;
  if (!o) return NULL;
  /* the arrays join the object first, so that one cJSON_Delete frees everything */
  bool ok = st_add(o, "dtype", cJSON_CreateString(st_dtypes[p->dtype].name)) &&
            st_add(o, "shape", shape = cJSON_CreateArray()) &&
            st_add(o, "data_offsets", offs = cJSON_CreateArray());
  for (int64_t i = 0; ok && i < p->shape.ndim; i++)
    ok = st_add(shape, NULL, st_uint((uint64_t)p->shape.d[i]));
  ok = ok && st_add(offs, NULL, st_uint(p->begin)) &&
       st_add(offs, NULL, st_uint(p->begin + p->nbytes));
  if (!ok) {
    cJSON_Delete(o);
    return NULL;
  }
  return o;
}

static cJSON *st_meta_json(const fg_safetensors_kv *const *sorted, size_t n) {
  cJSON *o = cJSON_CreateObject();
  for (size_t i = 0; o && i < n; i++)
    if (!st_add(o, sorted[i]->key, cJSON_CreateString(sorted[i]->value))) {
      cJSON_Delete(o);
      return NULL;
    }
  return o;
}

/* The JSON header padded with spaces to a multiple of 8 (so that data starts aligned). */
static fg_status st_header(const char *path, const st_plan *plans, size_t n,
                           const fg_safetensors_kv *const *meta, size_t n_meta, char **out,
                           size_t *len, fg_err *e) {
  cJSON *root = cJSON_CreateObject();
  bool ok = root != NULL;
  if (ok && n_meta > 0) ok = st_add(root, "__metadata__", st_meta_json(meta, n_meta));
  for (size_t i = 0; ok && i < n; i++)
    ok = st_add(root, plans[i].item->name, st_entry_json(&plans[i]));
  char *text = ok ? cJSON_PrintUnformatted(root) : NULL;
  cJSON_Delete(root);
  if (!text) return fg_err_set(e, FG_E_NOMEM, "%s: out of memory for the header", path);
  size_t raw = strlen(text), padded = (raw + 7) / 8 * 8;
  char *buf = malloc(padded);
  if (buf) {
    memcpy(buf, text, raw);
    memset(buf + raw, ' ', padded - raw);
  }
  cJSON_free(text);
  if (!buf) return fg_err_set(e, FG_E_NOMEM, "%s: out of memory for the header", path);
  if (padded > FG_SAFETENSORS_MAX_HEADER) {
    free(buf);
    return fg_err_set(e, FG_E_MISUSE, "%s: the header would be %zu bytes, over the %u limit", path,
                      padded, FG_SAFETENSORS_MAX_HEADER);
  }
  *out = buf;
  *len = padded;
  return FG_OK;
}

/* ---- writing: data ------------------------------------------------------------------------ */

#define ST_CHUNK 8192 /* elements per staging copy */

/* A strided or big-endian tensor goes through a staging buffer as little-endian values. */
static bool st_write_tensor_staged(FILE *fp, const fg_tensor *t) {
  uint8_t stage[ST_CHUNK * 8];
  int64_t n = fg_tensor_numel(t);
  size_t size = t->dtype == FG_F64 ? 8 : 4;
  for (int64_t at = 0; at < n; at += ST_CHUNK) {
    int64_t m = n - at < ST_CHUNK ? n - at : ST_CHUNK;
    for (int64_t i = 0; i < m; i++) {
      double v = fg_tensor_get(t, at + i);
      float f = (float)v;
      memcpy(stage + (size_t)i * size, size == 8 ? (const void *)&v : (const void *)&f, size);
    }
    if (!st_host_le()) st_swap(stage, (size_t)m * size, size);
    if (fwrite(stage, size, (size_t)m, fp) != (size_t)m) return false;
  }
  return true;
}

static bool st_write_raw_swapped(FILE *fp, const uint8_t *data, uint64_t nbytes, size_t unit) {
  uint8_t stage[ST_CHUNK * 8];
  for (uint64_t at = 0; at < nbytes; at += sizeof stage) {
    size_t m = nbytes - at < sizeof stage ? (size_t)(nbytes - at) : sizeof stage;
    memcpy(stage, data + at, m);
    st_swap(stage, m, unit);
    if (fwrite(stage, 1, m, fp) != m) return false;
  }
  return true;
}

static bool st_write_item(FILE *fp, const st_plan *p) {
  const fg_safetensors_item *it = p->item;
  if (p->nbytes == 0) return true;
  if (it->tensor) {
    if (fg_tensor_is_contiguous(it->tensor) && st_host_le())
      return fwrite(fg_tensor_data(it->tensor), 1, (size_t)p->nbytes, fp) == p->nbytes;
    return st_write_tensor_staged(fp, it->tensor);
  }
  if (st_host_le()) return fwrite(it->data, 1, (size_t)p->nbytes, fp) == p->nbytes;
  return st_write_raw_swapped(fp, it->data, p->nbytes, st_dtypes[p->dtype].unit);
}

static bool st_write_stream(FILE *fp, const char *header, size_t hlen, const st_plan *plans,
                            size_t n) {
  uint8_t lb[8];
  for (int i = 0; i < 8; i++) lb[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
  bool ok = fwrite(lb, 1, 8, fp) == 8 && fwrite(header, 1, hlen, fp) == hlen;
  for (size_t i = 0; ok && i < n; i++) ok = st_write_item(fp, &plans[i]);
  return ok && fflush(fp) == 0 && fsync(fileno(fp)) == 0;
}

/* ---- writing: atomic replacement ---------------------------------------------------------- */

/* fsync of the directory makes the rename itself durable. */
static fg_status st_sync_dir(const char *path, fg_err *e) {
  char *dir = strdup(path);
  if (!dir) return fg_err_set(e, FG_E_NOMEM, "%s: out of memory", path);
  char *slash = strrchr(dir, '/');
  const char *d = dir;
  if (!slash)
    d = ".";
  else if (slash == dir)
    d = "/";
  else
    *slash = '\0';
  int fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  fg_status st = FG_OK;
  /* EINVAL: file systems that cannot sync a directory; nothing more can be done there */
  if (fd < 0 || (fsync(fd) != 0 && errno != EINVAL))
    st = fg_err_set(e, FG_E_IO, "%s: written, but syncing directory %s failed: %s", path, d,
                    strerror(errno));
  if (fd >= 0) close(fd);
  free(dir);
  return st;
}

static fg_status st_write_atomic(const char *path, const char *header, size_t hlen,
                                 const st_plan *plans, size_t n, fg_err *e) {
  size_t cap = strlen(path) + 32;
  char *tmp = malloc(cap);
  if (!tmp) return fg_err_set(e, FG_E_NOMEM, "%s: out of memory", path);
  snprintf(tmp, cap, "%s.tmp.%ld", path, (long)getpid());
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  FILE *fp = fd >= 0 ? fdopen(fd, "wb") : NULL;
  bool created = fp != NULL;
  fg_status st = FG_OK;
  if (!fp) {
    st = fg_err_set(e, FG_E_IO, "%s: cannot create the temporary file %s: %s", path, tmp,
                    strerror(errno));
    if (fd >= 0) close(fd);
  } else {
    bool ok = st_write_stream(fp, header, hlen, plans, n);
    int err = errno;
    if (fclose(fp) != 0 && ok) {
      ok = false;
      err = errno;
    }
    if (!ok)
      st = fg_err_set(e, FG_E_IO,
                      "%s: writing the temporary file %s failed: %s (the previous "
                      "file is untouched)",
                      path, tmp, strerror(err));
    else if (rename(tmp, path) != 0)
      st = fg_err_set(e, FG_E_IO, "%s: cannot replace it: %s (the previous file is untouched)",
                      path, strerror(errno));
  }
  if (st != FG_OK && created) unlink(tmp);
  free(tmp);
  return st == FG_OK ? st_sync_dir(path, e) : st;
}

fg_status fg_safetensors_write(const char *path, const fg_safetensors_item *items, size_t n_items,
                               const fg_safetensors_kv *meta, size_t n_meta, fg_err *e) {
  st_plan *plans = calloc(n_items + 1, sizeof *plans);
  const fg_safetensors_kv **keys = calloc(n_meta + 1, sizeof *keys);
  char *header = NULL;
  size_t hlen = 0;
  fg_status st = plans && keys ? FG_OK : fg_err_set(e, FG_E_NOMEM, "%s: out of memory", path);
  if (st == FG_OK) st = st_plan_all(path, items, n_items, plans, e);
  if (st == FG_OK) st = st_check_meta(path, meta, n_meta, keys, e);
  if (st == FG_OK) st = st_header(path, plans, n_items, keys, n_meta, &header, &hlen, e);
  if (st == FG_OK) st = st_write_atomic(path, header, hlen, plans, n_items, e);
  free(header);
  free(keys);
  free(plans);
  return st;
}
