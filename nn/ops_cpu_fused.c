/* The CPU table's fused forwards (nn/ops.h, "fused forwards"). Their results must equal the
 * composition bit for bit, so linear + GELU is the composition itself, through the table's
 * own unfused entries (sgemm dominates; fusing gains nothing there), and add + LayerNorm
 * is the same additions and the same LayerNorm row kernel done row by row, which saves a
 * pass over the residual stream (nn/ops_cpu.c ag_cpu_add_layernorm_rows). Other backends
 * fuse for real (nn/cuda/fused.cu) and are checked against these. */
#include "nn/ops.h"

void ag_cpu_linear_gelu_forward(float *pre, float *act, const float *in, const float *W,
                                const float *b, int N, int IC, int OC);
void ag_cpu_add_layernorm_forward(float *res, float *out, float *mean, float *rstd,
                                  const float *x, const float *r, const float *w, const float *b,
                                  int N, int C, float eps);
void ag_cpu_add_layernorm_rows(float *res, float *out, float *mean, float *rstd, const float *x,
                               const float *r, const float *w, const float *b, int N, int C,
                               float eps);

void ag_cpu_linear_gelu_forward(float *pre, float *act, const float *in, const float *W,
                                const float *b, int N, int IC, int OC) {
    ag_ops_cpu.linear_forward(pre, in, W, b, N, IC, OC);
    if (N > 0 && OC > 0) ag_ops_cpu.gelu_forward(act, pre, (size_t)N * OC);
}

void ag_cpu_add_layernorm_forward(float *res, float *out, float *mean, float *rstd,
                                  const float *x, const float *r, const float *w, const float *b,
                                  int N, int C, float eps) {
    if (N <= 0 || C <= 0) return;
    ag_cpu_add_layernorm_rows(res, out, mean, rstd, x, r, w, b, N, C, eps);
}
