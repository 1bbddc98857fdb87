/* Internal to ops/: oneDNN (Debian's libdnnl, the 2.x C API) as implementations of conv2d, its
 * transposes and matmul (fg_kernel_impl), and as the float32 GEMM.  Every oneDNN call of the
 * library is in ops/kernels/onednn*.c, so a move to another oneDNN API stays there.  Built only
 * when meson finds the library (FG_HAVE_DNNL). */
#ifndef FG_OPS_ONEDNN_H
#define FG_OPS_ONEDNN_H

#include <stdbool.h>
#include <stddef.h>

#include "core/ir/op.h"
#include "ops/kernels/gemm.h"

#ifdef FG_HAVE_DNNL
/* conv2d, conv2d_bias_act, conv2d_input_grad, conv2d_weight_grad in float32: primitives in the
 * layouts oneDNN chooses (blocked), with reorders from and to NCHW inside; or on NCHW memory
 * as it is (_nchw); or by Winograd's algorithm (F(4x4, 3x3): 3x3 kernels at stride 1, 4x
 * fewer multiplications, in the layouts it chooses), where oneDNN has it for the CPU (_wino). */
fg_status fg_onednn_conv_prepare(fg_kprep *a, void **state, fg_err *e);
fg_status fg_onednn_conv_prepare_nchw(fg_kprep *a, void **state, fg_err *e);
fg_status fg_onednn_conv_prepare_wino(fg_kprep *a, void **state, fg_err *e);
fg_status fg_onednn_conv_f32(const fg_kargs *k);
/* conv2d_input_grad_relu: conv2d_input_grad's primitive, then the mask in a phase of its own
 * (the output and y in one layout). */
fg_status fg_onednn_conv_masked_f32(const fg_kargs *k);
/* conv2d_input_weight_grad: the input gradient's primitives, then the weight gradient's, as
 * the two separate nodes would run them (each of the three ways). */
fg_status fg_onednn_grads_prepare(fg_kprep *a, void **state, fg_err *e);
fg_status fg_onednn_grads_prepare_nchw(fg_kprep *a, void **state, fg_err *e);
fg_status fg_onednn_grads_prepare_wino(fg_kprep *a, void **state, fg_err *e);
void fg_onednn_grads_release(void *state);
fg_status fg_onednn_grads_f32(const fg_kargs *k);
/* matmul in float32 on row-major memory as it is (transposes as strided views). */
fg_status fg_onednn_matmul_prepare(fg_kprep *a, void **state, fg_err *e);
fg_status fg_onednn_matmul_f32(const fg_kargs *k);
/* Frees what any prepare above made. */
void fg_onednn_release(void *state);
/* C = op(A) op(B) (or +=) with oneDNN's sgemm on the calling thread alone; false when oneDNN
 * cannot (the caller then computes it another way). */
bool fg_onednn_sgemm(const fg_gemm_dims *d, const float *a, const float *b, float *c);
#endif

/* "oneDNN 2.6.3, ISA avx512_core_bf16", or "none (built without oneDNN)": into buf. */
const char *fg_onednn_describe(char *buf, size_t cap);

#endif
