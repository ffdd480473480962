/* Philox4x32-10 (Salmon et al., SC'11), used as a keyed hash of the draw's coordinates. */
#include "nn/rng.h"

#include <math.h>

#define PH_M0 0xD2511F53u
#define PH_M1 0xCD9E8D57u
#define PH_W0 0x9E3779B9u
#define PH_W1 0xBB67AE85u

void ag_philox(const uint32_t key[2], const uint32_t ctr[4], uint32_t out[4]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3], k0 = key[0], k1 = key[1];
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)PH_M0 * c0, p1 = (uint64_t)PH_M1 * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        c0 = n0; c1 = (uint32_t)p1; c2 = n2; c3 = (uint32_t)p0;
        k0 += PH_W0; k1 += PH_W1;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

uint32_t ag_rng_u32(uint64_t seed, uint32_t stream, uint64_t a, uint32_t b, uint64_t index) {
    /* The key mixes seed and stream; the counter holds a, b and index/4 (4 words per block). */
    uint32_t key[2] = {(uint32_t)seed ^ (stream * 0x85EBCA6Bu), (uint32_t)(seed >> 32) + stream};
    uint64_t blk = index >> 2;
    uint32_t ctr[4] = {(uint32_t)a, (uint32_t)(a >> 32) ^ ((uint32_t)(blk >> 32) << 16), b, (uint32_t)blk};
    uint32_t out[4];
    ag_philox(key, ctr, out);
    return out[index & 3];
}

float ag_rng_uniform(uint64_t seed, uint32_t stream, uint64_t a, uint32_t b, uint64_t index) {
    return (float)(ag_rng_u32(seed, stream, a, b, index) >> 8) * (1.0f / 16777216.0f);
}

float ag_rng_normal(uint64_t seed, uint32_t stream, uint64_t a, uint32_t b, uint64_t index) {
    double u1 = ((double)(ag_rng_u32(seed, stream, a, b, 2 * index) >> 8) + 0.5) / 16777216.0;
    double u2 = (double)(ag_rng_u32(seed, stream, a, b, 2 * index + 1) >> 8) / 16777216.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}
