/* A bijector written as a plugin: the sinh-arcsinh transform, with no gradient code and no
 * log-det code.  It gives forward and inverse as graph expressions; the engine derives every
 * gradient and, because forward sets *logdet = FG_NONE, the log-det too (exact Jacobian by
 * autodiff, then slogdet).  Build it as a shared library and load it at run time:
 *
 *   build/examples/plugin_demo build/examples/libplugin_sinh_arcsinh.so
 *
 * The transform, per feature, is TensorFlow Probability's SinhArcsinh:
 *     y = sinh((asinh(x) + skew) · tail),        tail = exp(log_tail) > 0
 *     x = sinh(asinh(y) / tail - skew)
 * With skew = 0 and tail = 1 it is the identity; skew shifts mass to one side and tail < 1
 * fattens the tails (> 1 thins them).  It is Jones & Pewsey's (2009) sinh(δ·asinh(x) − ε) up to
 * naming: δ = tail and ε = −skew·tail.  skew and log_tail are learned, one per element of the
 * event (so they broadcast over the batch).
 *
 * Constructor arguments (a spec file writes them as "sinh_arcsinh(skew=0.5, tail=2)"):
 *     skew  double, default 0: initial skew
 *     tail  double, default 1: initial tail weight (> 0)
 *
 * The plugin calls flowgrad's functions (fg_flow_param, fg_add, fg_registry_add, ...) but does
 * not contain them: they resolve against the program that loads it (see examples/meson.build). */
#include <math.h>
#include <stdlib.h>

#include <flowgrad/flowgrad.h>

typedef struct sinh_arcsinh {
  double skew0, log_tail0;
} sinh_arcsinh;

static fg_status create(void **state, fg_err *e, double skew, double tail) {
  if (!isfinite(skew)) return fg_err_set(e, FG_E_MISUSE, "skew must be finite, got %g", skew);
  if (!(tail > 0) || !isfinite(tail)) return fg_err_set(e, FG_E_MISUSE, "tail must be positive and finite, got %g", tail);
  sinh_arcsinh *s = malloc(sizeof *s);
  if (!s) return fg_err_set(e, FG_E_NOMEM, "out of memory");
  s->skew0 = skew;
  s->log_tail0 = log(tail);
  *state = s;
  return FG_OK;
}

/* ---- asinh and sinh from primitives, accurate over the whole line ----
 * asinh(u) = log(u + sqrt(u² + 1)) cancels catastrophically for u << 0 (u + sqrt(u² + 1) → 0)
 * and loses digits near 0, so for u >= 0 it is written log1p(u + u²/(1 + sqrt(u² + 1))), and
 * odd symmetry gives u < 0.  Each element reaches exactly one branch (the other sees 0), so
 * neither the value nor the gradient of the unused branch can turn into inf·0 = NaN, and at
 * x = 0 the gradient is 1 (an abs/sign form would give 0 there).  Overflows only where u²
 * does (|u| > 1e154 in float64, 1e19 in float32). */
static fg_node asinh_nonneg(fg_graph *g, fg_node u) {
  fg_node root = fg_sqrt(g, fg_add_scalar(g, fg_square(g, u), 1.0));
  return fg_log1p(g, fg_add(g, u, fg_div(g, fg_square(g, u), fg_add_scalar(g, root, 1.0))));
}

static fg_node asinh_node(fg_graph *g, fg_node x) {
  fg_node zero = fg_zeros_like(g, x), positive = fg_greater(g, x, zero);
  fg_node pos = fg_where(g, positive, x, zero), neg = fg_where(g, positive, zero, x);
  return fg_sub(g, asinh_nonneg(g, pos), asinh_nonneg(g, fg_neg(g, neg)));
}

/* sinh(z) = (expm1(z) - expm1(-z)) / 2: exact near 0 where (e^z - e^-z) / 2 cancels. */
static fg_node sinh_node(fg_graph *g, fg_node z) {
  return fg_mul_scalar(g, fg_sub(g, fg_expm1(g, z), fg_expm1(g, fg_neg(g, z))), 0.5);
}

/* skew and log_tail: one per event element, shaped like x without its batch axis. */
static void params(const sinh_arcsinh *s, fg_flow_ctx *c, fg_node x, fg_node *skew, fg_node *tail) {
  fg_shape xs = fg_node_shape(fg_flow_graph(c), x), event = {.ndim = xs.ndim - 1};
  for (int i = 1; i < xs.ndim; i++) event.d[i - 1] = xs.d[i];
  *skew = fg_flow_param(c, "skew", event, (fg_init){FG_INIT_CONST, s->skew0, 0});
  *tail = fg_exp(fg_flow_graph(c), fg_flow_param(c, "log_tail", event, (fg_init){FG_INIT_CONST, s->log_tail0, 0}));
}

static fg_status forward(void *state, fg_flow_ctx *c, fg_node x, fg_node *y, fg_node *logdet) {
  fg_graph *g = fg_flow_graph(c);
  fg_node skew, tail;
  params(state, c, x, &skew, &tail);
  *y = sinh_node(g, fg_mul(g, fg_add(g, asinh_node(g, x), skew), tail));
  *logdet = FG_NONE; /* the engine derives it */
  return fg_graph_status(g);
}

static fg_status inverse(void *state, fg_flow_ctx *c, fg_node y, fg_node *x, fg_node *logdet) {
  fg_graph *g = fg_flow_graph(c);
  fg_node skew, tail;
  params(state, c, y, &skew, &tail);
  *x = sinh_node(g, fg_sub(g, fg_div(g, asinh_node(g, y), tail), skew));
  *logdet = FG_NONE; /* the negated forward log-det at x */
  return fg_graph_status(g);
}

static const fg_arg_spec args[] = {
    {"skew", FG_ARG_DOUBLE, "0", "initial skew (0: symmetric)"},
    {"tail", FG_ARG_DOUBLE, "1", "initial tail weight, > 0 (1: normal tails)"},
};

/* The constructor is stored as a generic function pointer and called through libffi with its
 * real prototype; the cast here is only for storage. */
static const fg_bijector_type sinh_arcsinh_type = {
    .abi_version = FG_BIJECTOR_ABI_VERSION,
    .name = "sinh_arcsinh",
    .doc = "y = sinh((asinh(x) + skew) * tail), learned skew and log tail per element",
    .n_args = 2,
    .args = args,
    .create = (void (*)(void))create,
    .destroy = free,
    .forward = forward,
    .inverse = inverse,
    .check_event = {.ndim = 1, .d = {3}},
    .check_args = "skew=0.3, tail=1.4",
    .check_lo = -4,
    .check_hi = 4,
};

fg_status fg_plugin_init(fg_registry *r, fg_err *e);

fg_status fg_plugin_init(fg_registry *r, fg_err *e) { return fg_registry_add(r, &sinh_arcsinh_type, e); }
