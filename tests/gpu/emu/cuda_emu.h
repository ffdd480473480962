/* A CPU stand-in for the CUDA device environment, so that the backend's kernels (nn/cuda/
 * *.cu) can run and be checked on a machine without a GPU. emu_rewrite.py turns each .cu
 * file into C++ (kernel launches `k<<<grid, block, smem, stream>>>(args)` become
 * agemu::config(grid, block, smem, stream).run("k", lockstep, k, args)), and the C++ is
 * compiled by the host compiler with this header forced in first (-include).
 *
 * What it models: threadIdx/blockIdx/blockDim/gridDim; __shared__ memory (blocks run one
 * after another, so a static per kernel serves); __syncthreads, __syncwarp and
 * __shfl_xor_sync with real barriers (a block's threads run as fibers that switch at each
 * barrier, for kernels that synchronise: "lockstep"); atomicAdd; the
 * CUDA launch limits (a bad configuration fails like cudaErrorInvalidConfiguration); and
 * device memory: a pointer passed to a kernel, cuBLAS or a copy must lie inside a
 * cudaMalloc'd block (else the launch fails, naming the kernel and argument), which
 * catches host pointers handed to device code. Device memory is host memory, so a build
 * with AddressSanitizer also checks every kernel access.
 * What it does not model: timing, memory coalescing, races between warps that real
 * hardware would interleave differently, and device math (erff, expf run as glibc's). */
#ifndef ARGENT_TESTS_GPU_EMU_CUDA_EMU_H
#define ARGENT_TESTS_GPU_EMU_CUDA_EMU_H

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <functional>
#include <type_traits>

/* Device-side qualifiers become plain C++. */
#undef __global__
#undef __device__
#undef __host__
#undef __forceinline__
#undef __shared__
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static

namespace agemu {

struct thread_ctx {
    uint3 thread, block;
    dim3 bdim, gdim;
    int lane;        /* threadIdx linear % 32 */
    void *blk;       /* the running block's barriers (lockstep kernels only) */
    const char *kernel;
};
extern thread_local thread_ctx t;

void syncthreads();
void syncwarp();
/* Warp exchange: every lane offers `size` bytes at in and receives lane src's at out. */
void exchange(const void *in, void *out, size_t size, int src_lane);
float atomic_add(float *p, float v);

/* 1 when p lies inside a live cudaMalloc block (or is NULL). */
int is_device_ptr(const void *p);
void launch(const char *name, dim3 grid, dim3 block, bool lockstep, const std::function<void()> &body);
void bad_argument(const char *name, int index, const void *p);

template <typename A> bool arg_ok(const char *name, int index, const A &a) {
    if constexpr (std::is_pointer_v<A>) {
        if (!is_device_ptr((const void *)a)) {
            bad_argument(name, index, (const void *)a);
            return false;
        }
    }
    return true;
}

struct config {
    dim3 grid, block;
    config(dim3 g, dim3 b, size_t = 0, cudaStream_t = 0) : grid(g), block(b) {}
    template <typename F, typename... A> void run(const char *name, bool lockstep, F kernel, A... args) {
        int i = 0;
        bool ok = (arg_ok(name, i++, args) && ...);
        if (!ok) return;
        launch(name, grid, block, lockstep, [=]() { kernel(args...); });
    }
};

}  // namespace agemu

#define threadIdx (agemu::t.thread)
#define blockIdx (agemu::t.block)
#define blockDim (agemu::t.bdim)
#define gridDim (agemu::t.gdim)

static inline void __syncthreads() { agemu::syncthreads(); }
static inline void __syncwarp(unsigned = 0xffffffffu) { agemu::syncwarp(); }
template <typename T> static inline T __shfl_xor_sync(unsigned, T v, int lane_mask) {
    T r;
    agemu::exchange(&v, &r, sizeof v, agemu::t.lane ^ lane_mask);
    return r;
}
static inline float atomicAdd(float *p, float v) { return agemu::atomic_add(p, v); }
template <typename T> static inline T min(T a, T b) { return a < b ? a : b; }
template <typename T> static inline T max(T a, T b) { return a < b ? b : a; }

#endif
