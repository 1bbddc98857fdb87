/* Safetensors files, flowgrad's checkpoint format (readable by Python's safetensors and so by
 * PyTorch): an 8-byte little-endian header length N, N bytes of UTF-8 JSON
 *   {"__metadata__": {"key": "value", ...},
 *    "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}
 * padded with spaces, then the tensors' bytes, little-endian, C order, each [begin, end) of the
 * buffer that follows the header.
 *
 * The writer lays files out as the reference implementation does (entries by descending dtype
 * size then name, header padded to a multiple of 8 so every tensor is aligned) and replaces the
 * destination atomically (core/atomic_file.h): it writes "<path>.tmp.<pid>", flushes and fsyncs
 * it, renames it over <path> and fsyncs the directory, so a crash or kill at any moment leaves
 * either the previous file or the new one, never a mix.  A killed writer may leave its .tmp
 * file behind; it is never read and may be deleted.
 *
 * The reader validates the whole header when opening, as the reference does, and more strictly:
 *   - file of at least 8 bytes; N <= FG_SAFETENSORS_MAX_HEADER; 8 + N <= file length;
 *   - the header is valid UTF-8, starts with '{', is one well-formed JSON object followed only
 *     by whitespace, and has no escaped NUL (\u0000);
 *   - "__metadata__", if present (once), is an object whose values are all strings, keys unique;
 *   - every other member is a tensor entry: an object with exactly the keys "dtype" (a known
 *     dtype name), "shape" (an array of non-negative integers) and "data_offsets" (an array of
 *     two non-negative integers), each once; tensor names are unique;
 *   - shape product x dtype size == end - begin, with overflow checked; integers above 2^53 are
 *     refused (JSON numbers are read as doubles);
 *   - sorted by offsets, the entries tile the buffer exactly: the first begins at 0, each begins
 *     where the previous ended, and the last ends at file length - 8 - N.
 * Anything else is rejected with a message naming the file and, where there is one, the entry.
 * Tensor data is read on demand from the open file (the file stays open until closed, so a
 * concurrent atomic replacement does not disturb an open reader). */
#ifndef FG_SAFETENSORS_H
#define FG_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "core/tensor.h"

/* The reference implementation's limit on the JSON header, against memory exhaustion. */
#define FG_SAFETENSORS_MAX_HEADER 100000000u

/* One tensor to write.  With `tensor` set, it is written with its own dtype (F32 or F64) as a
 * contiguous copy of the view.  With `tensor` NULL, `dtype` names a safetensors dtype ("I64",
 * "U64", "U8", ...) and `data` holds fg_shape_count(&shape) elements in host byte order (for
 * step counters, RNG states and other integers). */
typedef struct fg_safetensors_item {
  const char *name;
  const fg_tensor *tensor;
  const char *dtype;
  fg_shape shape;
  const void *data;
} fg_safetensors_item;

/* One "__metadata__" string pair. */
typedef struct fg_safetensors_kv {
  const char *key;
  const char *value;
} fg_safetensors_kv;

/* Writes the items and metadata to path atomically (see above).  Names must be unique, valid
 * UTF-8 and not "__metadata__"; metadata keys unique; all strings valid UTF-8.  On failure the
 * file at path (if any) is untouched and the temporary file removed. */
fg_status fg_safetensors_write(const char *path, const fg_safetensors_item *items, size_t n_items,
                               const fg_safetensors_kv *meta, size_t n_meta, fg_err *e);

/* An opened, validated file. */
typedef struct fg_safetensors fg_safetensors;

/* What the header says about one tensor (pointers valid until fg_safetensors_close). */
typedef struct fg_safetensors_info {
  const char *name;
  const char *dtype;   /* "F32", "I64", ... */
  size_t elem_bytes;   /* bytes per element */
  int64_t ndim;        /* may exceed FG_MAX_DIMS in a foreign file */
  const int64_t *dims; /* ndim sizes */
  uint64_t nbytes;     /* end - begin */
} fg_safetensors_info;

/* Opens and validates path into *out (close with fg_safetensors_close); on failure *out is
 * NULL. */
fg_status fg_safetensors_open(fg_safetensors **out, const char *path, fg_err *e);
/* NULL is a no-op. */
void fg_safetensors_close(fg_safetensors *f);

/* Tensors in name order: count, i-th, and lookup by name (NULL when absent). */
size_t fg_safetensors_count(const fg_safetensors *f);
const fg_safetensors_info *fg_safetensors_entry(const fg_safetensors *f, size_t i);
const fg_safetensors_info *fg_safetensors_find(const fg_safetensors *f, const char *name);

/* A new tensor in *out with the named entry's data; the entry must be F32 or F64 (which it
 * keeps) with at most FG_MAX_DIMS dimensions.  On failure *out is NULL. */
fg_status fg_safetensors_get(fg_tensor **out, const fg_safetensors *f, const char *name, fg_err *e);
/* Copies the named entry's nbytes into dst (cap bytes available), converted to host byte
 * order, for any dtype.  On failure dst's content is unspecified. */
fg_status fg_safetensors_read_raw(const fg_safetensors *f, const char *name, void *dst, size_t cap,
                                  fg_err *e);

/* Metadata: the value for key (NULL when absent); count and i-th key in key order. */
const char *fg_safetensors_meta(const fg_safetensors *f, const char *key);
size_t fg_safetensors_meta_count(const fg_safetensors *f);
const char *fg_safetensors_meta_key(const fg_safetensors *f, size_t i);

#endif
