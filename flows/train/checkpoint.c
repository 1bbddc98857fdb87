/* Checkpoints: the safetensors layout of a trainer's state (see checkpoint.h). */
#include "flows/train/checkpoint.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/formats/safetensors.h"
#include "core/vec.h"
#include "flows/train/trainer_internal.h"

static const char FORMAT[] = "flowgrad-checkpoint-1";

enum { NAME_CAP = 512 };

/* "<kind>/<param>" or "<kind>/<slot>/<param>" into buf[NAME_CAP]. */
static const char *entry_name(char *buf, const char *kind, const char *slot, const char *param) {
  snprintf(buf, NAME_CAP, "%s/%s%s%s", kind, slot ? slot : "", slot ? "/" : "", param);
  return buf;
}

/* What one entry of a trainer's checkpoint is: kind ("param", "optim", "ema"), optimiser slot
 * (NULL for the others), parameter name, and the tensor it is saved from or loaded into. */
typedef fg_status (*entry_fn)(void *ud, const char *kind, const char *slot, const char *param,
                              fg_tensor *v, fg_err *e);

/* The layout, in one place for saving and loading: per parameter, in store order, the
 * parameter, its optimiser slots, its EMA copy. */
static fg_status for_each_entry(fg_trainer *t, entry_fn fn, void *ud, fg_err *e) {
  fg_params *ps = fg_flow_params(t->f);
  fg_status st = FG_OK;
  for (int i = 0; st == FG_OK && i < t->n_params; i++) {
    const char *name = fg_params_name(ps, i);
    st = fn(ud, "param", NULL, name, fg_params_tensor(ps, i), e);
    for (int s = 0; st == FG_OK && s < fg_optim_num_slots(t->opt); s++)
      st = fn(ud, "optim", fg_optim_slot_name(t->opt, s), name, fg_optim_slot(t->opt, i, s), e);
    if (st == FG_OK && t->ema) st = fn(ud, "ema", NULL, name, t->ema[i], e);
  }
  return st;
}

/* The metadata that ties a checkpoint to its run (batch order, noise, data), as text. */
typedef struct run_id {
  char seed[32], bits[16], event[160], lr[40], batch[32];
} run_id;

static run_id run_id_of(const fg_trainer *t) {
  run_id r;
  fg_shape ev = fg_flow_get_config(t->f)->event;
  fg_shape_str(&ev, r.event, sizeof r.event);
  snprintf(r.bits, sizeof r.bits, "%lld", (long long)t->s.n_bits);
  snprintf(r.seed, sizeof r.seed, "%lld", (long long)t->s.seed);
  snprintf(r.lr, sizeof r.lr, "%.17g", t->s.lr);
  snprintf(r.batch, sizeof r.batch, "%lld", (long long)t->batch);
  return r;
}

/* ---- run information (fg_trainer_set_info) ---- */

static const char *const OWN_KEYS[] = {"format", "step",      "optim_step", "skipped_in_a_row",
                                       "seed",   "optimizer", "spec",       "event",
                                       "n_bits", "discrete",  "lr",         "batch",
                                       "ranks"};
enum { N_OWN_KEYS = sizeof OWN_KEYS / sizeof *OWN_KEYS };

void fg__trainer_info_free(fg_trainer *t) {
  for (int64_t i = 0; i < t->n_info; i++) free(t->info[i].key), free(t->info[i].value);
  free(t->info);
  t->info = NULL, t->n_info = t->cap_info = 0;
}

fg_status fg_trainer_set_info(fg_trainer *t, const char *key, const char *value, bool must_match,
                              fg_err *e) {
  if (!key || !*key || !value)
    return fg_err_set(e, FG_E_MISUSE, "set_info: needs a key and a value");
  for (int i = 0; i < N_OWN_KEYS; i++)
    if (!strcmp(key, OWN_KEYS[i]))
      return fg_err_set(e, FG_E_MISUSE, "set_info: '%s' is the checkpoint's own key", key);
  int64_t i = 0;
  while (i < t->n_info && strcmp(t->info[i].key, key)) i++;
  char *k = strdup(key), *v = strdup(value);
  if (!k || !v || (i == t->n_info && !FG_VEC_RESERVE(t->info, t->cap_info, t->n_info + 1))) {
    free(k), free(v);
    return fg_err_set(e, FG_E_NOMEM, "set_info: out of memory");
  }
  if (i < t->n_info) {
    free(t->info[i].key);
    free(t->info[i].value);
  } else {
    t->n_info++;
  }
  t->info[i] = (fg__run_info){k, v, must_match};
  return FG_OK;
}

/* ---- saving ---- */

typedef struct entries {
  fg_safetensors_item *items;
  size_t n;
  const char *path;
} entries;

static fg_status add_entry(void *ud, const char *kind, const char *slot, const char *param,
                           fg_tensor *v, fg_err *e) {
  entries *en = ud;
  char buf[NAME_CAP];
  char *name = strdup(entry_name(buf, kind, slot, param));
  if (!name) return fg_err_set(e, FG_E_NOMEM, "out of memory writing %s", en->path);
  en->items[en->n++] = (fg_safetensors_item){.name = name, .tensor = v};
  return FG_OK;
}

static void free_entries(entries *en) {
  for (size_t i = 0; i < en->n; i++) free((char *)en->items[i].name);
  free(en->items);
}

/* Every buffer of the flow, as "buffer/<name>". */
static fg_status add_buffers(fg_trainer *t, entries *en, fg_err *e) {
  const fg_params *ps = fg_flow_params(t->f);
  fg_status st = FG_OK;
  for (int i = 0; st == FG_OK && i < fg_params_num_buffers(ps); i++)
    st = add_entry(en, "buffer", NULL, fg_params_buffer_name(ps, i), fg_params_buffer(ps, i), e);
  return st;
}

enum { N_SAVED_META = 13 };

static fg_status write_checkpoint(fg_trainer *t, const char *path, const char *spec_text,
                                  fg_err *e) {
  const fg_params *ps = fg_flow_params(t->f);
  size_t cap = (size_t)t->n_params * (size_t)(2 + fg_optim_num_slots(t->opt)) +
      (size_t)fg_params_num_buffers(ps) + 1;
  entries en = {malloc(sizeof *en.items * cap), 0, path};
  fg_safetensors_kv *meta = malloc(sizeof *meta * (size_t)(N_SAVED_META + t->n_info));
  fg_status st = en.items && meta ? for_each_entry(t, add_entry, &en, e)
                                  : fg_err_set(e, FG_E_NOMEM, "out of memory writing %s", path);
  if (st == FG_OK) st = add_buffers(t, &en, e);
  if (st != FG_OK) {
    free_entries(&en);
    free(meta);
    return st;
  }
  char step[32], optim_step[32], skips[32], ranks[16];
  run_id id = run_id_of(t);
  snprintf(step, sizeof step, "%lld", (long long)t->step);
  snprintf(optim_step, sizeof optim_step, "%lld", (long long)fg_optim_get_step(t->opt));
  snprintf(skips, sizeof skips, "%lld", (long long)t->bad_in_a_row);
  snprintf(ranks, sizeof ranks, "%d", fg_dist_size(t->dist));
  const fg_safetensors_kv own[N_SAVED_META] = {
      {"format", FORMAT}, {"step", step}, {"optim_step", optim_step},
      {"skipped_in_a_row", skips}, {"seed", id.seed}, {"optimizer", t->s.optimizer},
      {"spec", spec_text ? spec_text : ""}, {"event", id.event}, {"n_bits", id.bits},
      {"discrete", t->discrete ? "true" : "false"}, {"lr", id.lr}, {"batch", id.batch},
      {"ranks", ranks}};
  memcpy(meta, own, sizeof own);
  for (int64_t i = 0; i < t->n_info; i++)
    meta[N_SAVED_META + i] = (fg_safetensors_kv){t->info[i].key, t->info[i].value};
  st = fg_safetensors_write(path, en.items, en.n, meta, (size_t)(N_SAVED_META + t->n_info), e);
  free_entries(&en);
  free(meta);
  return st;
}

/* In a data-parallel job every process calls this; rank 0 writes, once the processes have
 * checked that they hold the same state, and all of them learn how the write went. */
fg_status fg_trainer_save(fg_trainer *t, const char *path, const char *spec_text, fg_err *e) {
  fg_status st = fg__trainer_check_replicas(t, e);
  if (st == FG_OK && fg_dist_rank(t->dist) == 0) st = write_checkpoint(t, path, spec_text, e);
  return fg_dist_agree(t->dist, st, e);
}

/* ---- loading ---- */

/* Opens path and checks that it is a flowgrad checkpoint. */
static fg_status open_checkpoint(fg_safetensors **f, const char *path, fg_err *e) {
  fg_status st = fg_safetensors_open(f, path, e);
  if (st != FG_OK) return st;
  const char *format = fg_safetensors_meta(*f, "format");
  if (format && !strcmp(format, FORMAT)) return FG_OK;
  st = fg_err_set(e, FG_E_FORMAT, "%s is not a flowgrad checkpoint (metadata 'format' is %s)",
                  path, format ? format : "missing");
  fg_safetensors_close(*f);
  *f = NULL;
  return st;
}

/* Checks entry kind/slot/param against dst and, with commit, copies it in. */
static fg_status load_into(fg_safetensors *f, const char *kind, const char *slot, const char *param,
                           fg_tensor *dst, bool commit, const char *path, fg_err *e) {
  char name[NAME_CAP];
  entry_name(name, kind, slot, param);
  fg_tensor *v = NULL;
  fg_status st = fg_safetensors_get(&v, f, name, e);
  if (st == FG_OK && (v->dtype != dst->dtype || !fg_shape_equal(&v->shape, &dst->shape))) {
    char a[128], b[128];
    st = fg_err_set(e, FG_E_FORMAT, "%s: entry '%s' is %s %s; this model has %s %s", path, name,
                    fg_dtype_name(v->dtype), fg_shape_str(&v->shape, a, sizeof a),
                    fg_dtype_name(dst->dtype), fg_shape_str(&dst->shape, b, sizeof b));
  }
  for (int64_t i = 0; st == FG_OK && i < fg_tensor_numel(v); i++)
    if (!isfinite(fg_tensor_get(v, i)))
      st = fg_err_set(e, FG_E_FORMAT,
                      "%s: entry '%s' element %lld is %g (a checkpoint's values must be finite)",
                      path, name, (long long)i, fg_tensor_get(v, i));
  size_t bytes = st == FG_OK ? (size_t)fg_tensor_numel(v) * fg_dtype_size(v->dtype) : 0;
  if (st == FG_OK && commit) memcpy(fg_tensor_data(dst), fg_tensor_data(v), bytes);
  fg_tensor_free(v);
  return st;
}

typedef struct loader {
  fg_safetensors *f;
  const char *path;
  bool commit;
} loader;

static fg_status load_entry(void *ud, const char *kind, const char *slot, const char *param,
                            fg_tensor *v, fg_err *e) {
  const loader *l = ud;
  return load_into(l->f, kind, slot, param, v, l->commit, l->path, e);
}

static fg_status meta_int(fg_safetensors *f, const char *key, const char *path, int64_t *out,
                          fg_err *e) {
  const char *v = fg_safetensors_meta(f, key);
  char *end;
  long long x = v ? strtoll(v, &end, 10) : 0;
  if (!v || !*v || *end || x < 0)
    return fg_err_set(e, FG_E_FORMAT, "%s: metadata '%s' missing or not a count", path, key);
  *out = x;
  return FG_OK;
}

/* One metadata value of the file against this run's: a file without it (an older one) passes. */
static fg_status same_value(fg_safetensors *f, const char *key, const char *mine, bool required,
                            const char *path, fg_err *e) {
  const char *v = fg_safetensors_meta(f, key);
  if ((!v && !required) || (v && !strcmp(v, mine))) return FG_OK;
  return fg_err_set(e, FG_E_FORMAT,
                    "%s: checkpoint has %s %s, these settings have %s (a resume must "
                    "use the same; start a new run without --resume to change it)",
                    path, key, v ? v : "(missing)", mine);
}

/* A resume is exact only with the data and the randomness the checkpoint was trained with: its
 * seed (batch order, noise), n_bits, event shape, lr and batch must be this trainer's, and so
 * must the run information set with must_match (the data source, a row limit).  A checkpoint
 * of step 0 (weights saved before any step, as the Python binding's Flow.save writes) carries
 * no trajectory that lr or batch shaped, so those two need not match. */
static fg_status check_same_run(fg_safetensors *f, const fg_trainer *t, int64_t step,
                                const char *path, fg_err *e) {
  run_id id = run_id_of(t);
  const char *keys[] = {"seed", "n_bits", "event", "lr", "batch"};
  const char *mine[] = {id.seed, id.bits, id.event, id.lr, id.batch};
  int n_keys = step == 0 ? 3 : 5;
  fg_status st = FG_OK;
  for (int i = 0; st == FG_OK && i < n_keys; i++)
    st = same_value(f, keys[i], mine[i], i < 3, path, e);
  for (int64_t i = 0; st == FG_OK && i < t->n_info; i++)
    if (t->info[i].must_match) st = same_value(f, t->info[i].key, t->info[i].value, false, path, e);
  return st;
}

/* ---- buffers ---- */

/* Checks every buffer of ps against the file (and with commit copies them in; *changed says
 * whether any value differed).  A file with no buffer entry at all (written before buffers
 * existed) leaves the layers' own. */
static fg_status load_buffers(fg_safetensors *f, fg_params *ps, const char *path, bool commit,
                              bool *changed, fg_err *e) {
  bool any = false;
  for (size_t i = 0; i < fg_safetensors_count(f) && !any; i++)
    any = !strncmp(fg_safetensors_entry(f, i)->name, "buffer/", 7);
  fg_status st = FG_OK;
  for (int i = 0; any && st == FG_OK && i < fg_params_num_buffers(ps); i++) {
    char name[NAME_CAP];
    fg_tensor *v = NULL, *dst = fg_params_buffer(ps, i);
    st = fg_safetensors_get(&v, f, entry_name(name, "buffer", NULL, fg_params_buffer_name(ps, i)),
                            e);
    if (st == FG_E_NOTFOUND)
      fg_err_prefix(e, FG_E_FORMAT, "the checkpoint has buffers but not all of this model's");
    if (st == FG_OK && (st = fg_params_check_buffer(ps, i, v, e)) != FG_OK)
      fg_err_prefix(e, st, "%s", path);
    size_t bytes = st == FG_OK ? (size_t)fg_tensor_numel(v) * sizeof(double) : 0;
    if (st == FG_OK && commit && memcmp(fg_tensor_data(dst), fg_tensor_data(v), bytes)) {
      memcpy(fg_tensor_data(dst), fg_tensor_data(v), bytes);
      *changed = true;
    }
    fg_tensor_free(v);
  }
  return st == FG_E_NOTFOUND ? FG_E_FORMAT : st;
}

fg_status fg_trainer_load(fg_trainer *t, const char *path, fg_err *e) {
  fg_safetensors *f;
  fg_status st = open_checkpoint(&f, path, e);
  if (st != FG_OK) return st;
  int64_t step = 0, optim_step = 0, skips = 0;
  st = meta_int(f, "step", path, &step, e);
  if (st == FG_OK) st = meta_int(f, "optim_step", path, &optim_step, e);
  /* the non-finite steps just before the save, so that max_nonfinite counts across a resume
   * (absent from checkpoints written before it was saved: none) */
  if (st == FG_OK && fg_safetensors_meta(f, "skipped_in_a_row"))
    st = meta_int(f, "skipped_in_a_row", path, &skips, e);
  if (st == FG_OK) st = check_same_run(f, t, step, path, e);
  /* two passes: every entry is checked before any tensor changes, so a bad file loses nothing */
  bool changed = false;
  for (int pass = 0; st == FG_OK && pass < 2; pass++) {
    st = for_each_entry(t, load_entry, &(loader){f, path, pass == 1}, e);
    if (st == FG_OK) st = load_buffers(f, fg_flow_params(t->f), path, pass == 1, &changed, e);
  }
  fg_safetensors_close(f);
  /* the training program holds the buffers it was built with */
  if (st == FG_OK && changed) st = fg__trainer_rebuild(t, e);
  if (st != FG_OK) return st;
  t->step = step;
  fg_optim_set_step(t->opt, optim_step);
  t->initialised = true; /* the loaded weights are already initialised */
  t->bad_in_a_row = skips;
  return FG_OK;
}

/* ---- reading without a trainer ---- */

/* "[1, 28, 28]" -> shape */
static bool parse_shape(const char *text, fg_shape *out) {
  memset(out, 0, sizeof *out);
  const char *p = text ? strchr(text, '[') : NULL;
  if (!p) return false;
  p++;
  while (*p && *p != ']') {
    char *end;
    errno = 0;
    long long v = strtoll(p, &end, 10);
    if (end == p || errno || v < 0 || out->ndim == FG_MAX_DIMS) return false;
    out->d[out->ndim++] = v;
    p = end + strspn(end, ", ");
  }
  return *p == ']' && out->ndim > 0;
}

fg_status fg_checkpoint_read_meta(const char *path, fg_checkpoint_meta *m, fg_err *e) {
  memset(m, 0, sizeof *m);
  fg_safetensors *f;
  fg_status st = open_checkpoint(&f, path, e);
  if (st != FG_OK) return st;
  const char *spec = fg_safetensors_meta(f, "spec");
  if (!parse_shape(fg_safetensors_meta(f, "event"), &m->event))
    st = fg_err_set(e, FG_E_FORMAT, "%s: metadata 'event' missing or malformed", path);
  if (st == FG_OK) st = meta_int(f, "n_bits", path, &m->n_bits, e);
  if (st == FG_OK) st = meta_int(f, "step", path, &m->step, e);
  m->ranks = 1; /* written by one process, or before jobs were recorded */
  if (st == FG_OK && fg_safetensors_meta(f, "ranks")) st = meta_int(f, "ranks", path, &m->ranks, e);
  if (st == FG_OK && (!spec || !(m->spec = strdup(spec))))
    st = fg_err_set(e, spec ? FG_E_NOMEM : FG_E_FORMAT, "%s: metadata 'spec' missing", path);
  const char *plugins = fg_safetensors_meta(f, "plugins");
  if (st == FG_OK && plugins && *plugins && !(m->plugins = strdup(plugins)))
    st = fg_err_set(e, FG_E_NOMEM, "%s: out of memory", path);
  const char *disc = fg_safetensors_meta(f, "discrete");
  m->discrete = disc && !strcmp(disc, "true");
  fg_safetensors_close(f);
  if (st != FG_OK) fg_checkpoint_meta_free(m);
  return st;
}

void fg_checkpoint_meta_free(fg_checkpoint_meta *m) {
  free(m->spec);
  free(m->plugins);
  memset(m, 0, sizeof *m);
}

fg_status fg_checkpoint_load_params(fg_flow *f, const char *path, bool prefer_ema, fg_err *e) {
  fg_safetensors *file;
  fg_status st = fg_safetensors_open(&file, path, e);
  if (st != FG_OK) return st;
  fg_params *ps = fg_flow_params(f);
  const char *kind = "param";
  char probe[NAME_CAP];
  if (prefer_ema && fg_params_count(ps) > 0 &&
      fg_safetensors_find(file, entry_name(probe, "ema", NULL, fg_params_name(ps, 0))))
    kind = "ema";
  bool changed = false;
  for (int pass = 0; pass < 2; pass++) {
    for (int i = 0; st == FG_OK && i < fg_params_count(ps); i++) {
      fg_tensor *dst = fg_params_tensor(ps, i);
      st = load_into(file, kind, NULL, fg_params_name(ps, i), dst, pass == 1, path, e);
    }
    if (st == FG_OK) st = load_buffers(file, ps, path, pass == 1, &changed, e);
  }
  fg_safetensors_close(file);
  return st;
}

fg_status fg_checkpoint_check_plugins(const fg_checkpoint_meta *m, const fg_registry *r,
                                      fg_err *e) {
  for (const char *line = m->plugins; line && *line;) {
    size_t len = strcspn(line, "\n"), type_len = strcspn(line, "=");
    if (type_len < len) {
      char type[128];
      snprintf(type, sizeof type, "%.*s", (int)(type_len < 127 ? type_len : 127), line);
      if (!fg_registry_find(r, type))
        return fg_err_set(e, FG_E_PLUGIN,
                          "the checkpoint's spec uses type '%s' from the plugin %.*s, "
                          "which is not loaded: pass it with --plugin %.*s",
                          type, (int)(len - type_len - 1), line + type_len + 1,
                          (int)(len - type_len - 1), line + type_len + 1);
    }
    line += len + (line[len] == '\n');
  }
  return FG_OK;
}
