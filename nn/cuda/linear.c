/* Linear layers on the GPU: cuBLAS sgemm for the three products, a broadcast kernel for
 * the bias term and a deterministic column sum for its gradient. Same contract as
 * cpu_linear_forward/backward (nn/ops.h): out[N,OC] = in[N,IC] . W[OC,IC]^T + b[OC];
 * the backward accumulates into din, dW, db (each may be NULL). */
#include "nn/cuda/internal.h"

void ag_cuda_linear_forward(float *out, const float *in, const float *W, const float *b,
                            int N, int IC, int OC) {
    if (N <= 0 || OC <= 0 || !ag_cuda_ready()) return;
    /* As the CPU oracle: the bias first, then the product added onto it (beta = 1). */
    if (b) ag_cuda_bias_rows(out, b, N, OC);
    if (IC <= 0) {
        if (!b) ag_cuda_zero(out, (size_t)N * OC);
        return;
    }
    /* out[N,OC] = in[N,IC] . W[OC,IC]^T */
    ag_cuda_gemm("linear_forward", 0, 1, N, OC, IC, 1.0f, in, IC, 0, W, IC, 0, b ? 1.0f : 0.0f,
                 out, OC, 0, 1);
}

void ag_cuda_linear_backward(float *din, float *dW, float *db, const float *dout,
                             const float *in, const float *W, int N, int IC, int OC) {
    if (N <= 0 || OC <= 0 || IC <= 0 || !ag_cuda_ready()) return;
    if (din)  /* din[N,IC] += dout[N,OC] . W[OC,IC] */
        ag_cuda_gemm("linear_backward (din)", 0, 0, N, IC, OC, 1.0f, dout, OC, 0, W, IC, 0, 1.0f,
                     din, IC, 0, 1);
    if (dW)   /* dW[OC,IC] += dout[N,OC]^T . in[N,IC] */
        ag_cuda_gemm("linear_backward (dW)", 1, 0, OC, IC, N, 1.0f, dout, OC, 0, in, IC, 0, 1.0f,
                     dW, IC, 0, 1);
    if (db) ag_cuda_colsum_acc(db, dout, N, OC);
}
