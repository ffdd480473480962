/* Counter-based randomness (Philox4x32-10). A draw is a pure function of
 * (seed, stream, a, b, index): results do not depend on rank count, batch composition or
 * where a run was resumed. Conventions for the arguments:
 *   stream  what the numbers are for (AG_RNG_DROPOUT, AG_RNG_SHUFFLE, ...)
 *   a       usually the global sample index (or epoch for shuffles)
 *   b       a site within the model (layer * 16 + which dropout), or 0
 *   index   element index within that site */
#ifndef ARGENT_NN_RNG_H
#define ARGENT_NN_RNG_H
#include <stddef.h>
#include <stdint.h>

enum {
    AG_RNG_DROPOUT = 1,
    AG_RNG_SHUFFLE = 2,
    AG_RNG_NOISE = 3,   /* TSDAE deletion noise */
    AG_RNG_INIT = 4,    /* parameter initialisation */
};

/* Philox4x32-10 block: key (2 words), counter (4 words) -> 4 random words. */
void ag_philox(const uint32_t key[2], const uint32_t ctr[4], uint32_t out[4]);
uint32_t ag_rng_u32(uint64_t seed, uint32_t stream, uint64_t a, uint32_t b, uint64_t index);
/* Uniform in [0, 1) with 24 random bits. */
float ag_rng_uniform(uint64_t seed, uint32_t stream, uint64_t a, uint32_t b, uint64_t index);
/* Dropout keep mask, many Philox blocks at a time (vectorised):
 * mask[j] = ag_rng_uniform(seed, stream, a, b, idx0 + j) >= p for j < n, bit for bit.
 * Writes mask[0 .. n) only. */
void ag_rng_keep_mask(uint8_t *mask, size_t n, uint64_t seed, uint32_t stream, uint64_t a,
                      uint32_t b, uint64_t idx0, float p);
/* The passes ag_rng_keep_mask picks from (the widest this CPU has), for tests to run each:
 * ag_rng_keep_mask_pass is ag_rng_keep_mask through the given one, which must be
 * supported. */
enum { AG_RNG_PASS_PORTABLE, AG_RNG_PASS_AVX2, AG_RNG_PASS_AVX512 };
int ag_rng_pass_supported(int pass);
void ag_rng_keep_mask_pass(int pass, uint8_t *mask, size_t n, uint64_t seed, uint32_t stream,
                           uint64_t a, uint32_t b, uint64_t idx0, float p);
/* Standard normal (Box-Muller over two draws). */
float ag_rng_normal(uint64_t seed, uint32_t stream, uint64_t a, uint32_t b, uint64_t index);
#endif
