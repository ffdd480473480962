/* Mask-aware sentence pooling and row L2 normalisation, forward and backward; see pooling.h. */
#include "nn/pooling.h"

#include <math.h>
#include <string.h>

#include "nn/error.h"

#define AG_NORM_EPS 1e-12   /* torch.nn.functional.normalize default */
#define AG_MEAN_EPS 1e-9    /* ST Pooling: clamp of the token count */

int ag_pool_mode_parse(const char *name, ag_pool_mode *mode) {
    if (!name) return ag_err("pooling mode: missing (expected cls, mean or max)");
    if (strcmp(name, "cls") == 0) *mode = AG_POOL_CLS;
    else if (strcmp(name, "mean") == 0) *mode = AG_POOL_MEAN;
    else if (strcmp(name, "max") == 0) *mode = AG_POOL_MAX;
    else return ag_err("pooling mode '%s': expected cls, mean or max", name);
    return 0;
}

const char *ag_pool_mode_name(ag_pool_mode mode) {
    switch (mode) {
    case AG_POOL_CLS: return "cls";
    case AG_POOL_MEAN: return "mean";
    case AG_POOL_MAX: return "max";
    }
    return "?";
}

static int check_args(const char *fn, ag_pool_mode mode, const void *a, const int32_t *mask,
                      int B, int T, int C, const void *b) {
    if (mode != AG_POOL_CLS && mode != AG_POOL_MEAN && mode != AG_POOL_MAX)
        return ag_err("%s: unknown pooling mode %d", fn, (int)mode);
    if (B < 0 || T < 1 || C < 1)
        return ag_err("%s: bad shape B=%d T=%d C=%d (expected B >= 0, T >= 1, C >= 1)", fn, B, T, C);
    if (B > 0 && (!a || !mask || !b)) return ag_err("%s: NULL tensor argument", fn);
    return 0;
}

/* ST takes the first position whose mask is set (argmax over the mask); 0 if none is. */
static int first_real(const int32_t *m, int T) {
    for (int t = 0; t < T; t++)
        if (m[t]) return t;
    return 0;
}

int ag_pool_forward(ag_pool_mode mode, const float *h, const int32_t *mask, int B, int T, int C,
                    float *out, int32_t *argmax) {
    if (check_args("ag_pool_forward", mode, h, mask, B, T, C, out)) return -1;
    if (mode == AG_POOL_MAX && B > 0 && !argmax)
        return ag_err("ag_pool_forward: max pooling needs an argmax[B,C] buffer for the backward");
    for (int b = 0; b < B; b++) {
        const float *hb = h + (size_t)b * T * C;   /* [T,C] */
        const int32_t *mb = mask + (size_t)b * T;
        float *ob = out + (size_t)b * C;
        if (mode == AG_POOL_CLS) {
            memcpy(ob, hb + (size_t)first_real(mb, T) * C, (size_t)C * sizeof(float));
        } else if (mode == AG_POOL_MEAN) {
            /* Σ in double: the order differs from torch's anyway, so take the accurate one. */
            double cnt = 0;
            for (int t = 0; t < T; t++) cnt += mb[t] != 0;
            float den = (float)(cnt > AG_MEAN_EPS ? cnt : AG_MEAN_EPS);
            for (int c = 0; c < C; c++) {
                double s = 0;
                for (int t = 0; t < T; t++)
                    if (mb[t]) s += hb[(size_t)t * C + c];
                ob[c] = (float)s / den;
            }
        } else {
            int32_t *ab = argmax + (size_t)b * C;
            for (int c = 0; c < C; c++) { ob[c] = -INFINITY; ab[c] = -1; }
            for (int t = 0; t < T; t++) {
                if (!mb[t]) continue;
                const float *ht = hb + (size_t)t * C;
                for (int c = 0; c < C; c++)
                    if (ht[c] > ob[c] || ab[c] < 0) { ob[c] = ht[c]; ab[c] = t; }
            }
        }
    }
    return 0;
}

int ag_pool_backward(ag_pool_mode mode, const float *dout, const int32_t *mask,
                     const int32_t *argmax, int B, int T, int C, float *dh) {
    if (check_args("ag_pool_backward", mode, dout, mask, B, T, C, dh)) return -1;
    if (mode == AG_POOL_MAX && B > 0 && !argmax)
        return ag_err("ag_pool_backward: max pooling needs the forward's argmax[B,C]");
    for (int b = 0; b < B; b++) {
        float *db = dh + (size_t)b * T * C;
        const int32_t *mb = mask + (size_t)b * T;
        const float *gb = dout + (size_t)b * C;
        if (mode == AG_POOL_CLS) {
            float *d0 = db + (size_t)first_real(mb, T) * C;
            for (int c = 0; c < C; c++) d0[c] += gb[c];
        } else if (mode == AG_POOL_MEAN) {
            double cnt = 0;
            for (int t = 0; t < T; t++) cnt += mb[t] != 0;
            float den = (float)(cnt > AG_MEAN_EPS ? cnt : AG_MEAN_EPS);
            for (int t = 0; t < T; t++) {
                if (!mb[t]) continue;
                float *dt = db + (size_t)t * C;
                for (int c = 0; c < C; c++) dt[c] += gb[c] / den;
            }
        } else {
            const int32_t *ab = argmax + (size_t)b * C;
            for (int c = 0; c < C; c++) {
                int t = ab[c];
                if (t < 0) continue;   /* no real token: -inf output, nothing to route to */
                if (t >= T) return ag_err("ag_pool_backward: argmax[%d,%d] = %d outside T=%d", b, c, t, T);
                db[(size_t)t * C + c] += gb[c];
            }
        }
    }
    return 0;
}

void ag_l2norm_forward(const float *x, int B, int C, float *y, float *norm) {
    for (int b = 0; b < B; b++) {
        const float *xb = x + (size_t)b * C;
        float *yb = y + (size_t)b * C;
        double ss = 0;
        for (int c = 0; c < C; c++) ss += (double)xb[c] * xb[c];
        float n = (float)sqrt(ss);
        if (norm) norm[b] = n;
        float den = n > AG_NORM_EPS ? n : (float)AG_NORM_EPS;
        for (int c = 0; c < C; c++) yb[c] = xb[c] / den;
    }
}

void ag_l2norm_backward(const float *y, const float *norm, const float *dy, int B, int C, float *dx) {
    for (int b = 0; b < B; b++) {
        const float *yb = y + (size_t)b * C, *gb = dy + (size_t)b * C;
        float *xb = dx + (size_t)b * C;
        float n = norm[b];
        if (!(n > AG_NORM_EPS)) {   /* clamped: y = x / eps, a plain scaling */
            for (int c = 0; c < C; c++) xb[c] += (float)(gb[c] / AG_NORM_EPS);
            continue;
        }
        /* y = x/n, dn/dx = y: dx = (dy - y (y·dy)) / n */
        double yg = 0;
        for (int c = 0; c < C; c++) yg += (double)yb[c] * gb[c];
        for (int c = 0; c < C; c++) xb[c] += (float)((gb[c] - yb[c] * yg) / n);
    }
}
