/* Deterministic synthetic data for the MPI tests: values are a pure function of their
 * global position (sample, item, element), so every rank count sees the same global data. */
#ifndef ARGENT_TEST_MPI_SYNTH_H
#define ARGENT_TEST_MPI_SYNTH_H
#include <stdint.h>

static inline uint64_t synth_mix(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}
static inline uint64_t synth_key(uint64_t a, uint64_t b, uint64_t c) {
    return synth_mix(synth_mix(synth_mix(a) ^ b) ^ c);
}
/* Uniform in [-1, 1), 24 random bits. */
static inline float synth_uniform(uint64_t a, uint64_t b, uint64_t c) {
    return (float)((double)(synth_key(a, b, c) >> 40) / (double)(1 << 23) - 1.0);
}
/* A multiple of 1/8 in [-125, 125]: sums of a few of these are exact in fp32 in any order. */
static inline float synth_eighths(uint64_t a, uint64_t b, uint64_t c) {
    return (float)((int)(synth_key(a, b, c) % 2001) - 1000) / 8.0f;
}
#endif
