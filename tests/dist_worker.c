/* Run by tests/test_dist.c under mpirun: one rank of a job exercising flows/train/dist.h.
 * For every size (empty, fewer values than ranks, either side of the ring's threshold, odd):
 * sums of integer-valued floats must be exact, and sums of random values the same on every
 * rank; rank 0 prints a hash of the random sums, which two runs must repeat.  Also gather,
 * broadcast, or and agree; and the trainer's sharded test evaluation, which must equal a
 * single process's bit for bit.  Exits 0 when every check held on every rank. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "core/rng.h"
#include "flows/models.h"
#include "flows/train/dist.h"
#include "flows/train/trainer.h"
#include "frontends/data/toy2d.h"

static int failures;

#define CHECK(cond, ...)                               \
  do {                                                 \
    if (!(cond)) {                                     \
      fprintf(stderr, "rank check failed: " __VA_ARGS__); \
      fputc('\n', stderr);                             \
      failures++;                                      \
    }                                                  \
  } while (0)

/* Rank r holds r·1000 + (i mod 97) at i: the sum is exact in float32 for these sizes. */
static void exact_sums(fg_dist *d, int64_t n, fg_dtype dt) {
  int N = fg_dist_size(d), r = fg_dist_rank(d);
  size_t es = dt == FG_F32 ? 4 : 8;
  void *v = malloc((size_t)n * es + 1);
  for (int64_t i = 0; i < n; i++) {
    double x = r * 1000.0 + (double)(i % 97);
    if (dt == FG_F32) ((float *)v)[i] = (float)x;
    else ((double *)v)[i] = x;
  }
  fg_err e;
  CHECK(fg_dist_sum(d, v, n, dt, &e) == FG_OK, "sum of %lld: %s", (long long)n, e.msg);
  for (int64_t i = 0; i < n; i++) {
    double got = dt == FG_F32 ? ((float *)v)[i] : ((double *)v)[i];
    double want = 1000.0 * N * (N - 1) / 2 + (double)N * (double)(i % 97);
    if (got != want) {
      CHECK(0, "n %lld element %lld: %g, want %g", (long long)n, (long long)i, got, want);
      break;
    }
  }
  free(v);
}

/* Random float32 values summed; every rank's result must be the same: hashed into *h. */
static void random_sums(fg_dist *d, int64_t n, uint64_t *h) {
  float *v = malloc((size_t)n * 4 + 4);
  for (int64_t i = 0; i < n; i++) v[i] = (float)fg_rng_normal(77 + (uint64_t)fg_dist_rank(d), (uint64_t)i);
  fg_err e;
  CHECK(fg_dist_sum(d, v, n, FG_F32, &e) == FG_OK, "random sum of %lld: %s", (long long)n, e.msg);
  uint64_t mine = XXH3_64bits_withSeed(v, (size_t)n * 4, *h), *all = malloc(sizeof *all * (size_t)fg_dist_size(d));
  CHECK(fg_dist_gather(d, &mine, sizeof mine, all, &e) == FG_OK, "gather: %s", e.msg);
  for (int r = 0; r < fg_dist_size(d); r++) CHECK(all[r] == mine, "rank %d summed %lld values differently", r, (long long)n);
  *h = mine;
  free(all);
  free(v);
}

static void agreement(fg_dist *d) {
  fg_err e;
  int r = fg_dist_rank(d), last = fg_dist_size(d) - 1;
  uint32_t flags;
  CHECK(fg_dist_or(d, r == last ? 4u : 0u, &flags, &e) == FG_OK && flags == 4u, "or: %u", flags);
  char word[8] = "";
  if (r == 0) snprintf(word, sizeof word, "rank0");
  CHECK(fg_dist_broadcast(d, word, sizeof word, 0, &e) == FG_OK && !strcmp(word, "rank0"), "broadcast");
  fg_status st = fg_dist_agree(d, r == last ? FG_E_IO : FG_OK, &e);
  CHECK(st == FG_E_IO, "agree: %s", fg_status_name(st));
  if (r != last) CHECK(strstr(e.msg, "failed") != NULL, "agree names the failed rank: %s", e.msg);
  CHECK(fg_dist_agree(d, FG_OK, &e) == FG_OK, "agree on success");
}

/* A small moons RealNVP; identical on every rank and for every call. */
static fg_flow *moons_flow(void) {
  fg_model_opts m = {.event = {1, {2}}, .dtype = FG_F32, .seed = 3};
  fg_mlp_flow_config c = fg_realnvp_vector_defaults();
  c.couplings = 2, c.hidden = 16;
  fg_flow *f = NULL;
  fg_err e;
  CHECK(fg_realnvp_vector_new(&f, NULL, &m, &c, &e) == FG_OK, "flow: %s", e.msg);
  return f;
}

/* Three steps of the job, then its evaluation against a single process's of the same weights:
 * 1000 test rows in batches of 64 are 16 chunks, 15 full and one of 40, unevenly over 3 ranks. */
static void sharded_evaluation(fg_dist *d) {
  fg_err e;
  fg_tensor *train = NULL, *test = NULL;
  CHECK(fg_toy2d_generate(&train, "moons", 512, 0.1, 2.0, 1, &e) == FG_OK, "%s", e.msg);
  CHECK(fg_toy2d_generate(&test, "moons", 1000, 0.1, 2.0, 2, &e) == FG_OK, "%s", e.msg);
  fg_flow *job_flow = moons_flow(), *one_flow = moons_flow();
  fg_train_settings s = fg_train_defaults();
  s.batch = 64 / fg_dist_size(d) * fg_dist_size(d);
  fg_trainer_data data = {.train = train, .test = test};
  fg_trainer *job = NULL, *one = NULL;
  CHECK(fg_trainer_new_dist(&job, job_flow, &s, &data, 1, d, &e) == FG_OK, "%s", e.msg);
  CHECK(fg_trainer_new(&one, one_flow, &s, &data, 1, &e) == FG_OK, "%s", e.msg);
  for (int i = 0; i < 3 && job; i++) CHECK(fg_trainer_step(job, NULL, &e) == FG_OK, "step: %s", e.msg);
  fg_params *from = fg_flow_params(job_flow), *to = fg_flow_params(one_flow);
  for (int i = 0; i < fg_params_count(from); i++) {
    const fg_tensor *a = fg_params_tensor(from, i);
    memcpy(fg_tensor_data(fg_params_tensor(to, i)), fg_tensor_data(a), (size_t)fg_tensor_numel(a) * 4);
  }
  double sharded = 0, whole = 1;
  CHECK(fg_trainer_evaluate(job, &sharded, &e) == FG_OK, "evaluate: %s", e.msg);
  CHECK(fg_trainer_evaluate(one, &whole, &e) == FG_OK, "evaluate: %s", e.msg);
  CHECK(sharded == whole, "sharded evaluation %.17g, one process %.17g", sharded, whole);
  fg_trainer_free(job), fg_trainer_free(one);
  fg_flow_free(job_flow), fg_flow_free(one_flow);
  fg_tensor_free(train), fg_tensor_free(test);
}

int main(void) {
  fg_dist *d;
  fg_err e;
  if (fg_dist_new(&d, &e) != FG_OK) {
    fprintf(stderr, "%s\n", e.msg);
    return 1;
  }
  CHECK(fg_dist_is_mpi(d) && fg_dist_size(d) > 1, "launched by mpirun with several ranks");
  static const int64_t sizes[] = {0, 1, 2, 5, FG_DIST_RING_MIN - 1, FG_DIST_RING_MIN, 10007, 100003};
  uint64_t h = 0;
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
    exact_sums(d, sizes[i], FG_F32);
    exact_sums(d, sizes[i], FG_F64);
    random_sums(d, sizes[i], &h);
  }
  agreement(d);
  sharded_evaluation(d);
  int all_failures = failures;
  uint32_t any;
  fg_dist_or(d, failures ? 1u : 0u, &any, NULL);
  if (fg_dist_rank(d) == 0) printf("sums %016llx\n", (unsigned long long)h);
  fg_dist_free(d);
  return any || all_failures ? 1 : 0;
}
