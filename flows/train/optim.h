/* Optimisers: SGD (with momentum), Adam and Adamax, as consumers of gradient tensors.
 *
 * A training program's outputs are the loss and one gradient per parameter; fg_optim_step takes
 * those gradients in the order of the parameters the optimiser was made with (for a flow: the
 * order of its parameter store, which is what fg_flow_param_grads produces) and updates the
 * parameter tensors in place, so every program bound to them sees the new values.
 *
 * One step, for every parameter p with gradient g (all arithmetic in double, whatever the
 * tensors' dtype (float32 or float64)):
 *   1. the global gradient norm ||g|| over all parameters; a non-finite norm returns
 *      FG_E_NUMERIC and changes nothing (no update, no step counted), so a trainer can skip a
 *      bad batch;
 *   2. clipping: with clip_norm > 0 and ||g|| > clip_norm every gradient is scaled by
 *      clip_norm / ||g|| (so the clipped global norm is exactly clip_norm);
 *   3. the learning rate of step t (1-based) is lr · min(1, t / warmup_steps) (linear warm-up,
 *      as Glow's and the PyTorch reference's LambdaLR(min(1, (s + 1) / warmup))) times the
 *      schedule's factor (fg_optim_lr_at):
 *        constant  1;
 *        cosine    from the end of warm-up to decay_steps the rate falls along half a cosine
 *                  to lr_min (then stays there): lr_min + (lr - lr_min)(1 + cos(π p)) / 2,
 *                  p = (t - warmup_steps) / (decay_steps - warmup_steps) (SGDR without restarts,
 *                  timm's and Hugging Face's cosine-with-warm-up);
 *        step      gamma^floor(t / step_every) (torch.optim.lr_scheduler.StepLR);
 *   4. weight decay: g += weight_decay · p (L2, PyTorch's `weight_decay`) or, with
 *      decoupled_weight_decay, p -= lr_t · weight_decay · p before the update (AdamW);
 *   5. the update, exactly as PyTorch's optimisers (so runs compare with the reference):
 *      SGD     buf = momentum · buf + g;  p -= lr_t · buf   (buf = g when momentum is 0)
 *      Adam    m = β1 m + (1 - β1) g;  v = β2 v + (1 - β2) g²;
 *              p -= lr_t · (m / (1 - β1^t)) / (sqrt(v / (1 - β2^t)) + eps)
 *      Adamax  m = β1 m + (1 - β1) g;  u = max(β2 u, |g| + eps);
 *              p -= lr_t / (1 - β1^t) · m / u             (Kingma & Ba, Algorithm 2)
 *
 * State for checkpointing: the step count and, per parameter, the moment tensors ("slots") in
 * the parameter's dtype and shape, named as PyTorch names them: SGD with momentum has
 * "momentum_buffer"; Adam "exp_avg" and "exp_avg_sq"; Adamax "exp_avg" and "exp_inf".  They
 * are borrowed and writable, so a loader can fill them and then call fg_optim_set_step. */
#ifndef FG_OPTIM_H
#define FG_OPTIM_H

#include <stdbool.h>
#include <stdint.h>

#include "core/tensor.h"
#include "flows/params.h"

typedef enum fg_optim_kind { FG_OPTIM_SGD, FG_OPTIM_ADAM, FG_OPTIM_ADAMAX } fg_optim_kind;
typedef enum fg_lr_schedule { FG_LR_CONSTANT, FG_LR_COSINE, FG_LR_STEP } fg_lr_schedule;

typedef struct fg_optim_config {
  fg_optim_kind kind;
  double lr;
  double momentum;            /* SGD only; 0 is plain SGD */
  double beta1, beta2, eps;   /* Adam and Adamax */
  double weight_decay;        /* 0: none */
  bool decoupled_weight_decay;/* AdamW-style decay instead of L2 in the gradient */
  double clip_norm;           /* global gradient-norm clip; 0: none */
  int64_t warmup_steps;       /* linear warm-up over this many steps; 0: none */
  fg_lr_schedule schedule;    /* after warm-up (above); constant by default */
  int64_t decay_steps;        /* cosine: the step at which the rate reaches lr_min (>= 1; at or
                                 before the end of warm-up, the rate is lr_min after it) */
  double lr_min;              /* cosine: the final rate, 0 <= lr_min <= lr */
  int64_t step_every;         /* step: steps between two decays (>= 1) */
  double gamma;               /* step: the factor of each decay, in (0, 1] */
} fg_optim_config;

/* The defaults of each kind, as PyTorch's: lr 1e-3 (SGD 1e-2), betas (0.9, 0.999) and eps 1e-8
 * (Adamax: lr 2e-3, as torch.optim.Adamax), no momentum, decay, clipping or warm-up. */
fg_optim_config fg_optim_defaults(fg_optim_kind kind);
/* "sgd", "adam", "adamax" -> kind; FG_E_NOTFOUND naming the accepted ones otherwise. */
fg_status fg_optim_kind_parse(const char *name, fg_optim_kind *out, fg_err *e);
const char *fg_optim_kind_name(fg_optim_kind kind);
/* "constant", "cosine", "step" -> schedule; FG_E_NOTFOUND naming the accepted ones otherwise. */
fg_status fg_lr_schedule_parse(const char *name, fg_lr_schedule *out, fg_err *e);
const char *fg_lr_schedule_name(fg_lr_schedule s);

typedef struct fg_optim fg_optim;

/* What one step did. */
typedef struct fg_optim_step_info {
  double grad_norm;  /* global norm before clipping (inf/NaN when the step was refused) */
  double scale;      /* the clipping factor applied to every gradient (1: none) */
  double lr;         /* the learning rate used (after warm-up) */
  int64_t step;      /* the step count after this step */
} fg_optim_step_info;

/* An optimiser over n parameter tensors (borrowed: they must outlive it; float32 or float64,
 * contiguous).  FG_E_MISUSE for a bad configuration (lr < 0, betas outside [0, 1), ...), naming
 * the field.  On failure *out is NULL. */
fg_status fg_optim_new(fg_optim **out, const fg_optim_config *cfg, int n, fg_tensor *const *params,
                       fg_err *e);
/* Over every parameter of a store, in store order. */
fg_status fg_optim_new_for_params(fg_optim **out, const fg_optim_config *cfg, const fg_params *ps,
                                  fg_err *e);
void fg_optim_free(fg_optim *o);

/* One update from grads[0..n) (same order, shapes and count as the parameters; any dtype and
 * layout).  info may be NULL.  FG_E_NUMERIC for a non-finite gradient norm (nothing changed);
 * FG_E_SHAPE when a gradient does not match its parameter. */
fg_status fg_optim_step(fg_optim *o, const fg_tensor *const *grads, fg_optim_step_info *info,
                        fg_err *e);

/* The global L2 norm of n tensors (computed in double; NaN or inf when an element is). */
double fg_grad_global_norm(int n, const fg_tensor *const *grads);
/* The learning rate step t (1-based) uses under cfg's warm-up and schedule. */
double fg_optim_lr_at(const fg_optim_config *cfg, int64_t t);

const fg_optim_config *fg_optim_get_config(const fg_optim *o);
/* Changes the base learning rate (the schedule scales the new one). */
void fg_optim_set_lr(fg_optim *o, double lr);
/* Per-parameter weight decay (e.g. RealNVP decays only some parameters); starts at the
 * config's value for every parameter. */
fg_status fg_optim_set_weight_decay(fg_optim *o, int i, double weight_decay, fg_err *e);

/* ---- state, for checkpoints ---- */
int fg_optim_num_params(const fg_optim *o);
int64_t fg_optim_get_step(const fg_optim *o);
void fg_optim_set_step(fg_optim *o, int64_t step);
/* State tensors per parameter: 0 (plain SGD), 1 (SGD with momentum) or 2 (Adam, Adamax). */
int fg_optim_num_slots(const fg_optim *o);
const char *fg_optim_slot_name(const fg_optim *o, int slot);
/* Slot `slot` of parameter i (borrowed, writable); NULL when out of range. */
fg_tensor *fg_optim_slot(const fg_optim *o, int i, int slot);

#endif
