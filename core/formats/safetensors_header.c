/* The safetensors header: the dtypes it may name, and parsing and validating its JSON into the
 * opened file's entries and metadata (the rules are in core/formats/safetensors.h).  cJSON
 * parses the text; numbers arrive as doubles, so integers past 2^53 are refused. */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/formats/safetensors_internal.h"
#include "core/size.h"
#include "core/utf8.h"

/* JSON numbers arrive as doubles: integers above this may already have been rounded. */
#define ST_MAX_INT 9007199254740992.0

/* ---- dtypes ---- */

const st_dtype fg__st_dtypes[ST_NDTYPES] = {
    {"BOOL", 1, 1},    {"U8", 1, 1},  {"I8", 1, 1},  {"F8_E5M2", 1, 1}, {"F8_E4M3", 1, 1},
    {"F8_E8M0", 1, 1}, {"I16", 2, 2}, {"U16", 2, 2}, {"F16", 2, 2},     {"BF16", 2, 2},
    {"I32", 4, 4},     {"U32", 4, 4}, {"F32", 4, 4}, {"C64", 8, 4},     {"F64", 8, 8},
    {"I64", 8, 8},     {"U64", 8, 8},
};

int fg__st_dtype_find(const char *name) {
  for (int i = 0; i < ST_NDTYPES; i++)
    if (strcmp(fg__st_dtypes[i].name, name) == 0) return i;
  return -1;
}

int fg__st_cmp_entry_name(const void *a, const void *b) {
  return strcmp(((const st_entry *)a)->info.name, ((const st_entry *)b)->info.name);
}

int fg__st_cmp_meta_key(const void *a, const void *b) {
  return strcmp(((const st_meta *)a)->key, ((const st_meta *)b)->key);
}

/* ---- the text ---- */

/* Byte-level checks on the header text before JSON parsing sees it. */
static fg_status st_check_text(const fg_safetensors *f, const char *text, size_t n, fg_err *e) {
  size_t bad;
  if (!fg_utf8_valid(text, n, &bad))
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

/* ---- the JSON ---- */

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
  en->dtype = fg__st_dtype_find(v->valuestring);
  if (en->dtype < 0)
    return fg_err_set(e, FG_E_FORMAT, "%s: tensor '%s': unknown dtype '%.40s' (known: %s)", f->path,
                      en->info.name, v->valuestring, ST_DTYPE_LIST);
  en->info.dtype = fg__st_dtypes[en->dtype].name;
  en->info.elem_bytes = fg__st_dtypes[en->dtype].size;
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

/* ---- validation ---- */

static int st_cmp_offsets(const void *a, const void *b) {
  const st_entry *x = *(const st_entry *const *)a, *y = *(const st_entry *const *)b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  return x->end < y->end ? -1 : x->end > y->end;
}

static fg_status st_check_unique(const fg_safetensors *f, fg_err *e) {
  if (f->n > 1) qsort(f->entries, f->n, sizeof *f->entries, fg__st_cmp_entry_name);
  for (size_t i = 1; i < f->n; i++)
    if (strcmp(f->entries[i - 1].info.name, f->entries[i].info.name) == 0)
      return fg_err_set(e, FG_E_FORMAT, "%s: tensor name '%s' appears twice", f->path,
                        f->entries[i].info.name);
  if (f->n_meta > 1) qsort(f->meta, f->n_meta, sizeof *f->meta, fg__st_cmp_meta_key);
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
 * the product is an error even when a dimension is 0 (and so is a product of the nonzero sizes
 * past int64, which a shape's strides would overflow). */
static fg_status st_check_size(const fg_safetensors *f, const st_entry *en, fg_err *e) {
  int64_t numel, nbytes;
  if (en->info.ndim > INT32_MAX || !fg_size_product(en->info.dims, (int)en->info.ndim, &numel) ||
      !fg_size_mul(numel, (int64_t)en->info.elem_bytes, &nbytes))
    return fg_err_set(e, FG_E_FORMAT, "%s: tensor '%s': shape x dtype size overflows 64 bits",
                      f->path, en->info.name);
  uint64_t bytes = (uint64_t)nbytes;
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

fg_status fg__st_parse_header(fg_safetensors *f, const char *text, size_t n, uint64_t buffer_len,
                              fg_err *e) {
  fg_status st = st_check_text(f, text, n, e);
  if (st == FG_OK) st = st_parse_json(f, text, n, e);
  return st == FG_OK ? st_validate(f, buffer_len, e) : st;
}
