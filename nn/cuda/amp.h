/* Mixed precision on the GPU (the host side is nn/amp.h): the backend's precision setting,
 * 16-bit (bf16 / fp16) versions of the storage-bound kernels for the bf16-activation path,
 * casts, and the GradScaler unscale on device gradients. Plain C; part of argent_cuda.
 *
 * Precision setting (ag_cuda_set_precision): in bf16 / fp16 mode every matrix product of
 * ag_ops_cuda (linear forward and backward, the attention products) casts its two operands
 * to 16 bits (round to nearest even) and runs cublasGemm*Ex with fp32 accumulation
 * (CUBLAS_COMPUTE_32F) and an fp32 result, like torch.autocast's matmuls but keeping fp32
 * outputs, so the op table (float buffers), master weights, gradients, optimiser state and
 * reductions stay fp32. fp32 (default) is the checking mode. Environment
 * ARGENT_CUDA_PRECISION=fp32|bf16|fp16 sets it at init.
 *
 * The ag_cuda_lowp_* kernels take 16-bit buffers (void *, 2 bytes per element; prec says
 * which type) and compute in fp32 exactly as their fp32 twins (nn/cuda/internal.h), with
 * LayerNorm statistics, weights and weight gradients in fp32. They are the building blocks
 * of the bf16-activation path (docs/cuda.md, "bf16 mixed precision"); errors are recorded
 * like every op's and reported by ag_cuda_check(). */
#ifndef ARGENT_NN_CUDA_AMP_H
#define ARGENT_NN_CUDA_AMP_H
#include <stddef.h>
#include <stdint.h>

#include "nn/amp.h"
#include "nn/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 0, or -1 with ag_err for an unknown value. Takes effect for the next product. */
int ag_cuda_set_precision(ag_precision p);
ag_precision ag_cuda_precision(void);

/* The op table for a training/inference precision on the GPU: AG_PREC_FP32 -> &ag_ops_cuda
 * (fp32 activations); AG_PREC_BF16 / AG_PREC_FP16 -> a table with 16-bit activations
 * (act_bytes 2), fp32 parameters, parameter gradients and reductions. NULL with ag_err when
 * the precision is unknown or its table is not available. Initialises nothing. */
const ag_ops *ag_cuda_ops_for(ag_precision prec);

/* dst (16-bit) = src rounded to nearest even; to_f32 widens (exact). */
void ag_cuda_lowp_from_f32(ag_precision prec, void *dst, const float *src, size_t n);
void ag_cuda_lowp_to_f32(ag_precision prec, float *dst, const void *src, size_t n);
void ag_cuda_lowp_add(ag_precision prec, void *out, const void *a, const void *b, size_t n);
void ag_cuda_lowp_gelu_forward(ag_precision prec, void *out, const void *in, size_t n);
void ag_cuda_lowp_gelu_backward(ag_precision prec, void *din, const void *in, const void *dout, size_t n);
/* Same masks as the fp32 dropout (same Philox draws). p <= 0: copy, mask untouched. */
void ag_cuda_lowp_dropout_forward(ag_precision prec, void *out, uint8_t *mask, const void *in, int B,
                                  size_t L, const int64_t *sample_idx, uint64_t seed, uint32_t site,
                                  float p);
void ag_cuda_lowp_layernorm_forward(ag_precision prec, void *out, float *mean, float *rstd,
                                    const void *in, const float *w, const float *b, int N, int C,
                                    float eps);
void ag_cuda_lowp_layernorm_backward(ag_precision prec, void *din, float *dw, float *db,
                                     const void *dout, const void *in, const float *mean,
                                     const float *rstd, const float *w, int N, int C);
/* GradScaler's unscale on device gradients: grad *= inv_scale; *found_inf (device float,
 * zero it first) becomes 1 when any element was inf/NaN before scaling. As
 * ag_scaler_unscale (nn/amp.h), bit for bit. */
void ag_cuda_unscale(float *grad, size_t n, float inv_scale, float *found_inf);

#ifdef __cplusplus
}
#endif
#endif
