/* Which kernel libraries this build of flowgrad computes with, for benchmarks and logs. */
#ifndef FG_KERNEL_INFO_H
#define FG_KERNEL_INFO_H

#include <stddef.h>

/* What computes convolutions, matmuls and GEMMs besides the native kernels, into buf (cut at
 * cap) and returned: "oneDNN 2.6.3, ISA avx512_core_bf16; OpenBLAS ..., core Cooperlake", with
 * OpenBLAS's core as corrected (ops/kernels/gemm.c) or forced by OPENBLAS_CORETYPE; "none: ..."
 * without either.  Which implementation each node of a program runs: fg_program_node_kernel. */
const char *fg_kernel_libraries(char *buf, size_t cap);

#endif
