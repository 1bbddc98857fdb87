/* Bijector arguments written as text, as in a spec file: fg_bijector_new_from_text parses
 *     args   := ws [ pair { ws "," ws pair } ] ws [ "," ws ]
 *     pair   := name ws "=" ws value              name  := [A-Za-z_][A-Za-z0-9_]*
 *     value  := list | quoted | bare
 *     list   := "[" ws [ int { ws "," ws int } ws [ "," ws ] ] "]"
 *     quoted := '"' { char | '\"' | '\\' } '"'   bare := text up to the next "," (trimmed)
 * and reads the value as its declared kind: an int is decimal ([+-]digits, overflow checked),
 * a double is anything strtod consumes entirely, a bool is true/false/1/0, a string is bare or
 * quoted, a list of ints is a list.  Arguments not given take their default_text (parsed the
 * same way); then fg_bijector_new (flows/bijector_create.c) calls the constructor.  An error in
 * the text is FG_E_FORMAT, naming the type, the argument, what was wrong and the offset
 * (0-based, in bytes) where it was found; a malformed default_text is the type's fault
 * (FG_E_PLUGIN). */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/vec.h"
#include "flows/bijector_internal.h"

/* What the text gave for one declared argument; owns its string and list. */
typedef struct parsed_arg {
  bool given;
  size_t at; /* offset of the name, to report a duplicate */
  fg_arg_value v;
  char *str;
  int64_t *ints;
} parsed_arg;

/* A position in a text being parsed, and what to call that text in messages. */
typedef struct cursor {
  const char *s;
  size_t pos;
  const fg_bijector_type *t;
  const char *where; /* "" for the argument text, " of the type's default text" for a default */
  fg_err *e;
} cursor;

/* [start, start + len) of the text. */
typedef struct span {
  size_t start, len;
} span;

static char peek(const cursor *c) { return c->s[c->pos]; }

static void skip_ws(cursor *c) {
  while (isspace((unsigned char)peek(c))) c->pos++;
}

/* "<type>: <what> (at offset N)". */
static fg_status fail_at(const cursor *c, size_t at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static fg_status fail_at(const cursor *c, size_t at, const char *fmt, ...) {
  fg_err what;
  va_list ap;
  va_start(ap, fmt);
  fg_err_vset(&what, FG_E_FORMAT, fmt, ap);
  va_end(ap);
  return fg_err_set(c->e, FG_E_FORMAT, "%s: %s (at offset %zu%s)", c->t->name, what.msg, at,
                    c->where);
}

/* "<type>: hidden=eight: expected an integer (at offset 7)": the value as written, cut short. */
static fg_status bad_value(const cursor *c, const fg_arg_spec *a, span v, const char *why) {
  int shown = v.len > 60 ? 60 : (int)v.len;
  return fail_at(c, v.start, "%s=%.*s%s: %s", a->name, shown, c->s + v.start,
                 v.len > 60 ? "..." : "", why);
}

/* A bare value runs to the next comma (or the end), without trailing spaces. */
static span bare_span(cursor *c) {
  span v = {c->pos, 0};
  while (peek(c) && peek(c) != ',') c->pos++;
  v.len = c->pos - v.start;
  while (v.len && isspace((unsigned char)c->s[v.start + v.len - 1])) v.len--;
  return v;
}

/* What a bracketed or quoted value spans (through its closing character when there is one,
 * which *closed tells), to quote it in a message or to decode it. */
static span delimited_span(const cursor *c, char close, bool *closed) {
  size_t end = c->pos + 1;
  while (c->s[end] && c->s[end] != close)
    end += c->s[end] == '\\' && close == '"' && c->s[end + 1] ? 2 : 1;
  if (closed) *closed = c->s[end] != '\0';
  return (span){c->pos, end - c->pos + (c->s[end] != '\0')};
}

typedef enum int_parse { INT_OK, INT_SYNTAX, INT_RANGE } int_parse;

/* Decimal [+-]digits into int64, without strtoll's locale, whitespace and base guessing. */
static int_parse parse_int64(const char *p, size_t n, int64_t *out) {
  size_t i = 0;
  bool neg = n > 0 && p[0] == '-';
  if (n > 0 && (p[0] == '-' || p[0] == '+')) i++;
  if (i == n) return INT_SYNTAX;
  for (size_t j = i; j < n; j++)
    if (!isdigit((unsigned char)p[j])) return INT_SYNTAX;
  uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, acc = 0;
  for (; i < n; i++) {
    uint64_t d = (uint64_t)(p[i] - '0');
    if (acc > (limit - d) / 10) return INT_RANGE;
    acc = acc * 10 + d;
  }
  *out = !neg ? (int64_t)acc : acc == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)acc;
  return INT_OK;
}

static fg_status bare_int(const cursor *c, const fg_arg_spec *a, span v, parsed_arg *out) {
  int_parse r = parse_int64(c->s + v.start, v.len, &out->v.i);
  if (r == INT_SYNTAX) return bad_value(c, a, v, "expected an integer");
  if (r == INT_RANGE) return bad_value(c, a, v, "out of the range of a 64-bit integer");
  return FG_OK;
}

/* strtod needs a terminated string; a copy keeps the text's length unbounded. */
static fg_status bare_double(const cursor *c, const fg_arg_spec *a, span v, parsed_arg *out) {
  char *copy = strndup(c->s + v.start, v.len);
  if (!copy)
    return fg_err_set(c->e, FG_E_NOMEM, "%s: out of memory parsing '%s'", c->t->name, a->name);
  char *end;
  errno = 0;
  out->v.d = strtod(copy, &end);
  bool whole = *end == '\0', overflow = errno == ERANGE && (out->v.d > 1 || out->v.d < -1);
  free(copy);
  if (!whole) return bad_value(c, a, v, "expected a number");
  if (overflow) return bad_value(c, a, v, "out of the range of a double");
  return FG_OK;
}

static bool span_is(const cursor *c, span v, const char *word) {
  return v.len == strlen(word) && memcmp(c->s + v.start, word, v.len) == 0;
}

static fg_status bare_bool(const cursor *c, const fg_arg_spec *a, span v, parsed_arg *out) {
  if (span_is(c, v, "true") || span_is(c, v, "1")) out->v.i = 1;
  else if (span_is(c, v, "false") || span_is(c, v, "0")) out->v.i = 0;
  else return bad_value(c, a, v, "expected true, false, 1 or 0");
  return FG_OK;
}

static fg_status bare_string(const cursor *c, const fg_arg_spec *a, span v, parsed_arg *out) {
  out->str = strndup(c->s + v.start, v.len);
  if (!out->str)
    return fg_err_set(c->e, FG_E_NOMEM, "%s: out of memory parsing '%s'", c->t->name, a->name);
  out->v.s = out->str;
  return FG_OK;
}

/* "..." with \" and \\ as the only escapes (anything else is more likely a mistake, such as
 * a Windows path, than a wish). */
static fg_status quoted_string(cursor *c, const fg_arg_spec *a, parsed_arg *out) {
  bool closed;
  span whole = delimited_span(c, '"', &closed);
  if (!closed)
    return fail_at(c, whole.start, "the quoted value of '%s' has no closing quote", a->name);
  char *dst = out->str = malloc(whole.len);
  if (!dst)
    return fg_err_set(c->e, FG_E_NOMEM, "%s: out of memory parsing '%s'", c->t->name, a->name);
  for (size_t i = whole.start + 1; i < whole.start + whole.len - 1; i++) {
    char ch = c->s[i];
    if (ch == '\\' && c->s[i + 1] != '"' && c->s[i + 1] != '\\')
      return fail_at(c, i,
                     "the quoted value of '%s' has an unknown escape \\%c (only \\\" and \\\\ are "
                     "escapes)",
                     a->name, c->s[i + 1]);
    *dst++ = ch == '\\' ? c->s[++i] : ch;
  }
  *dst = '\0';
  out->v.s = out->str;
  c->pos = whole.start + whole.len;
  return FG_OK;
}

static fg_status push_int(const cursor *c, const fg_arg_spec *a, parsed_arg *out, int64_t *cap,
                          int64_t x) {
  if (!FG_VEC_RESERVE(out->ints, *cap, out->v.ints.n + 1))
    return fg_err_set(c->e, FG_E_NOMEM, "%s: out of memory for the list '%s'", c->t->name, a->name);
  out->ints[out->v.ints.n++] = x;
  out->v.ints.v = out->ints;
  return FG_OK;
}

/* One element of a list: the text up to the next ',' or ']' (or the end), trimmed. */
static span element_span(cursor *c) {
  span v = {c->pos, 0};
  while (peek(c) && peek(c) != ',' && peek(c) != ']') c->pos++;
  v.len = c->pos - v.start;
  while (v.len && isspace((unsigned char)c->s[v.start + v.len - 1])) v.len--;
  return v;
}

/* [a, b, c]: any length, a trailing comma allowed, [] is the empty list. */
static fg_status int_list(cursor *c, const fg_arg_spec *a, parsed_arg *out) {
  size_t open = c->pos++;
  int64_t cap = 0;
  for (;;) {
    skip_ws(c);
    if (peek(c) == ']') break;
    span v = element_span(c);
    int64_t x = 0;
    int_parse r = parse_int64(c->s + v.start, v.len, &x);
    if (v.len == 0)
      return fail_at(c, v.start, "%s=[...]: element %lld is empty", a->name,
                     (long long)out->v.ints.n);
    if (r != INT_OK) {
      int shown = v.len > 40 ? 40 : (int)v.len;
      return fail_at(c, v.start, "%s=[...]: element %lld '%.*s' is %s", a->name,
                     (long long)out->v.ints.n, shown, c->s + v.start,
                     r == INT_RANGE ? "out of the range of a 64-bit integer" : "not an integer");
    }
    fg_status st = push_int(c, a, out, &cap, x);
    if (st != FG_OK) return st;
    if (peek(c) == ',') c->pos++;
    else if (peek(c) != ']')
      return fail_at(c, open, "the list of '%s' has no closing ']'", a->name);
  }
  c->pos++;
  return FG_OK;
}

/* A value, read as the kind its argument declares. */
static fg_status parse_value(cursor *c, const fg_arg_spec *a, parsed_arg *out) {
  out->v.kind = a->kind;
  char first = peek(c);
  if (a->kind == FG_ARG_INTS) {
    if (first == '[') return int_list(c, a, out);
    return bad_value(c, a, first == '"' ? delimited_span(c, '"', NULL) : bare_span(c),
                     "expected a list of integers like [0, 1]");
  }
  if (first == '[')
    return bad_value(c, a, delimited_span(c, ']', NULL),
                     a->kind == FG_ARG_STRING ? "expected a string, not a list (quote it)"
                                              : "expected a single value, not a list");
  if (first == '"') {
    if (a->kind == FG_ARG_STRING) return quoted_string(c, a, out);
    return bad_value(c, a, delimited_span(c, '"', NULL),
                     a->kind == FG_ARG_INT ? "expected an integer, not a quoted string"
                     : a->kind == FG_ARG_DOUBLE
                         ? "expected a number, not a quoted string"
                         : "expected true, false, 1 or 0, not a quoted string");
  }
  span v = bare_span(c);
  if (v.len == 0)
    return fail_at(c, v.start, "'%s' has no value (expected %s)", a->name,
                   fg__arg_kind_name(a->kind));
  switch (a->kind) {
  case FG_ARG_INT: return bare_int(c, a, v, out);
  case FG_ARG_DOUBLE: return bare_double(c, a, v, out);
  case FG_ARG_BOOL: return bare_bool(c, a, v, out);
  default: return bare_string(c, a, v, out);
  }
}

static int find_arg(const fg_bijector_type *t, const char *name, size_t len) {
  for (int i = 0; i < t->n_args; i++)
    if (strlen(t->args[i].name) == len && memcmp(t->args[i].name, name, len) == 0) return i;
  return -1;
}

/* "unknown argument 'hiden' (accepted: hidden, mask, perm)". */
static fg_status unknown_arg(const cursor *c, span name) {
  size_t need = 1;
  for (int i = 0; i < c->t->n_args; i++) need += strlen(c->t->args[i].name) + 2;
  char *list = malloc(need);
  if (!list) return fg_err_set(c->e, FG_E_NOMEM, "%s: out of memory", c->t->name);
  list[0] = '\0';
  for (int i = 0; i < c->t->n_args; i++) {
    if (i) strcat(list, ", ");
    strcat(list, c->t->args[i].name);
  }
  int shown = name.len > 60 ? 60 : (int)name.len;
  fg_status st = c->t->n_args ? fail_at(c, name.start, "unknown argument '%.*s' (accepted: %s)",
                                        shown, c->s + name.start, list)
                              : fail_at(c, name.start,
                                        "unknown argument '%.*s' (this type takes no arguments)",
                                        shown, c->s + name.start);
  free(list);
  return st;
}

static span name_span(cursor *c) {
  span v = {c->pos, 0};
  if (isalpha((unsigned char)peek(c)) || peek(c) == '_')
    while (isalnum((unsigned char)peek(c)) || peek(c) == '_') c->pos++;
  v.len = c->pos - v.start;
  return v;
}

/* name = value: which argument it is, then its value. */
static fg_status parse_pair(cursor *c, parsed_arg *args) {
  span name = name_span(c);
  if (name.len == 0)
    return fail_at(c, name.start, "expected an argument name, found '%c'", peek(c));
  int i = find_arg(c->t, c->s + name.start, name.len);
  if (i < 0) return unknown_arg(c, name);
  const fg_arg_spec *a = &c->t->args[i];
  if (args[i].given)
    return fail_at(c, name.start, "argument '%s' is given twice (first at offset %zu)", a->name,
                   args[i].at);
  skip_ws(c);
  if (peek(c) != '=') return fail_at(c, c->pos, "expected '=' after '%s'", a->name);
  c->pos++;
  skip_ws(c);
  args[i].given = true;
  args[i].at = name.start;
  fg_status st = parse_value(c, a, &args[i]);
  if (st != FG_OK) return st;
  skip_ws(c);
  if (peek(c) && peek(c) != ',')
    return fail_at(c, c->pos, "expected ',' or the end after the value of '%s'", a->name);
  return FG_OK;
}

static fg_status parse_pairs(cursor *c, parsed_arg *args) {
  skip_ws(c);
  while (peek(c)) {
    fg_status st = parse_pair(c, args);
    if (st != FG_OK) return st;
    if (peek(c) == ',') c->pos++;
    skip_ws(c);
  }
  return FG_OK;
}

/* An argument the text left out: its default, parsed like text (a bad default is the type's
 * fault, so FG_E_PLUGIN), or an error when it has none. */
static fg_status fill_default(const fg_bijector_type *t, int i, parsed_arg *out, fg_err *e) {
  const fg_arg_spec *a = &t->args[i];
  if (!a->default_text)
    return fg_err_set(e, FG_E_FORMAT, "%s: missing required argument '%s' (%s%s%s)", t->name,
                      a->name, fg__arg_kind_name(a->kind), a->doc ? ": " : "",
                      a->doc ? a->doc : "");
  cursor c = {a->default_text, 0, t, " of the type's default text", e};
  skip_ws(&c);
  fg_status st = parse_value(&c, a, out);
  skip_ws(&c);
  if (st == FG_OK && peek(&c)) st = fail_at(&c, c.pos, "'%s' has text after its value", a->name);
  if (st == FG_E_FORMAT && e) e->status = FG_E_PLUGIN;
  return st == FG_E_FORMAT ? FG_E_PLUGIN : st;
}

static void free_parsed(parsed_arg *args, int n) {
  for (int i = 0; args && i < n; i++) free(args[i].str), free(args[i].ints);
  free(args);
}

fg_status fg_bijector_new_from_text(fg_bijector **out, const fg_bijector_type *t, const char *text,
                                    fg_err *e) {
  *out = NULL;
  if (!t || t->n_args < 0 || (t->n_args > 0 && !t->args))
    return fg_err_set(e, FG_E_MISUSE,
                      "bijector_new_from_text: no type or a malformed argument list");
  size_t n = (size_t)t->n_args;
  parsed_arg *args = calloc(n + 1, sizeof *args);
  fg_arg_value *values = calloc(n + 1, sizeof *values);
  fg_status st = args && values
                     ? FG_OK
                     : fg_err_set(e, FG_E_NOMEM, "%s: out of memory parsing arguments", t->name);
  cursor c = {text ? text : "", 0, t, "", e};
  if (st == FG_OK) st = parse_pairs(&c, args);
  for (size_t i = 0; st == FG_OK && i < n; i++)
    if (!args[i].given) st = fill_default(t, (int)i, &args[i], e);
  for (size_t i = 0; st == FG_OK && i < n; i++) values[i] = args[i].v;
  if (st == FG_OK) st = fg_bijector_new(out, t, values, e);
  free(values);
  free_parsed(args, (int)n);
  return st;
}
