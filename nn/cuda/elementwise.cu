/* Elementwise kernels of the CUDA backend: residual add, gradient fan-in, scale, strided
 * accumulate, the bias broadcast and bias-gradient column sum of linear layers, GELU (exact
 * erf form), tanh, and dropout with the CPU's counter-based masks (nn/cuda/philox.h gives
 * the same bits as nn/rng.c). Contracts: nn/ops.h; the oracle: nn/ops_cpu.c.
 *
 * Kernels are templated on the storage type T (float, and __nv_bfloat16 / __half through
 * the ag_cuda_lowp_* entry points at the end) and compute in fp32. Those the 16-bit tables
 * of lowp_ops.cu launch too (acc, scale, acc2d, tanh, dropout backward) live in
 * nn/cuda/kernels.cuh. */
#include "nn/cuda/kernels.cuh"
#include "nn/cuda/philox.h"
#include "nn/rng.h"

using namespace agk;

namespace {

__global__ void probe_kernel(int *flag) { *flag = 1; }

/* out[n] = a[n] + b[n]; out may alias a or b (each thread reads before it writes). */
template <typename T> __global__ void add_kernel(T *out, const T *a, const T *b, size_t n) {
    for (size_t i = gid(); i < n; i += gstride()) st(out, i, ld(a, i) + ld(b, i));
}

/* out[N,OC] = b[OC] on every row. */
template <typename T> __global__ void bias_rows_kernel(T *out, const float *b, size_t N, int OC) {
    size_t n = N * (size_t)OC;
    for (size_t i = gid(); i < n; i += gstride()) st(out, i, b[i % (size_t)OC]);
}

/* The CPU's expressions, operation for operation; erff/expf/tanhf on the device are
 * within a couple of ulps of glibc's, which is what the op tests allow for. */
template <typename T> __global__ void gelu_fwd_kernel(T *out, const T *in, size_t n) {
    for (size_t i = gid(); i < n; i += gstride()) {
        float x = ld(in, i);
        st(out, i, 0.5f * x * (1.0f + erff(x * 0.70710678118654752440f)));
    }
}

template <typename T>
__global__ void gelu_bwd_kernel(T *din, const T *in, const T *dout, size_t n) {
    const float inv_sqrt_2pi = 0.3989422804014327f;
    for (size_t i = gid(); i < n; i += gstride()) {
        float x = ld(in, i);
        float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752440f));
        float pdf = inv_sqrt_2pi * expf(-0.5f * x * x);
        st(din, i, ld(din, i) + ld(dout, i) * (cdf + x * pdf));
    }
}

/* One thread per Philox block: elements 4*blk .. 4*blk+3 of row b (draw index j = element
 * index within the row, as the CPU's). out may alias in. */
template <typename T>
__global__ void dropout_fwd_kernel(T *out, uint8_t *mask, const T *in, int B, size_t L,
                                   size_t nblk, const int64_t *sample_idx, uint64_t seed,
                                   uint32_t site, float p, float scale) {
    size_t total = (size_t)B * nblk;
    for (size_t i = gid(); i < total; i += gstride()) {
        size_t b = i / nblk, blk = i % nblk;
        float u[4];
        ag_uniform4_hd(seed, AG_RNG_DROPOUT, (uint64_t)sample_idx[b], site, blk, u);
        size_t base = b * L;
#pragma unroll
        for (int k = 0; k < 4; k++) {
            size_t j = blk * 4 + (size_t)k;
            if (j < L) {
                uint8_t keep = u[k] >= p;
                mask[base + j] = keep;
                st(out, base + j, keep ? ld(in, base + j) * scale : 0.0f);
            }
        }
    }
}

/* Column-sum functor for bias gradients: the row values themselves. */
struct col_value {
    const float *x;
    int C;
    __device__ void operator()(int r, int c, double &a0, double &) const {
        a0 += x[(size_t)r * C + c];
    }
};

/* dst[n] (16-bit storage T) = src[n] rounded to nearest even; and back (exact). */
template <typename T> __global__ void cast_from_f32_kernel(T *dst, const float *src, size_t n) {
    for (size_t i = gid(); i < n; i += gstride()) st(dst, i, src[i]);
}
template <typename T> __global__ void cast_to_f32_kernel(float *dst, const T *src, size_t n) {
    for (size_t i = gid(); i < n; i += gstride()) dst[i] = ld(src, i);
}

/* GradScaler's unscale: grad *= inv; *found = 1 when any input was inf/NaN (the flag is
 * only ever set, so racing writers agree). */
__global__ void unscale_kernel(float *g, size_t n, float inv, float *found) {
    int bad = 0;
    for (size_t i = gid(); i < n; i += gstride()) {
        float v = g[i];
        bad |= !isfinite(v);
        g[i] = v * inv;
    }
    if (bad) *found = 1.0f;
}


}  // namespace

#define GRID(n) ag_cuda_blocks((n), kThreads), kThreads, 0, ag_cuda_stream()

extern "C" cudaError_t ag_cuda_probe(cudaStream_t stream) {
    int *flag = nullptr;
    cudaError_t e = cudaMalloc(&flag, sizeof *flag);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return e;
    }
    probe_kernel<<<1, 1, 0, stream>>>(flag);
    e = cudaGetLastError();
    if (e == cudaSuccess) e = cudaStreamSynchronize(stream);
    cudaFree(flag);
    cudaGetLastError();
    return e;
}

extern "C" void ag_cuda_add(float *out, const float *a, const float *b, size_t n) {
    if (!n || !ag_cuda_ready()) return;
    add_kernel<float><<<GRID(n)>>>(out, a, b, n);
    ag_cuda_launched("add");
}

extern "C" void ag_cuda_acc(float *dst, const float *src, size_t n) {
    if (!n || !ag_cuda_ready()) return;
    acc_kernel<float><<<GRID(n)>>>(dst, src, n);
    ag_cuda_launched("acc");
}

extern "C" void ag_cuda_scale(float *x, float alpha, size_t n) {
    if (!n || !ag_cuda_ready()) return;
    scale_kernel<float><<<GRID(n)>>>(x, alpha, n);
    ag_cuda_launched("scale");
}

extern "C" void ag_cuda_acc2d(float *dst, size_t ldd, const float *src, size_t lds, size_t rows,
                              size_t cols) {
    if (!rows || !cols || !ag_cuda_ready()) return;
    acc2d_kernel<float><<<GRID(rows * cols)>>>(dst, ldd, src, lds, rows, cols);
    ag_cuda_launched("acc2d");
}

extern "C" void ag_cuda_bias_rows(float *out, const float *b, int N, int OC) {
    if (N <= 0 || OC <= 0 || !ag_cuda_ready()) return;
    bias_rows_kernel<float><<<GRID((size_t)N * OC)>>>(out, b, (size_t)N, OC);
    ag_cuda_launched("linear_forward (bias)");
}

extern "C" void ag_cuda_colsum_acc(float *sum, const float *x, int N, int C) {
    if (!ag_cuda_ready()) return;
    ag_colsum_launch("linear_backward (db)", sum, nullptr, N, C, col_value{x, C});
}

extern "C" void ag_cuda_gelu_forward(float *out, const float *in, size_t n) {
    if (!n || !ag_cuda_ready()) return;
    gelu_fwd_kernel<float><<<GRID(n)>>>(out, in, n);
    ag_cuda_launched("gelu_forward");
}

extern "C" void ag_cuda_gelu_backward(float *din, const float *in, const float *dout, size_t n) {
    if (!n || !ag_cuda_ready()) return;
    gelu_bwd_kernel<float><<<GRID(n)>>>(din, in, dout, n);
    ag_cuda_launched("gelu_backward");
}

extern "C" void ag_cuda_tanh_forward(float *out, const float *in, size_t n) {
    if (!n || !ag_cuda_ready()) return;
    tanh_fwd_kernel<float><<<GRID(n)>>>(out, in, n);
    ag_cuda_launched("tanh_forward");
}

extern "C" void ag_cuda_tanh_backward(float *din, const float *out, const float *dout, size_t n) {
    if (!n || !ag_cuda_ready()) return;
    tanh_bwd_kernel<float><<<GRID(n)>>>(din, out, dout, n);
    ag_cuda_launched("tanh_backward");
}

extern "C" void ag_cuda_dropout_forward(float *out, uint8_t *mask, const float *in, int B, size_t L,
                                        const int64_t *sample_idx, uint64_t seed, uint32_t site,
                                        float p) {
    size_t n = (size_t)(B > 0 ? B : 0) * L;
    if (!n || !ag_cuda_ready()) return;
    if (p <= 0.0f) {  /* eval: a copy, mask untouched (as the CPU) */
        ag_cuda_copy(out, in, n);
        return;
    }
    size_t nblk = (L + 3) / 4;
    dropout_fwd_kernel<float><<<GRID((size_t)B * nblk)>>>(out, mask, in, B, L, nblk, sample_idx, seed,
                                                          site, p, 1.0f / (1.0f - p));
    ag_cuda_launched("dropout_forward");
}

extern "C" void ag_cuda_dropout_backward(float *din, const float *dout, const uint8_t *mask, int B,
                                         size_t L, float p) {
    size_t n = (size_t)(B > 0 ? B : 0) * L;
    if (!n || !ag_cuda_ready()) return;
    if (p <= 0.0f) {
        ag_cuda_acc(din, dout, n);
        return;
    }
    dropout_bwd_kernel<float><<<GRID(n)>>>(din, dout, mask, n, 1.0f / (1.0f - p));
    ag_cuda_launched("dropout_backward");
}

/* ---- 16-bit storage (nn/cuda/amp.h): the same kernels on bf16 / fp16 buffers ---- */

#define LOWP(prec, body_bf16, body_f16)                                                    \
    do {                                                                                   \
        if ((prec) == AG_PREC_BF16) { body_bf16; } else if ((prec) == AG_PREC_FP16) { body_f16; } \
        else ag_cuda_fail(op, "precision %d is not a 16-bit type", (int)(prec));           \
    } while (0)
#define BF(p) ((__nv_bfloat16 *)(p))
#define CBF(p) ((const __nv_bfloat16 *)(p))
#define HF(p) ((__half *)(p))
#define CHF(p) ((const __half *)(p))

extern "C" void ag_cuda_lowp_from_f32(ag_precision prec, void *dst, const float *src, size_t n) {
    const char *op = "cast to 16 bit";
    if (!n || !ag_cuda_ready()) return;
    LOWP(prec, (cast_from_f32_kernel<<<GRID(n)>>>(BF(dst), src, n)),
               (cast_from_f32_kernel<<<GRID(n)>>>(HF(dst), src, n)));
    ag_cuda_launched(op);
}

extern "C" void ag_cuda_lowp_to_f32(ag_precision prec, float *dst, const void *src, size_t n) {
    const char *op = "cast from 16 bit";
    if (!n || !ag_cuda_ready()) return;
    LOWP(prec, (cast_to_f32_kernel<<<GRID(n)>>>(dst, CBF(src), n)),
               (cast_to_f32_kernel<<<GRID(n)>>>(dst, CHF(src), n)));
    ag_cuda_launched(op);
}

extern "C" void ag_cuda_lowp_add(ag_precision prec, void *out, const void *a, const void *b, size_t n) {
    const char *op = "add (16 bit)";
    if (!n || !ag_cuda_ready()) return;
    LOWP(prec, (add_kernel<<<GRID(n)>>>(BF(out), CBF(a), CBF(b), n)),
               (add_kernel<<<GRID(n)>>>(HF(out), CHF(a), CHF(b), n)));
    ag_cuda_launched(op);
}

extern "C" void ag_cuda_lowp_gelu_forward(ag_precision prec, void *out, const void *in, size_t n) {
    const char *op = "gelu_forward (16 bit)";
    if (!n || !ag_cuda_ready()) return;
    LOWP(prec, (gelu_fwd_kernel<<<GRID(n)>>>(BF(out), CBF(in), n)),
               (gelu_fwd_kernel<<<GRID(n)>>>(HF(out), CHF(in), n)));
    ag_cuda_launched(op);
}

extern "C" void ag_cuda_lowp_gelu_backward(ag_precision prec, void *din, const void *in,
                                           const void *dout, size_t n) {
    const char *op = "gelu_backward (16 bit)";
    if (!n || !ag_cuda_ready()) return;
    LOWP(prec, (gelu_bwd_kernel<<<GRID(n)>>>(BF(din), CBF(in), CBF(dout), n)),
               (gelu_bwd_kernel<<<GRID(n)>>>(HF(din), CHF(in), CHF(dout), n)));
    ag_cuda_launched(op);
}

extern "C" void ag_cuda_lowp_dropout_forward(ag_precision prec, void *out, uint8_t *mask, const void *in,
                                             int B, size_t L, const int64_t *sample_idx, uint64_t seed,
                                             uint32_t site, float p) {
    const char *op = "dropout_forward (16 bit)";
    size_t n = (size_t)(B > 0 ? B : 0) * L;
    if (!n || !ag_cuda_ready()) return;
    if (p <= 0.0f) {  /* eval: a copy, mask untouched (as the CPU) */
        if (out != in) {
            cudaError_t e = cudaMemcpyAsync(out, in, n * 2, cudaMemcpyDeviceToDevice, ag_cuda_stream());
            if (e != cudaSuccess) ag_cuda_fail(op, "copy: %s", cudaGetErrorString(e));
        }
        return;
    }
    size_t nblk = (L + 3) / 4;
    float scale = 1.0f / (1.0f - p);
    LOWP(prec, (dropout_fwd_kernel<<<GRID((size_t)B * nblk)>>>(BF(out), mask, CBF(in), B, L, nblk, sample_idx, seed, site, p, scale)),
               (dropout_fwd_kernel<<<GRID((size_t)B * nblk)>>>(HF(out), mask, CHF(in), B, L, nblk, sample_idx, seed, site, p, scale)));
    ag_cuda_launched(op);
}

extern "C" void ag_cuda_unscale(float *grad, size_t n, float inv_scale, float *found_inf) {
    if (!n || !ag_cuda_ready()) return;
    unscale_kernel<<<GRID(n)>>>(grad, n, inv_scale, found_inf);
    ag_cuda_launched("unscale");
}
