/* Programs: making one (options resolved from the environment, then compiled by compile.c),
 * binding its inputs and parameters, reading its outputs, and freeing it.  Running is
 * execute.c; profiling is profile.c. */
#include <stdlib.h>
#include <string.h>

#include "core/runtime/program_internal.h"

static bool env_flag(const char *name) {
  const char *v = getenv(name);
  return v && *v && strcmp(v, "0") != 0;
}

static fg_status resolve_opts(const fg_program_opts *in, fg_program_opts *o, fg_err *e) {
  if (in) *o = *in;
  else memset(o, 0, sizeof *o);
  uint32_t env_disabled;
  fg_status st = fg_pass_parse_list(getenv("FG_DISABLE_PASSES"), &env_disabled, e);
  if (st != FG_OK) return st;
  o->disabled_passes |= env_disabled;
  o->poison_freed = o->poison_freed || env_flag("FG_POISON_FREED");
  o->profile = o->profile || env_flag("FG_PROFILE");
  o->verify = o->verify || env_flag("FG_VERIFY_PASSES");
  o->deterministic = o->deterministic || env_flag("FG_DETERMINISTIC");
  if (!o->dump_dir) o->dump_dir = getenv("FG_DUMP_PASSES");
  if (o->n_threads <= 0 && getenv("FG_THREADS")) o->n_threads = atoi(getenv("FG_THREADS"));
  return FG_OK;
}

fg_status fg_program_new_opts(fg_program **out, fg_graph *g, int n_out, const fg_node *outs,
                              const fg_program_opts *opts, fg_err *e) {
  *out = NULL;
  if (!g || n_out < 0 || (n_out && !outs))
    return fg_err_set(e, FG_E_MISUSE, "program: no graph or outputs");
  if (fg_graph_status(g) != FG_OK)
    return fg_err_set(e, fg_graph_status(g), "program: the graph is in error: %s",
                      fg_graph_errmsg(g));
  for (int j = 0; j < n_out; j++)
    if (!fg_node_valid(g, outs[j]))
      return fg_err_set(e, FG_E_MISUSE, "program: output %d (id %d) is not a node of the graph",
                        j, outs[j]);
  fg_program_opts o;
  fg_status st = resolve_opts(opts, &o, e);
  if (st != FG_OK) return st;
  fg_program *p = calloc(1, sizeof *p);
  if (!p || !(p->outs = malloc(sizeof *p->outs * ((size_t)n_out + 1)))) {
    free(p);
    return fg_err_set(e, FG_E_NOMEM, "program: out of memory");
  }
  p->src = g;
  p->n_out = n_out;
  p->poison = o.poison_freed;
  p->profile = o.profile;
  p->prof_rows = fg__program_profile_rows();
  st = fg__program_compile(p, g, outs, &o, e);
  if (st == FG_OK && p->profile &&
      !(p->prof_step_ms = calloc((size_t)p->n_steps + 1, sizeof(double))))
    st = fg_err_set(e, FG_E_NOMEM, "program: out of memory");
  if (st != FG_OK) {
    fg_program_free(p);
    return st;
  }
  *out = p;
  return FG_OK;
}

fg_status fg_program_new(fg_program **out, fg_graph *g, int n_out, const fg_node *outs, fg_err *e) {
  return fg_program_new_opts(out, g, n_out, outs, NULL, e);
}

void fg_program_free(fg_program *p) {
  if (!p) return;
  for (int32_t i = 0; p->value && p->g && i < fg_graph_node_count(p->g); i++)
    fg_tensor_free(p->value[i]);
  free(p->value);
  for (int32_t s = 0; p->kernels && s < p->n_steps; s++) fg__kernel_choice_release(&p->kernels[s]);
  free(p->kernels);
  free(p->step_parts);
  free(p->step_blocked);
  for (int32_t s = 0; p->step_scratch && s < p->n_steps; s++) free(p->step_scratch[s]);
  free(p->step_scratch);
  fg_buffer_release(p->arena);
  fg_memplan_free(&p->plan);
  fg_fusion_free(&p->fusion);
  if (p->own_pool) fg_pool_free(p->pool);
  free(p->scratch);
  free(p->steps);
  free(p->prof_step_ms);
  free(p->reads);
  free(p->poison_off);
  free(p->poison_ids);
  free(p->leaves);
  free(p->outs);
  fg_graph_free(p->g);
  free(p);
}

fg_status fg_program_bind(fg_program *p, const char *name, const fg_tensor *t, fg_err *e) {
  if (!p || !name || !t) return fg_err_set(e, FG_E_MISUSE, "bind: no program, name or tensor");
  fg_node n = fg_graph_find(p->g, name);
  if (n == FG_NONE) {
    if (fg_graph_find(p->src, name) != FG_NONE) return FG_OK; /* not needed by the outputs */
    return fg_err_set(e, FG_E_NOTFOUND, "bind: the graph has no input or parameter '%s'", name);
  }
  fg_shape want = fg_node_shape(p->g, n);
  if (t->dtype != fg_node_dtype(p->g, n) || !fg_shape_equal(&t->shape, &want)) {
    char a[128], b[128];
    return fg_err_set(e, FG_E_SHAPE, "bind '%s': got %s %s, the graph expects %s %s", name,
                        fg_dtype_name(t->dtype), fg_shape_str(&t->shape, a, sizeof a),
                        fg_dtype_name(fg_node_dtype(p->g, n)), fg_shape_str(&want, b, sizeof b));
  }
  fg_tensor *v;
  /* Contiguous tensors are shared (an optimiser's in-place update is seen); a strided view
   * is copied, since kernels read contiguous memory. */
  fg_status st = fg_tensor_is_contiguous(t) ? fg_tensor_view(&v, t, e)
                                            : fg_tensor_copy(&v, t, t->dtype, e);
  if (st != FG_OK) return st;
  fg_tensor_free(p->value[n]);
  p->value[n] = v;
  return FG_OK;
}

const fg_tensor *fg_program_output(const fg_program *p, int i) {
  return (p && i >= 0 && i < p->n_out) ? p->value[p->outs[i]] : NULL;
}

int fg_program_num_outputs(const fg_program *p) { return p ? p->n_out : 0; }
void fg_program_set_rng_offset(fg_program *p, uint64_t offset) { if (p) p->rng_offset = offset; }
const fg_program_stats *fg_program_get_stats(const fg_program *p) { return p ? &p->stats : NULL; }
const fg_graph *fg_program_graph(const fg_program *p) { return p ? p->g : NULL; }
const int32_t *fg_program_groups(const fg_program *p) { return p ? p->fusion.group_of : NULL; }


const char *fg_program_node_kernel(const fg_program *p, fg_node n) {
  for (int32_t s = 0; p && p->kernels && s < p->n_steps; s++)
    if (p->steps[s].node == n && p->fusion.group_of[n] < 0)
      return fg_op_get(fg_node_op(p->g, n))->n_impls ? p->kernels[s].label : NULL;
  return NULL;
}
