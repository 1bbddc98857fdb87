/* NumPy .npy files: "\x93NUMPY", a major and minor version byte, a little-endian header length
 * (2 bytes in version 1.0, 4 in 2.0 and 3.0), a Python dict literal such as
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (10, 2), }
 * padded with spaces and a newline, then the array's bytes.  The dict is parsed as the small
 * literal grammar numpy writes (strings, True/False, tuples of ints), never evaluated. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/formats/npy.h"
#include "core/formats/gzip.h"
#include "core/size.h"

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_LEN 6
/* numpy writes headers of a few hundred bytes; this bounds what a corrupt length can cost */
#define NPY_MAX_HEADER (1u << 20)

typedef enum npy_kind { NPY_U8, NPY_F32 } npy_kind;

typedef struct npy_header {
  npy_kind kind;
  fg_shape shape;
  bool seen_descr, seen_fortran, seen_shape;
} npy_header;

/* A cursor over the header text, for messages that point at a character. */
typedef struct npy_lex {
  const char *path;
  const char *s;
  size_t n, i;
} npy_lex;

static fg_status lex_fail(const npy_lex *lx, const char *what, fg_err *e) {
  return fg_err_set(e, FG_E_FORMAT, "%s: malformed .npy header at character %zu: %s", lx->path,
                    lx->i, what);
}

static void lex_ws(npy_lex *lx) {
  while (lx->i < lx->n && (lx->s[lx->i] == ' ' || lx->s[lx->i] == '\n' || lx->s[lx->i] == '\t' ||
                           lx->s[lx->i] == '\r'))
    lx->i++;
}

static bool lex_peek(npy_lex *lx, char c) {
  lex_ws(lx);
  return lx->i < lx->n && lx->s[lx->i] == c;
}

static fg_status lex_expect(npy_lex *lx, char c, fg_err *e) {
  if (!lex_peek(lx, c)) {
    char what[48];
    snprintf(what, sizeof what, "expected '%c'", c);
    return lex_fail(lx, what, e);
  }
  lx->i++;
  return FG_OK;
}

/* A quoted string without escapes (numpy's keys and type strings never have any). */
static fg_status lex_string(npy_lex *lx, char *buf, size_t cap, fg_err *e) {
  lex_ws(lx);
  if (lx->i >= lx->n || (lx->s[lx->i] != '\'' && lx->s[lx->i] != '"'))
    return lex_fail(lx, "expected a quoted string", e);
  char q = lx->s[lx->i++];
  size_t start = lx->i;
  while (lx->i < lx->n && lx->s[lx->i] != q) {
    if (lx->s[lx->i] == '\\') return lex_fail(lx, "escape sequences are not supported", e);
    lx->i++;
  }
  if (lx->i >= lx->n) return lex_fail(lx, "unterminated string", e);
  size_t len = lx->i - start;
  lx->i++;
  if (len >= cap) return lex_fail(lx, "string too long", e);
  memcpy(buf, lx->s + start, len);
  buf[len] = '\0';
  return FG_OK;
}

static fg_status lex_bool(npy_lex *lx, bool *v, fg_err *e) {
  lex_ws(lx);
  if (lx->n - lx->i >= 4 && memcmp(lx->s + lx->i, "True", 4) == 0) {
    lx->i += 4;
    *v = true;
  } else if (lx->n - lx->i >= 5 && memcmp(lx->s + lx->i, "False", 5) == 0) {
    lx->i += 5;
    *v = false;
  } else {
    return lex_fail(lx, "expected True or False", e);
  }
  return FG_OK;
}

/* A non-negative integer (with Python 2's optional 'L' suffix, found in old files). */
static fg_status lex_int(npy_lex *lx, int64_t *v, fg_err *e) {
  lex_ws(lx);
  if (lx->i >= lx->n || lx->s[lx->i] < '0' || lx->s[lx->i] > '9')
    return lex_fail(lx, "expected a non-negative integer", e);
  int64_t x = 0;
  while (lx->i < lx->n && lx->s[lx->i] >= '0' && lx->s[lx->i] <= '9') {
    if (__builtin_mul_overflow(x, 10, &x) || __builtin_add_overflow(x, lx->s[lx->i] - '0', &x))
      return lex_fail(lx, "integer too large", e);
    lx->i++;
  }
  if (lx->i < lx->n && lx->s[lx->i] == 'L') lx->i++;
  *v = x;
  return FG_OK;
}

/* A tuple of ints: "()", "(5,)", "(2, 3)", "(2, 3,)"; "(5)" is an int in Python, not a tuple. */
static fg_status lex_shape(npy_lex *lx, fg_shape *shape, fg_err *e) {
  fg_status st = lex_expect(lx, '(', e);
  shape->ndim = 0;
  bool trailing_comma = false;
  while (st == FG_OK && !lex_peek(lx, ')')) {
    if (shape->ndim == FG_MAX_DIMS)
      return lex_fail(lx, "more than 8 dimensions (flowgrad tensors hold at most 8)", e);
    st = lex_int(lx, &shape->d[shape->ndim++], e);
    trailing_comma = false;
    if (st == FG_OK && !lex_peek(lx, ')')) {
      st = lex_expect(lx, ',', e);
      trailing_comma = true;
    }
  }
  if (st != FG_OK) return st;
  if (shape->ndim == 1 && !trailing_comma)
    return lex_fail(lx, "shape is an int, not a tuple (a 1-tuple is written (n,))", e);
  lx->i++;
  return FG_OK;
}

static fg_status npy_descr(npy_lex *lx, npy_header *h, fg_err *e) {
  lex_ws(lx);
  if (lx->i < lx->n && lx->s[lx->i] == '[')
    return fg_err_set(e, FG_E_FORMAT,
                      "%s: structured dtype (a list 'descr') is not supported; only '|u1' "
                      "(uint8) and '<f4' (float32) are",
                      lx->path);
  char d[32];
  fg_status st = lex_string(lx, d, sizeof d, e);
  if (st != FG_OK) return st;
  if (strcmp(d, "|u1") == 0 || strcmp(d, "<u1") == 0) {
    h->kind = NPY_U8;
  } else if (strcmp(d, "<f4") == 0) {
    h->kind = NPY_F32;
  } else if (strcmp(d, ">f4") == 0) {
    return fg_err_set(e, FG_E_FORMAT,
                      "%s: big-endian float32 ('>f4') is not supported; save it little-endian "
                      "(arr.astype('<f4'))",
                      lx->path);
  } else {
    return fg_err_set(e, FG_E_FORMAT,
                      "%s: dtype '%s' is not supported; only '|u1' (uint8) and '<f4' (float32) "
                      "are (convert with arr.astype(np.float32))",
                      lx->path, d);
  }
  return FG_OK;
}

static fg_status npy_entry(npy_lex *lx, npy_header *h, fg_err *e) {
  char key[32];
  fg_status st = lex_string(lx, key, sizeof key, e);
  if (st == FG_OK) st = lex_expect(lx, ':', e);
  if (st != FG_OK) return st;
  bool *seen = strcmp(key, "descr") == 0           ? &h->seen_descr
               : strcmp(key, "fortran_order") == 0 ? &h->seen_fortran
               : strcmp(key, "shape") == 0         ? &h->seen_shape
                                                   : NULL;
  if (!seen)
    return fg_err_set(e, FG_E_FORMAT,
                      "%s: unexpected header key '%s' (a .npy header has exactly 'descr', "
                      "'fortran_order' and 'shape')",
                      lx->path, key);
  if (*seen) return fg_err_set(e, FG_E_FORMAT, "%s: header key '%s' appears twice", lx->path, key);
  *seen = true;
  if (seen == &h->seen_descr) return npy_descr(lx, h, e);
  if (seen == &h->seen_shape) return lex_shape(lx, &h->shape, e);
  bool fortran = false;
  st = lex_bool(lx, &fortran, e);
  if (st == FG_OK && fortran)
    return fg_err_set(e, FG_E_FORMAT,
                      "%s: fortran_order is True; only C-order arrays are supported (save "
                      "np.ascontiguousarray(arr))",
                      lx->path);
  return st;
}

static fg_status npy_parse_dict(npy_lex *lx, npy_header *h, fg_err *e) {
  fg_status st = lex_expect(lx, '{', e);
  while (st == FG_OK && !lex_peek(lx, '}')) {
    st = npy_entry(lx, h, e);
    if (st == FG_OK && !lex_peek(lx, '}')) st = lex_expect(lx, ',', e);
  }
  if (st != FG_OK) return st;
  lx->i++;
  lex_ws(lx);
  if (lx->i != lx->n) return lex_fail(lx, "text after the closing '}'", e);
  if (!h->seen_descr || !h->seen_fortran || !h->seen_shape)
    return fg_err_set(e, FG_E_FORMAT, "%s: header lacks '%s'", lx->path,
                      !h->seen_descr     ? "descr"
                      : !h->seen_fortran ? "fortran_order"
                                         : "shape");
  return FG_OK;
}

static uint32_t le_uint(const uint8_t *p, int bytes) {
  uint32_t v = 0;
  for (int i = bytes - 1; i >= 0; i--) v = v << 8 | p[i];
  return v;
}

/* Reads the preamble (magic, version, header length); returns the header text length. */
static fg_status npy_preamble(fg_gzin *in, uint32_t *hlen, fg_err *e) {
  uint8_t p[8];
  size_t got;
  fg_status st = fg_gzin_read(in, p, 8, &got, e);
  if (st != FG_OK) return st;
  if (got < NPY_MAGIC_LEN || memcmp(p, NPY_MAGIC, NPY_MAGIC_LEN) != 0)
    return fg_err_set(e, FG_E_FORMAT, "%s: not a .npy file (no \\x93NUMPY magic)", in->path);
  if (got < 8) return fg_err_set(e, FG_E_FORMAT, "%s: truncated in the version bytes", in->path);
  if ((p[6] != 1 && p[6] != 2 && p[6] != 3) || p[7] != 0)
    return fg_err_set(e, FG_E_FORMAT,
                      "%s: .npy format version %u.%u is not supported (1.0, 2.0 and 3.0 are)",
                      in->path, p[6], p[7]);
  int lenbytes = p[6] == 1 ? 2 : 4;
  st = fg_gzin_read_exact(in, p, (size_t)lenbytes, "header length", e);
  if (st != FG_OK) return st;
  *hlen = le_uint(p, lenbytes);
  if (*hlen > NPY_MAX_HEADER)
    return fg_err_set(e, FG_E_FORMAT, "%s: header length %u exceeds the %u-byte limit", in->path,
                      *hlen, NPY_MAX_HEADER);
  return FG_OK;
}

static fg_status npy_header_read(fg_gzin *in, npy_header *h, fg_err *e) {
  uint32_t hlen = 0;
  fg_status st = npy_preamble(in, &hlen, e);
  if (st != FG_OK) return st;
  char *text = malloc(hlen + 1);
  if (!text) return fg_err_set(e, FG_E_NOMEM, "%s: out of memory for the header", in->path);
  st = fg_gzin_read_exact(in, text, hlen, "header", e);
  if (st == FG_OK) {
    npy_lex lx = {.path = in->path, .s = text, .n = hlen};
    memset(h, 0, sizeof *h);
    st = npy_parse_dict(&lx, h, e);
  }
  free(text);
  return st;
}

/* Element count and bytes of the declared array, overflow-checked (strides included: a shape
 * with a 0 must not hide sizes whose product overflows). */
static fg_status npy_sizes(const char *path, const npy_header *h, uint64_t *numel, uint64_t *bytes,
                           fg_err *e) {
  int64_t n, b;
  if (!fg_size_product(h->shape.d, (int)h->shape.ndim, &n) ||
      !fg_size_mul(n, h->kind == NPY_F32 ? 4 : 1, &b))
    return fg_err_set(e, FG_E_FORMAT,
                      "%s: declared shape overflows (%lld dimensions, the first %lld)", path,
                      (long long)h->shape.ndim, (long long)h->shape.d[0]);
  *numel = (uint64_t)n;
  *bytes = (uint64_t)b;
  return FG_OK;
}

static float npy_f32_le(const uint8_t *p) {
  uint32_t bits =
      (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

static fg_status npy_bad_value(const char *path, const fg_shape *s, int64_t flat, float v,
                               fg_err *e) {
  char idx[160] = "";
  size_t used = 0;
  int64_t rest = flat;
  int64_t coords[FG_MAX_DIMS];
  for (int64_t d = s->ndim - 1; d >= 0; d--) {
    coords[d] = rest % s->d[d];
    rest /= s->d[d];
  }
  for (int64_t d = 0; d < s->ndim && used < sizeof idx; d++)
    used += (size_t)snprintf(idx + used, sizeof idx - used, "%s%lld", d ? ", " : "",
                             (long long)coords[d]);
  return fg_err_set(e, FG_E_NUMERIC, "%s: element %lld (index [%s]) is %s; data must be finite",
                    path, (long long)flat, idx,
                    isnan(v) ? "NaN"
                    : v > 0  ? "+inf"
                             : "-inf");
}

static fg_status npy_to_tensor(const char *path, const npy_header *h, const uint8_t *data,
                               fg_tensor **out, fg_err *e) {
  fg_status st = fg_tensor_new(out, FG_F32, &h->shape, e);
  if (st != FG_OK) return st;
  float *dst = fg_tensor_data(*out);
  int64_t n = fg_tensor_numel(*out);
  for (int64_t i = 0; i < n; i++) {
    dst[i] = h->kind == NPY_U8 ? (float)data[i] : npy_f32_le(data + 4 * i);
    if (!isfinite(dst[i])) {
      st = npy_bad_value(path, &h->shape, i, dst[i], e);
      fg_tensor_free(*out);
      *out = NULL;
      return st;
    }
  }
  return FG_OK;
}

static fg_status npy_parse(fg_gzin *in, fg_tensor **out, fg_err *e) {
  npy_header h;
  fg_status st = npy_header_read(in, &h, e);
  uint64_t numel = 0, bytes = 0;
  if (st == FG_OK) st = npy_sizes(in->path, &h, &numel, &bytes, e);
  if (st != FG_OK) return st;
  char what[48];
  snprintf(what, sizeof what, "%llu data bytes", (unsigned long long)bytes);
  uint8_t *data;
  st = fg_gzin_read_rest(in, bytes, what, &data, e);
  if (st != FG_OK) return st;
  st = npy_to_tensor(in->path, &h, data, out, e);
  free(data);
  return st;
}

fg_status fg_npy_load(fg_tensor **out, const char *path, fg_err *e) {
  *out = NULL;
  fg_gzin in;
  fg_status st = fg_gzin_open(&in, path, e);
  if (st != FG_OK) return st;
  st = npy_parse(&in, out, e);
  fg_gzin_close(&in);
  return st;
}
