/* NumPy .npy loading (core/formats/npy.c), plain or gzip-compressed. */
#include "core/formats/npy.h"
#include "fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fg_tensor *t;
  if (fg_npy_load(&t, fuzz_file(data, size), NULL) == FG_OK) fg_tensor_free(t);
  return 0;
}
