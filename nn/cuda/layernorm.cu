/* LayerNorm over the last dim on the GPU, forward and backward, as cpu_layernorm_* in
 * nn/ops_cpu.c: one warp per row, row statistics in fp64 (two passes: the mean, then the
 * biased variance around it), rstd = 1/sqrt(var + eps) in fp64 rounded once to fp32; the
 * weight and bias gradients are deterministic column sums (kernels.cuh). */
#include "nn/cuda/kernels.cuh"

using namespace agk;

namespace {

/* in/out [N,C] of storage type T; mean, rstd [N] and w, b [C] stay fp32. */
template <typename T>
__global__ void ln_fwd_kernel(T *out, float *mean, float *rstd, const T *in, const float *w,
                              const float *b, int N, int C, float eps) {
    int row = blockIdx.x * kRowWarps + (int)(threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= N) return;  /* whole warps leave together: row is per warp */
    const T *x = in + (size_t)row * C;
    T *y = out + (size_t)row * C;
    double s = 0.0;
    for (int c = lane; c < C; c += 32) s += ld(x, c);
    double m = warp_sum(s) / C;
    double v = 0.0;
    for (int c = lane; c < C; c += 32) {
        double d = ld(x, c) - m;
        v += d * d;
    }
    v = warp_sum(v) / C;
    float mf = (float)m, rs = (float)(1.0 / sqrt(v + (double)eps));
    /* Each lane rewrites only the elements it read: in place (out == in) is safe. */
    for (int c = lane; c < C; c += 32) st(y, c, (ld(x, c) - mf) * rs * w[c] + b[c]);
    if (lane == 0) {
        mean[row] = mf;
        rstd[row] = rs;
    }
}

/* din[N,C] += rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = g * w. */
template <typename T>
__global__ void ln_bwd_din_kernel(T *din, const T *dout, const T *in, const float *mean,
                                  const float *rstd, const float *w, int N, int C) {
    int row = blockIdx.x * kRowWarps + (int)(threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= N) return;
    const T *x = in + (size_t)row * C, *g = dout + (size_t)row * C;
    T *d = din + (size_t)row * C;
    float m = mean[row], rs = rstd[row];
    double s1 = 0.0, s2 = 0.0;
    for (int c = lane; c < C; c += 32) {
        double dxh = (double)ld(g, c) * w[c];
        s1 += dxh;
        s2 += dxh * ((ld(x, c) - m) * rs);
    }
    float a1 = (float)(warp_sum(s1) / C), a2 = (float)(warp_sum(s2) / C);
    for (int c = lane; c < C; c += 32) {
        float xh = (ld(x, c) - m) * rs;
        st(d, c, ld(d, c) + rs * (ld(g, c) * w[c] - a1 - xh * a2));
    }
}

/* dw[c] += sum_r g * xhat, db[c] += sum_r g. */
template <typename T> struct ln_wb_terms {
    const T *g, *x;
    const float *mean, *rstd;
    int C;
    __device__ void operator()(int r, int c, double &aw, double &ab) const {
        size_t i = (size_t)r * C + c;
        float gv = ld(g, i);
        aw += (double)gv * ((ld(x, i) - mean[r]) * rstd[r]);
        ab += gv;
    }
};


}  // namespace

extern "C" void ag_cuda_layernorm_forward(float *out, float *mean, float *rstd, const float *in,
                                          const float *w, const float *b, int N, int C, float eps) {
    if (N <= 0 || C <= 0 || !ag_cuda_ready()) return;
    ln_fwd_kernel<float><<<ag_row_blocks((size_t)N), kRowWarps * 32, 0, ag_cuda_stream()>>>(
        out, mean, rstd, in, w, b, N, C, eps);
    ag_cuda_launched("layernorm_forward");
}

extern "C" void ag_cuda_layernorm_backward(float *din, float *dw, float *db, const float *dout,
                                           const float *in, const float *mean, const float *rstd,
                                           const float *w, int N, int C) {
    if (N <= 0 || C <= 0 || !ag_cuda_ready()) return;
    if (din) {
        ln_bwd_din_kernel<float><<<ag_row_blocks((size_t)N), kRowWarps * 32, 0, ag_cuda_stream()>>>(
            din, dout, in, mean, rstd, w, N, C);
        ag_cuda_launched("layernorm_backward (din)");
    }
    if (dw || db)
        ag_colsum_launch("layernorm_backward (dw, db)", dw, db, N, C,
                         ln_wb_terms<float>{dout, in, mean, rstd, C});
}

/* 16-bit storage (nn/cuda/amp.h): in/out/din/dout bf16 or fp16; statistics, weights and
 * their gradients fp32 (master weights). */
template <typename T>
static void ln_fwd_lowp(T *out, float *mean, float *rstd, const T *in, const float *w, const float *b,
                        int N, int C, float eps) {
    ln_fwd_kernel<T><<<ag_row_blocks((size_t)N), kRowWarps * 32, 0, ag_cuda_stream()>>>(
        out, mean, rstd, in, w, b, N, C, eps);
    ag_cuda_launched("layernorm_forward (16 bit)");
}

template <typename T>
static void ln_bwd_lowp(T *din, float *dw, float *db, const T *dout, const T *in, const float *mean,
                        const float *rstd, const float *w, int N, int C) {
    if (din) {
        ln_bwd_din_kernel<T><<<ag_row_blocks((size_t)N), kRowWarps * 32, 0, ag_cuda_stream()>>>(
            din, dout, in, mean, rstd, w, N, C);
        ag_cuda_launched("layernorm_backward (16 bit, din)");
    }
    if (dw || db)
        ag_colsum_launch("layernorm_backward (16 bit, dw, db)", dw, db, N, C,
                         ln_wb_terms<T>{dout, in, mean, rstd, C});
}

extern "C" void ag_cuda_lowp_layernorm_forward(ag_precision prec, void *out, float *mean, float *rstd,
                                               const void *in, const float *w, const float *b, int N,
                                               int C, float eps) {
    if (N <= 0 || C <= 0 || !ag_cuda_ready()) return;
    if (prec == AG_PREC_BF16)
        ln_fwd_lowp((__nv_bfloat16 *)out, mean, rstd, (const __nv_bfloat16 *)in, w, b, N, C, eps);
    else if (prec == AG_PREC_FP16)
        ln_fwd_lowp((__half *)out, mean, rstd, (const __half *)in, w, b, N, C, eps);
    else
        ag_cuda_fail("layernorm_forward (16 bit)", "precision %d is not a 16-bit type", (int)prec);
}

extern "C" void ag_cuda_lowp_layernorm_backward(ag_precision prec, void *din, float *dw, float *db,
                                                const void *dout, const void *in, const float *mean,
                                                const float *rstd, const float *w, int N, int C) {
    if (N <= 0 || C <= 0 || !ag_cuda_ready()) return;
    if (prec == AG_PREC_BF16)
        ln_bwd_lowp((__nv_bfloat16 *)din, dw, db, (const __nv_bfloat16 *)dout,
                    (const __nv_bfloat16 *)in, mean, rstd, w, N, C);
    else if (prec == AG_PREC_FP16)
        ln_bwd_lowp((__half *)din, dw, db, (const __half *)dout, (const __half *)in, mean, rstd, w, N, C);
    else
        ag_cuda_fail("layernorm_backward (16 bit)", "precision %d is not a 16-bit type", (int)prec);
}
