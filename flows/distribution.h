/* Base distributions: log-densities per sample ([batch]) and samples, as graph expressions. */
#ifndef FG_DISTRIBUTION_H
#define FG_DISTRIBUTION_H

#include "flows/bijector.h"

/* log N(z; 0, I) summed over the event: -0.5·Σz² - 0.5·D·log(2π). */
fg_node fg_normal_log_prob(fg_graph *g, fg_node z);
/* log N(z; mean, exp(logstd)²) summed over the event; mean and logstd broadcast to z. */
fg_node fg_diag_normal_log_prob(fg_graph *g, fg_node z, fg_node mean, fg_node logstd);
/* A draw of shape `shape`: mean + exp(logstd)·temperature·ε (mean/logstd may be FG_NONE for
 * 0 and 0). */
fg_node fg_diag_normal_sample(fg_graph *g, fg_node mean, fg_node logstd, double temperature,
                              uint64_t seed, fg_dtype t, fg_shape shape);

#endif
