/* Device-side helpers shared by the backend's kernels: element loads and stores templated
 * on the storage type (float, and __nv_bfloat16 / __half for the mixed-precision path, see
 * docs/cuda.md), warp reductions, launch sizes, the elementwise kernels that both the fp32
 * and the 16-bit op tables launch, and column sums. Arithmetic is always fp32 (sums in fp64
 * where the CPU oracle sums in double), whatever the storage type.
 * Included by the .cu files only. */
#ifndef ARGENT_NN_CUDA_KERNELS_CUH
#define ARGENT_NN_CUDA_KERNELS_CUH
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <float.h>
#include <stdint.h>

#include "nn/cuda/amp.h"
#include "nn/cuda/internal.h"

namespace agk {

/* Storage type <-> fp32 compute type. */
template <typename T> struct elem;
template <> struct elem<float> {
    static __device__ __forceinline__ float load(const float *p, size_t i) { return p[i]; }
    static __device__ __forceinline__ void store(float *p, size_t i, float v) { p[i] = v; }
};
template <> struct elem<__nv_bfloat16> {
    static __device__ __forceinline__ float load(const __nv_bfloat16 *p, size_t i) {
        return __bfloat162float(p[i]);
    }
    static __device__ __forceinline__ void store(__nv_bfloat16 *p, size_t i, float v) {
        p[i] = __float2bfloat16_rn(v);
    }
};
template <> struct elem<__half> {
    static __device__ __forceinline__ float load(const __half *p, size_t i) { return __half2float(p[i]); }
    static __device__ __forceinline__ void store(__half *p, size_t i, float v) { p[i] = __float2half_rn(v); }
};
template <typename T> __device__ __forceinline__ float ld(const T *p, size_t i) { return elem<T>::load(p, i); }
template <typename T> __device__ __forceinline__ void st(T *p, size_t i, float v) { elem<T>::store(p, i, v); }

/* Butterfly reductions: every lane ends with the warp's total. The whole warp must call. */
template <typename A> __device__ __forceinline__ A warp_sum(A v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Grid-stride loop bounds. */
__device__ __forceinline__ size_t gid() { return (size_t)blockIdx.x * blockDim.x + threadIdx.x; }
__device__ __forceinline__ size_t gstride() { return (size_t)gridDim.x * blockDim.x; }

constexpr int kThreads = 256;      /* elementwise block size */
constexpr int kRowWarps = 8;       /* warps per block for one-warp-per-row kernels */

/* ---- elementwise kernels used by both the fp32 ops (elementwise.cu) and the 16-bit
 * tables (lowp_ops.cu), each file launching its own storage types ---- */

/* dst[n] += src[n]. */
template <typename T> __global__ void acc_kernel(T *dst, const T *src, size_t n) {
    for (size_t i = gid(); i < n; i += gstride()) st(dst, i, ld(dst, i) + ld(src, i));
}

template <typename T> __global__ void scale_kernel(T *x, float alpha, size_t n) {
    for (size_t i = gid(); i < n; i += gstride()) st(x, i, ld(x, i) * alpha);
}

/* dst[r, c] += src[r, c] over a rows x cols block, row strides ldd and lds. */
template <typename T>
__global__ void acc2d_kernel(T *dst, size_t ldd, const T *src, size_t lds, size_t rows, size_t cols) {
    size_t n = rows * cols;
    for (size_t i = gid(); i < n; i += gstride()) {
        size_t r = i / cols, c = i % cols;
        st(dst, r * ldd + c, ld(dst, r * ldd + c) + ld(src, r * lds + c));
    }
}

template <typename T> __global__ void tanh_fwd_kernel(T *out, const T *in, size_t n) {
    for (size_t i = gid(); i < n; i += gstride()) st(out, i, tanhf(ld(in, i)));
}

template <typename T>
__global__ void tanh_bwd_kernel(T *din, const T *out, const T *dout, size_t n) {
    for (size_t i = gid(); i < n; i += gstride()) {
        float y = ld(out, i);
        st(din, i, ld(din, i) + ld(dout, i) * (1.0f - y * y));
    }
}

/* din += dout * scale where the mask kept the element. */
template <typename T>
__global__ void dropout_bwd_kernel(T *din, const T *dout, const uint8_t *mask, size_t n, float scale) {
    for (size_t i = gid(); i < n; i += gstride())
        st(din, i, ld(din, i) + (mask[i] ? ld(dout, i) * scale : 0.0f));
}

}  // namespace agk

/* ---- deterministic column sums: out[c] += sum over rows r of f(r, c) ----
 * Two outputs at once (f adds into a0 and a1: LayerNorm's dw and db share one pass). A
 * block sums a 32-column tile over one chunk of rows (8 row lanes, then shared memory);
 * a second kernel adds the chunks' partials in a fixed order, so results do not depend
 * on scheduling (no atomics). Sums run in fp64, as the CPU oracle's. */
namespace agk {
constexpr int kColTile = 32, kColLanes = 8;

template <typename F>
__global__ void colsum_partial(double *partial, int N, int C, int rows_per_chunk, int nchunk, F f) {
    __shared__ double s0[kColLanes][kColTile + 1], s1[kColLanes][kColTile + 1];
    int c = blockIdx.x * kColTile + threadIdx.x;
    int r0 = blockIdx.y * rows_per_chunk, r1 = min(N, r0 + rows_per_chunk);
    double a0 = 0.0, a1 = 0.0;
    if (c < C)
        for (int r = r0 + (int)threadIdx.y; r < r1; r += kColLanes) f(r, c, a0, a1);
    s0[threadIdx.y][threadIdx.x] = a0;
    s1[threadIdx.y][threadIdx.x] = a1;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        double t0 = 0.0, t1 = 0.0;
        for (int k = 0; k < kColLanes; k++) { t0 += s0[k][threadIdx.x]; t1 += s1[k][threadIdx.x]; }
        partial[(size_t)blockIdx.y * C + c] = t0;
        partial[((size_t)nchunk + blockIdx.y) * C + c] = t1;
    }
}

/* Each file that sums columns gets its own copy (no relocatable device code needed). */
static __global__ void colsum_finish(float *out0, float *out1, const double *partial, int nchunk, int C) {
    for (size_t c = gid(); c < (size_t)C; c += gstride()) {
        double t0 = 0.0, t1 = 0.0;
        for (int k = 0; k < nchunk; k++) {
            t0 += partial[(size_t)k * C + c];
            t1 += partial[((size_t)nchunk + k) * C + c];
        }
        if (out0) out0[c] += (float)t0;
        if (out1) out1[c] += (float)t1;
    }
}
}  // namespace agk

/* Host side: sizes the chunks so that about four blocks run per SM. */
template <typename F>
static void ag_colsum_launch(const char *op, float *out0, float *out1, int N, int C, F f) {
    if (N <= 0 || C <= 0 || (!out0 && !out1)) return;
    int tiles = (C + agk::kColTile - 1) / agk::kColTile;
    int nchunk = 4 * ag_cuda_sm_count() / tiles;
    int max_chunks = (N + 31) / 32;  /* at least 32 rows per chunk */
    if (nchunk > max_chunks) nchunk = max_chunks;
    if (nchunk < 1) nchunk = 1;
    int rpc = (N + nchunk - 1) / nchunk;
    nchunk = (N + rpc - 1) / rpc;
    double *partial = (double *)ag_cuda_scratch(AG_CUDA_SCR_COL, 2 * (size_t)nchunk * C * sizeof(double));
    if (!partial) return;
    cudaStream_t s = ag_cuda_stream();
    agk::colsum_partial<<<dim3(tiles, nchunk), dim3(agk::kColTile, agk::kColLanes), 0, s>>>(
        partial, N, C, rpc, nchunk, f);
    ag_cuda_launched(op);
    agk::colsum_finish<<<ag_cuda_blocks((size_t)C, agk::kThreads), agk::kThreads, 0, s>>>(
        out0, out1, partial, nchunk, C);
    ag_cuda_launched(op);
}

/* Blocks for kernels that give one warp to each of `rows` rows. */
static inline unsigned ag_row_blocks(size_t rows) {
    return (unsigned)((rows + agk::kRowWarps - 1) / agk::kRowWarps);
}

#endif
