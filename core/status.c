#include "core/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const status_names[] = {
#define FG_STATUS_NAME_(name, msg) "FG_" #name,
    FG_STATUS_MAP(FG_STATUS_NAME_)
#undef FG_STATUS_NAME_
};

static const char *const status_messages[] = {
#define FG_STATUS_MSG_(name, msg) msg,
    FG_STATUS_MAP(FG_STATUS_MSG_)
#undef FG_STATUS_MSG_
};

_Static_assert(sizeof status_names / sizeof *status_names == FG_STATUS_COUNT,
               "one name per status");

const char *fg_status_name(fg_status s) {
  return (unsigned)s < FG_STATUS_COUNT ? status_names[s] : "FG_UNKNOWN";
}

const char *fg_status_str(fg_status s) {
  return (unsigned)s < FG_STATUS_COUNT ? status_messages[s] : "unknown status";
}

fg_status fg_err_vset(fg_err *e, fg_status status, const char *fmt, va_list ap) {
  if (e) {
    e->status = status;
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
  }
  return status;
}

fg_status fg_err_set(fg_err *e, fg_status status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fg_err_vset(e, status, fmt, ap);
  va_end(ap);
  return status;
}

fg_status fg_err_prefix(fg_err *e, fg_status status, const char *fmt, ...) {
  if (!e) return status;
  char context[sizeof e->msg], msg[sizeof e->msg];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(context, sizeof context, fmt, ap);
  va_end(ap);
  snprintf(msg, sizeof msg, "%s: %s", context, e->msg);
  memcpy(e->msg, msg, sizeof msg);
  e->status = status;
  return status;
}

void fg_err_clear(fg_err *e) {
  if (e) {
    e->status = FG_OK;
    e->msg[0] = '\0';
  }
}
