/* The device copy of the dropout RNG (nn/cuda/philox.h, built here as plain C) against
 * nn/rng.c, bit for bit: it is what makes CUDA dropout masks equal the CPU's. Runs on any
 * machine (no GPU needed). Covers the draw indices the kernels use: activation elements
 * j = t*C + c, attention elements AG_ATT_DROP_INDEX(h, tq, tk) (block numbers above 2^32),
 * and sample indices above 2^32; and the keep decision u >= p. */
#include <stdio.h>

#include "nn/cuda/philox.h"
#include "nn/ops.h"
#include "nn/rng.h"
#include "tests/support/check.h"

/* Every element of [idx0, idx0 + n) through the device helper vs ag_rng_uniform. */
static size_t mismatches(uint64_t seed, uint32_t stream, uint64_t a, uint32_t b, uint64_t idx0, size_t n) {
    size_t bad = 0;
    for (size_t j = 0; j < n; j++) {
        uint64_t idx = idx0 + j;
        float u[4];
        ag_uniform4_hd(seed, stream, a, b, idx >> 2, u);
        float want = ag_rng_uniform(seed, stream, a, b, idx);
        if (u[idx & 3] != want) bad++;
    }
    return bad;
}

int main(void) {
    char what[200];
    /* The raw block function against nn/rng.c's. */
    size_t bad = 0;
    for (uint32_t i = 0; i < 20000; i++) {
        uint32_t key[2] = {i * 2654435761u, ~i}, ctr[4] = {i, i ^ 0xDEADBEEFu, i * 7u, 0xFFFFFFFFu - i};
        uint32_t want[4], got[4];
        ag_philox(key, ctr, want);
        ag_philox_hd(key[0], key[1], ctr[0], ctr[1], ctr[2], ctr[3], got);
        for (int k = 0; k < 4; k++) bad += got[k] != want[k];
    }
    check_true("ag_philox_hd == ag_philox on 20000 keys/counters", bad == 0);

    uint64_t seeds[] = {0, 1, 42, 0x123456789ABCDEFull, 0xFFFFFFFFFFFFFFFFull};
    uint64_t samples[] = {0, 3, 4294967301ull, 0x7FFFFFFFFFFFFFFFull};
    for (size_t si = 0; si < sizeof seeds / sizeof *seeds; si++)
        for (size_t ai = 0; ai < sizeof samples / sizeof *samples; ai++) {
            uint64_t s = seeds[si], a = samples[ai];
            /* activations: row j = t*C + c from 0 */
            bad = mismatches(s, AG_RNG_DROPOUT, a, 16 * 3 + 2, 0, 10007);
            /* attention rows: (h, tq) up to the strides' limits */
            bad += mismatches(s, AG_RNG_DROPOUT, a, 32, AG_ATT_DROP_INDEX(0, 0, 0), 131);
            bad += mismatches(s, AG_RNG_DROPOUT, a, 33, AG_ATT_DROP_INDEX(11, 127, 0), 131);
            bad += mismatches(s, AG_RNG_DROPOUT, a, 4096, AG_ATT_DROP_INDEX(15, 511, 0), 515);
            bad += mismatches(s, AG_RNG_DROPOUT, a, 7, AG_ATT_DROP_INDEX(1023, (1 << 20) - 1, 0), 64);
            /* other streams share the helper's key layout */
            bad += mismatches(s, AG_RNG_NOISE, a, 0, 123456789, 64);
            snprintf(what, sizeof what, "uniform draws equal for seed %llx, sample %llx",
                     (unsigned long long)s, (unsigned long long)a);
            check_true(what, bad == 0);
        }

    /* The keep decision the kernels make (u >= p), over a whole attention row. */
    size_t differ = 0, kept = 0, total = 0;
    const float p = 0.1f;
    for (int h = 0; h < 12; h++)
        for (int tq = 0; tq < 64; tq++)
            for (int g = 0; g < 16; g++) {  /* lane groups of 4 keys, as softmax_fwd_kernel */
                float u[4];
                ag_uniform4_hd(9, AG_RNG_DROPOUT, 77, 48, AG_ATT_DROP_INDEX(h, tq, 4 * g) >> 2, u);
                for (int k = 0; k < 4; k++) {
                    int tk = 4 * g + k;
                    int want = ag_rng_uniform(9, AG_RNG_DROPOUT, 77, 48, AG_ATT_DROP_INDEX(h, tq, tk)) >= p;
                    int got = u[k] >= p;
                    differ += got != want;
                    kept += got;
                    total++;
                }
            }
    check_true("attention keep mask by lane groups == per-element CPU mask", differ == 0);
    snprintf(what, sizeof what, "keep fraction %.4f ~ 1 - p = 0.9", (double)kept / total);
    check_true(what, (double)kept / total > 0.88 && (double)kept / total < 0.92);
    return check_finish();
}
