/* The bijector argument parser (flows/bijector_args.c) and the constructors it calls through
 * libffi: the first byte picks a built-in type, the rest is its argument text; a bijector that
 * is made is then built forward and inverse on the type's check event, in a parameter store
 * capped at FUZZ_MAX_PARAMS scalars (an argument such as hidden=10^9 must meet that cap, not
 * exhaust memory). */
#include "flows/bijector.h"
#include "fuzz_input.h"

enum { FUZZ_MAX_PARAMS = 1 << 20 };

static void build(fg_bijector *b, const fg_bijector_type *t) {
  fg_params *ps;
  if (fg_params_new(&ps, 1, NULL) != FG_OK) abort();
  fg_params_set_limit(ps, FUZZ_MAX_PARAMS);
  fg_graph *g;
  fg_flow_ctx *c;
  if (fg_flow_ctx_new_graph(&c, &g, ps, NULL, NULL) == FG_OK) {
    fg_shape s = {t->check_event.ndim + 1, {2}};
    for (int i = 0; i < t->check_event.ndim; i++) s.d[i + 1] = t->check_event.d[i];
    fg_node x = fg_input(g, "x", FG_F32, s), y, ld, back;
    if (fg_bijector_forward(b, c, x, &y, &ld) == FG_OK) fg_bijector_inverse(b, c, y, &back, &ld);
    fg_flow_ctx_free(c);
    fg_graph_free(g);
  }
  fg_params_free(ps);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  const fg_registry *r = fuzz_registry();
  const fg_bijector_type *t = fg_registry_type(r, data[0] % fg_registry_count(r));
  char *args = fuzz_text(data + 1, size - 1);
  fg_bijector *b;
  if (fg_bijector_new_from_text(&b, t, args, NULL) == FG_OK) {
    build(b, t);
    fg_bijector_free(b);
  }
  free(args);
  return 0;
}
