/* Philox4x32-10 (Salmon et al., SC'11), used as a keyed hash of the draw's coordinates. */
#include "nn/rng.h"

#include <math.h>
#include <string.h>

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

/* ---------------------------------------------------------------- many blocks at once */

/* Dropout keep masks come a group of PH_LANES Philox blocks (4 * PH_LANES elements) at a
 * time, one block per 32-bit vector lane. The x86 passes use intrinsics: GCC 12 does
 * vectorise the plain lane loop (ph_pass_c), but it widens and narrows every 32x32->64
 * product through cross-lane shuffles (AVX2) or makes it the slow 64-bit vpmullq
 * (AVX-512), which left it ~3x ahead of the scalar blocks; the even/odd vpmuludq form below
 * is not reachable from C. The pass is picked at run time, since the default build is not
 * -march=native. test_ops_kernels checks each pass against ag_rng_uniform. */
#define PH_LANES 16

#if defined(__x86_64__) && defined(__GNUC__)
#define PH_X86 1
#include <immintrin.h>
#else
#define PH_X86 0
#endif

/* The counter words of blocks blk0 + l (l < PH_LANES) after the first round, in closed form
 * (ag_rng_u32's counter layout): that round's two products are the same in every lane,
 * since counter words 0 and 2 are a's low word and b. Word 2 then takes the lane's block
 * low word; word 0 changes only in the lanes from `wrap` on, where the block's low word has
 * wrapped round (the block's high word goes into counter word 1). */
typedef struct {
    uint32_t c0, c0_wrapped, c1, c2, c3, blk_lo;
    int wrap;
} ph_first;

static ph_first ph_first_round(uint32_t k0, uint32_t k1, uint64_t a, uint32_t b, uint64_t blk0) {
    uint64_t p0 = (uint64_t)PH_M0 * (uint32_t)a, p1 = (uint64_t)PH_M1 * b;
    uint32_t w1 = (uint32_t)(p1 >> 32) ^ (uint32_t)(a >> 32) ^ k0, hi = (uint32_t)(blk0 >> 32);
    uint64_t before_wrap = 0x100000000ull - (uint32_t)blk0;
    ph_first f = {w1 ^ (hi << 16), w1 ^ ((hi + 1) << 16), (uint32_t)p1, (uint32_t)(p0 >> 32) ^ k1,
                  (uint32_t)p0, (uint32_t)blk0, before_wrap < PH_LANES ? (int)before_wrap : PH_LANES};
    return f;
}

/* One Philox round on one lane's counter words, as in ag_philox. */
static inline __attribute__((always_inline)) void ph_round(uint32_t *c0, uint32_t *c1,
                                                           uint32_t *c2, uint32_t *c3,
                                                           uint32_t k0, uint32_t k1) {
    uint64_t p0 = (uint64_t)PH_M0 * *c0, p1 = (uint64_t)PH_M1 * *c2;
    uint32_t n0 = (uint32_t)(p1 >> 32) ^ *c1 ^ k0;
    uint32_t n2 = (uint32_t)(p0 >> 32) ^ *c3 ^ k1;
    *c0 = n0; *c1 = (uint32_t)p1; *c2 = n2; *c3 = (uint32_t)p0;
}

/* The uniform of a word, as ag_rng_uniform forms it. */
static inline float ph_uniform(uint32_t w) { return (float)(w >> 8) * (1.0f / 16777216.0f); }

/* Portable pass: rounds 2..10 and the keep test of one group; mask[4*l + w] comes from word
 * w of lane l. The rounds are spelt out so that the lanes loop vectorises as a whole; the
 * bytes get a loop of their own (in the lanes loop they would make the vectoriser pick its
 * narrowest vectors for the rounds too). */
static void ph_pass_c(uint8_t *mask, ph_first f, uint32_t k0, uint32_t k1, float p) {
    uint32_t c[4][PH_LANES];
    #pragma omp simd
    for (int l = 0; l < PH_LANES; l++) {
        uint32_t c0 = l >= f.wrap ? f.c0_wrapped : f.c0, c1 = f.c1;
        uint32_t c2 = f.c2 ^ (f.blk_lo + (uint32_t)l), c3 = f.c3;
        ph_round(&c0, &c1, &c2, &c3, k0 + 1 * PH_W0, k1 + 1 * PH_W1);
        ph_round(&c0, &c1, &c2, &c3, k0 + 2 * PH_W0, k1 + 2 * PH_W1);
        ph_round(&c0, &c1, &c2, &c3, k0 + 3 * PH_W0, k1 + 3 * PH_W1);
        ph_round(&c0, &c1, &c2, &c3, k0 + 4 * PH_W0, k1 + 4 * PH_W1);
        ph_round(&c0, &c1, &c2, &c3, k0 + 5 * PH_W0, k1 + 5 * PH_W1);
        ph_round(&c0, &c1, &c2, &c3, k0 + 6 * PH_W0, k1 + 6 * PH_W1);
        ph_round(&c0, &c1, &c2, &c3, k0 + 7 * PH_W0, k1 + 7 * PH_W1);
        ph_round(&c0, &c1, &c2, &c3, k0 + 8 * PH_W0, k1 + 8 * PH_W1);
        ph_round(&c0, &c1, &c2, &c3, k0 + 9 * PH_W0, k1 + 9 * PH_W1);
        c[0][l] = c0; c[1][l] = c1; c[2][l] = c2; c[3][l] = c3;
    }
    #pragma omp simd
    for (int l = 0; l < PH_LANES; l++) {
        mask[4 * l + 0] = ph_uniform(c[0][l]) >= p;
        mask[4 * l + 1] = ph_uniform(c[1][l]) >= p;
        mask[4 * l + 2] = ph_uniform(c[2][l]) >= p;
        mask[4 * l + 3] = ph_uniform(c[3][l]) >= p;
    }
}

#if PH_X86
#define PH_AVX512 __attribute__((target("avx512f")))
#define PH_AVX2 __attribute__((target("avx2")))
#define PH_INLINE static inline __attribute__((always_inline))

/* hi and lo words of c * m in every 32-bit lane: one vpmuludq multiplies the even lanes,
 * another the odd lanes shifted down; masked swaps of neighbouring words put the halves
 * back in lane order. */
PH_AVX512 PH_INLINE __m512i ph_mul512(__m512i c, __m512i m, __m512i *lo) {
    __m512i ev = _mm512_mul_epu32(c, m), od = _mm512_mul_epu32(_mm512_srli_epi64(c, 32), m);
    *lo = _mm512_mask_shuffle_epi32(ev, 0xAAAA, od, _MM_PERM_CDAB);
    return _mm512_mask_shuffle_epi32(od, 0x5555, ev, _MM_PERM_CDAB);
}

/* The AVX-512 pass over G groups (1 or 2, a constant at each call; two independent chains
 * hide the multiply latency), one register per counter word and group. The four keep
 * bytes of a block are packed into its lane (byte w from word w; x86 is little-endian). */
PH_AVX512 PH_INLINE void ph_pass512_g(uint8_t *mask, const ph_first *f, uint32_t k0,
                                      uint32_t k1, float p, int G) {
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i m0 = _mm512_set1_epi32((int)PH_M0), m1 = _mm512_set1_epi32((int)PH_M1);
    __m512i c0[2], c1[2], c2[2], c3[2];
    for (int g = 0; g < G; g++) {
        __mmask16 wrapped = _mm512_cmpge_epi32_mask(lane, _mm512_set1_epi32(f[g].wrap));
        c0[g] = _mm512_mask_blend_epi32(wrapped, _mm512_set1_epi32((int)f[g].c0),
                                        _mm512_set1_epi32((int)f[g].c0_wrapped));
        c1[g] = _mm512_set1_epi32((int)f[g].c1);
        c2[g] = _mm512_xor_si512(_mm512_set1_epi32((int)f[g].c2),
                                 _mm512_add_epi32(_mm512_set1_epi32((int)f[g].blk_lo), lane));
        c3[g] = _mm512_set1_epi32((int)f[g].c3);
    }
    for (uint32_t r = 1; r < 10; r++) {
        const __m512i key0 = _mm512_set1_epi32((int)(k0 + r * PH_W0));
        const __m512i key1 = _mm512_set1_epi32((int)(k1 + r * PH_W1));
        for (int g = 0; g < G; g++) {
            __m512i lo0, lo1, hi0 = ph_mul512(c0[g], m0, &lo0), hi1 = ph_mul512(c2[g], m1, &lo1);
            c0[g] = _mm512_xor_si512(_mm512_xor_si512(hi1, c1[g]), key0);
            c2[g] = _mm512_xor_si512(_mm512_xor_si512(hi0, c3[g]), key1);
            c1[g] = lo1; c3[g] = lo0;
        }
    }
    const __m512 scale = _mm512_set1_ps(1.0f / 16777216.0f), pv = _mm512_set1_ps(p);
    for (int g = 0; g < G; g++) {
        const __m512i word[4] = {c0[g], c1[g], c2[g], c3[g]};
        __m512i out = _mm512_setzero_si512();
        for (int w = 0; w < 4; w++) {
            __m512 u = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(word[w], 8)), scale);
            __mmask16 keep = _mm512_cmp_ps_mask(u, pv, _CMP_GE_OQ);  /* false for NaN, as >= */
            out = _mm512_or_si512(out, _mm512_maskz_mov_epi32(keep, _mm512_set1_epi32(1 << (8 * w))));
        }
        _mm512_storeu_si512(mask + 4 * PH_LANES * g, out);
    }
}

PH_AVX512 static void ph_pass512(uint8_t *mask, const ph_first *f, int groups, uint32_t k0,
                                 uint32_t k1, float p) {
    if (groups == 2) ph_pass512_g(mask, f, k0, k1, p, 2);
    else ph_pass512_g(mask, f, k0, k1, p, 1);
}

PH_AVX2 PH_INLINE __m256i ph_mul256(__m256i c, __m256i m, __m256i *lo) {
    __m256i ev = _mm256_mul_epu32(c, m), od = _mm256_mul_epu32(_mm256_srli_epi64(c, 32), m);
    *lo = _mm256_blend_epi32(ev, _mm256_slli_epi64(od, 32), 0xAA);
    return _mm256_blend_epi32(_mm256_srli_epi64(ev, 32), od, 0xAA);
}

/* The AVX2 pass over lanes 0 .. 8*H-1 of a group (H = 1 or 2, a constant at each call),
 * H registers per counter word, the keep bytes packed as in ph_pass512_g. */
PH_AVX2 PH_INLINE void ph_pass256_h(uint8_t *mask, ph_first f, uint32_t k0, uint32_t k1,
                                    float p, int H) {
    const __m256i m0 = _mm256_set1_epi32((int)PH_M0), m1 = _mm256_set1_epi32((int)PH_M1);
    __m256i c0[2], c1[2], c2[2], c3[2];
    for (int h = 0; h < H; h++) {
        __m256i lane = _mm256_add_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                        _mm256_set1_epi32(8 * h));
        __m256i wrapped = _mm256_cmpgt_epi32(lane, _mm256_set1_epi32(f.wrap - 1));
        c0[h] = _mm256_blendv_epi8(_mm256_set1_epi32((int)f.c0),
                                   _mm256_set1_epi32((int)f.c0_wrapped), wrapped);
        c1[h] = _mm256_set1_epi32((int)f.c1);
        c2[h] = _mm256_xor_si256(_mm256_set1_epi32((int)f.c2),
                                 _mm256_add_epi32(_mm256_set1_epi32((int)f.blk_lo), lane));
        c3[h] = _mm256_set1_epi32((int)f.c3);
    }
    for (uint32_t r = 1; r < 10; r++) {
        const __m256i key0 = _mm256_set1_epi32((int)(k0 + r * PH_W0));
        const __m256i key1 = _mm256_set1_epi32((int)(k1 + r * PH_W1));
        for (int h = 0; h < H; h++) {
            __m256i lo0, lo1, hi0 = ph_mul256(c0[h], m0, &lo0), hi1 = ph_mul256(c2[h], m1, &lo1);
            c0[h] = _mm256_xor_si256(_mm256_xor_si256(hi1, c1[h]), key0);
            c2[h] = _mm256_xor_si256(_mm256_xor_si256(hi0, c3[h]), key1);
            c1[h] = lo1; c3[h] = lo0;
        }
    }
    const __m256 scale = _mm256_set1_ps(1.0f / 16777216.0f), pv = _mm256_set1_ps(p);
    for (int h = 0; h < H; h++) {
        const __m256i word[4] = {c0[h], c1[h], c2[h], c3[h]};
        __m256i out = _mm256_setzero_si256();
        for (int w = 0; w < 4; w++) {
            __m256 u = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(word[w], 8)), scale);
            __m256i keep = _mm256_castps_si256(_mm256_cmp_ps(u, pv, _CMP_GE_OQ));
            out = _mm256_or_si256(out, _mm256_and_si256(keep, _mm256_set1_epi32(1 << (8 * w))));
        }
        _mm256_storeu_si256((__m256i *)(mask + 32 * h), out);
    }
}

PH_AVX2 static void ph_pass256(uint8_t *mask, ph_first f, int lanes, uint32_t k0, uint32_t k1,
                               float p) {
    if (lanes > PH_LANES / 2) ph_pass256_h(mask, f, k0, k1, p, 2);
    else ph_pass256_h(mask, f, k0, k1, p, 1);
}
#endif

int ag_rng_pass_supported(int pass) {
    if (pass == AG_RNG_PASS_PORTABLE) return 1;
#if PH_X86
    if (pass == AG_RNG_PASS_AVX2) return __builtin_cpu_supports("avx2");
    if (pass == AG_RNG_PASS_AVX512) return __builtin_cpu_supports("avx512f");
#endif
    return 0;
}

/* Blocks blk0 .. blk0+lanes-1 one at a time through ag_philox, the keep bytes as in the
 * passes: the portable tail of a few blocks, where a whole group would cost more. */
static void ph_blocks(uint8_t *mask, int lanes, uint32_t k0, uint32_t k1, uint64_t a,
                      uint32_t b, uint64_t blk0, float p) {
    const uint32_t key[2] = {k0, k1};
    for (int l = 0; l < lanes; l++) {
        uint64_t blk = blk0 + (uint64_t)l;
        uint32_t ctr[4] = {(uint32_t)a, (uint32_t)(a >> 32) ^ ((uint32_t)(blk >> 32) << 16), b,
                           (uint32_t)blk};
        uint32_t r[4];
        ag_philox(key, ctr, r);
        for (int w = 0; w < 4; w++) mask[4 * l + w] = ph_uniform(r[w]) >= p;
    }
}

/* One pass over `lanes` blocks from blk0 on (2 * PH_LANES, PH_LANES, or fewer for a tail),
 * the keep bytes of their 4 * lanes elements from mask on. A tail pass may do more blocks
 * than asked, up to a whole group (mask then has room for it): the AVX-512 pass always does
 * a group (one register per word costs less there than the AVX2 pass's narrower one), the
 * AVX2 pass half a group or a group, the portable one the blocks asked or a group. */
static void ph_pass(int pass, uint8_t *mask, int lanes, uint32_t k0, uint32_t k1, uint64_t a,
                    uint32_t b, uint64_t blk0, float p) {
    ph_first f[2] = {ph_first_round(k0, k1, a, b, blk0)};
#if PH_X86
    if (pass == AG_RNG_PASS_AVX512) {
        if (lanes > PH_LANES) f[1] = ph_first_round(k0, k1, a, b, blk0 + PH_LANES);
        ph_pass512(mask, f, lanes > PH_LANES ? 2 : 1, k0, k1, p);
        return;
    }
    if (pass == AG_RNG_PASS_AVX2) { ph_pass256(mask, f[0], lanes, k0, k1, p); return; }
#else
    (void)pass;
#endif
    if (lanes <= PH_LANES / 2) ph_blocks(mask, lanes, k0, k1, a, b, blk0, p);
    else ph_pass_c(mask, f[0], k0, k1, p);
}

void ag_rng_keep_mask_pass(int pass, uint8_t *mask, size_t n, uint64_t seed, uint32_t stream,
                           uint64_t a, uint32_t b, uint64_t idx0, float p) {
    const uint32_t k0 = (uint32_t)seed ^ (stream * 0x85EBCA6Bu), k1 = (uint32_t)(seed >> 32) + stream;
    size_t j = 0;
    /* A start inside a block: the rest of that block from the scalar generator. */
    if (n > 0 && (idx0 & 3)) {
        uint64_t blk = idx0 >> 2;
        uint32_t key[2] = {k0, k1}, r[4];
        uint32_t ctr[4] = {(uint32_t)a, (uint32_t)(a >> 32) ^ ((uint32_t)(blk >> 32) << 16), b,
                           (uint32_t)blk};
        ag_philox(key, ctr, r);
        for (unsigned w = (unsigned)(idx0 & 3); w < 4 && j < n; w++, j++)
            mask[j] = ph_uniform(r[w]) >= p;
    }
    const int wide = pass == AG_RNG_PASS_AVX512 ? 2 * PH_LANES : PH_LANES;
    for (; n - j >= 4 * (size_t)wide; j += 4 * (size_t)wide)
        ph_pass(pass, mask + j, wide, k0, k1, a, b, (idx0 + j) >> 2, p);
    for (; n - j >= 4 * PH_LANES; j += 4 * PH_LANES)
        ph_pass(pass, mask + j, PH_LANES, k0, k1, a, b, (idx0 + j) >> 2, p);
    /* The tail, ceil(rest / 4) blocks, through scratch (short attention rows: the rows of a
     * batch padded to T tokens have T keys). */
    size_t rest = n - j;
    if (rest == 0) return;
    uint8_t tail[4 * PH_LANES];
    int lanes = (int)(rest + 3) / 4;
    ph_pass(pass, tail, lanes, k0, k1, a, b, (idx0 + j) >> 2, p);
    memcpy(mask + j, tail, rest);
}

void ag_rng_keep_mask(uint8_t *mask, size_t n, uint64_t seed, uint32_t stream, uint64_t a,
                      uint32_t b, uint64_t idx0, float p) {
    int pass = ag_rng_pass_supported(AG_RNG_PASS_AVX512) ? AG_RNG_PASS_AVX512
            : ag_rng_pass_supported(AG_RNG_PASS_AVX2)   ? AG_RNG_PASS_AVX2
                                                        : AG_RNG_PASS_PORTABLE;
    ag_rng_keep_mask_pass(pass, mask, n, seed, stream, a, b, idx0, p);
}

float ag_rng_normal(uint64_t seed, uint32_t stream, uint64_t a, uint32_t b, uint64_t index) {
    double u1 = ((double)(ag_rng_u32(seed, stream, a, b, 2 * index) >> 8) + 0.5) / 16777216.0;
    double u2 = (double)(ag_rng_u32(seed, stream, a, b, 2 * index + 1) >> 8) / 16777216.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}
