/* Declarations shared by the CUDA backend's own files (not for callers: use nn/cuda/cuda.h).
 * The glue (state, memory, cuBLAS, the op table) is C; the kernels are CUDA C++ behind
 * extern "C" launch functions declared here, so each side can be read on its own.
 *
 * One host thread drives the backend; every op is queued on one stream (ag_cuda_stream),
 * so ops run in call order and the backend's scratch buffers can be reused op after op. */
#ifndef ARGENT_NN_CUDA_INTERNAL_H
#define ARGENT_NN_CUDA_INTERNAL_H
#include <stddef.h>
#include <stdint.h>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- state (backend.c) ---- */
/* 1 when ops may run (initialising on first use); 0 after a failed init (recorded). */
int ag_cuda_ready(void);
cudaStream_t ag_cuda_stream(void);
cublasHandle_t ag_cuda_blas(void);
int ag_cuda_sm_count(void);
/* Record a failure inside an op (printf-style); the first one is kept for ag_cuda_check. */
void ag_cuda_fail(const char *op, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* After a kernel launch: records a launch error (bad configuration, no kernel image). */
void ag_cuda_launched(const char *op);
/* Grow-only device scratch owned by the backend, one buffer per slot; NULL on failure
 * (recorded). Growing waits for queued work, so an op may take a slot another op used. */
enum {
    AG_CUDA_SCR_QP, AG_CUDA_SCR_KP, AG_CUDA_SCR_VP, AG_CUDA_SCR_OP, AG_CUDA_SCR_P,
    AG_CUDA_SCR_DQ, AG_CUDA_SCR_DK, AG_CUDA_SCR_DV, AG_CUDA_SCR_COL,
    AG_CUDA_SCR_A16, AG_CUDA_SCR_B16,   /* 16-bit copies of GEMM operands (bf16/fp16 mode) */
    AG_CUDA_SCR_N
};
void *ag_cuda_scratch(int slot, size_t bytes);
/* Grid size for a grid-stride loop over n items with `threads` per block. */
unsigned ag_cuda_blocks(size_t n, int threads);

/* Row-major matrix product, batched: C[M,N] = alpha * op(A) . op(B) + beta * C for each
 * of `batch` matrices at element strides sA, sB, sC. ta = 0: A is stored [M,K] with row
 * stride lda; ta = 1: A is stored [K,M] and used transposed. Likewise tb for B ([K,N] or
 * [N,K]). Mapped onto column-major cuBLAS as C^T = op(B)^T . op(A)^T. In bf16/fp16 mode
 * (nn/cuda/amp.h) A and B are first cast to 16 bits and the product accumulates in fp32. */
void ag_cuda_gemm(const char *op, int ta, int tb, int M, int N, int K, float alpha,
                  const float *A, int lda, long long sA, const float *B, int ldb, long long sB,
                  float beta, float *C, int ldc, long long sC, int batch);

/* ---- memory ops (backend.c) ---- */
void *ag_cuda_alloc(size_t bytes);
void ag_cuda_free(void *ptr);
void ag_cuda_zero(float *x, size_t n);
void ag_cuda_copy(float *dst, const float *src, size_t n);
void ag_cuda_upload(void *dst, const void *host_src, size_t bytes);
void ag_cuda_download(void *host_dst, const void *src, size_t bytes);
void ag_cuda_sync(void);
void ag_cuda_copy2d(float *dst, size_t ldd, const float *src, size_t lds, size_t rows, size_t cols);

/* ---- linear (linear.c) ---- */
void ag_cuda_linear_forward(float *out, const float *in, const float *W, const float *b,
                            int N, int IC, int OC);
void ag_cuda_linear_backward(float *din, float *dW, float *db, const float *dout,
                             const float *in, const float *W, int N, int IC, int OC);

/* ---- kernels (elementwise.cu) ---- */
/* Launches a one-thread kernel and waits: cudaSuccess when this build's code runs here. */
cudaError_t ag_cuda_probe(cudaStream_t stream);
void ag_cuda_add(float *out, const float *a, const float *b, size_t n);
void ag_cuda_acc(float *dst, const float *src, size_t n);
void ag_cuda_scale(float *x, float alpha, size_t n);
void ag_cuda_acc2d(float *dst, size_t ldd, const float *src, size_t lds, size_t rows, size_t cols);
/* out[N,OC] = b broadcast over rows (the bias term of a linear before its GEMM). */
void ag_cuda_bias_rows(float *out, const float *b, int N, int OC);
/* sum[C] += column sums of x[N,C] (bias gradients), deterministic two-stage reduction. */
void ag_cuda_colsum_acc(float *sum, const float *x, int N, int C);
void ag_cuda_gelu_forward(float *out, const float *in, size_t n);
void ag_cuda_gelu_backward(float *din, const float *in, const float *dout, size_t n);
void ag_cuda_tanh_forward(float *out, const float *in, size_t n);
void ag_cuda_tanh_backward(float *din, const float *out, const float *dout, size_t n);
void ag_cuda_dropout_forward(float *out, uint8_t *mask, const float *in, int B, size_t L,
                             const int64_t *sample_idx, uint64_t seed, uint32_t site, float p);
void ag_cuda_dropout_backward(float *din, const float *dout, const uint8_t *mask, int B,
                              size_t L, float p);

/* ---- kernels (embedding.cu, layernorm.cu, attention.cu) ---- */
void ag_cuda_embedding_forward(float *out, const int32_t *ids, const int32_t *types,
                               const float *wte, const float *wpe, const float *wtt, int B,
                               int T, int C);
void ag_cuda_embedding_backward(float *dwte, float *dwpe, float *dwtt, const float *dout,
                                const int32_t *ids, const int32_t *types, int B, int T, int C,
                                int pad_id);
void ag_cuda_layernorm_forward(float *out, float *mean, float *rstd, const float *in,
                               const float *w, const float *b, int N, int C, float eps);
void ag_cuda_layernorm_backward(float *din, float *dw, float *db, const float *dout,
                                const float *in, const float *mean, const float *rstd,
                                const float *w, int N, int C);
void ag_cuda_attention_forward(float *out, float *probs, uint8_t *pmask, const float *q,
                               const float *k, const float *v, const float *key_mask,
                               int causal, int B, int Tq, int Tk, int H, int D,
                               const int64_t *sample_idx, uint64_t seed, uint32_t site,
                               float p);
void ag_cuda_attention_backward(float *dq, float *dk, float *dv, float *scratch,
                                const float *dout, const float *q, const float *k,
                                const float *v, const float *probs, const uint8_t *pmask,
                                int B, int Tq, int Tk, int H, int D, float p);

#ifdef __cplusplus
}
#endif
#endif
