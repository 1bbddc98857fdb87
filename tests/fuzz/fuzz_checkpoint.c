/* Loading a checkpoint into a model (flows/train/checkpoint.c), as `flowgrad eval|sample` do:
 * its metadata, the plugins its spec needs, the spec (at most FUZZ_MAX_LAYERS layers), a flow
 * on the event it records (capped at FUZZ_MAX_PARAMS parameter and buffer scalars), then its
 * parameters, EMA weights and buffers, each checked before anything changes. */
#include "flows/flow.h"
#include "flows/train/checkpoint.h"
#include "frontends/spec/spec.h"
#include "fuzz_input.h"

enum { FUZZ_MAX_LAYERS = 64, FUZZ_MAX_PARAMS = 1 << 20 };

static void load_into_model(const fg_checkpoint_meta *m, const char *path) {
  fg_spec *s;
  if (fg_spec_parse(&s, m->spec, path, fuzz_registry(), NULL) != FG_OK) return;
  if (fg_bijector_num_children(s->flow) <= FUZZ_MAX_LAYERS) {
    fg_flow_config cfg = {.base = strcmp(s->prior, "learned") ? FG_BASE_NORMAL : FG_BASE_LEARNED,
                          .event = m->event, .seed = (uint64_t)s->train.seed, .max_params = FUZZ_MAX_PARAMS};
    fg_flow *f;
    fg_bijector *b = s->flow;
    s->flow = NULL; /* the flow owns it now, also on failure */
    if (fg_flow_new_config(&f, b, &cfg, NULL) == FG_OK) {
      fg_checkpoint_load_params(f, path, true, NULL);
      fg_checkpoint_load_params(f, path, false, NULL);
      fg_flow_free(f);
    }
  }
  fg_spec_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_file(data, size);
  fg_checkpoint_meta m;
  if (fg_checkpoint_read_meta(path, &m, NULL) != FG_OK) return 0;
  if (fg_checkpoint_check_plugins(&m, fuzz_registry(), NULL) == FG_OK) load_into_model(&m, path);
  fg_checkpoint_meta_free(&m);
  return 0;
}
