#include "ops/infer.h"

#include <stdarg.h>
#include <stdio.h>

/* Formatted by the one formatter (fg_err_vset), then cut to why's size. */
fg_status fg_infer_fail(fg_infer_args *a, fg_status status, const char *fmt, ...) {
  fg_err e;
  va_list ap;
  va_start(ap, fmt);
  fg_err_vset(&e, status, fmt, ap);
  va_end(ap);
  snprintf(a->why, sizeof a->why, "%s", e.msg);
  return status;
}
