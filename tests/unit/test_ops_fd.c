/* Finite-difference checks of every CPU op's backward (linear, layernorm, GELU, tanh,
 * embeddings, dropout, attention with padding mask, causal mask and dropout), the
 * accumulate (+=) convention, and the dropout mask contract: keyed on (seed, sample, site,
 * element) only, keep fraction 1 - p, identical to ag_rng_uniform.
 *
 * Method: L = sum(out * R) for a fixed random R, computed in double from the fp32 forward;
 * the analytic gradient is the backward with dout = R; the numeric one is a central
 * difference with step h. fp32 rounding of L limits agreement to ~1e-3 relative, which is
 * what the tolerances below allow (the exact comparison is test_bert_parity's job). */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/ops.h"
#include "nn/rng.h"
#include "tests/support/check.h"

static const ag_ops *ops = &ag_ops_cpu;

/* Deterministic fill in [-scale, scale). */
static void fill(float *x, size_t n, uint32_t tag, float scale) {
    for (size_t i = 0; i < n; i++)
        x[i] = scale * (2.0f * ag_rng_uniform(99, 7, tag, 0, i) - 1.0f);
}

static float *vec(size_t n, uint32_t tag, float scale) {
    float *x = calloc(n ? n : 1, sizeof *x);
    if (tag) fill(x, n, tag, scale);
    return x;
}

/* The forward under test writes its output; loss = sum(out * R) in double. */
typedef struct fd_case fd_case;
struct fd_case {
    void (*forward)(fd_case *c);
    float *out, *R;
    size_t nout;
    void *ctx;
};

static double loss(fd_case *c) {
    c->forward(c);
    double s = 0.0;
    for (size_t i = 0; i < c->nout; i++) s += (double)c->out[i] * c->R[i];
    return s;
}

/* Compare analytic gradient g[n] of input x[n] with central differences. */
static void fd_check(const char *what, fd_case *c, float *x, const float *g, size_t n, float h,
                     double tol) {
    float *num = calloc(n, sizeof *num);
    for (size_t i = 0; i < n; i++) {
        float x0 = x[i];
        x[i] = x0 + h; double lp = loss(c);
        x[i] = x0 - h; double lm = loss(c);
        x[i] = x0;
        /* divide by the step actually taken in float */
        num[i] = (float)((lp - lm) / ((double)(x0 + h) - (double)(x0 - h)));
    }
    c->forward(c);  /* leave the saved activations of the unperturbed point */
    check_rel(what, g, num, n, tol);
    free(num);
}

/* Gradients accumulate: a second backward into the same buffer doubles it. */
static void check_doubled(const char *what, const float *twice, const float *once, size_t n) {
    float *want = malloc(n * sizeof *want);
    for (size_t i = 0; i < n; i++) want[i] = 2.0f * once[i];
    check_close(what, twice, want, n, 1e-6, 1e-7);
    free(want);
}

/* ------------------------------------------------------------------ linear */

typedef struct { float *in, *W, *b; int N, I, O; } lin_ctx;
static void lin_fwd(fd_case *c) {
    lin_ctx *k = c->ctx;
    ops->linear_forward(c->out, k->in, k->W, k->b, k->N, k->I, k->O);
}

static void test_linear(void) {
    lin_ctx k = {.N = 5, .I = 4, .O = 3};
    k.in = vec(20, 1, 1.0f); k.W = vec(12, 2, 1.0f); k.b = vec(3, 3, 1.0f);
    fd_case c = {lin_fwd, vec(15, 0, 0), vec(15, 4, 1.0f), 15, &k};
    float *din = vec(20, 0, 0), *dW = vec(12, 0, 0), *db = vec(3, 0, 0);
    c.forward(&c);
    /* forward against a plain triple loop */
    float want[15];
    for (int n = 0; n < 5; n++)
        for (int o = 0; o < 3; o++) {
            double s = k.b[o];
            for (int i = 0; i < 4; i++) s += (double)k.in[n * 4 + i] * k.W[o * 4 + i];
            want[n * 3 + o] = (float)s;
        }
    check_close("linear forward", c.out, want, 15, 1e-6, 1e-6);
    ops->linear_backward(din, dW, db, c.R, k.in, k.W, k.N, k.I, k.O);
    fd_check("linear d_in", &c, k.in, din, 20, 1e-2f, 2e-3);
    fd_check("linear d_W", &c, k.W, dW, 12, 1e-2f, 2e-3);
    fd_check("linear d_b", &c, k.b, db, 3, 1e-2f, 2e-3);
    float *din2 = vec(20, 0, 0), *dW2 = vec(12, 0, 0), *db2 = vec(3, 0, 0);
    memcpy(din2, din, 20 * 4); memcpy(dW2, dW, 12 * 4); memcpy(db2, db, 3 * 4);
    ops->linear_backward(din2, dW2, db2, c.R, k.in, k.W, k.N, k.I, k.O);
    check_doubled("linear d_in accumulates", din2, din, 20);
    check_doubled("linear d_W accumulates", dW2, dW, 12);
    check_doubled("linear d_b accumulates", db2, db, 3);
    /* NULL bias in forward and NULL gradients in backward are allowed. */
    ops->linear_forward(c.out, k.in, k.W, NULL, k.N, k.I, k.O);
    for (int n = 0; n < 5; n++)
        for (int o = 0; o < 3; o++) want[n * 3 + o] -= k.b[o];
    check_close("linear forward without bias", c.out, want, 15, 1e-5, 1e-6);
    ops->linear_backward(NULL, NULL, db2, c.R, k.in, k.W, k.N, k.I, k.O);
    free(k.in); free(k.W); free(k.b); free(c.out); free(c.R);
    free(din); free(dW); free(db); free(din2); free(dW2); free(db2);
}

/* ------------------------------------------------------------------ layernorm */

typedef struct { float *in, *w, *b, *mean, *rstd; int N, C; } ln_ctx;
static void ln_fwd(fd_case *c) {
    ln_ctx *k = c->ctx;
    ops->layernorm_forward(c->out, k->mean, k->rstd, k->in, k->w, k->b, k->N, k->C, 1e-5f);
}

static void test_layernorm(void) {
    ln_ctx k = {.N = 4, .C = 6};
    k.in = vec(24, 11, 2.0f); k.w = vec(6, 12, 1.0f); k.b = vec(6, 13, 1.0f);
    k.mean = vec(4, 0, 0); k.rstd = vec(4, 0, 0);
    fd_case c = {ln_fwd, vec(24, 0, 0), vec(24, 14, 1.0f), 24, &k};
    c.forward(&c);
    /* forward against the definition, in double */
    float want[24];
    for (int n = 0; n < 4; n++) {
        double m = 0, v = 0;
        for (int i = 0; i < 6; i++) m += k.in[n * 6 + i];
        m /= 6;
        for (int i = 0; i < 6; i++) v += (k.in[n * 6 + i] - m) * (k.in[n * 6 + i] - m);
        v /= 6;
        for (int i = 0; i < 6; i++)
            want[n * 6 + i] = (float)((k.in[n * 6 + i] - m) / sqrt(v + 1e-5) * k.w[i] + k.b[i]);
    }
    check_close("layernorm forward", c.out, want, 24, 1e-5, 1e-6);
    float *din = vec(24, 0, 0), *dw = vec(6, 0, 0), *db = vec(6, 0, 0);
    ops->layernorm_backward(din, dw, db, c.R, k.in, k.mean, k.rstd, k.w, k.N, k.C);
    fd_check("layernorm d_in", &c, k.in, din, 24, 1e-2f, 3e-3);
    fd_check("layernorm d_w", &c, k.w, dw, 6, 1e-2f, 2e-3);
    fd_check("layernorm d_b", &c, k.b, db, 6, 1e-2f, 2e-3);
    float *din2 = malloc(24 * 4);
    memcpy(din2, din, 24 * 4);
    ops->layernorm_backward(din2, NULL, NULL, c.R, k.in, k.mean, k.rstd, k.w, k.N, k.C);
    check_doubled("layernorm d_in accumulates", din2, din, 24);
    free(k.in); free(k.w); free(k.b); free(k.mean); free(k.rstd); free(c.out); free(c.R);
    free(din); free(dw); free(db); free(din2);
}

/* ------------------------------------------------------------------ gelu, tanh */

typedef struct { float *in; size_t n; int which; } act_ctx;
static void act_fwd(fd_case *c) {
    act_ctx *k = c->ctx;
    if (k->which == 0) ops->gelu_forward(c->out, k->in, k->n);
    else ops->tanh_forward(c->out, k->in, k->n);
}

static void test_activations(void) {
    const size_t n = 13;
    act_ctx k = {.in = vec(n, 21, 3.0f), .n = n};
    fd_case c = {act_fwd, vec(n, 0, 0), vec(n, 22, 1.0f), n, &k};
    float want[13], *din = vec(n, 0, 0);
    /* GELU */
    k.which = 0;
    c.forward(&c);
    for (size_t i = 0; i < n; i++) want[i] = (float)(0.5 * k.in[i] * (1.0 + erf(k.in[i] / sqrt(2.0))));
    check_close("gelu forward (erf form)", c.out, want, n, 1e-6, 1e-7);
    ops->gelu_backward(din, k.in, c.R, n);
    fd_check("gelu d_in", &c, k.in, din, n, 1e-3f, 2e-3);
    /* tanh: backward reads the output */
    k.which = 1;
    memset(din, 0, n * sizeof *din);
    c.forward(&c);
    for (size_t i = 0; i < n; i++) want[i] = (float)tanh(k.in[i]);
    check_close("tanh forward", c.out, want, n, 1e-6, 1e-7);
    ops->tanh_backward(din, c.out, c.R, n);
    fd_check("tanh d_in", &c, k.in, din, n, 1e-3f, 2e-3);
    /* in place forward */
    float *x = malloc(n * sizeof *x);
    memcpy(x, k.in, n * sizeof *x);
    ops->tanh_forward(x, x, n);
    check_close("tanh in place", x, want, n, 1e-6, 1e-7);
    free(x); free(k.in); free(c.out); free(c.R); free(din);
}

/* ------------------------------------------------------------------ embeddings */

typedef struct { int32_t *ids, *types; float *wte, *wpe, *wtt; int B, T, C; } emb_ctx;
static void emb_fwd(fd_case *c) {
    emb_ctx *k = c->ctx;
    ops->embedding_forward(c->out, k->ids, k->types, k->wte, k->wpe, k->wtt, k->B, k->T, k->C);
}

static void test_embedding(void) {
    /* Repeated ids and types exercise the scatter-add. */
    int32_t ids[6] = {3, 1, 3, 0, 4, 3}, types[6] = {0, 1, 1, 0, 0, 1};
    emb_ctx k = {ids, types, vec(5 * 4, 31, 1.0f), vec(4 * 4, 32, 1.0f), vec(2 * 4, 33, 1.0f), 2, 3, 4};
    fd_case c = {emb_fwd, vec(24, 0, 0), vec(24, 34, 1.0f), 24, &k};
    c.forward(&c);
    float want[24];
    for (int bt = 0; bt < 6; bt++)
        for (int i = 0; i < 4; i++)
            want[bt * 4 + i] = k.wte[ids[bt] * 4 + i] + k.wpe[(bt % 3) * 4 + i] + k.wtt[types[bt] * 4 + i];
    check_close("embedding forward", c.out, want, 24, 1e-6, 1e-7);
    float *dwte = vec(20, 0, 0), *dwpe = vec(16, 0, 0), *dwtt = vec(8, 0, 0);
    ops->embedding_backward(dwte, dwpe, dwtt, c.R, ids, types, 2, 3, 4, -1);
    fd_check("embedding d_word", &c, k.wte, dwte, 20, 1e-2f, 2e-3);
    fd_check("embedding d_position", &c, k.wpe, dwpe, 16, 1e-2f, 2e-3);
    fd_check("embedding d_type", &c, k.wtt, dwtt, 8, 1e-2f, 2e-3);
    /* Rows never used get no gradient (id 2, position 3). */
    check_true("embedding: unused word row stays zero", dwte[8] == 0 && dwte[11] == 0);
    check_true("embedding: unused position row stays zero", dwpe[12] == 0 && dwpe[15] == 0);
    /* pad_id: the padding row gets nothing, the other rows the same as before. */
    float *dpad = vec(20, 0, 0);
    ops->embedding_backward(dpad, NULL, NULL, c.R, ids, types, 2, 3, 4, 3);
    float wpad[20];
    memcpy(wpad, dwte, sizeof wpad);
    for (int i = 0; i < 4; i++) wpad[3 * 4 + i] = 0.0f;
    check_close("embedding: pad_id row gets no gradient", dpad, wpad, 20, 1e-6, 1e-7);
    free(dpad);
    /* NULL types means type 0 everywhere. */
    ops->embedding_forward(c.out, ids, NULL, k.wte, k.wpe, k.wtt, 2, 3, 4);
    for (int bt = 0; bt < 6; bt++)
        for (int i = 0; i < 4; i++)
            want[bt * 4 + i] = k.wte[ids[bt] * 4 + i] + k.wpe[(bt % 3) * 4 + i] + k.wtt[i];
    check_close("embedding forward, NULL types", c.out, want, 24, 1e-6, 1e-7);
    free(k.wte); free(k.wpe); free(k.wtt); free(c.out); free(c.R);
    free(dwte); free(dwpe); free(dwtt);
}

/* ------------------------------------------------------------------ dropout */

typedef struct { float *in; uint8_t *mask; int64_t *samp; int B; size_t L; float p; } drop_ctx;
static void drop_fwd(fd_case *c) {
    drop_ctx *k = c->ctx;
    ops->dropout_forward(c->out, k->mask, k->in, k->B, k->L, k->samp, 5, 17, k->p);
}

static void test_dropout(void) {
    const float p = 0.4f;
    int64_t samp[2] = {7, 3};
    drop_ctx k = {vec(2 * 50, 41, 1.0f), malloc(100), samp, 2, 50, p};
    fd_case c = {drop_fwd, vec(100, 0, 0), vec(100, 42, 1.0f), 100, &k};
    c.forward(&c);
    float *din = vec(100, 0, 0);
    ops->dropout_backward(din, c.R, k.mask, 2, 50, p);
    fd_check("dropout d_in (fixed mask)", &c, k.in, din, 100, 1e-2f, 2e-3);

    /* Every keep decision is the documented draw. */
    int same = 1, scaled = 1;
    for (int b = 0; b < 2; b++)
        for (size_t j = 0; j < 50; j++) {
            int keep = ag_rng_uniform(5, AG_RNG_DROPOUT, (uint64_t)samp[b], 17, j) >= p;
            same &= keep == k.mask[b * 50 + j];
            float w = keep ? k.in[b * 50 + j] / (1.0f - p) : 0.0f;
            scaled &= fabsf(c.out[b * 50 + j] - w) <= 1e-6f * fabsf(w);
        }
    check_true("dropout mask equals ag_rng_uniform(seed, DROPOUT, sample, site, j) >= p", same);
    check_true("dropout scales kept elements by 1/(1-p)", scaled);

    /* Same sample in another batch position with other companions: same mask row. */
    int64_t samp2[3] = {3, 9, 7};
    float *in3 = vec(3 * 50, 43, 1.0f), *out3 = vec(150, 0, 0);
    uint8_t *mask3 = malloc(150);
    ops->dropout_forward(out3, mask3, in3, 3, 50, samp2, 5, 17, p);
    check_true("dropout mask of sample 7 independent of its batch row",
               memcmp(mask3 + 2 * 50, k.mask, 50) == 0);
    check_true("dropout mask of sample 3 independent of its batch row",
               memcmp(mask3, k.mask + 50, 50) == 0);
    /* Another site or seed gives another mask. */
    ops->dropout_forward(out3, mask3, in3, 3, 50, samp2, 5, 18, p);
    check_true("dropout mask depends on the site", memcmp(mask3 + 100, k.mask, 50) != 0);

    /* Keep fraction over many elements, with rows long enough to cross chunk borders. */
    const size_t L = 100003;
    float *big = vec(4 * L, 0, 0), *bigo = vec(4 * L, 0, 0);
    uint8_t *bm = malloc(4 * L);
    int64_t s4[4] = {0, 1, 1000000007LL, (int64_t)1 << 40};
    ops->dropout_forward(bigo, bm, big, 4, L, s4, 123, 3, 0.1f);
    size_t kept = 0;
    for (size_t i = 0; i < 4 * L; i++) kept += bm[i];
    double frac = (double)kept / (4.0 * L);
    printf("dropout p=0.1 keep fraction %.5f over %zu elements\n", frac, 4 * L);
    check_true("dropout keep fraction within 0.003 of 1 - p", fabs(frac - 0.9) < 0.003);
    int tail = 1;
    for (size_t j = L - 40; j < L; j++)
        tail &= bm[3 * L + j] == (ag_rng_uniform(123, AG_RNG_DROPOUT, (uint64_t)1 << 40, 3, j) >= 0.1f);
    check_true("dropout mask matches ag_rng_uniform at the end of a long row", tail);

    /* p = 0: identity, mask untouched (may be NULL); backward passes the gradient. */
    ops->dropout_forward(out3, NULL, in3, 3, 50, NULL, 5, 17, 0.0f);
    check_close("dropout p=0 is the identity", out3, in3, 150, 0, 0);
    float *d0 = vec(150, 0, 0);
    ops->dropout_backward(d0, in3, NULL, 3, 50, 0.0f);
    check_close("dropout p=0 backward passes through", d0, in3, 150, 0, 0);

    free(k.in); free(k.mask); free(c.out); free(c.R); free(din); free(in3); free(out3);
    free(mask3); free(big); free(bigo); free(bm); free(d0);
}

/* ------------------------------------------------------------------ attention */

typedef struct {
    float *q, *k, *v, *probs, *kmask;
    uint8_t *pmask;
    int64_t *samp;
    int causal, B, Tq, Tk, H, D;
    float p;
} att_ctx;
static void att_fwd(fd_case *c) {
    att_ctx *a = c->ctx;
    ops->attention_forward(c->out, a->probs, a->pmask, a->q, a->k, a->v, a->kmask, a->causal,
                           a->B, a->Tq, a->Tk, a->H, a->D, a->samp, 11, 33, a->p);
}

/* Reference forward in double, without dropout. */
static void att_ref(const att_ctx *a, float *out) {
    int C = a->H * a->D;
    for (int b = 0; b < a->B; b++)
        for (int h = 0; h < a->H; h++)
            for (int i = 0; i < a->Tq; i++) {
                double s[64], mx = -1e300, sum = 0;
                int any = 0;
                for (int j = 0; j < a->Tk; j++) {
                    int keep = (!a->kmask || a->kmask[b * a->Tk + j] != 0) && !(a->causal && j > i);
                    double d = 0;
                    for (int e = 0; e < a->D; e++)
                        d += (double)a->q[(b * a->Tq + i) * C + h * a->D + e] * a->k[(b * a->Tk + j) * C + h * a->D + e];
                    s[j] = keep ? d / sqrt((double)a->D) : -INFINITY;
                    any |= keep;
                }
                for (int j = 0; j < a->Tk; j++) {
                    if (!any) s[j] = 0;  /* fully masked: uniform, as HF's finfo.min mask gives */
                    if (s[j] > mx) mx = s[j];
                }
                for (int j = 0; j < a->Tk; j++) { s[j] = exp(s[j] - mx); sum += s[j]; }
                for (int e = 0; e < a->D; e++) {
                    double o = 0;
                    for (int j = 0; j < a->Tk; j++) o += s[j] / sum * a->v[(b * a->Tk + j) * C + h * a->D + e];
                    out[(b * a->Tq + i) * C + h * a->D + e] = (float)o;
                }
            }
}

static void att_case(const char *name, int B, int Tq, int Tk, int H, int D, const float *kmask,
                     int causal, float p, int fd) {
    int C = H * D;
    size_t nq = (size_t)B * Tq * C, nk = (size_t)B * Tk * C, na = (size_t)B * H * Tq * Tk;
    int64_t samp[4] = {5, 2, 9, 4};
    att_ctx a = {vec(nq, 51, 1.5f), vec(nk, 52, 1.5f), vec(nk, 53, 1.0f), vec(na, 0, 0),
                 (float *)kmask, malloc(na), samp, causal, B, Tq, Tk, H, D, p};
    fd_case c = {att_fwd, vec(nq, 0, 0), vec(nq, 54, 1.0f), nq, &a};
    char what[160];
    c.forward(&c);
    int finite = 1;
    for (size_t i = 0; i < nq; i++) finite &= isfinite(c.out[i]);
    snprintf(what, sizeof what, "attention %s: output finite", name);
    check_true(what, finite);
    if (p == 0.0f) {
        float *want = vec(nq, 0, 0);
        att_ref(&a, want);
        snprintf(what, sizeof what, "attention %s: forward", name);
        check_close(what, c.out, want, nq, 1e-5, 1e-6);
        free(want);
    }
    if (fd) {
        float *dq = vec(nq, 0, 0), *dk = vec(nk, 0, 0), *dv = vec(nk, 0, 0), *scr = vec(na, 0, 0);
        ops->attention_backward(dq, dk, dv, scr, c.R, a.q, a.k, a.v, a.probs, a.pmask, B, Tq, Tk, H, D, p);
        snprintf(what, sizeof what, "attention %s: d_q", name);
        fd_check(what, &c, a.q, dq, nq, 1e-2f, 3e-3);
        snprintf(what, sizeof what, "attention %s: d_k", name);
        fd_check(what, &c, a.k, dk, nk, 1e-2f, 3e-3);
        snprintf(what, sizeof what, "attention %s: d_v", name);
        fd_check(what, &c, a.v, dv, nk, 1e-2f, 3e-3);
        float *dq2 = malloc(nq * 4);
        memcpy(dq2, dq, nq * 4);
        ops->attention_backward(dq2, NULL, NULL, scr, c.R, a.q, a.k, a.v, a.probs, a.pmask, B, Tq, Tk, H, D, p);
        snprintf(what, sizeof what, "attention %s: d_q accumulates", name);
        check_doubled(what, dq2, dq, nq);
        free(dq); free(dk); free(dv); free(scr); free(dq2);
    }
    free(a.q); free(a.k); free(a.v); free(a.probs); free(a.pmask); free(c.out); free(c.R);
}

static void test_attention(void) {
    /* Padding mask: row 0 keeps 3 of 4 keys, row 1 keeps 2 (keys 0 and 2). */
    float km[2 * 4] = {1, 1, 1, 0, 1, 0, 1, 0};
    att_case("self, key padding", 2, 4, 4, 2, 3, km, 0, 0.0f, 1);
    att_case("cross, Tq=3 Tk=4, padding", 2, 3, 4, 2, 3, km, 0, 0.0f, 1);
    att_case("cross, memory of length 1", 3, 5, 1, 2, 4, NULL, 0, 0.0f, 1);
    att_case("causal", 2, 4, 4, 2, 3, NULL, 1, 0.0f, 1);
    att_case("causal + padding", 2, 4, 4, 2, 3, km, 1, 0.0f, 1);
    att_case("padding + dropout 0.3 (fixed mask)", 2, 4, 4, 2, 3, km, 0, 0.3f, 1);
    att_case("causal + dropout 0.3", 2, 4, 4, 2, 3, NULL, 1, 0.3f, 1);

    /* A fully masked row: uniform weights, no NaN (forward checked against the reference,
     * which averages all values). Its FD gradient differs from autograd by design (adding
     * -FLT_MAX absorbs any change of the score), so no FD check here. */
    float km0[2 * 3] = {1, 1, 0, 0, 0, 0};
    att_case("fully masked row", 2, 3, 3, 1, 2, km0, 0, 0.0f, 0);
    {
        const int B = 1, T = 3, C = 2;
        float q[6], k[6], v[6], out[6], probs[9], dq[6] = {0}, dk[6] = {0}, dv[6] = {0}, scr[9];
        float dout[6] = {1, 1, 1, 1, 1, 1}, mz[3] = {0, 0, 0};
        fill(q, 6, 61, 1.0f); fill(k, 6, 62, 1.0f); fill(v, 6, 63, 1.0f);
        ops->attention_forward(out, probs, NULL, q, k, v, mz, 0, B, T, T, 1, C, NULL, 0, 0, 0.0f);
        ops->attention_backward(dq, dk, dv, scr, dout, q, k, v, probs, NULL, B, T, T, 1, C, 0.0f);
        int ok = 1;
        for (int i = 0; i < 9; i++) ok &= fabsf(probs[i] - 1.0f / 3) < 1e-6f;
        for (int i = 0; i < 6; i++) ok &= isfinite(dq[i]) && isfinite(dk[i]) && isfinite(dv[i]);
        check_true("attention: all keys masked gives uniform probs and finite gradients", ok);
    }

    /* Attention dropout masks: the documented draw, independent of padding length. */
    {
        const int H = 2, D = 2, C = H * D, Tq = 3;
        int64_t s[1] = {77};
        float q[3 * 4], k[6 * 4], v[6 * 4], out[3 * 4], p4[2 * 3 * 4], p6[2 * 3 * 6];
        uint8_t m4[2 * 3 * 4], m6[2 * 3 * 6];
        fill(q, 12, 71, 1.0f); fill(k, 24, 72, 1.0f); fill(v, 24, 73, 1.0f);
        float km4[4] = {1, 1, 1, 1}, km6[6] = {1, 1, 1, 1, 0, 0};
        ops->attention_forward(out, p4, m4, q, k, v, km4, 0, 1, Tq, 4, H, D, s, 8, 40, 0.5f);
        float out4[12];
        memcpy(out4, out, sizeof out4);
        ops->attention_forward(out, p6, m6, q, k, v, km6, 0, 1, Tq, 6, H, D, s, 8, 40, 0.5f);
        int same = 1, draw = 1;
        for (int h = 0; h < H; h++)
            for (int i = 0; i < Tq; i++)
                for (int j = 0; j < 4; j++) {
                    same &= m4[(h * Tq + i) * 4 + j] == m6[(h * Tq + i) * 6 + j];
                    draw &= m4[(h * Tq + i) * 4 + j] ==
                            (ag_rng_uniform(8, AG_RNG_DROPOUT, 77, 40, AG_ATT_DROP_INDEX(h, i, j)) >= 0.5f);
                }
        check_true("attention dropout mask independent of padded length", same);
        check_true("attention dropout mask equals the documented draw", draw);
        check_close("attention output with extra padded keys unchanged", out, out4, 12, 1e-6, 1e-7);
        (void)C;
    }
}

/* ------------------------------------------------------------------ production sizes */

/* The FD cases above are too small to enter the OpenMP branches (PAR_MIN) or to span
 * several column blocks; these compare the same ops at sizes that do against plain
 * double-precision loops, so a race or a blocking error shows up. */
static void test_large_sizes(void) {
    /* linear: N=300, IC=130, OC=150 */
    {
        const int N = 300, I = 130, O = 150;
        float *in = vec((size_t)N * I, 81, 1.0f), *W = vec((size_t)O * I, 82, 0.2f), *b = vec(O, 83, 1.0f);
        float *g = vec((size_t)N * O, 84, 1.0f), *out = vec((size_t)N * O, 0, 0);
        float *din = vec((size_t)N * I, 0, 0), *dW = vec((size_t)O * I, 0, 0), *db = vec(O, 0, 0);
        float *rout = vec((size_t)N * O, 0, 0), *rdin = vec((size_t)N * I, 0, 0);
        float *rdW = vec((size_t)O * I, 0, 0), *rdb = vec(O, 0, 0);
        ops->linear_forward(out, in, W, b, N, I, O);
        ops->linear_backward(din, dW, db, g, in, W, N, I, O);
        for (int n = 0; n < N; n++)
            for (int o = 0; o < O; o++) {
                double acc = b[o];
                for (int i = 0; i < I; i++) acc += (double)in[n * I + i] * W[o * I + i];
                rout[n * O + o] = (float)acc;
            }
        for (int n = 0; n < N; n++)
            for (int i = 0; i < I; i++) {
                double acc = 0;
                for (int o = 0; o < O; o++) acc += (double)g[n * O + o] * W[o * I + i];
                rdin[n * I + i] = (float)acc;
            }
        for (int o = 0; o < O; o++) {
            double ab = 0;
            for (int n = 0; n < N; n++) ab += g[n * O + o];
            rdb[o] = (float)ab;
            for (int i = 0; i < I; i++) {
                double acc = 0;
                for (int n = 0; n < N; n++) acc += (double)g[n * O + o] * in[n * I + i];
                rdW[o * I + i] = (float)acc;
            }
        }
        check_rel("large linear forward", out, rout, (size_t)N * O, 1e-5);
        check_rel("large linear d_in", din, rdin, (size_t)N * I, 1e-5);
        check_rel("large linear d_W", dW, rdW, (size_t)O * I, 1e-5);
        check_rel("large linear d_b", db, rdb, O, 1e-5);
        free(in); free(W); free(b); free(g); free(out); free(din); free(dW); free(db);
        free(rout); free(rdin); free(rdW); free(rdb);
    }
    /* layernorm: N=300, C=200 (4 column blocks, the last partial) */
    {
        const int N = 300, C = 200;
        float *in = vec((size_t)N * C, 85, 2.0f), *w = vec(C, 86, 1.0f), *b = vec(C, 87, 1.0f);
        float *g = vec((size_t)N * C, 88, 1.0f), *out = vec((size_t)N * C, 0, 0);
        float *mean = vec(N, 0, 0), *rstd = vec(N, 0, 0);
        float *din = vec((size_t)N * C, 0, 0), *dw = vec(C, 0, 0), *db = vec(C, 0, 0);
        float *rout = vec((size_t)N * C, 0, 0), *rdin = vec((size_t)N * C, 0, 0);
        double *rdw = calloc(C, sizeof(double)), *rdb = calloc(C, sizeof(double));
        ops->layernorm_forward(out, mean, rstd, in, w, b, N, C, 1e-12f);
        ops->layernorm_backward(din, dw, db, g, in, mean, rstd, w, N, C);
        for (int n = 0; n < N; n++) {
            const float *x = in + (size_t)n * C, *gg = g + (size_t)n * C;
            double m = 0, v = 0, s1 = 0, s2 = 0;
            for (int c = 0; c < C; c++) m += x[c];
            m /= C;
            for (int c = 0; c < C; c++) v += (x[c] - m) * (x[c] - m);
            v /= C;
            double rs = 1.0 / sqrt(v + 1e-12);
            for (int c = 0; c < C; c++) {
                double xh = (x[c] - m) * rs;
                rout[n * C + c] = (float)(xh * w[c] + b[c]);
                s1 += gg[c] * w[c];
                s2 += gg[c] * w[c] * xh;
                rdw[c] += gg[c] * xh;
                rdb[c] += gg[c];
            }
            for (int c = 0; c < C; c++) {
                double xh = (x[c] - m) * rs;
                rdin[n * C + c] = (float)(rs * (gg[c] * w[c] - s1 / C - xh * s2 / C));
            }
        }
        float *fdw = vec(C, 0, 0), *fdb = vec(C, 0, 0);
        for (int c = 0; c < C; c++) { fdw[c] = (float)rdw[c]; fdb[c] = (float)rdb[c]; }
        check_rel("large layernorm forward", out, rout, (size_t)N * C, 1e-5);
        check_rel("large layernorm d_in", din, rdin, (size_t)N * C, 1e-5);
        check_rel("large layernorm d_w", dw, fdw, C, 1e-5);
        check_rel("large layernorm d_b", db, fdb, C, 1e-5);
        free(in); free(w); free(b); free(g); free(out); free(mean); free(rstd); free(din);
        free(dw); free(db); free(rout); free(rdin); free(rdw); free(rdb); free(fdw); free(fdb);
    }
    /* embedding backward: B*T*C over PAR_MIN, repeated ids */
    {
        const int B = 4, T = 40, C = 128, V = 17;
        int32_t *ids = malloc(B * T * 4), *ty = malloc(B * T * 4);
        for (int i = 0; i < B * T; i++) { ids[i] = (i * 7) % V; ty[i] = i % 2; }
        float *g = vec((size_t)B * T * C, 89, 1.0f);
        float *dwte = vec((size_t)V * C, 0, 0), *dwpe = vec((size_t)T * C, 0, 0), *dwtt = vec(2 * C, 0, 0);
        float *rte = vec((size_t)V * C, 0, 0), *rpe = vec((size_t)T * C, 0, 0), *rtt = vec(2 * C, 0, 0);
        ops->embedding_backward(dwte, dwpe, dwtt, g, ids, ty, B, T, C, -1);
        for (int bt = 0; bt < B * T; bt++)
            for (int c = 0; c < C; c++) {
                rte[ids[bt] * C + c] += g[bt * C + c];
                rpe[(bt % T) * C + c] += g[bt * C + c];
                rtt[ty[bt] * C + c] += g[bt * C + c];
            }
        check_rel("large embedding d_word", dwte, rte, (size_t)V * C, 1e-5);
        check_rel("large embedding d_position", dwpe, rpe, (size_t)T * C, 1e-5);
        check_rel("large embedding d_type", dwtt, rtt, 2 * C, 1e-5);
        free(ids); free(ty); free(g); free(dwte); free(dwpe); free(dwtt); free(rte); free(rpe); free(rtt);
    }
    /* attention: B=3, H=4, T=40, D=16 with padding, forward and backward against double
     * loops (the backward reference recomputes the softmax; no dropout) */
    {
        const int B = 3, H = 4, T = 40, D = 16, C = H * D;
        size_t nx = (size_t)B * T * C, na = (size_t)B * H * T * T;
        float *km = vec((size_t)B * T, 0, 0);
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) km[b * T + t] = t < T - 13 * b;
        att_ctx a = {vec(nx, 91, 1.0f), vec(nx, 92, 1.0f), vec(nx, 93, 1.0f), vec(na, 0, 0), km,
                     NULL, NULL, 0, B, T, T, H, D, 0.0f};
        float *out = vec(nx, 0, 0), *ref = vec(nx, 0, 0), *g = vec(nx, 94, 1.0f);
        float *dq = vec(nx, 0, 0), *dk = vec(nx, 0, 0), *dv = vec(nx, 0, 0), *scr = vec(na, 0, 0);
        double *rq = calloc(nx, 8), *rk = calloc(nx, 8), *rv = calloc(nx, 8);
        ops->attention_forward(out, a.probs, NULL, a.q, a.k, a.v, km, 0, B, T, T, H, D, NULL, 0, 0, 0.0f);
        ops->attention_backward(dq, dk, dv, scr, g, a.q, a.k, a.v, a.probs, NULL, B, T, T, H, D, 0.0f);
        att_ref(&a, ref);
        check_rel("large attention forward", out, ref, nx, 1e-5);
        double sc = 1.0 / sqrt((double)D);
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++)
                for (int i = 0; i < T; i++) {
                    double P[40], dP[40], mx = -1e300, sum = 0, dot = 0;
                    const float *qi = a.q + ((size_t)b * T + i) * C + h * D, *gi = g + ((size_t)b * T + i) * C + h * D;
                    for (int j = 0; j < T; j++) {
                        const float *kj = a.k + ((size_t)b * T + j) * C + h * D;
                        double s = 0;
                        for (int e = 0; e < D; e++) s += (double)qi[e] * kj[e];
                        P[j] = km[b * T + j] ? s * sc : -INFINITY;
                        if (P[j] > mx) mx = P[j];
                    }
                    for (int j = 0; j < T; j++) { P[j] = exp(P[j] - mx); sum += P[j]; }
                    for (int j = 0; j < T; j++) {
                        const float *vj = a.v + ((size_t)b * T + j) * C + h * D;
                        P[j] /= sum;
                        dP[j] = 0;
                        for (int e = 0; e < D; e++) dP[j] += (double)gi[e] * vj[e];
                        dot += P[j] * dP[j];
                        for (int e = 0; e < D; e++) rv[((size_t)b * T + j) * C + h * D + e] += P[j] * gi[e];
                    }
                    for (int j = 0; j < T; j++) {
                        double ds = P[j] * (dP[j] - dot) * sc;
                        const float *kj = a.k + ((size_t)b * T + j) * C + h * D;
                        for (int e = 0; e < D; e++) {
                            rq[((size_t)b * T + i) * C + h * D + e] += ds * kj[e];
                            rk[((size_t)b * T + j) * C + h * D + e] += ds * qi[e];
                        }
                    }
                }
        float *fq = vec(nx, 0, 0), *fk = vec(nx, 0, 0), *fv = vec(nx, 0, 0);
        for (size_t i = 0; i < nx; i++) { fq[i] = (float)rq[i]; fk[i] = (float)rk[i]; fv[i] = (float)rv[i]; }
        check_rel("large attention d_q", dq, fq, nx, 1e-5);
        check_rel("large attention d_k", dk, fk, nx, 1e-5);
        check_rel("large attention d_v", dv, fv, nx, 1e-5);
        free(km); free(a.q); free(a.k); free(a.v); free(a.probs); free(out); free(ref); free(g);
        free(dq); free(dk); free(dv); free(scr); free(rq); free(rk); free(rv); free(fq); free(fk); free(fv);
    }
}

/* ------------------------------------------------------------------ small helpers */

static void test_helpers(void) {
    float a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {6, 5, 4, 3, 2, 1}, o[6], want[6];
    ops->add(o, a, b, 6);
    for (int i = 0; i < 6; i++) want[i] = 7;
    check_close("add", o, want, 6, 0, 0);
    ops->acc(o, a, 6);
    for (int i = 0; i < 6; i++) want[i] = 7 + a[i];
    check_close("acc", o, want, 6, 0, 0);
    ops->scale(o, 2.0f, 6);
    for (int i = 0; i < 6; i++) want[i] *= 2;
    check_close("scale", o, want, 6, 0, 0);
    /* gather rows 0 and 1 of a [2, 3] view with stride 3, first 2 columns */
    float g[4], wg[4] = {1, 2, 4, 5};
    ops->copy2d(g, 2, a, 3, 2, 2);
    check_close("copy2d", g, wg, 4, 0, 0);
    float acc[6] = {0};
    ops->acc2d(acc, 3, g, 2, 2, 2);
    ops->acc2d(acc, 3, g, 2, 2, 2);
    float wa[6] = {2, 4, 0, 8, 10, 0};
    check_close("acc2d", acc, wa, 6, 0, 0);
    float *d = ops->alloc(6 * sizeof(float));
    ops->upload(d, a, sizeof a);
    ops->copy(o, d, 6);
    ops->zero(d, 6);
    ops->download(g, d, 4 * sizeof(float));
    check_close("upload/copy", o, a, 6, 0, 0);
    check_true("zero/download", g[0] == 0 && g[3] == 0);
    ops->free(d);
    ops->free(NULL);
}

int main(void) {
    test_helpers();
    test_linear();
    test_layernorm();
    test_activations();
    test_embedding();
    test_dropout();
    test_attention();
    test_large_sizes();
    return check_finish();
}
