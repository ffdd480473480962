/* Kernels of the device optimiser (nn/cuda/optim.h; host side in optim.c): the AdamW
 * update over the whole flat buffer in one launch, and the sum of squares behind the
 * global gradient norm.
 *
 * AdamW: the float operations of nn/optim.c in its order, each rounded on its own
 * (__fmul_rn & co. keep nvcc from contracting a*b+c into an fma, which would round once
 * where the CPU rounds twice), so an update is the CPU's bit for bit. Which elements are
 * parameters (not the alignment padding between tensors) and which decay comes from a
 * sorted table of segments [start, end) with a decay flag (binary search; one segment per
 * run of adjacent tensors with the same flag).
 *
 * Sum of squares in double, two stages, no atomics: a fixed number of blocks (independent
 * of the device) each reduce a grid-stride share in shared memory, then one block adds the
 * partials in a fixed tree. Deterministic run to run and GPU to GPU. */
#include "nn/cuda/kernels.cuh"

using namespace agk;

namespace {

#ifdef __CUDA_ARCH__
__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ float div_rn(float a, float b) { return __fdiv_rn(a, b); }
__device__ __forceinline__ float sqrt_rn(float a) { return __fsqrt_rn(a); }
#else  /* the CPU emulator: plain IEEE float arithmetic, as nn/optim.c */
static inline float mul_rn(float a, float b) { return a * b; }
static inline float add_rn(float a, float b) { return a + b; }
static inline float div_rn(float a, float b) { return a / b; }
static inline float sqrt_rn(float a) { return sqrtf(a); }
#endif

struct adamw_consts {
    float decay_mul, w1, b2, w2, bc2_sqrt, eps, neg_step_size;
};

/* The table's segments: starts[0..nr) then ends[0..nr), sorted and disjoint, the top bit
 * of an end set where the segment decays. 0: i lies in no segment (alignment padding
 * between tensors, which nn/optim.c never touches); else 1 + the decay flag. */
constexpr unsigned long long kDecayBit = 1ull << 63;
__device__ __forceinline__ int segment_of(const unsigned long long *seg, int nr, size_t i) {
    int lo = 0, hi = nr;  /* lo = number of starts <= i */
    while (lo < hi) {
        int mid = (lo + hi) >> 1;
        if (seg[mid] <= (unsigned long long)i) lo = mid + 1;
        else hi = mid;
    }
    if (lo == 0) return 0;
    unsigned long long e = seg[nr + lo - 1];
    if ((unsigned long long)i >= (e & ~kDecayBit)) return 0;
    return 1 + (e & kDecayBit ? 1 : 0);
}

__global__ void adamw_kernel(float *th, const float *g, float *m, float *v, size_t n,
                             const unsigned long long *seg, int nr, adamw_consts k) {
    for (size_t i = gid(); i < n; i += gstride()) {
        int in = segment_of(seg, nr, i);
        if (!in) continue;
        float x = th[i], gk = g[i];
        if (in == 2) x = mul_rn(x, k.decay_mul);
        float mk = add_rn(m[i], mul_rn(k.w1, add_rn(gk, -m[i])));   /* m += w1 (g - m) */
        float vk = add_rn(mul_rn(v[i], k.b2), mul_rn(mul_rn(k.w2, gk), gk));
        float den = add_rn(div_rn(sqrt_rn(vk), k.bc2_sqrt), k.eps);
        m[i] = mk;
        v[i] = vk;
        th[i] = add_rn(x, div_rn(mul_rn(k.neg_step_size, mk), den));
    }
}

/* x *= alpha on the segments' elements only (clipping). */
__global__ void seg_scale_kernel(float *x, float alpha, size_t n, const unsigned long long *seg, int nr) {
    for (size_t i = gid(); i < n; i += gstride())
        if (segment_of(seg, nr, i)) x[i] = x[i] * alpha;
}

constexpr int kSumBlocks = 128;

__global__ void sumsq_partial_kernel(double *partial, const float *x, size_t n,
                                     const unsigned long long *seg, int nr) {
    __shared__ double s[kThreads];
    double a = 0.0;
    for (size_t i = gid(); i < n; i += gstride()) {
        if (!segment_of(seg, nr, i)) continue;
        double xi = x[i];
        a += xi * xi;
    }
    s[threadIdx.x] = a;
    __syncthreads();
    for (int w = kThreads / 2; w > 0; w >>= 1) {
        if ((int)threadIdx.x < w) s[threadIdx.x] += s[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) partial[blockIdx.x] = s[0];
}

/* One block: out[0] = sum of partial[0..nb) (nb <= kThreads... any nb, strided). */
__global__ void sumsq_finish_kernel(double *out, const double *partial, int nb) {
    __shared__ double s[kThreads];
    double a = 0.0;
    for (int i = threadIdx.x; i < nb; i += kThreads) a += partial[i];
    s[threadIdx.x] = a;
    __syncthreads();
    for (int w = kThreads / 2; w > 0; w >>= 1) {
        if ((int)threadIdx.x < w) s[threadIdx.x] += s[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[0] = s[0];
}

}  // namespace

extern "C" void ag_cuda_adamw_launch(float *th, const float *g, float *m, float *v, size_t n,
                                     const unsigned long long *seg, int nr, float decay_mul,
                                     float w1, float b2, float w2, float bc2_sqrt, float eps,
                                     float step_size) {
    if (!n || !ag_cuda_ready()) return;
    adamw_consts k = {decay_mul, w1, b2, w2, bc2_sqrt, eps, -step_size};
    adamw_kernel<<<ag_cuda_blocks(n, kThreads), kThreads, 0, ag_cuda_stream()>>>(th, g, m, v, n, seg, nr, k);
    ag_cuda_launched("adamw_step");
}

/* Sum of x[i]^2 over the segments, in double; waits. *ok = 0 when the scratch could not be had (recorded). */
extern "C" void ag_cuda_seg_scale(float *x, float alpha, size_t n, const unsigned long long *seg, int nr) {
    if (!n || !ag_cuda_ready()) return;
    seg_scale_kernel<<<ag_cuda_blocks(n, kThreads), kThreads, 0, ag_cuda_stream()>>>(x, alpha, n, seg, nr);
    ag_cuda_launched("clip_grad_norm (scale)");
}

extern "C" double ag_cuda_sumsq(const float *x, size_t n, const unsigned long long *seg, int nr, int *ok) {
    *ok = 0;
    if (!ag_cuda_ready()) return 0.0;
    *ok = 1;
    if (!n) return 0.0;
    size_t want = (n + kThreads - 1) / kThreads;
    int nb = want < (size_t)kSumBlocks ? (int)want : kSumBlocks;
    double *partial = (double *)ag_cuda_scratch(AG_CUDA_SCR_COL, ((size_t)nb + 1) * sizeof(double));
    if (!partial) {
        *ok = 0;
        return 0.0;
    }
    cudaStream_t s = ag_cuda_stream();
    sumsq_partial_kernel<<<nb, kThreads, 0, s>>>(partial, x, n, seg, nr);
    ag_cuda_launched("grad_norm (partials)");
    sumsq_finish_kernel<<<1, kThreads, 0, s>>>(partial + nb, partial, nb);
    ag_cuda_launched("grad_norm (sum)");
    double total = 0.0;
    ag_cuda_download(&total, partial + nb, sizeof total);
    return total;
}
