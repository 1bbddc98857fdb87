/* CIFAR-10 binary batches (core/formats/cifar.c): images and labels. */
#include "core/formats/cifar.h"
#include "fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fg_tensor *images, *labels;
  if (fg_cifar_load(&images, &labels, fuzz_file(data, size), NULL) == FG_OK) {
    fg_tensor_free(images);
    fg_tensor_free(labels);
  }
  return 0;
}
