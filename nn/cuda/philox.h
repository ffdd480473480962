/* Philox4x32-10 and the dropout draw, compiled for both host and device, so that the CUDA
 * kernels draw exactly the bits nn/rng.c draws on the CPU (dropout masks must be
 * bit-identical across backends). Keep in step with ag_philox / ag_rng_u32 in nn/rng.c:
 * tests/gpu/test_cuda_philox.c compares this host build against them on this machine,
 * where no GPU exists, and test_cuda_ops compares the device masks on a GPU.
 *
 * Plain C99 as well as CUDA C++: C tests include it directly. */
#ifndef ARGENT_NN_CUDA_PHILOX_H
#define ARGENT_NN_CUDA_PHILOX_H
#include <stdint.h>

#ifdef __CUDACC__
#define AG_HD static __host__ __device__ __forceinline__
#else
#define AG_HD static inline
#endif

/* Philox4x32-10 (Salmon et al., SC'11): key (2 words), counter (4 words) -> 4 words.
 * The 32x32 -> 64-bit products are written as 64-bit multiplies: the same code serves
 * gcc and nvcc, and nvcc turns them into mul.hi/mul.lo. */
AG_HD void ag_philox_hd(uint32_t k0, uint32_t k1, uint32_t c0, uint32_t c1, uint32_t c2,
                        uint32_t c3, uint32_t out[4]) {
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c0, p1 = (uint64_t)0xCD9E8D57u * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        c0 = n0; c1 = (uint32_t)p1; c2 = n2; c3 = (uint32_t)p0;
        k0 += 0x9E3779B9u; k1 += 0xBB67AE85u;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

/* The four uniforms in [0, 1) (24 random bits each) of Philox block `blk` of the draw
 * ag_rng_uniform(seed, stream, a, b, index): element index 4*blk + i is u[i]. One block
 * serves four consecutive elements, as nn/rng.c's counter layout (index / 4) intends. */
AG_HD void ag_uniform4_hd(uint64_t seed, uint32_t stream, uint64_t a, uint32_t b,
                          uint64_t blk, float u[4]) {
    uint32_t r[4];
    ag_philox_hd((uint32_t)seed ^ (stream * 0x85EBCA6Bu), (uint32_t)(seed >> 32) + stream,
                 (uint32_t)a, (uint32_t)(a >> 32) ^ ((uint32_t)(blk >> 32) << 16), b,
                 (uint32_t)blk, r);
    for (int i = 0; i < 4; i++) u[i] = (float)(r[i] >> 8) * (1.0f / 16777216.0f);
}

#endif
