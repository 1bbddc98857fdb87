/* The flow-spec language (frontends/spec/spec.c) through to model construction: the text is
 * parsed against the built-in types, and a flow of at most FUZZ_MAX_LAYERS layers is made on one
 * of a few small events (picked by the text's length), which builds its log-prob graphs and
 * creates every parameter, under a cap of FUZZ_MAX_PARAMS scalars. */
#include "flows/flow.h"
#include "frontends/spec/spec.h"
#include "fuzz_input.h"

enum { FUZZ_MAX_LAYERS = 64, FUZZ_MAX_PARAMS = 1 << 20 };

static const fg_shape events[] = {{1, {2}}, {3, {1, 4, 4}}, {3, {3, 4, 4}}, {3, {4, 2, 2}}, {1, {6}}};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = fuzz_text(data, size);
  fg_spec *s;
  if (fg_spec_parse(&s, text, "fuzz.flow", fuzz_registry(), NULL) == FG_OK) {
    char where[256];
    fg_spec_where(s, "batch", where, sizeof where);
    if (fg_bijector_num_children(s->flow) <= FUZZ_MAX_LAYERS) {
      fg_flow_config cfg = {.base = strcmp(s->prior, "learned") ? FG_BASE_NORMAL : FG_BASE_LEARNED,
                            .event = events[size % (sizeof events / sizeof *events)],
                            .seed = (uint64_t)s->train.seed, .max_params = FUZZ_MAX_PARAMS};
      fg_flow *f;
      fg_bijector *b = s->flow;
      s->flow = NULL; /* the flow owns it now, also on failure */
      if (fg_flow_new_config(&f, b, &cfg, NULL) == FG_OK) fg_flow_free(f);
    }
    fg_spec_free(s);
  }
  free(text);
  return 0;
}
