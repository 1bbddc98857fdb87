/* safetensors files (core/formats/safetensors_*.c): the header's validation, then every entry
 * read as a tensor (float ones) or raw bytes, and every metadata value. */
#include "core/formats/safetensors.h"
#include "fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fg_safetensors *f;
  if (fg_safetensors_open(&f, fuzz_file(data, size), NULL) != FG_OK) return 0;
  static uint8_t raw[1 << 16];
  for (size_t i = 0; i < fg_safetensors_count(f); i++) {
    const fg_safetensors_info *info = fg_safetensors_entry(f, i);
    fg_tensor *t;
    if (fg_safetensors_get(&t, f, info->name, NULL) == FG_OK) fg_tensor_free(t);
    fg_safetensors_read_raw(f, info->name, raw, sizeof raw, NULL);
  }
  size_t total = 0;
  for (size_t i = 0; i < fg_safetensors_meta_count(f); i++)
    total += strlen(fg_safetensors_meta(f, fg_safetensors_meta_key(f, i)));
  fg_safetensors_close(f);
  return total == (size_t)-1;
}
