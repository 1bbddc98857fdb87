/* Internal to ops/: what the op families' shape rules share. */
#ifndef FG_OPS_INFER_H
#define FG_OPS_INFER_H

#include "core/ir/op.h"

/* Writes the printf-style reason into a->why (the graph prefixes it with the op and its
 * inputs) and returns status, so a shape rule rejects in one statement:
 * `return fg_infer_fail(a, FG_E_SHAPE, "axis %d out of range", axis);`. */
fg_status fg_infer_fail(fg_infer_args *a, fg_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
