/* The bi-encoder losses and the cross-encoder head against sentence-transformers / torch
 * (fixture tests/fixtures/losses.agfx from gen_losses.py: loss rel 1e-5, gradients rel 1e-4),
 * finite-difference checks of every backward, the MNRL block form split over pretend ranks
 * (must equal the whole batch), head dropout determinism, and argument errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/error.h"
#include "nn/head.h"
#include "nn/losses.h"
#include "nn/ops.h"
#include "nn/params.h"
#include "tests/support/check.h"
#include "tests/support/fixture.h"

/* The head's dropout site must stay in the head range of the encoder's site layout. */
_Static_assert(AG_XHEAD_DROPOUT_SITE == (unsigned)AG_SITE_HEAD, "head dropout site drifted from nn/ops.h");

static agfx fx;

static const float *F32(const char *name, size_t *n) { return agfx_f32(&fx, name, n); }
static float *zeros(size_t n) { return calloc(n ? n : 1, sizeof(float)); }
static float *copy(const float *x, size_t n) {
    float *y = malloc(n * sizeof *y);
    memcpy(y, x, n * sizeof *y);
    return y;
}

static void check_loss(const char *what, double got, const char *key) {
    float g = (float)got;
    check_close(what, &g, F32(key, NULL), 1, 1e-5, 0);
}

/* ---- finite differences ---------------------------------------------------------------------
 * fd_check perturbs each element of x (which the objective reads) by ±step and compares the
 * central difference with the analytic gradient: max|diff| / max|numeric| <= tol. */
typedef double (*objective)(void *ctx);

static void fd_check(const char *what, float *x, size_t n, const float *grad, objective f, void *ctx,
                     float step, double tol) {
    float *num = zeros(n);
    for (size_t i = 0; i < n; i++) {
        float x0 = x[i];
        x[i] = x0 + step;
        double lp = f(ctx);
        x[i] = x0 - step;
        double lm = f(ctx);
        x[i] = x0;
        num[i] = (float)((lp - lm) / ((double)(x0 + step) - (double)(x0 - step)));
    }
    char w[160];
    snprintf(w, sizeof w, "%s vs finite differences", what);
    check_rel(w, grad, num, n, tol);
    free(num);
}

/* A pair loss: all of them share (u, v, y) inputs. */
typedef struct {
    int kind;   /* 0 cosine, 1 cosent, 2 contrastive, 3 mse (v = teacher) */
    float *u, *v;
    const float *y;
    int B, C;
} pair_ctx;

static int pair_loss(const pair_ctx *c, double *loss, float *du, float *dv, float gscale) {
    switch (c->kind) {
    case 0: return ag_loss_cosine(c->u, c->v, c->y, c->B, c->C, gscale, loss, du, dv);
    case 1: return ag_loss_cosent(c->u, c->v, c->y, c->B, c->C, AG_COSENT_SCALE, gscale, loss, du, dv);
    case 2: return ag_loss_contrastive(c->u, c->v, c->y, c->B, c->C, AG_CONTRASTIVE_MARGIN, gscale, loss, du, dv);
    default: return ag_loss_mse(c->u, c->v, c->B, c->C, gscale, loss, du);
    }
}

static double pair_obj(void *ctx) {
    double l = NAN;
    pair_loss(ctx, &l, NULL, NULL, 1.0f);
    return l;
}

static void test_pair_losses(void) {
    size_t n;
    const float *u = F32("u", &n), *v = F32("v", NULL);
    int B = (int)agfx_find(&fx, "u")->dims[0], C = (int)agfx_find(&fx, "u")->dims[1];
    static const struct { int kind; const char *name, *prefix, *ykey; } L[] = {
        {0, "CosineSimilarityLoss", "cos", "cos_y"},
        {1, "CoSENTLoss", "cosent", "cosent_y"},
        {2, "ContrastiveLoss", "con", "con_y"},
        {3, "MSELoss", "mse", "mse_t"},
    };
    for (size_t k = 0; k < sizeof L / sizeof L[0]; k++) {
        pair_ctx c = {L[k].kind, copy(u, n), NULL, NULL, B, C};
        if (L[k].kind == 3) { c.v = copy(F32("mse_t", NULL), n); c.y = NULL; }
        else { c.v = copy(v, n); c.y = F32(L[k].ykey, NULL); }
        float *du = zeros(n), *dv = zeros(n);
        double loss;
        char what[128], key[64];
        int rc = pair_loss(&c, &loss, du, dv, 1.0f);
        snprintf(what, sizeof what, "%s runs", L[k].name);
        check_true(what, rc == 0);
        snprintf(what, sizeof what, "%s loss vs ST", L[k].name);
        snprintf(key, sizeof key, "%s_loss", L[k].prefix);
        check_loss(what, loss, key);
        snprintf(what, sizeof what, "%s d(u) vs ST autograd", L[k].name);
        snprintf(key, sizeof key, "%s_du", L[k].prefix);
        check_rel(what, du, F32(key, NULL), n, 1e-4);
        if (L[k].kind != 3) {
            snprintf(what, sizeof what, "%s d(v) vs ST autograd", L[k].name);
            snprintf(key, sizeof key, "%s_dv", L[k].prefix);
            check_rel(what, dv, F32(key, NULL), n, 1e-4);
        }
        snprintf(what, sizeof what, "%s d(u)", L[k].name);
        fd_check(what, c.u, n, du, pair_obj, &c, 1e-3f, 2e-3);
        if (L[k].kind != 3) {
            snprintf(what, sizeof what, "%s d(v)", L[k].name);
            fd_check(what, c.v, n, dv, pair_obj, &c, 1e-3f, 2e-3);
        }
        /* gscale scales, and gradients accumulate: a second call with gscale 0.5 adds half */
        float *want = zeros(n);
        for (size_t i = 0; i < n; i++) want[i] = 1.5f * du[i];
        pair_loss(&c, &loss, du, NULL, 0.5f);
        snprintf(what, sizeof what, "%s gradient accumulates and scales with gscale", L[k].name);
        check_rel(what, du, want, n, 1e-6);
        free(want); free(c.u); free(c.v); free(du); free(dv);
    }
    /* CoSENT stays finite when the exponent would overflow float/double */
    {
        float uu[4] = {1, 0, 0, 1}, vv[4] = {1, 0, 1, 0}, yy[2] = {0, 1};   /* cos 1 and 0 */
        double loss;
        float du[4] = {0}, dv[4] = {0};
        int rc = ag_loss_cosent(uu, vv, yy, 2, 2, 1000.0f, 1.0f, &loss, du, dv);
        check_true("CoSENT with a huge scale is finite (logsumexp shift)",
                   rc == 0 && isfinite(loss) && fabs(loss - 1000.0) < 1e-6 && isfinite(du[0]));
    }
}

/* ---- MultipleNegativesRankingLoss ------------------------------------------------------------ */

typedef struct {
    float *a, *p, *n;
    int nneg, B, C, sym;
} mnrl_ctx;

static double mnrl_obj(void *ctx) {
    mnrl_ctx *c = ctx;
    double l = NAN;
    ag_loss_mnrl(c->a, c->p, c->n, c->nneg, c->B, c->C, AG_MNRL_SCALE, c->sym, 1.0f, &l, NULL, NULL, NULL);
    return l;
}

static void test_mnrl(void) {
    size_t n;
    const float *a = F32("mnrl_a", &n), *p = F32("mnrl_p", NULL), *ng = F32("mnrl_n", NULL);
    int B = (int)agfx_find(&fx, "mnrl_a")->dims[0], C = (int)agfx_find(&fx, "mnrl_a")->dims[1];
    static const struct { const char *name, *prefix; int sym, nneg; } V[] = {
        {"MNRL", "mnrl", 0, 0},
        {"MNRL + hard negatives", "mnrlneg", 0, 1},
        {"symmetric MNRL", "mnrlsym", 1, 0},
        {"symmetric MNRL + hard negatives", "mnrlsymneg", 1, 1},
    };
    for (size_t k = 0; k < sizeof V / sizeof V[0]; k++) {
        mnrl_ctx c = {copy(a, n), copy(p, n), V[k].nneg ? copy(ng, n) : NULL, V[k].nneg, B, C, V[k].sym};
        float *da = zeros(n), *dp = zeros(n), *dn = zeros(n);
        double loss;
        char what[128], key[64];
        int rc = ag_loss_mnrl(c.a, c.p, c.n, c.nneg, B, C, AG_MNRL_SCALE, c.sym, 1.0f, &loss, da, dp,
                              V[k].nneg ? dn : NULL);
        snprintf(what, sizeof what, "%s runs", V[k].name);
        check_true(what, rc == 0);
        snprintf(what, sizeof what, "%s loss vs ST", V[k].name);
        snprintf(key, sizeof key, "%s_loss", V[k].prefix);
        check_loss(what, loss, key);
        const char *in[3] = {"a", "p", "n"};
        float *g[3] = {da, dp, dn}, *x[3] = {c.a, c.p, c.n};
        for (int j = 0; j < 2 + V[k].nneg; j++) {
            snprintf(what, sizeof what, "%s d(%s) vs ST autograd", V[k].name, in[j]);
            snprintf(key, sizeof key, "%s_d%s", V[k].prefix, in[j]);
            check_rel(what, g[j], F32(key, NULL), n, 1e-4);
            snprintf(what, sizeof what, "%s d(%s)", V[k].name, in[j]);
            fd_check(what, x[j], n, g[j], mnrl_obj, &c, 1e-3f, 3e-3);
        }
        free(c.a); free(c.p); free(c.n); free(da); free(dp); free(dn);
    }

    /* Block form over two pretend ranks (rows 0..2 and 3..5), global candidates [p; n]:
     * Σ of the local loss sums / B and the summed gradients must equal the whole batch. */
    for (int sym = 0; sym <= 1; sym++) {
        const char *pre = sym ? "mnrlsymneg" : "mnrlneg";
        int nc = 2 * B;
        float *cand = zeros((size_t)nc * C), *dcand = zeros((size_t)nc * C), *da = zeros(n);
        memcpy(cand, p, n * sizeof(float));
        memcpy(cand + n, ng, n * sizeof(float));
        double total = 0;
        int ok = 1, split[3] = {0, 3, B};
        for (int r = 0; r < 2; r++) {
            int off = split[r], nl = split[r + 1] - off;
            int32_t pos[8], self[8];
            for (int i = 0; i < nl; i++) pos[i] = self[i] = off + i;
            double ls;
            if (!sym) {
                float *da_local = zeros((size_t)nl * C);
                ok &= ag_mnrl_block(a + (size_t)off * C, nl, cand, nc, C, pos, AG_MNRL_SCALE, 1.0f / B,
                                    &ls, da_local, dcand) == 0;
                memcpy(da + (size_t)off * C, da_local, (size_t)nl * C * sizeof(float));
                free(da_local);
            } else {
                /* every rank holds all anchors (gathered); dq sums over ranks like dcand */
                ok &= ag_mnrl_sym_block(a, B, self, nl, cand, nc, C, pos, AG_MNRL_SCALE, 1.0f / B, &ls,
                                        da, dcand) == 0;
            }
            total += ls;
        }
        char what[128], key[64];
        snprintf(what, sizeof what, "%s block form over 2 ranks runs", sym ? "symmetric" : "plain");
        check_true(what, ok);
        snprintf(what, sizeof what, "%s block form: loss sum / B vs ST", sym ? "symmetric" : "plain");
        snprintf(key, sizeof key, "%s_loss", pre);
        check_loss(what, total / B, key);
        snprintf(what, sizeof what, "%s block form: d(anchors) vs ST", sym ? "symmetric" : "plain");
        snprintf(key, sizeof key, "%s_da", pre);
        check_rel(what, da, F32(key, NULL), n, 1e-4);
        snprintf(what, sizeof what, "%s block form: d(positives) vs ST", sym ? "symmetric" : "plain");
        snprintf(key, sizeof key, "%s_dp", pre);
        check_rel(what, dcand, F32(key, NULL), n, 1e-4);
        snprintf(what, sizeof what, "%s block form: d(negatives) vs ST", sym ? "symmetric" : "plain");
        snprintf(key, sizeof key, "%s_dn", pre);
        check_rel(what, dcand + n, F32(key, NULL), n, 1e-4);
        free(cand); free(dcand); free(da);
    }

    /* errors */
    double l;
    int32_t bad[1] = {7};
    check_true("MNRL block: positive index outside the candidates is an error",
               ag_mnrl_block(a, 1, p, B, C, bad, 20, 1, &l, NULL, NULL) == -1 && strstr(ag_errmsg(), "pos[0] = 7"));
    check_true("MNRL: negatives announced but NULL is an error",
               ag_loss_mnrl(a, p, NULL, 1, B, C, 20, 0, 1, &l, NULL, NULL, NULL) == -1);
    check_true("MNRL block: empty local block is a zero loss",
               ag_mnrl_block(a, 0, p, B, C, bad, 20, 1, &l, NULL, NULL) == 0 && l == 0);
}

/* ---- SoftmaxLoss ----------------------------------------------------------------------------- */

typedef struct {
    ag_softmax_loss *s;
    ag_params *p;
    float *u, *v;
    const int32_t *y;
    int B;
} sm_ctx;

static double sm_obj(void *ctx) {
    sm_ctx *c = ctx;
    double l = NAN;
    ag_softmax_loss_forward(c->s, c->p, c->u, c->v, c->y, c->B, 1.0f, &l, NULL, NULL, NULL);
    return l;
}

static void test_softmax_loss(void) {
    size_t n;
    const float *u = F32("u", &n), *v = F32("v", NULL);
    int B = (int)agfx_find(&fx, "u")->dims[0], C = (int)agfx_find(&fx, "u")->dims[1];
    const int32_t *y = agfx_i32(&fx, "sm_y", NULL);
    ag_params p;
    ag_params_init(&p);
    ag_softmax_loss s;
    check_true("SoftmaxLoss registers classifier.weight/bias", ag_softmax_loss_register(&s, &p, C, 3) == 0 &&
               ag_params_find(&p, "classifier.weight") == s.w && p.t[s.w].decay == 1 && p.t[s.b].decay == 0);
    ag_params_alloc(&p);
    check_true("SoftmaxLoss init", ag_softmax_loss_init(&s, &p, 42) == 0);
    float bound = 1.0f / sqrtf(3.0f * C), mx = 0;
    for (size_t i = 0; i < p.t[s.w].numel; i++) mx = fmaxf(mx, fabsf(ag_params_data(&p, s.w)[i]));
    check_true("SoftmaxLoss init within nn.Linear's bound", mx > 0.5f * bound && mx <= bound);
    memcpy(ag_params_data(&p, s.w), F32("sm_W", NULL), p.t[s.w].numel * sizeof(float));
    memcpy(ag_params_data(&p, s.b), F32("sm_b", NULL), p.t[s.b].numel * sizeof(float));
    sm_ctx c = {&s, &p, copy(u, n), copy(v, n), y, B};
    float *du = zeros(n), *dv = zeros(n), *logits = zeros((size_t)B * 3);
    double loss;
    int rc = ag_softmax_loss_forward(&s, &p, c.u, c.v, y, B, 1.0f, &loss, logits, du, dv);
    check_true("SoftmaxLoss runs", rc == 0);
    check_loss("SoftmaxLoss loss vs ST", loss, "sm_loss");
    check_rel("SoftmaxLoss logits vs ST", logits, F32("sm_logits", NULL), (size_t)B * 3, 1e-5);
    check_rel("SoftmaxLoss d(u) vs ST autograd", du, F32("sm_du", NULL), n, 1e-4);
    check_rel("SoftmaxLoss d(v) vs ST autograd", dv, F32("sm_dv", NULL), n, 1e-4);
    check_rel("SoftmaxLoss d(classifier.weight) vs ST autograd", ag_params_grad(&p, s.w), F32("sm_dW", NULL),
              p.t[s.w].numel, 1e-4);
    check_rel("SoftmaxLoss d(classifier.bias) vs ST autograd", ag_params_grad(&p, s.b), F32("sm_db", NULL),
              p.t[s.b].numel, 1e-4);
    fd_check("SoftmaxLoss d(u)", c.u, n, du, sm_obj, &c, 1e-3f, 2e-3);
    fd_check("SoftmaxLoss d(v)", c.v, n, dv, sm_obj, &c, 1e-3f, 2e-3);
    float *dW = copy(ag_params_grad(&p, s.w), p.t[s.w].numel);
    fd_check("SoftmaxLoss d(classifier.weight)", ag_params_data(&p, s.w), p.t[s.w].numel, dW, sm_obj, &c, 1e-3f, 2e-3);
    int32_t bad[6] = {0, 1, 2, 3, 0, 0};
    check_true("SoftmaxLoss: label out of range is an error naming it",
               ag_softmax_loss_forward(&s, &p, c.u, c.v, bad, B, 1, &loss, NULL, NULL, NULL) == -1 &&
                   strstr(ag_errmsg(), "label[3] = 3"));
    free(dW); free(c.u); free(c.v); free(du); free(dv); free(logits);
    ag_params_free(&p);
}

/* ---- cross-entropy / BCE pieces ---------------------------------------------------------------- */

typedef struct { float *z; const int32_t *y; const float *yf; int B, L; } ce_ctx;

static double ce_obj(void *ctx) {
    ce_ctx *c = ctx;
    double l = NAN;
    if (c->yf) ag_loss_bce_logits(c->z, c->yf, c->B, 1.0f, &l, NULL);
    else ag_loss_cross_entropy(c->z, c->y, c->B, c->L, 1.0f, &l, NULL);
    return l;
}

static void test_cross_entropy(void) {
    size_t n;
    const agfx_tensor *zt = agfx_find(&fx, "ce_z");
    int B = (int)zt->dims[0], L = (int)zt->dims[1];
    const float *z0 = F32("ce_z", &n);
    ce_ctx c = {copy(z0, n), agfx_i32(&fx, "ce_y", NULL), NULL, B, L};
    float *dz = zeros(n);
    double loss;
    check_true("cross-entropy with ignored rows runs", ag_loss_cross_entropy(c.z, c.y, B, L, 1, &loss, dz) == 0);
    check_loss("cross-entropy (ignore_index -100) vs torch", loss, "ce_loss");
    check_rel("cross-entropy d(logits) vs torch", dz, F32("ce_dz", NULL), n, 1e-4);
    fd_check("cross-entropy d(logits)", c.z, n, dz, ce_obj, &c, 1e-3f, 2e-3);
    int32_t all_ignored[2] = {AG_IGNORE_INDEX, AG_IGNORE_INDEX};
    check_true("cross-entropy with every row ignored is NaN, as torch",
               ag_loss_cross_entropy(c.z, all_ignored, 2, L, 1, &loss, NULL) == 0 && isnan(loss));
    free(c.z); free(dz);
}

/* ---- cross-encoder head ------------------------------------------------------------------------ */

typedef struct {
    ag_xhead *h;
    ag_params *p;
    float *pooled;
    const float *yf;
    const int32_t *yi;
    const int64_t *sample;
    int B, training;
} xh_ctx;

static double xh_obj(void *ctx) {
    xh_ctx *c = ctx;
    float *logits = zeros((size_t)c->B * c->h->num_labels);
    double l = NAN;
    ag_xhead_forward(c->h, c->p, c->pooled, c->B, c->sample, 7, c->training, NULL, logits);
    ag_xhead_loss(c->h, logits, c->yf, c->yi, c->B, 1.0f, &l, NULL);
    free(logits);
    return l;
}

static void test_head(void) {
    size_t n;
    const float *pooled = F32("xh_pooled", &n);
    int B = (int)agfx_find(&fx, "xh_pooled")->dims[0], C = (int)agfx_find(&fx, "xh_pooled")->dims[1];
    int64_t sample[8] = {100, 101, 102, 103, 104, 105, 106, 107};
    for (int L = 1; L <= 3; L += 2) {
        char key[64], what[128];
        ag_params p;
        ag_params_init(&p);
        ag_xhead h;
        snprintf(what, sizeof what, "head(%d labels) registers classifier.weight/bias", L);
        check_true(what, ag_xhead_register(&h, &p, C, L, 0.1f) == 0 &&
                             ag_params_find(&p, "classifier.bias") == h.b && p.t[h.w].shape[1] == C);
        ag_params_alloc(&p);
        ag_xhead_init(&h, &p, 3);
        double s2 = 0;
        for (size_t i = 0; i < p.t[h.w].numel; i++) s2 += (double)ag_params_data(&p, h.w)[i] * ag_params_data(&p, h.w)[i];
        snprintf(what, sizeof what, "head(%d labels) init: weight std ~0.02 and nonzero", L);
        check_true(what, s2 > 0 && sqrt(s2 / p.t[h.w].numel) < 0.05);
        snprintf(key, sizeof key, "xh%d_W", L);
        memcpy(ag_params_data(&p, h.w), F32(key, NULL), p.t[h.w].numel * sizeof(float));
        snprintf(key, sizeof key, "xh%d_b", L);
        memcpy(ag_params_data(&p, h.b), F32(key, NULL), p.t[h.b].numel * sizeof(float));
        snprintf(key, sizeof key, "xh%d_y", L);
        const float *yf = L == 1 ? F32(key, NULL) : NULL;
        const int32_t *yi = L == 1 ? NULL : agfx_i32(&fx, key, NULL);

        /* eval: dropout is identity, so the head must equal torch's Linear + loss */
        float *x = zeros(n), *logits = zeros((size_t)B * L), *dl = zeros((size_t)B * L), *dpool = zeros(n);
        float *pred = zeros((size_t)B * L);
        double loss;
        int rc = ag_xhead_forward(&h, &p, pooled, B, NULL, 7, 0, x, logits);
        rc |= ag_xhead_loss(&h, logits, yf, yi, B, 1.0f, &loss, dl);
        rc |= ag_xhead_backward(&h, &p, x, dl, B, NULL, 7, 0, dpool);
        snprintf(what, sizeof what, "head(%d labels) forward/loss/backward run", L);
        check_true(what, rc == 0);
        snprintf(what, sizeof what, "head(%d labels) logits vs torch", L);
        snprintf(key, sizeof key, "xh%d_logits", L);
        check_rel(what, logits, F32(key, NULL), (size_t)B * L, 1e-5);
        snprintf(what, sizeof what, "head(%d labels) %s loss vs torch", L, L == 1 ? "BCE-with-logits" : "cross-entropy");
        snprintf(key, sizeof key, "xh%d_loss", L);
        check_loss(what, loss, key);
        snprintf(what, sizeof what, "head(%d labels) d(pooled) vs torch", L);
        snprintf(key, sizeof key, "xh%d_dpooled", L);
        check_rel(what, dpool, F32(key, NULL), n, 1e-4);
        snprintf(what, sizeof what, "head(%d labels) d(classifier.weight) vs torch", L);
        snprintf(key, sizeof key, "xh%d_dW", L);
        check_rel(what, ag_params_grad(&p, h.w), F32(key, NULL), p.t[h.w].numel, 1e-4);
        snprintf(what, sizeof what, "head(%d labels) d(classifier.bias) vs torch", L);
        snprintf(key, sizeof key, "xh%d_db", L);
        check_rel(what, ag_params_grad(&p, h.b), F32(key, NULL), p.t[h.b].numel, 1e-4);
        ag_xhead_predict(&h, logits, B, 1, pred);
        snprintf(what, sizeof what, "head(%d labels) predict (%s) vs torch", L, L == 1 ? "sigmoid" : "softmax");
        snprintf(key, sizeof key, "xh%d_pred", L);
        check_rel(what, pred, F32(key, NULL), (size_t)B * L, 1e-5);

        /* training: dropout on; FD of the loss through the (fixed, counter-based) mask */
        xh_ctx c = {&h, &p, copy(pooled, n), yf, yi, sample, B, 1};
        memset(dl, 0, (size_t)B * L * sizeof(float));
        memset(dpool, 0, n * sizeof(float));
        rc = ag_xhead_forward(&h, &p, c.pooled, B, sample, 7, 1, x, logits);
        rc |= ag_xhead_loss(&h, logits, yf, yi, B, 1.0f, &loss, dl);
        rc |= ag_xhead_backward(&h, &p, x, dl, B, sample, 7, 1, dpool);
        snprintf(what, sizeof what, "head(%d labels) training step runs", L);
        check_true(what, rc == 0);
        snprintf(what, sizeof what, "head(%d labels) d(pooled) with dropout", L);
        fd_check(what, c.pooled, n, dpool, xh_obj, &c, 1e-3f, 2e-3);
        free(c.pooled); free(x); free(logits); free(dl); free(dpool); free(pred);

        float *lg = zeros((size_t)B * L);
        if (L == 1) {
            check_true("head(1 label) loss without float targets is an error",
                       ag_xhead_loss(&h, lg, NULL, NULL, B, 1, &loss, NULL) == -1);
        } else {
            int32_t bad[6] = {0, 1, 5, 0, 0, 0};
            check_true("head(3 labels) class id out of range is an error naming it",
                       ag_xhead_loss(&h, lg, NULL, bad, B, 1, &loss, NULL) == -1 && strstr(ag_errmsg(), "label[2] = 5"));
            check_true("head: training without sample indices is an error",
                       ag_xhead_forward(&h, &p, pooled, B, NULL, 7, 1, NULL, lg) == -1);
        }
        free(lg);
        ag_params_free(&p);
    }

    /* Dropout depends on (seed, sample index) only: the same sample in another row of another
     * batch gets the same mask; kept elements are scaled by 1/(1-p); keep rate ≈ 1-p. */
    {
        enum { C2 = 384, B2 = 64 };
        ag_params p;
        ag_params_init(&p);
        ag_xhead h;
        ag_xhead_register(&h, &p, C2, 2, 0.1f);
        ag_params_alloc(&p);
        float *ones = malloc((size_t)B2 * C2 * sizeof(float)), *x1 = zeros((size_t)B2 * C2), *x2 = zeros((size_t)B2 * C2);
        float lg[B2 * 2];
        for (size_t i = 0; i < (size_t)B2 * C2; i++) ones[i] = 1.0f;
        int64_t s1[B2], s2[B2];
        for (int b = 0; b < B2; b++) { s1[b] = 1000 + b; s2[b] = 1000 + (B2 - 1 - b); }
        ag_xhead_forward(&h, &p, ones, B2, s1, 99, 1, x1, lg);
        ag_xhead_forward(&h, &p, ones, 2, s2 + B2 - 2, 99, 1, x2, lg);   /* samples 1001, 1000 */
        check_true("head dropout: same sample, other row and batch -> same mask",
                   memcmp(x2, x1 + C2, C2 * sizeof(float)) == 0 && memcmp(x2 + C2, x1, C2 * sizeof(float)) == 0);
        size_t kept = 0;
        int scaled = 1;
        for (size_t i = 0; i < (size_t)B2 * C2; i++) {
            if (x1[i] != 0) { kept++; scaled &= fabsf(x1[i] - 1.0f / 0.9f) < 1e-6f; }
        }
        double rate = (double)kept / ((double)B2 * C2);
        printf("     head dropout keep rate %.4f (p = 0.1)\n", rate);
        check_true("head dropout: keep rate within 0.01 of 0.9", fabs(rate - 0.9) < 0.01);
        check_true("head dropout: kept elements scaled by 1/(1-p)", scaled);
        ag_xhead_forward(&h, &p, ones, 2, s2 + B2 - 2, 100, 1, x2, lg);
        check_true("head dropout: another seed, another mask", memcmp(x2, x1 + C2, C2 * sizeof(float)) != 0);
        ag_xhead_forward(&h, &p, ones, B2, s1, 99, 0, x2, lg);
        check_true("head dropout: eval is identity", memcmp(x2, ones, (size_t)B2 * C2 * sizeof(float)) == 0);
        free(ones); free(x1); free(x2);
        ag_params_free(&p);
    }
}

int main(void) {
    if (agfx_load(&fx, ARGENT_FIXTURES "/losses.agfx")) return 1;
    test_pair_losses();
    test_mnrl();
    test_softmax_loss();
    test_cross_entropy();
    test_head();
    agfx_free(&fx);
    return check_finish();
}
