/* Fused forwards of the CUDA table (nn/ops.h, "fused forwards"): fewer passes over the
 * activations than the composition, same results within the op tolerances.
 *   linear_gelu_forward    pre = in . W^T by one GEMM (beta = 0), then one kernel adds the
 *                          bias and applies GELU, writing pre (for the backward) and act.
 *                          The composition writes the bias broadcast, reads and writes it
 *                          in the GEMM, then reads pre again for GELU: two passes saved.
 *   add_layernorm_forward  the residual add and LayerNorm in one kernel, one warp per row:
 *                          res = x + r written once, the row statistics (fp64, two passes,
 *                          as layernorm.cu) and out from the same warp.
 * GELU and LayerNorm expressions are those of elementwise.cu and layernorm.cu. */
#include "nn/cuda/kernels.cuh"

using namespace agk;

namespace {

/* pre[N,OC] (+= b per column, b may be NULL); act = gelu(pre). act may alias pre. */
__global__ void bias_gelu_kernel(float *pre, float *act, const float *b, size_t n, int OC) {
    for (size_t i = gid(); i < n; i += gstride()) {
        float x = pre[i];
        if (b) x = x + b[i % (size_t)OC];
        pre[i] = x;
        act[i] = 0.5f * x * (1.0f + erff(x * 0.70710678118654752440f));
    }
}

/* res = x + r (res may alias x or r: each lane reads its elements before writing them),
 * out = layernorm(res) with mean/rstd. One warp per row. */
__global__ void add_ln_kernel(float *res, float *out, float *mean, float *rstd, const float *x,
                              const float *r, const float *w, const float *b, int N, int C, float eps) {
    int row = blockIdx.x * kRowWarps + (int)(threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= N) return;  /* per warp */
    size_t o = (size_t)row * C;
    double s = 0.0;
    for (int c = lane; c < C; c += 32) {
        float v = x[o + c] + r[o + c];
        res[o + c] = v;
        s += v;
    }
    double m = warp_sum(s) / C;
    double var = 0.0;
    for (int c = lane; c < C; c += 32) {
        double d = res[o + c] - m;
        var += d * d;
    }
    var = warp_sum(var) / C;
    float mf = (float)m, rs = (float)(1.0 / sqrt(var + (double)eps));
    for (int c = lane; c < C; c += 32) out[o + c] = (res[o + c] - mf) * rs * w[c] + b[c];
    if (lane == 0) {
        mean[row] = mf;
        rstd[row] = rs;
    }
}

}  // namespace

extern "C" void ag_cuda_linear_gelu_forward(float *pre, float *act, const float *in, const float *W,
                                            const float *b, int N, int IC, int OC) {
    if (N <= 0 || OC <= 0 || !ag_cuda_ready()) return;
    if (IC <= 0) {  /* no product: the composition's own handling of the empty sum */
        ag_cuda_linear_forward(pre, in, W, b, N, IC, OC);
        ag_cuda_gelu_forward(act, pre, (size_t)N * OC);
        return;
    }
    /* pre[N,OC] = in[N,IC] . W[OC,IC]^T */
    ag_cuda_gemm("linear_gelu_forward", 0, 1, N, OC, IC, 1.0f, in, IC, 0, W, IC, 0, 0.0f, pre, OC, 0, 1);
    size_t n = (size_t)N * OC;
    bias_gelu_kernel<<<ag_cuda_blocks(n, kThreads), kThreads, 0, ag_cuda_stream()>>>(pre, act, b, n, OC);
    ag_cuda_launched("linear_gelu_forward (bias, gelu)");
}

extern "C" void ag_cuda_add_layernorm_forward(float *res, float *out, float *mean, float *rstd,
                                              const float *x, const float *r, const float *w,
                                              const float *b, int N, int C, float eps) {
    if (N <= 0 || C <= 0 || !ag_cuda_ready()) return;
    add_ln_kernel<<<ag_row_blocks((size_t)N), kRowWarps * 32, 0, ag_cuda_stream()>>>(
        res, out, mean, rstd, x, r, w, b, N, C, eps);
    ag_cuda_launched("add_layernorm_forward");
}
