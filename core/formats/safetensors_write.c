/* Writing safetensors files as the reference implementation lays them out (entries by
 * descending dtype size then name, the header padded to a multiple of 8 so every tensor is
 * aligned), replacing the destination atomically (core/atomic_file.h).  cJSON prints the
 * header; numbers are printed as raw text so that offsets past 2^31 stay exact integers. */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/atomic_file.h"
#include "core/formats/safetensors_internal.h"
#include "core/utf8.h"

/* ---- plan ---- */

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
  if (!it->name || !fg_utf8_valid(it->name, strlen(it->name), &bad))
    return fg_err_set(e, FG_E_MISUSE, "%s: a tensor name is NULL or not valid UTF-8", path);
  if (strcmp(it->name, "__metadata__") == 0)
    return fg_err_set(e, FG_E_MISUSE, "%s: '__metadata__' cannot name a tensor", path);
  if (it->tensor) {
    p->dtype = fg__st_dtype_find(it->tensor->dtype == FG_F64 ? "F64" : "F32");
    p->shape = it->tensor->shape;
  } else {
    p->dtype = it->dtype ? fg__st_dtype_find(it->dtype) : -1;
    if (p->dtype < 0)
      return fg_err_set(e, FG_E_MISUSE, "%s: tensor '%s': unknown dtype '%s' (known: %s)", path,
                        it->name, it->dtype ? it->dtype : "(null)", ST_DTYPE_LIST);
    fg_status st = fg_shape_make(&p->shape, (int)it->shape.ndim, it->shape.d, e);
    if (st != FG_OK) return st;
  }
  int64_t numel;
  if (fg_shape_numel(&p->shape, &numel, NULL) != FG_OK ||
      __builtin_mul_overflow((uint64_t)numel, fg__st_dtypes[p->dtype].size, &p->nbytes))
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
    if (!fg_utf8_valid(meta[i].key, strlen(meta[i].key), &bad) ||
        !fg_utf8_valid(meta[i].value, strlen(meta[i].value), &bad))
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

/* ---- header ---- */

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
  bool ok = st_add(o, "dtype", cJSON_CreateString(fg__st_dtypes[p->dtype].name)) &&
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

/* ---- data ---- */

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
  return st_write_raw_swapped(fp, it->data, p->nbytes, fg__st_dtypes[p->dtype].unit);
}

typedef struct st_output {
  const char *header;
  size_t hlen;
  const st_plan *plans;
  size_t n;
} st_output;

/* The length, the header, the tensors.  It stops at the first failed fwrite, which
 * fg_atomic_file_write reports with its errno. */
static fg_status st_write_stream(FILE *fp, void *ctx, fg_err *e) {
  (void)e;
  const st_output *o = ctx;
  uint8_t lb[8];
  for (int i = 0; i < 8; i++) lb[i] = (uint8_t)((uint64_t)o->hlen >> (8 * i));
  bool ok = fwrite(lb, 1, 8, fp) == 8 && fwrite(o->header, 1, o->hlen, fp) == o->hlen;
  for (size_t i = 0; ok && i < o->n; i++) ok = st_write_item(fp, &o->plans[i]);
  return FG_OK;
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
  st_output o = {header, hlen, plans, n_items};
  if (st == FG_OK) st = fg_atomic_file_write(path, st_write_stream, &o, e);
  free(header);
  free(keys);
  free(plans);
  return st;
}
