/* The CPU table's vectorised row kernels against double-precision references:
 *   - attention softmax (its own exp): scores made exact (one head of size 1, q a power of
 *     two), so each probability can be held to a few ulp of the true softmax of the float
 *     differences the kernel computes; row lengths around the vector widths; padding,
 *     causal and fully masked rows; masked keys exactly 0; a NaN score makes its row NaN.
 *   - LayerNorm forward: mean and rstd within 2 ulp of double two-pass statistics (also for
 *     rows far from zero mean), outputs within a few ulp of the formula on them.
 *   - add + LayerNorm (the fused entry): bit for bit the composition, also in place.
 *   - dropout keep masks (ag_rng_keep_mask), through every pass this CPU has: each byte the
 *     scalar draw's keep test, ag_rng_uniform(...) >= p, for starts inside a block, short
 *     and ragged lengths, block numbers whose low word wraps, odd p (0, 1, NaN, 2^-24
 *     steps); nothing written past the end. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/ops.h"
#include "nn/rng.h"
#include "tests/support/check.h"

static const ag_ops *ops = &ag_ops_cpu;

/* Deterministic uniform in [lo, hi). */
static float unif(uint32_t tag, uint64_t i, float lo, float hi) {
    return lo + (hi - lo) * ag_rng_uniform(5, 11, tag, 0, i);
}

/* Reference softmax of one row of float scores (masked keys excluded; all masked: the
 * uniform row the additive -FLT_MAX mask gives). The differences to the maximum are
 * rounded to float as the kernel rounds them; the rest is double. */
static void ref_softmax(double *p, const float *s, const int *masked, int Tk) {
    int any = 0;
    float mx = -INFINITY;
    for (int i = 0; i < Tk; i++)
        if (!masked[i]) { any = 1; if (s[i] > mx) mx = s[i]; }
    if (!any) { for (int i = 0; i < Tk; i++) p[i] = 1.0 / Tk; return; }
    double sum = 0.0;
    for (int i = 0; i < Tk; i++) {
        p[i] = masked[i] ? 0.0 : exp((double)(s[i] - mx));
        sum += p[i];
    }
    for (int i = 0; i < Tk; i++) p[i] /= sum;
}

/* One head of size 1: score[tq][tk] = q[tq] * k[tk] exactly (q a power of two). */
static void softmax_case(int Tk, float spread, int causal, int pad_every, int nan_key) {
    const int B = 2, Tq = causal ? Tk : 3;
    float *q = malloc((size_t)B * Tq * sizeof *q), *k = malloc((size_t)B * Tk * sizeof *k);
    float *v = calloc((size_t)B * Tk, sizeof *v), *out = malloc((size_t)B * Tq * sizeof *out);
    float *probs = malloc((size_t)B * Tq * Tk * sizeof *probs), *km = malloc((size_t)B * Tk * sizeof *km);
    float *want = malloc((size_t)Tq * Tk * sizeof *want), *s = malloc((size_t)Tk * sizeof *s);
    double *p = malloc((size_t)Tk * sizeof *p);
    int *masked = malloc((size_t)Tk * sizeof *masked);
    for (int i = 0; i < B * Tq; i++) q[i] = ldexpf(1.0f, i % 3 - 1);  /* 0.5, 1, 2 */
    for (int i = 0; i < B * Tk; i++) k[i] = unif((uint32_t)Tk, (uint64_t)i, -spread, spread);
    if (nan_key >= 0) k[nan_key] = NAN;
    /* batch row 0: pad_every-th keys padded (0: none); batch row 1: all keys padded */
    for (int t = 0; t < Tk; t++) {
        km[t] = pad_every && t % pad_every == pad_every - 1 ? 0.0f : 1.0f;
        km[Tk + t] = 0.0f;
    }
    ops->attention_forward(out, probs, NULL, q, k, v, km, causal, B, Tq, Tk, 1, 1, NULL, 0, 0, 0.0f);
    char what[160];
    for (int b = 0; b < B; b++) {
        int exact_zero = 1, nan_row = 1;
        for (int tq = 0; tq < Tq; tq++) {
            for (int t = 0; t < Tk; t++) {
                s[t] = q[b * Tq + tq] * k[b * Tk + t];
                masked[t] = km[b * Tk + t] == 0.0f || (causal && t > tq);
            }
            ref_softmax(p, s, masked, Tk);
            int all_masked = 1;
            for (int t = 0; t < Tk; t++) all_masked &= masked[t];
            const float *got = probs + ((size_t)b * Tq + tq) * Tk;
            for (int t = 0; t < Tk; t++) {
                want[(size_t)tq * Tk + t] = (float)p[t];
                if (masked[t] && !all_masked && got[t] != 0.0f) exact_zero = 0;
                if (!isnan(got[t])) nan_row = 0;
            }
        }
        const float *got = probs + (size_t)b * Tq * Tk;
        if (nan_key >= 0 && b == 0) {
            snprintf(what, sizeof what, "softmax Tk %d: a NaN score makes its rows NaN", Tk);
            check_true(what, nan_row);
            continue;
        }
        snprintf(what, sizeof what, "softmax Tk %d spread %g causal %d pad %d batch row %d: within 4 ulp",
                 Tk, (double)spread, causal, pad_every, b);
        check_close(what, got, want, (size_t)Tq * Tk, 4.0 * FLT_EPSILON, 1e-37);
        snprintf(what, sizeof what, "softmax Tk %d causal %d pad %d batch row %d: masked keys exactly 0",
                 Tk, causal, pad_every, b);
        check_true(what, exact_zero);
    }
    free(q); free(k); free(v); free(out); free(probs); free(km); free(want); free(s); free(p);
    free(masked);
}

static void layernorm_case(int N, int C, float offset, float scale) {
    size_t n = (size_t)N * C;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y), *want = malloc(n * sizeof *want);
    float *w = malloc((size_t)C * sizeof *w), *b = malloc((size_t)C * sizeof *b);
    float *mean = malloc((size_t)N * sizeof *mean), *rstd = malloc((size_t)N * sizeof *rstd);
    float *wm = malloc((size_t)N * sizeof *wm), *wr = malloc((size_t)N * sizeof *wr);
    const float eps = 1e-12f;
    for (size_t i = 0; i < n; i++) x[i] = offset + unif(3, i, -scale, scale);
    for (int c = 0; c < C; c++) { w[c] = unif(4, (uint64_t)c, 0.5f, 1.5f); b[c] = unif(5, (uint64_t)c, -1, 1); }
    ops->layernorm_forward(y, mean, rstd, x, w, b, N, C, eps);
    for (int r = 0; r < N; r++) {
        const float *xr = x + (size_t)r * C;
        double m = 0.0, v = 0.0;
        for (int c = 0; c < C; c++) m += xr[c];
        m /= C;
        for (int c = 0; c < C; c++) v += (xr[c] - m) * (xr[c] - m);
        v /= C;
        wm[r] = (float)m;
        wr[r] = (float)(1.0 / sqrt(v + (double)eps));
        /* the output from the kernel's own statistics: accuracy of the final loop alone */
        for (int c = 0; c < C; c++)
            want[(size_t)r * C + c] = (float)((double)(xr[c] - mean[r]) * rstd[r] * w[c] + b[c]);
    }
    char what[128];
    snprintf(what, sizeof what, "layernorm N %d C %d offset %g: mean", N, C, (double)offset);
    check_close(what, mean, wm, (size_t)N, 2.0 * FLT_EPSILON, 1e-30);
    snprintf(what, sizeof what, "layernorm N %d C %d offset %g: rstd", N, C, (double)offset);
    check_close(what, rstd, wr, (size_t)N, 2.0 * FLT_EPSILON, 0.0);
    snprintf(what, sizeof what, "layernorm N %d C %d offset %g: output", N, C, (double)offset);
    check_close(what, y, want, n, 4.0 * FLT_EPSILON, 4.0 * FLT_EPSILON);

    /* add + LayerNorm: the composition bit for bit, out of place and in place (res = x). */
    float *r = malloc(n * sizeof *r), *res = malloc(n * sizeof *res), *y2 = malloc(n * sizeof *y2);
    float *res2 = malloc(n * sizeof *res2), *m2 = malloc((size_t)N * sizeof *m2), *r2 = malloc((size_t)N * sizeof *r2);
    for (size_t i = 0; i < n; i++) r[i] = unif(6, i, -2, 2);
    ops->add(res, x, r, n);
    ops->layernorm_forward(y, mean, rstd, res, w, b, N, C, eps);
    ops->add_layernorm_forward(res2, y2, m2, r2, x, r, w, b, N, C, eps);
    snprintf(what, sizeof what, "add+layernorm N %d C %d: equals add then layernorm bit for bit", N, C);
    check_true(what, !memcmp(res, res2, n * sizeof *res) && !memcmp(y, y2, n * sizeof *y) &&
                     !memcmp(mean, m2, (size_t)N * sizeof *m2) && !memcmp(rstd, r2, (size_t)N * sizeof *r2));
    memcpy(res2, x, n * sizeof *x);
    ops->add_layernorm_forward(res2, y2, m2, r2, res2, r, w, b, N, C, eps);
    snprintf(what, sizeof what, "add+layernorm N %d C %d: in place (res = x) the same", N, C);
    check_true(what, !memcmp(res, res2, n * sizeof *res) && !memcmp(y, y2, n * sizeof *y));
    free(x); free(y); free(want); free(w); free(b); free(mean); free(rstd); free(wm); free(wr);
    free(r); free(res); free(y2); free(res2); free(m2); free(r2);
}

/* One keep-mask case through `pass`: returns the first wrong index, n when all agree, or
 * n + 1 when a byte past the end was written. */
static size_t keep_mask_case(int pass, uint8_t *mask, size_t n, uint64_t seed, uint32_t stream,
                             uint64_t a, uint32_t b, uint64_t idx0, float p) {
    const size_t guard = 80;
    memset(mask, 0xA5, n + guard);
    ag_rng_keep_mask_pass(pass, mask, n, seed, stream, a, b, idx0, p);
    for (size_t j = 0; j < n; j++)
        if (mask[j] != (ag_rng_uniform(seed, stream, a, b, idx0 + j) >= p)) return j;
    for (size_t j = n; j < n + guard; j++)
        if (mask[j] != 0xA5) return n + 1;
    return n;
}

static void keep_mask_cases(void) {
    static const char *names[] = {"portable", "AVX2", "AVX-512"};
    const int passes[] = {AG_RNG_PASS_PORTABLE, AG_RNG_PASS_AVX2, AG_RNG_PASS_AVX512};
    /* (seed, stream, a, b): a's high word and a block high word both reach counter word 1 */
    const struct { uint64_t seed; uint32_t stream; uint64_t a; uint32_t b; } keys[] = {
        {0, AG_RNG_DROPOUT, 0, 0},
        {42, AG_RNG_DROPOUT, 12345, 17},
        {0x9E3779B97F4A7C15ull, AG_RNG_DROPOUT, ((uint64_t)7 << 32) | 5, 0xFFFFFFFFu},
        {~0ull, AG_RNG_NOISE, ~0ull, 3},
    };
    /* starts: block-aligned, inside a block, an attention row, block numbers whose low word
     * wraps within the first groups (index 2^34 is block 2^32), a high block word */
    const uint64_t starts[] = {0, 1, 2, 3, 4097, (3ull << 40) | (17ull << 20),
                               (1ull << 34) - 4 * 5, (1ull << 34) - 4 * 20 + 3,
                               (1ull << 34) - 4 * 40 - 2, (5ull << 40) + 6};
    const float ps[] = {0.1f, 0.5f, 0.0f, 1.0f, 0x1p-24f, 1.0f - 0x1p-24f, 0x1.99999ap-4f, NAN,
                        -1.0f};
    const size_t lens[] = {0, 1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 20, 31, 32, 33, 63, 64, 65, 100,
                           127, 128, 129, 191, 192, 200, 257, 1000};
    uint8_t *mask = malloc(1000 + 80);
    for (int pi = 0; pi < 3; pi++) {
        if (!ag_rng_pass_supported(passes[pi])) {
            printf("keep mask: this CPU has no %s pass, not checked\n", names[pi]);
            continue;
        }
        int cases = 0, failed = 0;
        for (size_t k = 0; k < sizeof keys / sizeof *keys; k++)
            for (size_t s = 0; s < sizeof starts / sizeof *starts; s++)
                for (size_t q = 0; q < sizeof ps / sizeof *ps; q++)
                    for (size_t l = 0; l < sizeof lens / sizeof *lens; l++) {
                        size_t n = lens[l], bad = keep_mask_case(passes[pi], mask, n, keys[k].seed,
                                                                 keys[k].stream, keys[k].a, keys[k].b,
                                                                 starts[s], ps[q]);
                        cases++;
                        if (bad == n || ++failed > 5) continue;  /* the first few in full */
                        char what[200];
                        snprintf(what, sizeof what, "keep mask %s, key %zu, start %llu, p %g, n %zu: %s %zu",
                                 names[pi], k, (unsigned long long)starts[s], (double)ps[q], n,
                                 bad > n ? "wrote past the end," : "differs from ag_rng_uniform at", bad);
                        check_true(what, 0);
                    }
        /* p equal to a draw (element 37 of the case): that element is kept, as u >= p */
        for (size_t k = 0; k < sizeof keys / sizeof *keys; k++)
            for (size_t s = 0; s < sizeof starts / sizeof *starts; s++)
                for (size_t n = 40; n <= 100; n += 60) {
                    float p = ag_rng_uniform(keys[k].seed, keys[k].stream, keys[k].a, keys[k].b,
                                             starts[s] + 37);
                    size_t bad = keep_mask_case(passes[pi], mask, n, keys[k].seed, keys[k].stream,
                                                keys[k].a, keys[k].b, starts[s], p);
                    cases++;
                    if (bad == n || ++failed > 5) continue;
                    char what[200];
                    snprintf(what, sizeof what, "keep mask %s, key %zu, start %llu, p a draw, n %zu: "
                             "wrong at %zu", names[pi], k, (unsigned long long)starts[s], n, bad);
                    check_true(what, 0);
                }
        char what[160];
        snprintf(what, sizeof what, "keep mask %s pass: %d cases equal ag_rng_uniform >= p, none "
                 "written past the end (%d failed)", names[pi], cases, failed);
        check_true(what, failed == 0);
    }
    free(mask);
}

int main(void) {
    keep_mask_cases();
    /* row lengths around the 4/8/16-lane widths; spreads up to differences far below -87 */
    const int lens[] = {1, 2, 7, 8, 15, 16, 17, 33, 64, 100, 128, 300};
    const float spreads[] = {0.5f, 8.0f, 40.0f, 200.0f};
    for (size_t i = 0; i < sizeof lens / sizeof *lens; i++)
        for (size_t j = 0; j < sizeof spreads / sizeof *spreads; j++) {
            softmax_case(lens[i], spreads[j], 0, 0, -1);
            softmax_case(lens[i], spreads[j], 0, 3, -1);
            softmax_case(lens[i], spreads[j], 1, 4, -1);
        }
    softmax_case(33, 8.0f, 0, 0, 5);
    softmax_case(33, 8.0f, 1, 5, 0);
    const int widths[] = {1, 5, 16, 31, 384, 1000};
    for (size_t i = 0; i < sizeof widths / sizeof *widths; i++) {
        layernorm_case(7, widths[i], 0.0f, 3.0f);
        layernorm_case(7, widths[i], 1000.0f, 0.01f);
        layernorm_case(7, widths[i], -50.0f, 200.0f);
    }
    return check_finish();
}
