/* The trainer: the data it accepts and the non-finite guard (a poisoned batch is skipped and
 * named; max_nonfinite skips in a row stop training), on the models of trainer_fixture.h.  Its
 * checkpoints are tested in test_checkpoint.c. */
#include <stdio.h>

#include "trainer_fixture.h"

TestSuite(trainer);

/* ---- the non-finite guard ---- */

Test(trainer, non_finite_or_out_of_range_data_is_rejected) {
  fg_train_settings s;
  fg_flow *f = flow_from_spec(TOY_SPEC, TOY.event, &s);
  fg_tensor *good = make_data(&TOY, 8, 1), *bad = make_data(&TOY, 8, 1);
  fg_tensor_set(bad, 7, NAN);
  fg_trainer_data d = {.train = bad};
  fg_trainer *t;
  fg_err e;
  cr_assert_eq(fg_trainer_new(&t, f, &s, &d, THREADS, &e), FG_E_FORMAT);
  cr_assert_null(t);
  cr_assert(strstr(e.msg, "element 7 is not finite"), "%s", e.msg);
  fg_tensor_set(bad, 7, INFINITY);
  d = (fg_trainer_data){.train = good, .test = bad};
  cr_assert_eq(fg_trainer_new(&t, f, &s, &d, THREADS, &e), FG_E_FORMAT, "an infinite test value too");
  cr_assert(strstr(e.msg, "not finite"), "%s", e.msg);
  fg_tensor_free(good);
  fg_tensor_free(bad);
  fg_flow_free(f);
  /* image levels must be 0..255 */
  f = flow_from_spec(IMAGE_SPEC, IMAGE.event, &s);
  bad = make_data(&IMAGE, 4, 1);
  fg_tensor_set(bad, 5, 300);
  d = (fg_trainer_data){.train = bad, .discrete = true};
  cr_assert_eq(fg_trainer_new(&t, f, &s, &d, THREADS, &e), FG_E_FORMAT);
  cr_assert(strstr(e.msg, "outside 0..255"), "%s", e.msg);
  fg_tensor_free(bad);
  fg_flow_free(f);
}

/* One step that the poisoned row must make skipped: nothing moved, layer 1 (exp) named. */
static void assert_skipped(const fg_train_step_info *info, const snapshot *before, const fg_flow *f) {
  cr_assert(!isfinite(info->loss), "step %lld: loss %g", (long long)info->step, info->loss);
  cr_assert(snapshot_matches(before, f), "a skipped step changes no weight");
  cr_assert(strstr(info->bad_layer, "1.exp"), "step %lld names layer 1.exp: '%s'", (long long)info->step,
            info->bad_layer);
}

/* Batch 4 of 8 rows: each epoch has exactly one batch with the poisoned row, whichever order the
 * shuffle picks, so every epoch has one skipped step and one real update. */
Test(trainer, a_poisoned_batch_is_skipped_and_training_goes_on) {
  model m = poisoned_model(4);
  for (int epoch = 0; epoch < 3; epoch++) {
    int skipped = 0;
    for (int k = 0; k < 2; k++) {
      snapshot before = snapshot_take(m.f);
      fg_train_step_info info;
      fg_err e;
      /* max_nonfinite 3: two skips in a row (across an epoch boundary) must not stop training */
      cr_assert_eq(fg_trainer_step(m.t, &info, &e), FG_OK, "%s", e.msg);
      cr_assert_eq(info.step, 2 * epoch + k + 1, "skipped steps count");
      if (info.skipped) {
        assert_skipped(&info, &before, m.f);
        skipped++;
      } else {
        cr_assert(isfinite(info.loss) && isfinite(info.grad_norm));
        cr_assert(!snapshot_matches(&before, m.f), "a finite step updates the weights");
        cr_assert_str_empty(info.bad_layer);
      }
      snapshot_free(&before);
    }
    cr_assert_eq(skipped, 1, "epoch %d: exactly the batch with the poisoned row is skipped", epoch);
  }
  model_free(&m);
}

/* Batch 8: every step sees the poisoned row; the third skip in a row stops with FG_E_NUMERIC. */
Test(trainer, max_nonfinite_skips_in_a_row_stop_training) {
  model m = poisoned_model(8);
  snapshot initial = snapshot_take(m.f);
  for (int i = 1; i <= 3; i++) {
    fg_train_step_info info;
    fg_err e;
    fg_status st = fg_trainer_step(m.t, &info, &e);
    cr_assert(info.skipped);
    assert_skipped(&info, &initial, m.f);
    if (i < 3) {
      cr_assert_eq(st, FG_OK, "step %d: %s", i, e.msg);
      continue;
    }
    cr_assert_eq(st, FG_E_NUMERIC, "the third skip in a row stops training");
    cr_assert(strstr(e.msg, "3 steps in a row") && strstr(e.msg, "1.exp"), "%s", e.msg);
  }
  cr_assert_eq(fg_trainer_step_count(m.t), 3);
  snapshot_free(&initial);
  model_free(&m);
}

/* ---- evaluation in parts ---- */

static bool stop_after_first(void *ud, int64_t done, int64_t total) {
  int64_t *calls = ud;
  (*calls)++;
  cr_assert_eq(total, TOY.n_test);
  return done < 0;
}

/* A subset is the first rows, evaluated exactly as a test set of just those rows would be; a
 * progress callback sees every batch and may stop early, the mean then being over the rows done. */
Test(trainer, evaluation_takes_a_subset_and_stops_when_asked) {
  fg_train_settings s;
  fg_flow *f = flow_from_spec(TOY.spec, TOY.event, &s);
  fg_tensor *train = make_data(&TOY, TOY.n_train, 11), *test = make_data(&TOY, TOY.n_test, 12), *first;
  cr_assert_eq(fg_tensor_slice0(&first, test, 0, 9, NULL), FG_OK);
  fg_trainer *t = trainer_for(f, &s, train, test, false), *u = trainer_for(f, &s, train, first, false);
  double all = evaluate_ok(t), sub, want = evaluate_ok(u);
  int64_t rows, calls = 0;
  fg_err e;
  fg_eval_opts o = {.max_rows = 9};
  cr_assert_eq(fg_trainer_evaluate_opts(t, &o, &sub, &rows, &e), FG_OK, "%s", e.msg);
  cr_assert(rows == 9 && sub == want, "the first 9 rows: %g vs %g", sub, want);
  cr_assert(sub != all);
  o = (fg_eval_opts){.progress = stop_after_first, .ud = &calls};
  cr_assert_eq(fg_trainer_evaluate_opts(t, &o, &sub, &rows, &e), FG_OK, "%s", e.msg);
  cr_assert_eq(calls, 1);
  cr_assert_eq(rows, s.batch, "stopped after the first batch");
  o = (fg_eval_opts){.max_rows = -1};
  cr_assert_eq(fg_trainer_evaluate_opts(t, &o, &sub, &rows, &e), FG_E_MISUSE);
  fg_trainer_free(t), fg_trainer_free(u);
  fg_tensor_free(train), fg_tensor_free(test), fg_tensor_free(first);
  fg_flow_free(f);
}

/* ---- learning-rate schedules (flows/train/optim.h), from the spec's train block ---- */

static const char COSINE_SPEC[] =
    "data moons\n"
    "flow\n"
    "  affine_coupling mask=half, parity=0, net=mlp, hidden=8, blocks=1\n"
    "end\n"
    "train\n  batch 8\n  lr 1e-2\n  warmup 4\n  schedule cosine\n  lr_min 1e-4\n  steps 20\n"
    "  seed 3\nend\n";

static const char STEP_SPEC[] =
    "data moons\n"
    "flow\n"
    "  affine_coupling mask=half, parity=0, net=mlp, hidden=8, blocks=1\n"
    "end\n"
    "train\n  batch 8\n  lr 1e-2\n  schedule step\n  step_every 5\n  gamma 0.5\n  seed 3\nend\n";

/* Warm-up to lr at step 4, half a cosine down to lr_min at step 20, then lr_min. */
Test(trainer, the_cosine_schedule_warms_up_then_decays_to_lr_min_at_the_last_step) {
  model m = model_new_spec(&TOY, COSINE_SPEC);
  fg_train_step_info info[24];
  train_steps(m.t, 24, info);
  cr_expect_float_eq(info[0].lr, 1e-2 / 4, 1e-15, "warm-up: step 1 uses lr / 4");
  cr_expect_float_eq(info[3].lr, 1e-2, 1e-15, "the end of warm-up reaches lr");
  cr_expect_float_eq(info[11].lr, 1e-4 + (1e-2 - 1e-4) * 0.5, 1e-12, "half way (step 12): the mid-point");
  cr_expect_float_eq(info[19].lr, 1e-4, 1e-15, "step 20 = steps: lr_min");
  cr_expect_float_eq(info[23].lr, 1e-4, 1e-15, "and lr_min after it");
  for (int i = 4; i < 19; i++) cr_expect_lt(info[i + 1].lr, info[i].lr, "decreasing at step %d", i + 2);
  model_free(&m);
}

Test(trainer, the_step_schedule_multiplies_by_gamma_every_step_every_steps) {
  model m = model_new_spec(&TOY, STEP_SPEC);
  fg_train_step_info info[12];
  train_steps(m.t, 12, info);
  for (int i = 0; i < 12; i++)
    cr_expect_float_eq(info[i].lr, 1e-2 * pow(0.5, (double)((i + 1) / 5)), 1e-15, "step %d", i + 1);
  model_free(&m);
}

Test(trainer, a_schedule_that_cannot_run_is_refused) {
  fg_train_settings s;
  fg_flow *f = flow_from_spec(COSINE_SPEC, TOY.event, &s);
  fg_tensor *train = make_data(&TOY, 16, 1);
  fg_trainer_data d = {.train = train};
  fg_trainer *t;
  fg_err e;
  s.steps = 0; /* a run limited by minutes: the cosine does not know where to end */
  cr_expect_eq(fg_trainer_new(&t, f, &s, &d, THREADS, &e), FG_E_MISUSE);
  cr_expect(strstr(e.msg, "decay_steps"), "%s", e.msg);
  s.decay_steps = 50; /* told explicitly, it can */
  cr_expect_eq(fg_trainer_new(&t, f, &s, &d, THREADS, &e), FG_OK, "%s", e.msg);
  fg_trainer_free(t);
  snprintf(s.schedule, sizeof s.schedule, "linear");
  cr_expect_eq(fg_trainer_new(&t, f, &s, &d, THREADS, &e), FG_E_NOTFOUND);
  cr_expect(strstr(e.msg, "cosine"), "%s", e.msg);
  fg_tensor_free(train);
  fg_flow_free(f);
}

/* ---- EMA weights ---- */

static const char EMA_SPEC[] =
    "data moons\n"
    "flow\n"
    "  affine_coupling mask=half, parity=0, net=mlp, hidden=8, blocks=1\n"
    "end\n"
    "train\n  batch 8\n  lr 1e-2\n  ema 0.999\n  seed 3\nend\n";

/* Update n averages with decay min(ema, (1 + n) / (10 + n)): the first updates follow the
 * training closely instead of keeping 0.999^n of the initial weights (which made the EMA
 * weights of a 3000-step 8-gaussians run score 3.17 nats against 2.98 for the raw ones; with
 * the warm-up, 2.91). */
Test(trainer, the_ema_decay_warms_up_so_the_initial_weights_are_forgotten) {
  model m = model_new_spec(&TOY, EMA_SPEC);
  snapshot w[4];
  w[0] = snapshot_take(m.f);
  for (int k = 1; k < 4; k++) {
    step_ok(m.t);
    w[k] = snapshot_take(m.f);
  }
  fg_trainer_use_ema(m.t);
  const fg_params *ps = fg_flow_params(m.f);
  for (int i = 0; i < fg_params_count(ps); i++)
    for (int64_t j = 0; j < fg_tensor_numel(w[0].v[i]); j++) {
      double ema = fg_tensor_get(w[0].v[i], j);
      for (int n = 1; n < 4; n++) {
        double d = fmin(0.999, (1.0 + n) / (10.0 + n));
        ema = d * ema + (1 - d) * fg_tensor_get(w[n].v[i], j);
      }
      cr_expect_float_eq(fg_tensor_get(fg_params_tensor(ps, i), j), ema, 1e-6, "parameter %d element %lld", i, (long long)j);
    }
  for (int k = 0; k < 4; k++) snapshot_free(&w[k]);
  model_free(&m);
}
