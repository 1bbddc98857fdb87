/* The data a trainer keeps (internal to flows/train/trainer.c).
 *
 * Images are kept as their reduced levels in bytes: a quarter of float32's memory, and for
 * Fashion-MNIST the difference between ~220 MB and ~55 MB held for the whole run.  Other data
 * (2-D toys, float .npy) is kept as values in the flow's dtype.  Rows are copied out into a
 * batch tensor of the flow's dtype, so no kernel ever sees the byte form. */
#ifndef FG_TRAIN_DATA_H
#define FG_TRAIN_DATA_H

#include <stdbool.h>
#include <stdint.h>

#include "core/status.h"
#include "core/tensor.h"

typedef struct fg_train_data {
  int64_t n, row;    /* rows, elements per row */
  uint8_t *levels;   /* discrete data: levels reduced to n_bits, n x row */
  fg_tensor *values; /* continuous data, [n, event...] */
  int32_t *labels;   /* the rows' classes 0..classes-1 (conditional flows), or NULL */
  int64_t classes;
} fg_train_data;

/* From src [N, event...]: checks that every element is finite (and, for discrete data, a level
 * 0..255 reduced to 2^n_bits levels by flooring), naming `what` and the element otherwise.
 * With classes > 0 the rows' labels [N] are kept too, each checked to be a class 0..classes-1. */
fg_status fg_train_data_init(fg_train_data *d, const fg_tensor *src, const fg_tensor *labels,
                             int64_t classes, bool discrete, int64_t n_bits, fg_dtype dtype,
                             const char *what, fg_err *e);
void fg_train_data_free(fg_train_data *d);
/* dst's rows i = 0..n-1 := rows[i] of d, or row first + i when rows is NULL; and when context is
 * not NULL ([n, classes]), its rows := the same rows' labels one-hot.  Images and labels come
 * from the same rows, whatever selects them (shuffling, resuming, a shard of a batch). */
void fg_train_data_rows(const fg_train_data *d, const int64_t *rows, int64_t first, int64_t n,
                        fg_tensor *dst, fg_tensor *context);

#endif
