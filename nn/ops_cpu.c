/* The CPU implementation of the op interface (nn/ops.h): OpenBLAS sgemm for the linear
 * layers, OpenMP loops for everything elementwise and for the attention core. It is the
 * oracle the CUDA table is tested against, so clarity wins over the last few percent. */
#include "nn/ops.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/blas_env.h"
#include "nn/rng.h"
#ifdef _OPENMP
#include <omp.h>
#endif

/* The vectorised kernels (LayerNorm rows, softmax rows, GELU) are compiled for AVX-512,
 * AVX2+FMA and the baseline, picked at load time, since the default build is not
 * -march=native. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define AG_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define AG_SIMD_CLONES
#endif

/* Below this many elements a parallel region costs more than it saves. */
#define PAR_MIN 16384
/* Channel block for column reductions (bias/LayerNorm gradients): rows are walked in
 * order while each thread owns a block of columns, so no two threads write one sum. */
#define COL_BLOCK 64

/* ---------------------------------------------------------------- memory */

static void *cpu_alloc(size_t bytes) {
    if (bytes == 0) return NULL;
    return aligned_alloc(64, (bytes + 63) & ~(size_t)63);
}
static void cpu_free(void *ptr) { free(ptr); }
static void cpu_zero(float *x, size_t n) { if (n) memset(x, 0, n * sizeof *x); }
static void cpu_copy(float *dst, const float *src, size_t n) {
    if (n && dst != src) memcpy(dst, src, n * sizeof *dst);
}
static void cpu_upload(void *dst, const void *src, size_t bytes) { if (bytes) memcpy(dst, src, bytes); }
static void cpu_download(void *dst, const void *src, size_t bytes) { if (bytes) memcpy(dst, src, bytes); }
static void cpu_sync(void) {}

/* ---------------------------------------------------------------- elementwise */

static void cpu_add(float *out, const float *a, const float *b, size_t n) {
    #pragma omp parallel for if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

static void cpu_acc(float *dst, const float *src, size_t n) {
    #pragma omp parallel for if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) dst[i] += src[i];
}

static void cpu_scale(float *x, float alpha, size_t n) {
    #pragma omp parallel for if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) x[i] *= alpha;
}

static void cpu_copy2d(float *dst, size_t ldd, const float *src, size_t lds, size_t rows,
                       size_t cols) {
    for (size_t r = 0; r < rows; r++) memcpy(dst + r * ldd, src + r * lds, cols * sizeof *dst);
}

static void cpu_acc2d(float *dst, size_t ldd, const float *src, size_t lds, size_t rows,
                      size_t cols) {
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < cols; c++) dst[r * ldd + c] += src[r * lds + c];
}

/* Column sums of one block of COL_BLOCK columns (w of them) of x[N,C], in double, each
 * column summed in row order; the vector lanes run across columns, so the sums are the
 * scalar loop's bit for bit. */
AG_SIMD_CLONES static void col_block_sum(double *acc, const float *x, int N, int C, int w) {
    for (int c = 0; c < COL_BLOCK; c++) acc[c] = 0.0;
    if (w == COL_BLOCK) {
        for (int n = 0; n < N; n++) {
            const float *row = x + (size_t)n * C;
            #pragma omp simd
            for (int c = 0; c < COL_BLOCK; c++) acc[c] += row[c];
        }
    } else {
        for (int n = 0; n < N; n++) {
            const float *row = x + (size_t)n * C;
            for (int c = 0; c < w; c++) acc[c] += row[c];
        }
    }
}

/* Column sums of x[N,C] added into sum[C]. */
static void col_sum_acc(float *sum, const float *x, int N, int C) {
    int nblk = (C + COL_BLOCK - 1) / COL_BLOCK;
    #pragma omp parallel for if ((size_t)N * C > PAR_MIN)
    for (int blk = 0; blk < nblk; blk++) {
        int c0 = blk * COL_BLOCK, c1 = c0 + COL_BLOCK < C ? c0 + COL_BLOCK : C;
        double acc[COL_BLOCK];
        col_block_sum(acc, x + c0, N, C, c1 - c0);
        for (int c = c0; c < c1; c++) sum[c] += (float)acc[c - c0];
    }
}

/* ---------------------------------------------------------------- linear */

static void cpu_linear_forward(float *out, const float *in, const float *W, const float *b,
                               int N, int IC, int OC) {
    if (N <= 0 || OC <= 0) return;
    float beta = 0.0f;
    if (b) {
        #pragma omp parallel for if ((size_t)N * OC > PAR_MIN)
        for (int n = 0; n < N; n++) memcpy(out + (size_t)n * OC, b, (size_t)OC * sizeof *out);
        beta = 1.0f;
    }
    if (IC <= 0) { if (!b) memset(out, 0, (size_t)N * OC * sizeof *out); return; }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, IC, 1.0f, in, IC, W, IC, beta,
                out, OC);
}

static void cpu_linear_backward(float *din, float *dW, float *db, const float *dout,
                                const float *in, const float *W, int N, int IC, int OC) {
    if (N <= 0 || OC <= 0 || IC <= 0) return;
    if (din)  /* din[N,IC] += dout[N,OC] . W[OC,IC] */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, IC, OC, 1.0f, dout, OC, W, IC,
                    1.0f, din, IC);
    if (dW)   /* dW[OC,IC] += dout^T . in */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, IC, N, 1.0f, dout, OC, in, IC,
                    1.0f, dW, IC);
    if (db) col_sum_acc(db, dout, N, OC);
}

/* ---------------------------------------------------------------- embeddings */

static void cpu_embedding_forward(float *out, const int32_t *ids, const int32_t *types,
                                  const float *wte, const float *wpe, const float *wtt,
                                  int B, int T, int C) {
    #pragma omp parallel for if ((size_t)B * T * C > PAR_MIN)
    for (int bt = 0; bt < B * T; bt++) {
        int t = bt % T;
        const float *we = wte + (size_t)ids[bt] * C, *pe = wpe + (size_t)t * C;
        const float *te = wtt ? wtt + (size_t)(types ? types[bt] : 0) * C : NULL;
        float *o = out + (size_t)bt * C;
        /* Same association order as HF: (word + type) + position. */
        if (te) for (int c = 0; c < C; c++) o[c] = (we[c] + te[c]) + pe[c];
        else    for (int c = 0; c < C; c++) o[c] = we[c] + pe[c];
    }
}

static void cpu_embedding_backward(float *dwte, float *dwpe, float *dwtt, const float *dout,
                                   const int32_t *ids, const int32_t *types, int B, int T,
                                   int C, int pad_id) {
    /* Word and type rows can repeat within a batch, so their scatter stays serial over
     * tokens (it is a tiny fraction of a step); positions are distinct per t. */
    if (dwpe) {
        #pragma omp parallel for if ((size_t)B * T * C > PAR_MIN)
        for (int t = 0; t < T; t++)
            for (int b = 0; b < B; b++) {
                const float *g = dout + ((size_t)b * T + t) * C;
                float *d = dwpe + (size_t)t * C;
                for (int c = 0; c < C; c++) d[c] += g[c];
            }
    }
    for (int bt = 0; bt < B * T; bt++) {
        const float *g = dout + (size_t)bt * C;
        if (dwte && ids[bt] != pad_id) {
            float *d = dwte + (size_t)ids[bt] * C;
            for (int c = 0; c < C; c++) d[c] += g[c];
        }
        if (dwtt) {
            float *d = dwtt + (size_t)(types ? types[bt] : 0) * C;
            for (int c = 0; c < C; c++) d[c] += g[c];
        }
    }
}

/* ---------------------------------------------------------------- layernorm */

/* LayerNorm of one row: two passes in double (the mean, then the biased variance around
 * it), vectorised (double lanes; only the order of the sums differs from a serial loop).
 * Compiled per ISA like the GELU kernels below. */
AG_SIMD_CLONES
static void layernorm_row(float *y, float *mean, float *rstd, const float *x, const float *w,
                          const float *b, int C, float eps) {
    double m = 0.0, v = 0.0;
    #pragma omp simd reduction(+:m)
    for (int c = 0; c < C; c++) m += x[c];
    m /= C;
    #pragma omp simd reduction(+:v)
    for (int c = 0; c < C; c++) { double d = x[c] - m; v += d * d; }
    v /= C;
    float mf = (float)m, rs = (float)(1.0 / sqrt(v + (double)eps));
    #pragma omp simd
    for (int c = 0; c < C; c++) y[c] = (x[c] - mf) * rs * w[c] + b[c];
    *mean = mf;
    *rstd = rs;
}

static void cpu_layernorm_forward(float *out, float *mean, float *rstd, const float *in,
                                  const float *w, const float *b, int N, int C, float eps) {
    #pragma omp parallel for if ((size_t)N * C > PAR_MIN)
    for (int n = 0; n < N; n++)
        layernorm_row(out + (size_t)n * C, mean + n, rstd + n, in + (size_t)n * C, w, b, C, eps);
}

/* res = x + r, then out = LayerNorm(res), row by row while the row is in cache: the same
 * additions and the same row kernel as cpu_add then cpu_layernorm_forward, so the result is
 * the composition bit for bit (the CPU table's fused entry, nn/ops_cpu_fused.c). res may
 * alias x or r. */
void ag_cpu_add_layernorm_rows(float *res, float *out, float *mean, float *rstd, const float *x,
                               const float *r, const float *w, const float *b, int N, int C,
                               float eps);
void ag_cpu_add_layernorm_rows(float *res, float *out, float *mean, float *rstd, const float *x,
                               const float *r, const float *w, const float *b, int N, int C,
                               float eps) {
    #pragma omp parallel for if ((size_t)N * C > PAR_MIN)
    for (int n = 0; n < N; n++) {
        size_t o = (size_t)n * C;
        #pragma omp simd
        for (int c = 0; c < C; c++) res[o + c] = x[o + c] + r[o + c];
        layernorm_row(out + o, mean + n, rstd + n, res + o, w, b, C, eps);
    }
}

static void cpu_layernorm_backward(float *din, float *dw, float *db, const float *dout,
                                   const float *in, const float *mean, const float *rstd,
                                   const float *w, int N, int C) {
    if (din) {
        #pragma omp parallel for if ((size_t)N * C > PAR_MIN)
        for (int n = 0; n < N; n++) {
            const float *x = in + (size_t)n * C, *g = dout + (size_t)n * C;
            float *d = din + (size_t)n * C;
            float m = mean[n], rs = rstd[n];
            /* din = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = g*w */
            double s1 = 0.0, s2 = 0.0;
            for (int c = 0; c < C; c++) {
                double dxh = (double)g[c] * w[c];
                s1 += dxh;
                s2 += dxh * ((x[c] - m) * rs);
            }
            float a1 = (float)(s1 / C), a2 = (float)(s2 / C);
            for (int c = 0; c < C; c++) {
                float xh = (x[c] - m) * rs;
                d[c] += rs * (g[c] * w[c] - a1 - xh * a2);
            }
        }
    }
    if (dw || db) {
        int nblk = (C + COL_BLOCK - 1) / COL_BLOCK;
        #pragma omp parallel for if ((size_t)N * C > PAR_MIN)
        for (int blk = 0; blk < nblk; blk++) {
            int c0 = blk * COL_BLOCK, c1 = c0 + COL_BLOCK < C ? c0 + COL_BLOCK : C;
            double aw[COL_BLOCK] = {0}, ab[COL_BLOCK] = {0};
            for (int n = 0; n < N; n++) {
                const float *x = in + (size_t)n * C, *g = dout + (size_t)n * C;
                float m = mean[n], rs = rstd[n];
                for (int c = c0; c < c1; c++) {
                    aw[c - c0] += (double)g[c] * ((x[c] - m) * rs);
                    ab[c - c0] += g[c];
                }
            }
            for (int c = c0; c < c1; c++) {
                if (dw) dw[c] += (float)aw[c - c0];
                if (db) db[c] += (float)ab[c - c0];
            }
        }
    }
}

/* ---------------------------------------------------------------- activations */

/* GELU's erf and exp, written so that the compiler vectorises the loops (glibc's erff and
 * expf are scalar calls, ~23% of labelling time before). erf: |x| < 1 an odd polynomial,
 * 1 <= |x| < 4 a degree-10 polynomial per unit interval (least-squares fits to erf on
 * Chebyshev nodes), 1 beyond (erfc(4) < 2e-8); measured against mpmath within 1.6e-7
 * absolute and 2.1e-7 relative (about 2 ulp; PyTorch's own vectorised erf, the
 * Abramowitz-Stegun 7.1.26 form, is within 1.5e-7 absolute). exp of x <= 0: Cody-Waite
 * reduction by ln 2 and a degree-7 Taylor polynomial, within ~2 ulp, arguments below -87
 * clamped (the result is then ~1e-38 instead of 0). NaN in gives NaN out of both GELU
 * directions, as before (through the factor x). Each kernel is compiled for AVX-512, AVX2+FMA and the baseline,
 * picked at load time (target_clones), since the default build is not -march=native. */
/* The interval selects below are if-converted into vector blends only when comparisons
 * may be assumed not to trap (no FP exceptions are ever inspected here). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("no-trapping-math")
#endif

static const float erf_c0[8] = {1.128379167e+00f, -3.761263855e-01f, 1.128378344e-01f,
                                 -2.686547551e-02f, 5.221138696e-03f, -8.485438917e-04f,
                                 1.127473793e-04f, -9.689741054e-06f};
/* [1,2), [2,3), [3,4) in powers of (|x| - 1.5), (|x| - 2.5), (|x| - 3.5). */
static const float erf_c1[11] = {9.661051465e-01f, 1.189302867e-01f, -1.783954315e-01f,
                                  1.387522068e-01f, -4.459896668e-02f, -1.487084248e-02f,
                                  1.932803578e-02f, -4.701163612e-03f, -2.377273045e-03f,
                                  1.540411505e-03f, -3.945150008e-05f};
static const float erf_c2[11] = {9.995930480e-01f, 2.178284318e-03f, -5.445711052e-03f,
                                  8.350082619e-03f, -8.622352840e-03f, 6.117499938e-03f,
                                  -2.798870104e-03f, 5.410771468e-04f, 2.636061594e-04f,
                                  -2.453949574e-04f, 6.832919110e-05f};
static const float erf_c3[11] = {9.999992569e-01f, 5.399429090e-06f, -1.889634473e-05f,
                                  4.229531723e-05f, -6.777083281e-05f, 8.212084865e-05f,
                                  -7.714571138e-05f, 5.814713710e-05f, -3.703743252e-05f,
                                  1.554409377e-05f, 0.0f};

static inline __attribute__((always_inline)) float erf_vec(float x) {
    float a = fabsf(x), z = a * a;
    const float *c = erf_c0;
    float s = a * (c[0] + z * (c[1] + z * (c[2] + z * (c[3] + z * (c[4] + z * (c[5] +
              z * (c[6] + z * c[7])))))));
    int k2 = a >= 2.0f, k3 = a >= 3.0f;
    float u = a - (k3 ? 3.5f : k2 ? 2.5f : 1.5f);
    /* the coefficient of u^j for this lane's interval */
#define ERF_C(j) (k3 ? erf_c3[j] : k2 ? erf_c2[j] : erf_c1[j])
    float l = ERF_C(10);
    l = l * u + ERF_C(9); l = l * u + ERF_C(8); l = l * u + ERF_C(7); l = l * u + ERF_C(6);
    l = l * u + ERF_C(5); l = l * u + ERF_C(4); l = l * u + ERF_C(3); l = l * u + ERF_C(2);
    l = l * u + ERF_C(1); l = l * u + ERF_C(0);
#undef ERF_C
    float r = a < 1.0f ? s : a < 4.0f ? l : 1.0f;
    return copysignf(r, x);  /* NaN in: +-1, and GELU's factor x makes the result NaN */
}

static inline __attribute__((always_inline)) float exp_neg_vec(float v) {
    v = v > -87.0f ? v : -87.0f;
    /* n = round(v / ln 2) by the 1.5 * 2^23 trick: no float-to-int conversion, which the
     * vectoriser cannot always pair with the loop's 64-bit index; n then sits in j's low
     * mantissa bits. */
    union { float f; int32_t i; } j = {.f = v * 1.44269504088896341f + 12582912.0f}, sc;
    float fn = j.f - 12582912.0f;
    float r = (v - fn * 0.693359375f) - fn * -2.12194440e-4f;
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 +
              r * (1.0f / 720 + r * (1.0f / 5040)))))));
    sc.i = (j.i - 0x4B400000 + 127) * (1 << 23);  /* 2^n */
    return p * sc.f;
}

/* exp of a softmax argument (a score minus its row's maximum, so <= 0): exp_neg_vec, but
 * exactly 0 below -87 (expf gives at most 1.7e-38 there, and 0 for the -FLT_MAX of a masked
 * key, which must stay an exact zero), and NaN kept. */
static inline __attribute__((always_inline)) float exp_softmax(float v) {
    float e = exp_neg_vec(v);
    return v < -87.0f ? 0.0f : v == v ? e : v;
}

/* Masked softmax of one score row in place (the attention forward): masked keys get one
 * additive -FLT_MAX, as HF's combined mask (adding it twice would overflow to -inf and a
 * fully masked row would be NaN); keys after `last` are masked by causality. The sum of the
 * exponentials is kept in double. */
#define SM_LANES 16
AG_SIMD_CLONES
static void softmax_row_kernel(float *pr, const float *key_mask_b, int last, int Tk) {
    if (key_mask_b) {
        #pragma omp simd
        for (int tk = 0; tk < Tk; tk++)
            pr[tk] = ((tk > last) | (key_mask_b[tk] == 0.0f)) ? pr[tk] + -FLT_MAX : pr[tk];
    } else {
        for (int tk = last + 1; tk < Tk; tk++) pr[tk] += -FLT_MAX;
    }
    /* The max and the sum run in SM_LANES independent lanes, folded as a tree at the end:
     * an OpenMP reduction clause ends in a serial fold of its lanes, which costs as much as
     * the vector loop itself on rows of a few dozen keys. */
    float m[SM_LANES];
    for (int l = 0; l < SM_LANES; l++) m[l] = -INFINITY;
    int tk = 0;
    for (; tk + SM_LANES <= Tk; tk += SM_LANES) {
        #pragma omp simd
        for (int l = 0; l < SM_LANES; l++) m[l] = pr[tk + l] > m[l] ? pr[tk + l] : m[l];
    }
    for (; tk < Tk; tk++) m[0] = pr[tk] > m[0] ? pr[tk] : m[0];
    for (int w = SM_LANES / 2; w > 0; w /= 2) {
        #pragma omp simd
        for (int l = 0; l < w; l++) m[l] = m[l + w] > m[l] ? m[l + w] : m[l];
    }
    const float mx = m[0];
    #pragma omp simd
    for (tk = 0; tk < Tk; tk++) pr[tk] = exp_softmax(pr[tk] - mx);
    double s[SM_LANES] = {0};
    for (tk = 0; tk + SM_LANES <= Tk; tk += SM_LANES) {
        #pragma omp simd
        for (int l = 0; l < SM_LANES; l++) s[l] += pr[tk + l];
    }
    for (; tk < Tk; tk++) s[0] += pr[tk];
    for (int w = SM_LANES / 2; w > 0; w /= 2) {
        #pragma omp simd
        for (int l = 0; l < w; l++) s[l] += s[l + w];
    }
    float inv = (float)(1.0 / s[0]);
    #pragma omp simd
    for (int tk = 0; tk < Tk; tk++) pr[tk] *= inv;
}

AG_SIMD_CLONES
static void gelu_forward_kernel(float *out, const float *in, size_t n) {
    #pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float x = in[i];
        out[i] = 0.5f * x * (1.0f + erf_vec(x * (float)M_SQRT1_2));
    }
}

AG_SIMD_CLONES
static void gelu_backward_kernel(float *din, const float *in, const float *dout, size_t n) {
    const float inv_sqrt_2pi = 0.3989422804014327f;
    #pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float x = in[i];
        float cdf = 0.5f * (1.0f + erf_vec(x * (float)M_SQRT1_2));
        float pdf = inv_sqrt_2pi * exp_neg_vec(-0.5f * x * x);
        din[i] += dout[i] * (cdf + x * pdf);
    }
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

/* Elementwise loops cut into blocks of this many elements for the threads. */
#define EW_BLOCK 4096

static void cpu_gelu_forward(float *out, const float *in, size_t n) {
    size_t nb = (n + EW_BLOCK - 1) / EW_BLOCK;
    #pragma omp parallel for if (n > PAR_MIN)
    for (size_t b = 0; b < nb; b++) {
        size_t i0 = b * EW_BLOCK;
        gelu_forward_kernel(out + i0, in + i0, n - i0 < EW_BLOCK ? n - i0 : EW_BLOCK);
    }
}

static void cpu_gelu_backward(float *din, const float *in, const float *dout, size_t n) {
    size_t nb = (n + EW_BLOCK - 1) / EW_BLOCK;
    #pragma omp parallel for if (n > PAR_MIN)
    for (size_t b = 0; b < nb; b++) {
        size_t i0 = b * EW_BLOCK;
        gelu_backward_kernel(din + i0, in + i0, dout + i0, n - i0 < EW_BLOCK ? n - i0 : EW_BLOCK);
    }
}

static void cpu_tanh_forward(float *out, const float *in, size_t n) {
    #pragma omp parallel for if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) out[i] = tanhf(in[i]);
}

static void cpu_tanh_backward(float *din, const float *out, const float *dout, size_t n) {
    #pragma omp parallel for if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) din[i] += dout[i] * (1.0f - out[i] * out[i]);
}

/* ---------------------------------------------------------------- dropout */

/* Keep mask for elements [j0, j0+n) with consecutive draw indices idx0 + (j - j0):
 * mask[j] = ag_rng_uniform(seed, AG_RNG_DROPOUT, a, site, idx0 + j) >= p, generated many
 * Philox blocks at a time (nn/rng.c); test_ops_fd and test_ops_kernels check every mask
 * element against ag_rng_uniform itself. */
static void keep_mask(uint8_t *mask, size_t n, uint64_t idx0, uint64_t seed, uint64_t a,
                      uint32_t site, float p) {
    ag_rng_keep_mask(mask, n, seed, AG_RNG_DROPOUT, a, site, idx0, p);
}

static void cpu_dropout_forward(float *out, uint8_t *mask, const float *in, int B, size_t L,
                                const int64_t *sample_idx, uint64_t seed, uint32_t site,
                                float p) {
    if (p <= 0.0f) { cpu_copy(out, in, (size_t)B * L); return; }
    float scale = 1.0f / (1.0f - p);
    /* Rows split into chunks so that small batches still use every thread. */
    const size_t CH = 4096;
    size_t nch = (L + CH - 1) / CH;
    #pragma omp parallel for collapse(2) if ((size_t)B * L > PAR_MIN)
    for (int b = 0; b < B; b++)
        for (size_t ch = 0; ch < nch; ch++) {
            size_t j0 = ch * CH, n = L - j0 < CH ? L - j0 : CH;
            size_t off = (size_t)b * L + j0;
            keep_mask(mask + off, n, j0, seed, (uint64_t)sample_idx[b], site, p);
            for (size_t j = 0; j < n; j++) out[off + j] = mask[off + j] ? in[off + j] * scale : 0.0f;
        }
}

static void cpu_dropout_backward(float *din, const float *dout, const uint8_t *mask, int B,
                                 size_t L, float p) {
    size_t n = (size_t)B * L;
    if (p <= 0.0f) { cpu_acc(din, dout, n); return; }
    float scale = 1.0f / (1.0f - p);
    #pragma omp parallel for if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) din[i] += mask[i] ? dout[i] * scale : 0.0f;
}

/* ---------------------------------------------------------------- attention */

/* The four matrix products per (batch, head) go to sgemm on strided views of the [B,T,C]
 * tensors (head h = columns h*D.. of each row, leading dimension C). With the OpenMP build
 * of OpenBLAS the (batch, head) blocks are an OpenMP loop, each block's products
 * single-threaded (attention_heads_parallel). Otherwise they run one after another, each
 * threaded by OpenBLAS: sgemm must not be called from inside an OpenMP region with the
 * pthreads OpenBLAS; the row-wise parts (mask, softmax, dropout) are then OpenMP loops. */
static inline size_t head_off(int b, int T, int C, int h, int D) {
    return ((size_t)b * T) * C + (size_t)h * D;
}

/* out = dropout(P) . V row by row (axpy per key): the fallback when no buffer for the
 * dropped-out block can be had. */
static void attention_pv_rows(float *out, const float *probs, const uint8_t *pmask,
                              const float *v, int B, int Tq, int Tk, int H, int D, float dscale) {
    const int C = H * D;
    const size_t TT = (size_t)Tq * Tk;
    #pragma omp parallel for collapse(3)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int tq = 0; tq < Tq; tq++) {
                size_t prow = ((size_t)b * H + h) * TT + (size_t)tq * Tk;
                float *orow = out + head_off(b, Tq, C, h, D) + (size_t)tq * C;
                for (int d = 0; d < D; d++) orow[d] = 0.0f;
                for (int tk = 0; tk < Tk; tk++) {
                    float w = pmask[prow + tk] ? probs[prow + tk] * dscale : 0.0f;
                    if (w == 0.0f) continue;
                    const float *vr = v + head_off(b, Tk, C, h, D) + (size_t)tk * C;
                    #pragma omp simd
                    for (int d = 0; d < D; d++) orow[d] += w * vr[d];
                }
            }
}

/* Masked softmax of one score row in place, then its dropout keep mask. */
static void softmax_row(float *pr, uint8_t *mrow, const float *key_mask_b, int causal, int tq,
                        int h, int Tk, const int64_t *sample_idx, int b, uint64_t seed,
                        uint32_t site, float p) {
    softmax_row_kernel(pr, key_mask_b, causal ? tq : Tk - 1, Tk);
    if (p > 0.0f)
        keep_mask(mrow, (size_t)Tk, AG_ATT_DROP_INDEX(h, tq, 0), seed, (uint64_t)sample_idx[b],
                  site, p);
}

/* With the OpenMP build of OpenBLAS, the (batch, head) blocks are spread over the threads
 * and each runs its products single-threaded, start to end (scores, softmax, dropout, P.V)
 * while its block is in cache; no fork/join per small product. The products are the same
 * sgemm calls on the same operands, and sgemm's result does not depend on its thread
 * count (it splits rows and columns, never the sum), so both paths agree bit for bit. */
static int attention_heads_parallel(int B, int H) {
#ifdef _OPENMP
    return B * H > 1 && omp_get_max_threads() > 1 && !omp_in_parallel() && ag_blas_is_openmp();
#else
    (void)B; (void)H;
    return 0;
#endif
}

static void cpu_attention_forward(float *out, float *probs, uint8_t *pmask, const float *q,
                                  const float *k, const float *v, const float *key_mask,
                                  int causal, int B, int Tq, int Tk, int H, int D,
                                  const int64_t *sample_idx, uint64_t seed, uint32_t site,
                                  float p) {
    const int C = H * D;
    const float scale = 1.0f / sqrtf((float)D);
    const float dscale = p > 0.0f ? 1.0f / (1.0f - p) : 1.0f;
    const size_t TT = (size_t)Tq * Tk;
#ifdef _OPENMP
    if (attention_heads_parallel(B, H)) {
        int nt = omp_get_max_threads();
        float *pdall = p > 0.0f ? malloc((size_t)nt * TT * sizeof *pdall) : NULL;
        if (p <= 0.0f || pdall) {
            #pragma omp parallel num_threads(nt)
            {
                float *pd = pdall ? pdall + (size_t)omp_get_thread_num() * TT : NULL;
                #pragma omp for collapse(2) schedule(static)
                for (int b = 0; b < B; b++)
                    for (int h = 0; h < H; h++) {
                        size_t bh = ((size_t)b * H + h) * TT;
                        float *pb = probs + bh;
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Tq, Tk, D, scale,
                                    q + head_off(b, Tq, C, h, D), C, k + head_off(b, Tk, C, h, D),
                                    C, 0.0f, pb, Tk);
                        for (int tq = 0; tq < Tq; tq++)
                            softmax_row(pb + (size_t)tq * Tk,
                                        pmask ? pmask + bh + (size_t)tq * Tk : NULL,
                                        key_mask ? key_mask + (size_t)b * Tk : NULL, causal, tq, h,
                                        Tk, sample_idx, b, seed, site, p);
                        const float *pv = pb;
                        if (pd) {
                            const uint8_t *mb = pmask + bh;
                            for (size_t i = 0; i < TT; i++) pd[i] = mb[i] ? pb[i] * dscale : 0.0f;
                            pv = pd;
                        }
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Tq, D, Tk, 1.0f, pv,
                                    Tk, v + head_off(b, Tk, C, h, D), C, 0.0f,
                                    out + head_off(b, Tq, C, h, D), C);
                    }
            }
            free(pdall);
            return;
        }
    }
#endif
    /* scores = (Q K^T) * scale, written straight into probs; softmax then runs in place. */
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Tq, Tk, D, scale,
                        q + head_off(b, Tq, C, h, D), C, k + head_off(b, Tk, C, h, D), C, 0.0f,
                        probs + ((size_t)b * H + h) * TT, Tk);
    #pragma omp parallel for collapse(3) if ((size_t)B * H * TT * D > PAR_MIN)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int tq = 0; tq < Tq; tq++) {
                size_t prow = ((size_t)b * H + h) * TT + (size_t)tq * Tk;
                softmax_row(probs + prow, pmask ? pmask + prow : NULL,
                            key_mask ? key_mask + (size_t)b * Tk : NULL, causal, tq, h, Tk,
                            sample_idx, b, seed, site, p);
            }
    /* out = dropout(P) . V per head. With dropout the dropped-out block of one head is
     * built in a small buffer (probs keeps P itself: backward needs it where dropped). */
    float *pd = NULL;
    if (p > 0.0f && !(pd = malloc(TT * sizeof *pd))) {
        attention_pv_rows(out, probs, pmask, v, B, Tq, Tk, H, D, dscale);  /* no memory */
        return;
    }
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const float *pb = probs + ((size_t)b * H + h) * TT;
            if (pd) {
                const uint8_t *mb = pmask + ((size_t)b * H + h) * TT;
                for (size_t i = 0; i < TT; i++) pd[i] = mb[i] ? pb[i] * dscale : 0.0f;
                pb = pd;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Tq, D, Tk, 1.0f, pb, Tk,
                        v + head_off(b, Tk, C, h, D), C, 0.0f, out + head_off(b, Tq, C, h, D), C);
        }
    free(pd);
}

/* One row of d(dropped P) -> dS, in place: through dropout, then softmax,
 * dS = P * (dP - sum(P * dP)) / sqrt(D). */
static void softmax_backward_row(float *ds, const float *pr, const uint8_t *mr, int Tk, float p,
                                 float dscale, float scale) {
    if (p > 0.0f)
        for (int tk = 0; tk < Tk; tk++) ds[tk] = mr[tk] ? ds[tk] * dscale : 0.0f;
    double dot = 0.0;
    for (int tk = 0; tk < Tk; tk++) dot += (double)ds[tk] * pr[tk];
    float fdot = (float)dot;
    for (int tk = 0; tk < Tk; tk++) ds[tk] = pr[tk] * (ds[tk] - fdot) * scale;
}

static void cpu_attention_backward(float *dq, float *dk, float *dv, float *scratch,
                                   const float *dout, const float *q, const float *k,
                                   const float *v, const float *probs, const uint8_t *pmask,
                                   int B, int Tq, int Tk, int H, int D, float p) {
    const int C = H * D;
    const float scale = 1.0f / sqrtf((float)D);
    const float dscale = p > 0.0f ? 1.0f / (1.0f - p) : 1.0f;
    const size_t TT = (size_t)Tq * Tk, NA = (size_t)B * H * TT;
    const int par = (size_t)B * H * TT * D > PAR_MIN;
#ifdef _OPENMP
    if (attention_heads_parallel(B, H)) {
        /* Per (batch, head) block, the same steps as below in the same order; scratch holds
         * the block's dropped-out P, then its dP and dS. */
        #pragma omp parallel for collapse(2) schedule(static)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++) {
                size_t bh = ((size_t)b * H + h) * TT;
                float *sc = scratch + bh;
                const float *pb = probs + bh;
                const uint8_t *mb = pmask ? pmask + bh : NULL;  /* NULL when p == 0 */
                if (dv) {
                    const float *pd = pb;
                    if (p > 0.0f) {
                        for (size_t i = 0; i < TT; i++) sc[i] = mb[i] ? pb[i] * dscale : 0.0f;
                        pd = sc;
                    }
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Tk, D, Tq, 1.0f, pd, Tk,
                                dout + head_off(b, Tq, C, h, D), C, 1.0f,
                                dv + head_off(b, Tk, C, h, D), C);
                }
                if (!dq && !dk) continue;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Tq, Tk, D, 1.0f,
                            dout + head_off(b, Tq, C, h, D), C, v + head_off(b, Tk, C, h, D), C,
                            0.0f, sc, Tk);
                for (int tq = 0; tq < Tq; tq++)
                    softmax_backward_row(sc + (size_t)tq * Tk, pb + (size_t)tq * Tk,
                                         mb ? mb + (size_t)tq * Tk : NULL, Tk, p, dscale, scale);
                if (dq)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Tq, D, Tk, 1.0f, sc, Tk,
                                k + head_off(b, Tk, C, h, D), C, 1.0f,
                                dq + head_off(b, Tq, C, h, D), C);
                if (dk)
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Tk, D, Tq, 1.0f, sc, Tk,
                                q + head_off(b, Tq, C, h, D), C, 1.0f,
                                dk + head_off(b, Tk, C, h, D), C);
            }
        return;
    }
#endif
    /* dV += dropout(P)^T . dO. With dropout, the dropped-out P goes through scratch first. */
    if (dv) {
        const float *pd = probs;
        if (p > 0.0f) {
            #pragma omp parallel for if (par)
            for (size_t i = 0; i < NA; i++) scratch[i] = pmask[i] ? probs[i] * dscale : 0.0f;
            pd = scratch;
        }
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Tk, D, Tq, 1.0f,
                            pd + ((size_t)b * H + h) * TT, Tk, dout + head_off(b, Tq, C, h, D), C,
                            1.0f, dv + head_off(b, Tk, C, h, D), C);
    }
    if (!dq && !dk) return;
    /* d(dropped P) = dO . V^T into scratch. */
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Tq, Tk, D, 1.0f,
                        dout + head_off(b, Tq, C, h, D), C, v + head_off(b, Tk, C, h, D), C, 0.0f,
                        scratch + ((size_t)b * H + h) * TT, Tk);
    /* Through dropout and softmax: dS = P * (dP - sum(P * dP)) / sqrt(D), row by row. */
    #pragma omp parallel for if (par)
    for (size_t r = 0; r < (size_t)B * H * Tq; r++)
        softmax_backward_row(scratch + r * Tk, probs + r * Tk, pmask ? pmask + r * Tk : NULL, Tk,
                             p, dscale, scale);
    /* dQ += dS . K, dK += dS^T . Q */
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const float *ds = scratch + ((size_t)b * H + h) * TT;
            if (dq)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Tq, D, Tk, 1.0f, ds, Tk,
                            k + head_off(b, Tk, C, h, D), C, 1.0f, dq + head_off(b, Tq, C, h, D), C);
            if (dk)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Tk, D, Tq, 1.0f, ds, Tk,
                            q + head_off(b, Tq, C, h, D), C, 1.0f, dk + head_off(b, Tk, C, h, D), C);
        }
}

static void cpu_upload_act(float *dst, const float *host_src, size_t n) {
    if (n) memcpy(dst, host_src, n * sizeof *dst);
}
static void cpu_download_act(float *host_dst, const float *src, size_t n) {
    if (n) memcpy(host_dst, src, n * sizeof *src);
}

/* Fused forwards: nn/ops_cpu_fused.c. */
void ag_cpu_linear_gelu_forward(float *, float *, const float *, const float *, const float *, int, int, int);
void ag_cpu_add_layernorm_forward(float *, float *, float *, float *, const float *, const float *,
                                  const float *, const float *, int, int, float);

const ag_ops ag_ops_cpu = {
    .name = "cpu",
    .alloc = cpu_alloc,
    .free = cpu_free,
    .zero = cpu_zero,
    .copy = cpu_copy,
    .upload = cpu_upload,
    .download = cpu_download,
    .sync = cpu_sync,
    .act_bytes = sizeof(float),
    .upload_act = cpu_upload_act,
    .download_act = cpu_download_act,
    .add = cpu_add,
    .acc = cpu_acc,
    .scale = cpu_scale,
    .copy2d = cpu_copy2d,
    .acc2d = cpu_acc2d,
    .linear_forward = cpu_linear_forward,
    .linear_backward = cpu_linear_backward,
    .embedding_forward = cpu_embedding_forward,
    .embedding_backward = cpu_embedding_backward,
    .layernorm_forward = cpu_layernorm_forward,
    .layernorm_backward = cpu_layernorm_backward,
    .gelu_forward = cpu_gelu_forward,
    .gelu_backward = cpu_gelu_backward,
    .tanh_forward = cpu_tanh_forward,
    .tanh_backward = cpu_tanh_backward,
    .dropout_forward = cpu_dropout_forward,
    .dropout_backward = cpu_dropout_backward,
    .attention_forward = cpu_attention_forward,
    .attention_backward = cpu_attention_backward,
    .linear_gelu_forward = ag_cpu_linear_gelu_forward,
    .add_layernorm_forward = ag_cpu_add_layernorm_forward,
};
