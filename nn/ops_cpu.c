/* The CPU implementation of the op interface (nn/ops.h): OpenBLAS sgemm for the linear
 * layers, OpenMP loops for everything elementwise and for the attention core. It is the
 * oracle the CUDA table is tested against, so clarity wins over the last few percent. */
#include "nn/ops.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/rng.h"

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

/* Column sums of x[N,C] added into sum[C]. */
static void col_sum_acc(float *sum, const float *x, int N, int C) {
    int nblk = (C + COL_BLOCK - 1) / COL_BLOCK;
    #pragma omp parallel for if ((size_t)N * C > PAR_MIN)
    for (int blk = 0; blk < nblk; blk++) {
        int c0 = blk * COL_BLOCK, c1 = c0 + COL_BLOCK < C ? c0 + COL_BLOCK : C;
        double acc[COL_BLOCK] = {0};
        for (int n = 0; n < N; n++) {
            const float *row = x + (size_t)n * C;
            for (int c = c0; c < c1; c++) acc[c - c0] += row[c];
        }
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

static void cpu_layernorm_forward(float *out, float *mean, float *rstd, const float *in,
                                  const float *w, const float *b, int N, int C, float eps) {
    #pragma omp parallel for if ((size_t)N * C > PAR_MIN)
    for (int n = 0; n < N; n++) {
        const float *x = in + (size_t)n * C;
        float *y = out + (size_t)n * C;
        /* Two passes in double: the mean, then the biased variance around it. */
        double m = 0.0, v = 0.0;
        for (int c = 0; c < C; c++) m += x[c];
        m /= C;
        for (int c = 0; c < C; c++) { double d = x[c] - m; v += d * d; }
        v /= C;
        float mf = (float)m, rs = (float)(1.0 / sqrt(v + (double)eps));
        for (int c = 0; c < C; c++) y[c] = (x[c] - mf) * rs * w[c] + b[c];
        mean[n] = mf;
        rstd[n] = rs;
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

static void cpu_gelu_forward(float *out, const float *in, size_t n) {
    #pragma omp parallel for if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float x = in[i];
        out[i] = 0.5f * x * (1.0f + erff(x * (float)M_SQRT1_2));
    }
}

static void cpu_gelu_backward(float *din, const float *in, const float *dout, size_t n) {
    const float inv_sqrt_2pi = 0.3989422804014327f;
    #pragma omp parallel for if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float x = in[i];
        float cdf = 0.5f * (1.0f + erff(x * (float)M_SQRT1_2));
        float pdf = inv_sqrt_2pi * expf(-0.5f * x * x);
        din[i] += dout[i] * (cdf + x * pdf);
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

/* The four uniforms of one Philox block: elements 4*blk .. 4*blk+3 of the draw
 * ag_rng_uniform(seed, AG_RNG_DROPOUT, a, site, index). This mirrors ag_rng_u32's key and
 * counter layout so one block serves four elements (ag_rng_u32 computes a whole block per
 * call); test_ops_fd checks every mask element against ag_rng_uniform itself. */
static void uniform4(uint64_t seed, uint64_t a, uint32_t site, uint64_t blk, float u[4]) {
    const uint32_t stream = AG_RNG_DROPOUT;
    uint32_t key[2] = {(uint32_t)seed ^ (stream * 0x85EBCA6Bu), (uint32_t)(seed >> 32) + stream};
    uint32_t ctr[4] = {(uint32_t)a, (uint32_t)(a >> 32) ^ ((uint32_t)(blk >> 32) << 16), site,
                       (uint32_t)blk};
    uint32_t r[4];
    ag_philox(key, ctr, r);
    for (int i = 0; i < 4; i++) u[i] = (float)(r[i] >> 8) * (1.0f / 16777216.0f);
}

/* Keep mask for elements [j0, j0+n) with consecutive draw indices idx0 + (j - j0). */
static void keep_mask(uint8_t *mask, size_t n, uint64_t idx0, uint64_t seed, uint64_t a,
                      uint32_t site, float p) {
    size_t j = 0;
    float u[4];
    while (j < n) {
        uint64_t idx = idx0 + j;
        uint64_t blk = idx >> 2;
        uniform4(seed, a, site, blk, u);
        for (unsigned k = (unsigned)(idx & 3); k < 4 && j < n; k++, j++) mask[j] = u[k] >= p;
    }
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
 * tensors (head h = columns h*D.. of each row, leading dimension C). They run one after
 * another, each threaded by OpenBLAS: sgemm must not be called from inside an OpenMP
 * region with the pthreads OpenBLAS. The row-wise parts (mask, softmax, dropout) are
 * OpenMP loops. */
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

static void cpu_attention_forward(float *out, float *probs, uint8_t *pmask, const float *q,
                                  const float *k, const float *v, const float *key_mask,
                                  int causal, int B, int Tq, int Tk, int H, int D,
                                  const int64_t *sample_idx, uint64_t seed, uint32_t site,
                                  float p) {
    const int C = H * D;
    const float scale = 1.0f / sqrtf((float)D);
    const float dscale = p > 0.0f ? 1.0f / (1.0f - p) : 1.0f;
    const size_t TT = (size_t)Tq * Tk;
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
                float *pr = probs + prow;
                float mx = -INFINITY;
                for (int tk = 0; tk < Tk; tk++) {
                    /* One additive -FLT_MAX per masked key, as HF's combined mask: adding it
                     * twice would overflow to -inf and a fully masked row would be NaN. */
                    int masked = (key_mask && key_mask[(size_t)b * Tk + tk] == 0.0f) ||
                                 (causal && tk > tq);
                    if (masked) pr[tk] += -FLT_MAX;
                    if (pr[tk] > mx) mx = pr[tk];
                }
                double sum = 0.0;
                for (int tk = 0; tk < Tk; tk++) { pr[tk] = expf(pr[tk] - mx); sum += pr[tk]; }
                float inv = (float)(1.0 / sum);
                for (int tk = 0; tk < Tk; tk++) pr[tk] *= inv;
                if (p > 0.0f)
                    keep_mask(pmask + prow, (size_t)Tk, AG_ATT_DROP_INDEX(h, tq, 0), seed,
                              (uint64_t)sample_idx[b], site, p);
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

static void cpu_attention_backward(float *dq, float *dk, float *dv, float *scratch,
                                   const float *dout, const float *q, const float *k,
                                   const float *v, const float *probs, const uint8_t *pmask,
                                   int B, int Tq, int Tk, int H, int D, float p) {
    const int C = H * D;
    const float scale = 1.0f / sqrtf((float)D);
    const float dscale = p > 0.0f ? 1.0f / (1.0f - p) : 1.0f;
    const size_t TT = (size_t)Tq * Tk, NA = (size_t)B * H * TT;
    const int par = (size_t)B * H * TT * D > PAR_MIN;
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
    for (size_t r = 0; r < (size_t)B * H * Tq; r++) {
        const float *pr = probs + r * Tk;
        float *ds = scratch + r * Tk;
        if (p > 0.0f) {
            const uint8_t *mr = pmask + r * Tk;
            for (int tk = 0; tk < Tk; tk++) ds[tk] = mr[tk] ? ds[tk] * dscale : 0.0f;
        }
        double dot = 0.0;
        for (int tk = 0; tk < Tk; tk++) dot += (double)ds[tk] * pr[tk];
        float fdot = (float)dot;
        for (int tk = 0; tk < Tk; tk++) ds[tk] = pr[tk] * (ds[tk] - fdot) * scale;
    }
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
};
