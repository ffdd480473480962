/* The CPU table's fused forwards (nn/ops.h, "fused forwards"). The CPU oracle gains nothing
 * from fusing these on a CPU, and its results must equal the composition bit for bit, so
 * each entry is the composition itself, through the table's own unfused entries. Other
 * backends fuse for real (nn/cuda/fused.cu) and are checked against these. */
#include "nn/ops.h"

void ag_cpu_linear_gelu_forward(float *pre, float *act, const float *in, const float *W,
                                const float *b, int N, int IC, int OC);
void ag_cpu_add_layernorm_forward(float *res, float *out, float *mean, float *rstd,
                                  const float *x, const float *r, const float *w, const float *b,
                                  int N, int C, float eps);

void ag_cpu_linear_gelu_forward(float *pre, float *act, const float *in, const float *W,
                                const float *b, int N, int IC, int OC) {
    ag_ops_cpu.linear_forward(pre, in, W, b, N, IC, OC);
    if (N > 0 && OC > 0) ag_ops_cpu.gelu_forward(act, pre, (size_t)N * OC);
}

void ag_cpu_add_layernorm_forward(float *res, float *out, float *mean, float *rstd,
                                  const float *x, const float *r, const float *w, const float *b,
                                  int N, int C, float eps) {
    if (N <= 0 || C <= 0) return;
    ag_ops_cpu.add(res, x, r, (size_t)N * C);
    ag_ops_cpu.layernorm_forward(out, mean, rstd, res, w, b, N, C, eps);
}
