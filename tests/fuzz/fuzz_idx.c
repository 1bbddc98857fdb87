/* IDX files (core/formats/idx.c), plain and gzip: the first byte picks how the rest reaches the
 * loader, as it is (which may itself be gzip) or compressed here, so the fuzzer's IDX headers
 * also go through zlib's inflate. */
#include <zlib.h>

#include "core/formats/idx.h"
#include "fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  const uint8_t *body = data + 1;
  size_t n = size - 1;
  uint8_t *packed = NULL;
  if (data[0] & 1) {
    uLongf cap = compressBound((uLong)n) + 32;
    packed = malloc(cap);
    z_stream z = {0};
    /* windowBits 15 + 16: a gzip wrapper, as .gz files have */
    if (!packed || deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) abort();
    z.next_in = (Bytef *)body, z.avail_in = (uInt)n, z.next_out = packed, z.avail_out = (uInt)cap;
    if (deflate(&z, Z_FINISH) != Z_STREAM_END) abort();
    n = z.total_out;
    deflateEnd(&z);
    body = packed;
  }
  fg_tensor *t;
  if (fg_idx_load(&t, fuzz_file(body, n), NULL) == FG_OK) fg_tensor_free(t);
  free(packed);
  return 0;
}
