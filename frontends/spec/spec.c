/* The flow-spec parser: lines -> a small tree of layers and blocks -> bijectors, built through
 * the registry (and libffi) with the repeat index substituted into argument values. */
#include "frontends/spec/spec.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/size.h"
#include "core/vec.h"

enum { MAX_DEPTH = 16 };

typedef enum item_kind { ITEM_LAYER, ITEM_REPEAT, ITEM_LEVELS } item_kind;

typedef struct item {
  item_kind kind;
  int line, col;
  char *type;          /* layer */
  char *args;          /* layer: the text after the type */
  int args_col;
  int64_t count;       /* repeat / levels */
  struct item *kids;   /* repeat / levels */
  int n_kids;
  int64_t cap_kids;
} item;

typedef struct parser {
  const char *path;
  const fg_registry *r;
  fg_spec *spec;
  fg_err *e;
  int line;
  item root;                  /* the flow block */
  item *stack[MAX_DEPTH];     /* open flow blocks */
  int depth;
  enum { TOP, IN_FLOW, IN_TRAIN } where;
  bool seen_flow;
} parser;

/* "<file>:<line>:<column>: <what>", the form of every message about the text. */
static fg_status fail(parser *p, int col, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static fg_status fail(parser *p, int col, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fg_err_vset(p->e, FG_E_FORMAT, fmt, ap);
  va_end(ap);
  return fg_err_prefix(p->e, FG_E_FORMAT, "%s:%d:%d", p->path, p->line, col);
}

static void item_free(item *it) {
  for (int i = 0; i < it->n_kids; i++) item_free(&it->kids[i]);
  free(it->kids);
  free(it->type);
  free(it->args);
}

void fg_spec_free(fg_spec *s) {
  if (!s) return;
  free(s->path);
  free(s->data);
  free(s->prior);
  free(s->plugins);
  fg_bijector_free(s->flow);
  free(s);
}

/* ---- where things were written ---- */

static void note_place(parser *p, const char *key, int col) {
  fg_spec *s = p->spec;
  int i = 0;
  while (i < s->n_places && strcmp(s->places[i].key, key)) i++;
  if (i == (int)(sizeof s->places / sizeof *s->places)) return; /* more keys than settings: none */
  if (i == s->n_places) s->n_places++;
  snprintf(s->places[i].key, sizeof s->places[i].key, "%s", key);
  s->places[i].line = p->line, s->places[i].col = col;
}

const char *fg_spec_where(const fg_spec *s, const char *key, char *buf, size_t cap) {
  for (int i = 0; i < s->n_places; i++)
    if (!strcmp(s->places[i].key, key)) {
      snprintf(buf, cap, "%s:%d:%d", s->path, s->places[i].line, s->places[i].col);
      return buf;
    }
  snprintf(buf, cap, "%s", s->path);
  return buf;
}

/* ---- lexing one line ---- */

typedef struct line_view {
  const char *text; /* the whole line, comment removed */
  size_t len;
  size_t pos;
} line_view;

static void skip_space(line_view *v) {
  while (v->pos < v->len && isspace((unsigned char)v->text[v->pos])) v->pos++;
}

/* The next word (letters, digits, _ - . : / +); empty at the end of the line. */
static size_t next_word(line_view *v, char *out, size_t cap) {
  skip_space(v);
  size_t n = 0;
  while (v->pos < v->len && !isspace((unsigned char)v->text[v->pos])) {
    if (n + 1 < cap) out[n++] = v->text[v->pos];
    v->pos++;
  }
  out[n] = '\0';
  return n;
}

static char *rest_of_line(line_view *v) {
  skip_space(v);
  size_t end = v->len;
  while (end > v->pos && isspace((unsigned char)v->text[end - 1])) end--;
  return strndup(v->text + v->pos, end - v->pos);
}

/* ---- numbers ---- */

static fg_status parse_int(parser *p, int col, const char *w, int64_t lo, int64_t *out) {
  char *end;
  errno = 0;
  long long v = strtoll(w, &end, 10);
  if (!*w || *end || errno || v < lo)
    return fail(p, col, "expected an integer >= %lld, found '%s'", (long long)lo, w);
  *out = v;
  return FG_OK;
}

static fg_status parse_double(parser *p, int col, const char *w, double *out) {
  char *end;
  errno = 0;
  double v = strtod(w, &end);
  if (!*w || *end || errno) return fail(p, col, "expected a number, found '%s'", w);
  *out = v;
  return FG_OK;
}

static fg_status parse_bool(parser *p, int col, const char *w, bool *out) {
  if (!strcmp(w, "true") || !strcmp(w, "on") || !strcmp(w, "1")) *out = true;
  else if (!strcmp(w, "false") || !strcmp(w, "off") || !strcmp(w, "0")) *out = false;
  else return fail(p, col, "expected true or false, found '%s'", w);
  return FG_OK;
}

/* ---- blocks ---- */

static item *push_item(parser *p, item *parent, item_kind kind, int col) {
  if (!FG_VEC_RESERVE(parent->kids, parent->cap_kids, parent->n_kids + 1)) return NULL;
  item *it = &parent->kids[parent->n_kids++];
  memset(it, 0, sizeof *it);
  it->kind = kind, it->line = p->line, it->col = col;
  return it;
}

static fg_status flow_line(parser *p, line_view *v, const char *word, int col) {
  item *parent = p->stack[p->depth - 1];
  if (!strcmp(word, "end")) {
    if (--p->depth == 0) p->where = TOP;
    return FG_OK;
  }
  if (!strcmp(word, "repeat") || !strcmp(word, "levels")) {
    char n[64];
    size_t ncol = v->pos + 2;
    if (!next_word(v, n, sizeof n)) return fail(p, (int)ncol, "'%s' needs a count", word);
    if (p->depth == MAX_DEPTH) return fail(p, col, "blocks nested deeper than %d", MAX_DEPTH);
    item *it = push_item(p, parent, word[0] == 'r' ? ITEM_REPEAT : ITEM_LEVELS, col);
    if (!it) return fg_err_set(p->e, FG_E_NOMEM, "out of memory parsing %s", p->path);
    fg_status st = parse_int(p, (int)ncol, n, 1, &it->count);
    if (st == FG_OK) p->stack[p->depth++] = it;
    return st;
  }
  item *it = push_item(p, parent, ITEM_LAYER, col);
  if (!it) return fg_err_set(p->e, FG_E_NOMEM, "out of memory parsing %s", p->path);
  skip_space(v);
  it->args_col = (int)v->pos + 1;
  it->type = strdup(word);
  it->args = rest_of_line(v);
  if (!it->type || !it->args)
    return fg_err_set(p->e, FG_E_NOMEM, "out of memory parsing %s", p->path);
  const fg_bijector_type *t;
  fg_err inner;
  if (fg_registry_lookup(&t, p->r, word, &inner) == FG_OK) return FG_OK;
  static const char *const top_words[] = {"train", "data", "classes", "prior", "flow"};
  for (size_t i = 0; i < sizeof top_words / sizeof *top_words; i++)
    if (!strcmp(word, top_words[i]))
      return fail(p, col,
                  "'%s' inside the 'flow' block: 'end' missing before it (%d block%s still "
                  "open, the 'flow' block included)",
                  word, p->depth, p->depth == 1 ? "" : "s");
  return fail(p, col, "%s", inner.msg);
}

/* A train setting: its kind (i: int, d: double, w: the optimizer, s: the schedule, b: true /
 * false), where it
 * lives, and its range: integers >= lo (and <= hi when hi > lo), numbers finite and in
 * [lo, hi] with lo_open / hi_open excluding an end (hi = INFINITY: no upper end). */
typedef struct setting {
  const char *key;
  char kind;
  size_t offset;
  double lo, hi;
  bool lo_open, hi_open;
} setting;

#define S(key, kind, lo, hi, lo_open, hi_open) \
  { #key, kind, offsetof(fg_train_settings, key), lo, hi, lo_open, hi_open }
#define INT_FROM(key, lo) S(key, 'i', lo, 0, false, false)
#define AT_LEAST(key, lo) S(key, 'd', lo, INFINITY, false, false)
static const setting settings[] = {
    INT_FROM(batch, 1),
    INT_FROM(steps, 0),
    AT_LEAST(minutes, 0),
    S(lr, 'd', 0, INFINITY, true, false),
    INT_FROM(warmup, 0),
    AT_LEAST(clip, 0),
    S(ema, 'd', 0, 1, false, true),
    S(optimizer, 'w', 0, 0, false, false),
    S(n_bits, 'i', 1, 8, false, false),
    INT_FROM(seed, 0),
    INT_FROM(eval_every, 0),
    INT_FROM(max_nonfinite, 1),
    AT_LEAST(temperature, 0),
    S(recompute, 'b', 0, 0, false, false),
    AT_LEAST(recompute_tol, 0),
    INT_FROM(recompute_check, 0),
    S(schedule, 's', 0, 0, false, false),
    AT_LEAST(lr_min, 0),
    INT_FROM(decay_steps, 0),
    INT_FROM(step_every, 0),
    S(gamma, 'd', 0, 1, true, false),
};
#undef AT_LEAST
#undef INT_FROM
#undef S

static fg_status out_of_range(parser *p, int col, const setting *st) {
  if (st->kind == 'i') return fail(p, col, "%s must be %g..%g", st->key, st->lo, st->hi);
  if (isinf(st->hi))
    return fail(p, col, "%s must be %s %g", st->key, st->lo_open ? ">" : ">=", st->lo);
  return fail(p, col, "%s must be in %c%g, %g%c", st->key, st->lo_open ? '(' : '[', st->lo, st->hi,
              st->hi_open ? ')' : ']');
}

static fg_status parse_setting(parser *p, int col, const setting *st, const char *val,
                               char *field) {
  if (st->kind == 'b') return parse_bool(p, col, val, (bool *)(void *)field);
  if (st->kind == 'w' || st->kind == 's') {
    fg_lr_schedule sched;
    if (st->kind == 's' && fg_lr_schedule_parse(val, &sched, NULL) != FG_OK)
      return fail(p, col, "unknown schedule '%s' (constant, cosine or step)", val);
    if (st->kind == 'w' && strcmp(val, "adam") && strcmp(val, "adamax") && strcmp(val, "sgd"))
      return fail(p, col, "unknown optimizer '%s' (adam, adamax or sgd)", val);
    snprintf(field, sizeof p->spec->train.optimizer, "%s", val); /* both fields are char[16] */
    return FG_OK;
  }
  if (st->kind == 'i') {
    int64_t *v = (int64_t *)(void *)field;
    fg_status r = parse_int(p, col, val, (int64_t)st->lo, v);
    return r == FG_OK && st->hi > st->lo && *v > (int64_t)st->hi ? out_of_range(p, col, st) : r;
  }
  double *v = (double *)(void *)field;
  fg_status r = parse_double(p, col, val, v);
  if (r != FG_OK) return r;
  if (!isfinite(*v)) return fail(p, col, "%s must be a finite number, found '%s'", st->key, val);
  bool below = st->lo_open ? *v <= st->lo : *v < st->lo,
       above = st->hi_open ? *v >= st->hi : *v > st->hi;
  return below || above ? out_of_range(p, col, st) : FG_OK;
}

static fg_status train_line(parser *p, line_view *v, const char *word, int col) {
  if (!strcmp(word, "end")) {
    p->where = TOP;
    return FG_OK;
  }
  char val[128];
  size_t vcol = v->pos + 2;
  for (size_t i = 0; i < sizeof settings / sizeof *settings; i++) {
    if (strcmp(word, settings[i].key)) continue;
    if (!next_word(v, val, sizeof val))
      return fail(p, (int)vcol, "setting '%s' needs a value", word);
    note_place(p, word, (int)vcol);
    return parse_setting(p, (int)vcol, &settings[i], val,
                         (char *)&p->spec->train + settings[i].offset);
  }
  return fail(p, col, "unknown training setting '%s' (batch, steps, minutes, lr, warmup, "
              "schedule, lr_min, decay_steps, step_every, gamma, clip, ema, optimizer, n_bits, "
              "seed, eval_every, max_nonfinite, temperature, recompute, recompute_tol, "
              "recompute_check)", word);
}

static fg_status top_line(parser *p, line_view *v, const char *word, int col) {
  if (!strcmp(word, "flow")) {
    if (p->seen_flow) return fail(p, col, "a second 'flow' block (a spec has one)");
    p->seen_flow = true;
    p->root.line = p->line, p->root.col = col;
    p->where = IN_FLOW;
    p->stack[0] = &p->root;
    p->depth = 1;
    return FG_OK;
  }
  if (!strcmp(word, "train")) {
    p->where = IN_TRAIN;
    return FG_OK;
  }
  if (!strcmp(word, "classes")) {
    char n[64];
    size_t ncol = v->pos + 2;
    if (!next_word(v, n, sizeof n)) return fail(p, (int)ncol, "'classes' needs a count");
    fg_status st = parse_int(p, (int)ncol, n, 1, &p->spec->classes);
    if (st == FG_OK && p->spec->classes > FG_FLOW_MAX_CONTEXT)
      return fail(p, (int)ncol, "at most %d classes", FG_FLOW_MAX_CONTEXT);
    return st;
  }
  char **slot = !strcmp(word, "data")    ? &p->spec->data
                : !strcmp(word, "prior") ? &p->spec->prior
                                         : NULL;
  if (!slot)
    return fail(p, col, "expected 'data', 'classes', 'prior', 'flow' or 'train', found '%s'", word);
  skip_space(v);
  note_place(p, word, (int)v->pos + 1);
  char *value = rest_of_line(v);
  if (!value) return fg_err_set(p->e, FG_E_NOMEM, "out of memory parsing %s", p->path);
  if (!*value) {
    free(value);
    return fail(p, col, "'%s' needs a value", word);
  }
  if (slot == &p->spec->prior && strcmp(value, "normal") && strcmp(value, "learned") &&
      strcmp(value, "conditional")) {
    free(value);
    return fail(p, col + 6, "unknown prior (normal, learned or conditional)");
  }
  free(*slot);
  *slot = value;
  return FG_OK;
}

static fg_status parse_line(parser *p, const char *text, size_t len) {
  line_view v = {text, len, 0};
  for (size_t i = 0; i < len; i++) /* comments */
    if (text[i] == '#') {
      v.len = i;
      break;
    }
  char word[128];
  if (!next_word(&v, word, sizeof word)) return FG_OK;
  int col = (int)(v.pos - strlen(word)) + 1;
  switch (p->where) {
  case IN_FLOW: return flow_line(p, &v, word, col);
  case IN_TRAIN: return train_line(p, &v, word, col);
  default: return top_line(p, &v, word, col);
  }
}

/* ---- building the bijectors ---- */

typedef struct layer_list {
  fg_bijector **items;
  int n;
  int64_t cap;
} layer_list;

/* args with {i} and {i%2} replaced by the innermost repeat index and its parity. */
static char *substitute(const char *args, int64_t index) {
  size_t cap = strlen(args) * 2 + 64;
  char *out = malloc(cap);
  if (!out) return NULL;
  size_t n = 0;
  for (const char *s = args; *s && n + 24 < cap;) {
    if (!strncmp(s, "{i%2}", 5))
      n += (size_t)snprintf(out + n, cap - n, "%lld", (long long)(index % 2)), s += 5;
    else if (!strncmp(s, "{i}", 3))
      n += (size_t)snprintf(out + n, cap - n, "%lld", (long long)index), s += 3;
    else out[n++] = *s++;
  }
  out[n] = '\0';
  return out;
}

static fg_status add_layer(parser *p, const item *it, int64_t index, layer_list *out) {
  const fg_bijector_type *t = fg_registry_find(p->r, it->type);
  char *args = substitute(it->args, index);
  if (!args) return fg_err_set(p->e, FG_E_NOMEM, "out of memory");
  fg_bijector *b;
  fg_err inner;
  fg_status st = fg_bijector_new_from_text(&b, t, args, &inner);
  free(args);
  if (st != FG_OK) {
    p->line = it->line;
    return fail(p, it->args_col, "%s: %s", it->type, inner.msg);
  }
  if (!FG_VEC_RESERVE(out->items, out->cap, out->n + 1)) {
    fg_bijector_free(b);
    return fg_err_set(p->e, FG_E_NOMEM, "out of memory");
  }
  out->items[out->n++] = b;
  return FG_OK;
}

/* A factor-out layer (split, cond_split) is left out at the last level of `levels`. */
static bool factors_out(const parser *p, const item *it) {
  const fg_bijector_type *t = fg_registry_find(p->r, it->type);
  return t && (t->flags & FG_BIJ_FACTOR_OUT);
}

static fg_status expand(parser *p, const item *block, int64_t index, bool last_level,
                        layer_list *out) {
  for (int k = 0; k < block->n_kids; k++) {
    const item *it = &block->kids[k];
    fg_status st = FG_OK;
    if (it->kind == ITEM_LAYER) {
      if (!(last_level && factors_out(p, it))) st = add_layer(p, it, index, out);
    } else {
      for (int64_t r = 0; st == FG_OK && r < it->count; r++)
        st = expand(p, it, r, it->kind == ITEM_LEVELS ? r == it->count - 1 : last_level, out);
    }
    if (st != FG_OK) return st;
  }
  return FG_OK;
}

/* How many layers block expands to (a split counted at every level), into *n: checked against
 * FG_SPEC_MAX_LAYERS, with the products overflow-checked, before any layer is built.  Fails at
 * the line of the repeat or levels that passes the limit. */
static fg_status count_layers(parser *p, const item *block, int64_t *n) {
  *n = 0;
  for (int k = 0; k < block->n_kids; k++) {
    const item *it = &block->kids[k];
    int64_t inner = 1;
    fg_status st = it->kind == ITEM_LAYER ? FG_OK : count_layers(p, it, &inner);
    if (st != FG_OK) return st;
    int64_t times = it->kind == ITEM_LAYER ? 1 : it->count, total = INT64_MAX;
    if (!fg_size_mul(inner, times, &total) || !fg_size_add(*n, total, n) ||
        *n > FG_SPEC_MAX_LAYERS) {
      p->line = it->line;
      fg_err_set(p->e, FG_E_LIMIT,
                 "%s %lld makes %s%lld layers; a spec may have at most %d "
                 "(FG_SPEC_MAX_LAYERS)",
                 it->kind == ITEM_LEVELS       ? "levels"
                     : it->kind == ITEM_REPEAT ? "repeat"
                                               : it->type,
                 (long long)times, total == INT64_MAX ? "more than " : "", (long long)total,
                 FG_SPEC_MAX_LAYERS);
      return fg_err_prefix(p->e, FG_E_LIMIT, "%s:%d:%d", p->path, it->line, it->col);
    }
  }
  return FG_OK;
}

/* The "<type>=<plugin path>" lines of the plugin types among layers (spec->plugins). */
static fg_status note_plugins(parser *p, const layer_list *layers) {
  char *text = NULL;
  size_t len = 0;
  for (int i = 0; i < layers->n; i++) {
    const fg_bijector_type *t = fg_bijector_type_of(layers->items[i]);
    const char *origin = NULL;
    for (int k = 0; t && k < fg_registry_count(p->r) && !origin; k++)
      if (fg_registry_type(p->r, k) == t) origin = fg_registry_origin(p->r, k);
    if (!origin) continue;
    char line[PATH_MAX + 160], abs[PATH_MAX];
    int n = snprintf(line, sizeof line, "%s=%s\n", t->name, realpath(origin, abs) ? abs : origin);
    if (text && strstr(text, line)) continue;
    char *grown = realloc(text, len + (size_t)n + 1);
    if (!grown) {
      free(text);
      return fg_err_set(p->e, FG_E_NOMEM, "out of memory");
    }
    text = grown;
    memcpy(text + len, line, (size_t)n + 1);
    len += (size_t)n;
  }
  p->spec->plugins = text;
  return FG_OK;
}

static fg_status finish(parser *p) {
  if (p->where == IN_FLOW)
    return fail(p, 1, "the 'flow' block is not closed: %d 'end' missing", p->depth);
  if (p->where == IN_TRAIN) return fail(p, 1, "the 'train' block is not closed: 'end' missing");
  if (!p->seen_flow) return fail(p, 1, "no layers: a spec needs a 'flow' block");
  if (!p->spec->prior && !(p->spec->prior = strdup("normal")))
    return fg_err_set(p->e, FG_E_NOMEM, "out of memory");
  if (!strcmp(p->spec->prior, "conditional") && !p->spec->classes)
    return fail(p, 1, "'prior conditional' needs a 'classes N' line (what it is conditional on)");
  int64_t count;
  fg_status st = count_layers(p, &p->root, &count);
  layer_list layers = {0};
  if (st == FG_OK) st = expand(p, &p->root, 0, false, &layers);
  if (st == FG_OK && layers.n == 0) {
    p->line = p->root.line;
    st = fail(p, p->root.col, "no layers: the 'flow' block is empty (or its blocks are)");
  }
  if (st == FG_OK) st = note_plugins(p, &layers);
  if (st == FG_OK) st = fg_bijector_chain(&p->spec->flow, layers.n, layers.items, p->e);
  else
    for (int i = 0; i < layers.n; i++) fg_bijector_free(layers.items[i]);
  free(layers.items);
  return st;
}

fg_status fg_spec_parse(fg_spec **out, const char *text, const char *path, const fg_registry *r,
                        fg_err *e) {
  *out = NULL;
  fg_spec *s = calloc(1, sizeof *s);
  if (!s || !(s->path = strdup(path ? path : "<spec>"))) {
    free(s);
    return fg_err_set(e, FG_E_NOMEM, "out of memory");
  }
  s->train = fg_train_defaults();
  parser p = {.path = s->path, .r = r, .spec = s, .e = e};
  fg_status st = FG_OK;
  for (const char *line = text; st == FG_OK && *line;) {
    const char *nl = strchr(line, '\n');
    size_t len = nl ? (size_t)(nl - line) : strlen(line);
    p.line++;
    st = parse_line(&p, line, len);
    line += len + (nl ? 1 : 0);
  }
  p.line++;
  if (st == FG_OK) st = finish(&p);
  item_free(&p.root);
  if (st != FG_OK) {
    fg_spec_free(s);
    return st;
  }
  *out = s;
  return FG_OK;
}

enum { SPEC_MAX_BYTES = 1 << 24, READ_CHUNK = 4096 };

fg_status fg_spec_read_file(char **out, const char *path, fg_err *e) {
  *out = NULL;
  FILE *f = fopen(path, "rb");
  if (!f) return fg_err_set(e, FG_E_IO, "cannot open spec %s: %s", path, strerror(errno));
  char *text = NULL;
  int64_t len = 0, cap = 0;
  fg_status st = FG_OK;
  for (;;) {
    if (len > SPEC_MAX_BYTES) {
      st = fg_err_set(e, FG_E_FORMAT, "spec %s is larger than 16 MiB", path);
      break;
    }
    if (!FG_VEC_RESERVE(text, cap, len + READ_CHUNK + 1)) {
      st = fg_err_set(e, FG_E_NOMEM, "out of memory reading %s", path);
      break;
    }
    size_t got = fread(text + len, 1, READ_CHUNK, f);
    len += (int64_t)got;
    if (got < READ_CHUNK) break;
  }
  if (st == FG_OK && ferror(f)) st = fg_err_set(e, FG_E_IO, "error reading spec %s", path);
  fclose(f);
  if (st == FG_OK) text[len] = '\0';
  if (st == FG_OK && strlen(text) != (size_t)len)
    st = fg_err_set(e, FG_E_FORMAT, "spec %s contains a NUL byte (is it a text file?)", path);
  if (st != FG_OK) {
    free(text);
    return st;
  }
  *out = text;
  return FG_OK;
}

fg_status fg_spec_load(fg_spec **out, const char *path, const fg_registry *r, fg_err *e) {
  *out = NULL;
  char *text;
  fg_status st = fg_spec_read_file(&text, path, e);
  if (st != FG_OK) return st;
  st = fg_spec_parse(out, text, path, r, e);
  free(text);
  return st;
}

fg_flow_config fg_spec_flow_config(const fg_spec *s, fg_shape event) {
  fg_base_kind base = !strcmp(s->prior, "learned")       ? FG_BASE_LEARNED
                      : !strcmp(s->prior, "conditional") ? FG_BASE_CONDITIONAL
                                                         : FG_BASE_NORMAL;
  return (fg_flow_config){.base = base, .event = event, .dtype = FG_F32,
                          .seed = (uint64_t)s->train.seed, .context = s->classes};
}
