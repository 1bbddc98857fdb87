#include "core/status.h"

#include <stdarg.h>
#include <stdio.h>

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

fg_status fg_err_set(fg_err *e, fg_status status, const char *fmt, ...) {
  if (e) {
    e->status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
  }
  return status;
}

void fg_err_clear(fg_err *e) {
  if (e) {
    e->status = FG_OK;
    e->msg[0] = '\0';
  }
}
