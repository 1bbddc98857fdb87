/* Status codes: one X-macro list generates the enum, the names and the messages, so they
 * cannot drift apart.  Library calls return fg_status; the detail of what went wrong lives on
 * the handle that failed (fg_graph_errmsg) or in an fg_err the caller passed. */
#ifndef FG_STATUS_H
#define FG_STATUS_H

#include <stdarg.h>
#include <stddef.h>

#define FG_STATUS_MAP(X)                                                          \
  X(OK, "ok")                                                                     \
  X(E_NOMEM, "out of memory")                                                     \
  X(E_SHAPE, "shape mismatch")                                                    \
  X(E_DTYPE, "dtype mismatch")                                                    \
  X(E_OVERFLOW, "size overflows 64 bits")                                         \
  X(E_MISUSE, "API misuse")                                                       \
  X(E_NUMERIC, "numerical failure (singular matrix or non-finite value)")         \
  X(E_IO, "input/output error")                                                   \
  X(E_FORMAT, "malformed file or text")                                           \
  X(E_PLUGIN, "plugin error")                                                     \
  X(E_EXISTS, "already exists")                                                   \
  X(E_NOTFOUND, "not found")                                                      \
  X(E_NOTDIFF, "not differentiable")                                              \
  X(E_ABORTED, "aborted")                                                         \
  X(E_INTERNAL, "internal error")                                                 \
  X(E_LIMIT, "exceeds a documented limit")

typedef enum fg_status {
#define FG_STATUS_ENUM_(name, msg) FG_##name,
  FG_STATUS_MAP(FG_STATUS_ENUM_)
#undef FG_STATUS_ENUM_
  FG_STATUS_COUNT
} fg_status;

/* "FG_E_SHAPE" etc.; "FG_UNKNOWN" for values outside the enum. */
const char *fg_status_name(fg_status s);
/* A short static message ("shape mismatch"). */
const char *fg_status_str(fg_status s);

/* Error detail for calls that have no handle of their own to keep it on. */
typedef struct fg_err {
  fg_status status;
  char msg[1024];
} fg_err;

/* Records status and a printf-style message in e (if e is not NULL); returns status, so that
 * callers can write `return fg_err_set(e, FG_E_IO, "cannot open %s", path);`. */
fg_status fg_err_set(fg_err *e, fg_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* fg_err_set with a va_list: the one formatter every error path goes through. */
fg_status fg_err_vset(fg_err *e, fg_status status, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
/* Puts "<printf-style context>: " in front of e's message and sets its status (if e is not
 * NULL); returns status, so a caller adds where it was to what failed below it:
 * `return fg_err_prefix(e, st, "binding parameter '%s'", name);`. */
fg_status fg_err_prefix(fg_err *e, fg_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void fg_err_clear(fg_err *e);

#endif
