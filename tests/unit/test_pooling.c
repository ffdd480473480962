/* Pooling (cls / mean / max) and L2 normalisation against sentence-transformers' Pooling and
 * F.normalize (fixture tests/fixtures/losses.agfx from gen_losses.py), finite-difference
 * checks of their backward, padding edge cases and argument errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/error.h"
#include "nn/pooling.h"
#include "tests/support/check.h"
#include "tests/support/fixture.h"

static float *zeros(size_t n) { return calloc(n ? n : 1, sizeof(float)); }

static double dot(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* L(h) = Σ pool(h)·R, evaluated in the forward only. */
static double pool_objective(ag_pool_mode m, const float *h, const int32_t *mask, int B, int T, int C,
                             const float *R) {
    float *o = zeros((size_t)B * C);
    int32_t *am = malloc((size_t)B * C * sizeof *am);
    ag_pool_forward(m, h, mask, B, T, C, o, am);
    double s = dot(o, R, (size_t)B * C);
    free(o); free(am);
    return s;
}

static double norm_objective(const float *x, int B, int C, const float *R) {
    float *y = zeros((size_t)B * C);
    ag_l2norm_forward(x, B, C, y, NULL);
    double s = dot(y, R, (size_t)B * C);
    free(y);
    return s;
}

static void test_fixture(const agfx *fx) {
    size_t nh;
    const float *h = agfx_f32(fx, "pool_h", &nh);
    const agfx_tensor *ht = agfx_find(fx, "pool_h");
    int B = (int)ht->dims[0], T = (int)ht->dims[1], C = (int)ht->dims[2];
    const int32_t *mask = agfx_i32(fx, "pool_mask", NULL);
    const char *modes[] = {"cls", "mean", "max"};
    for (int k = 0; k < 3; k++) {
        ag_pool_mode m;
        check_true("parse pooling mode", ag_pool_mode_parse(modes[k], &m) == 0 &&
                                             strcmp(ag_pool_mode_name(m), modes[k]) == 0);
        char key[64], what[96];
        float *out = zeros((size_t)B * C), *dh = zeros(nh);
        int32_t *am = malloc((size_t)B * C * sizeof *am);
        snprintf(key, sizeof key, "pool_%s_out", modes[k]);
        int rc = ag_pool_forward(m, h, mask, B, T, C, out, am);
        snprintf(what, sizeof what, "%s pooling forward runs", modes[k]);
        check_true(what, rc == 0);
        snprintf(what, sizeof what, "%s pooling forward vs ST Pooling", modes[k]);
        check_rel(what, out, agfx_f32(fx, key, NULL), (size_t)B * C, 1e-5);
        snprintf(key, sizeof key, "pool_%s_R", modes[k]);
        const float *R = agfx_f32(fx, key, NULL);
        rc = ag_pool_backward(m, R, mask, am, B, T, C, dh);
        snprintf(key, sizeof key, "pool_%s_dh", modes[k]);
        snprintf(what, sizeof what, "%s pooling backward runs", modes[k]);
        check_true(what, rc == 0);
        snprintf(what, sizeof what, "%s pooling backward vs torch autograd", modes[k]);
        check_rel(what, dh, agfx_f32(fx, key, NULL), nh, 1e-4);

        /* Finite differences of Σ pool(h)·R (piecewise linear: the central difference is exact
         * up to rounding, unless a step crosses a max tie; a small step keeps clear of those). */
        float *hh = malloc(nh * sizeof *hh), *num = zeros(nh);
        memcpy(hh, h, nh * sizeof *hh);
        for (size_t i = 0; i < nh; i++) {
            float x = hh[i], step = 1e-3f;
            hh[i] = x + step;
            double lp = pool_objective(m, hh, mask, B, T, C, R);
            hh[i] = x - step;
            double lm = pool_objective(m, hh, mask, B, T, C, R);
            hh[i] = x;
            num[i] = (float)((lp - lm) / ((double)(x + step) - (double)(x - step)));
        }
        snprintf(what, sizeof what, "%s pooling backward vs finite differences", modes[k]);
        check_rel(what, dh, num, nh, 1e-3);

        /* The backward accumulates: a second call doubles dh. */
        float *twice = malloc(nh * sizeof *twice);
        for (size_t i = 0; i < nh; i++) twice[i] = 2 * dh[i];
        ag_pool_backward(m, R, mask, am, B, T, C, dh);
        snprintf(what, sizeof what, "%s pooling backward accumulates", modes[k]);
        check_rel(what, dh, twice, nh, 1e-6);
        free(out); free(dh); free(am); free(hh); free(num); free(twice);
    }

    /* Normalisation */
    size_t nx;
    const float *x = agfx_f32(fx, "norm_x", &nx);
    const agfx_tensor *xt = agfx_find(fx, "norm_x");
    int Bn = (int)xt->dims[0], Cn = (int)xt->dims[1];
    float *y = zeros(nx), *nrm = zeros((size_t)Bn), *dx = zeros(nx);
    ag_l2norm_forward(x, Bn, Cn, y, nrm);
    check_rel("normalize forward vs F.normalize", y, agfx_f32(fx, "norm_y", NULL), nx, 1e-5);
    const float *R = agfx_f32(fx, "norm_R", NULL);
    ag_l2norm_backward(y, nrm, R, Bn, Cn, dx);
    check_rel("normalize backward vs torch autograd", dx, agfx_f32(fx, "norm_dx", NULL), nx, 1e-4);
    float *xx = malloc(nx * sizeof *xx), *num = zeros(nx);
    memcpy(xx, x, nx * sizeof *xx);
    for (size_t i = 0; i < nx; i++) {
        float x0 = xx[i], step = 1e-3f * (nrm[i / Cn] > 1e-2f ? 1.0f : 1e-3f);   /* relative to |x| */
        xx[i] = x0 + step;
        double lp = norm_objective(xx, Bn, Cn, R);
        xx[i] = x0 - step;
        double lm = norm_objective(xx, Bn, Cn, R);
        xx[i] = x0;
        num[i] = (float)((lp - lm) / ((double)(x0 + step) - (double)(x0 - step)));
    }
    /* per row: rows have very different gradient scales (one is short) */
    for (int b = 0; b < Bn; b++) {
        char what[80];
        snprintf(what, sizeof what, "normalize backward vs finite differences, row %d", b);
        check_rel(what, dx + (size_t)b * Cn, num + (size_t)b * Cn, (size_t)Cn, 2e-3);
    }
    /* in place forward */
    memcpy(xx, x, nx * sizeof *xx);
    ag_l2norm_forward(xx, Bn, Cn, xx, NULL);
    check_rel("normalize forward in place", xx, agfx_f32(fx, "norm_y", NULL), nx, 1e-6);
    free(y); free(nrm); free(dx); free(xx); free(num);
}

/* Padding edge cases: a row with no real token, a zero vector, cls after left padding. */
static void test_edges(void) {
    enum { B = 2, T = 3, C = 2 };
    float h[B * T * C] = {1, 2, 3, 4, 5, 6, /* row 1: */ 7, 8, 9, 10, 11, 12};
    int32_t mask[B * T] = {0, 0, 0, /* row 1: left padded */ 0, 1, 1};
    float out[B * C], dout[B * C] = {1, 1, 1, 1};
    int32_t am[B * C];
    float dh[B * T * C];

    ag_pool_forward(AG_POOL_MEAN, h, mask, B, T, C, out, NULL);
    check_true("mean of a row without tokens is 0 (count clamped to 1e-9)", out[0] == 0 && out[1] == 0);
    check_true("mean over real tokens only", out[2] == 10 && out[3] == 11);
    memset(dh, 0, sizeof dh);
    ag_pool_backward(AG_POOL_MEAN, dout, mask, NULL, B, T, C, dh);
    check_true("mean backward: no gradient to padding", dh[0] == 0 && dh[6] == 0 && dh[8] == 0.5f && dh[11] == 0.5f);

    ag_pool_forward(AG_POOL_MAX, h, mask, B, T, C, out, am);
    check_true("max of a row without tokens is -inf, as ST", isinf(out[0]) && out[0] < 0 && am[0] == -1);
    check_true("max over real tokens", out[2] == 11 && out[3] == 12 && am[2] == 2);
    memset(dh, 0, sizeof dh);
    check_true("max backward ok", ag_pool_backward(AG_POOL_MAX, dout, mask, am, B, T, C, dh) == 0);
    check_true("max backward: empty row gets nothing, argmax gets all", dh[0] == 0 && dh[10] == 1 && dh[11] == 1 && dh[8] == 0);

    ag_pool_forward(AG_POOL_CLS, h, mask, B, T, C, out, NULL);
    check_true("cls: first real token (position 0 for an empty row)", out[0] == 1 && out[2] == 9 && out[3] == 10);

    float z[4] = {0, 0, 3, 4}, zy[4], zn[2], dz[4] = {0, 0, 0, 0}, g[4] = {1, 2, 1, 1};
    ag_l2norm_forward(z, 2, 2, zy, zn);
    check_true("normalize of a zero row is 0 (norm clamped to 1e-12)", zy[0] == 0 && zy[1] == 0 && zn[0] == 0);
    check_true("normalize of (3,4)", fabsf(zy[2] - 0.6f) < 1e-7f && fabsf(zy[3] - 0.8f) < 1e-7f);
    ag_l2norm_backward(zy, zn, g, 2, 2, dz);
    check_true("normalize backward at a zero row is finite", isfinite(dz[0]) && isfinite(dz[1]));
    check_true("normalize backward of (3,4) is orthogonal to it", fabsf(3 * dz[2] + 4 * dz[3]) < 1e-6f);

    /* argument errors return -1 with a message, never crash */
    ag_pool_mode m;
    check_true("unknown mode name is an error naming it",
               ag_pool_mode_parse("weightedmean", &m) == -1 && strstr(ag_errmsg(), "weightedmean"));
    check_true("max without argmax buffer is an error",
               ag_pool_forward(AG_POOL_MAX, h, mask, B, T, C, out, NULL) == -1 && strstr(ag_errmsg(), "argmax"));
    check_true("bad shape is an error", ag_pool_forward(AG_POOL_MEAN, h, mask, B, 0, C, out, NULL) == -1);
    check_true("bad mode value is an error", ag_pool_forward((ag_pool_mode)7, h, mask, B, T, C, out, NULL) == -1);
    am[0] = 99;
    check_true("corrupt argmax is an error", ag_pool_backward(AG_POOL_MAX, dout, mask, am, B, T, C, dh) == -1);
}

int main(void) {
    agfx fx;
    if (agfx_load(&fx, ARGENT_FIXTURES "/losses.agfx")) return 1;
    test_fixture(&fx);
    test_edges();
    agfx_free(&fx);
    return check_finish();
}
