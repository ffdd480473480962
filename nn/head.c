/* Cross-encoder classification head (dropout -> Linear -> BCE / cross-entropy); see head.h. */
#include "nn/head.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "nn/error.h"
#include "nn/losses.h"
#include "nn/rng.h"

int ag_xhead_register(ag_xhead *h, ag_params *p, int C, int num_labels, float dropout) {
    if (C < 1 || num_labels < 1)
        return ag_err("cross-encoder head: bad sizes C=%d num_labels=%d (expected >= 1)", C, num_labels);
    if (!(dropout >= 0.0f && dropout <= 1.0f))
        return ag_err("cross-encoder head: dropout %g outside [0, 1]", (double)dropout);
    h->C = C;
    h->num_labels = num_labels;
    h->dropout = dropout;
    h->w = ag_params_add(p, "classifier.weight", 2, (int64_t[]){num_labels, C});
    h->b = ag_params_add(p, "classifier.bias", 1, (int64_t[]){num_labels});
    if (h->w < 0 || h->b < 0)
        return ag_err("cross-encoder head: cannot register classifier.weight/bias (name taken, "
                      "or the table is already allocated)");
    return 0;
}

static int check_head(const char *fn, const ag_xhead *h, const ag_params *p, int B) {
    if (!p || !p->data) return ag_err("%s: parameter table not allocated", fn);
    if (h->w < 0 || h->w >= p->n || h->b < 0 || h->b >= p->n) return ag_err("%s: head not registered", fn);
    const ag_tensor_info *w = &p->t[h->w], *b = &p->t[h->b];
    if (w->ndim != 2 || w->shape[0] != h->num_labels || w->shape[1] != h->C || b->ndim != 1 ||
        b->shape[0] != h->num_labels)
        return ag_err("%s: %s / %s have the wrong shape (expected [%d,%d] and [%d])", fn, w->name,
                      b->name, h->num_labels, h->C, h->num_labels);
    if (B < 1) return ag_err("%s: bad batch size B=%d", fn, B);
    return 0;
}

int ag_xhead_init(const ag_xhead *h, ag_params *p, uint64_t seed) {
    if (check_head("ag_xhead_init", h, p, 1)) return -1;
    const ag_tensor_info *t = &p->t[h->w];
    uint64_t a = ag_name_hash(t->name);
    float *w = ag_params_data(p, h->w);
    for (size_t i = 0; i < t->numel; i++) w[i] = 0.02f * ag_rng_normal(seed, AG_RNG_INIT, a, 0, i);
    memset(ag_params_data(p, h->b), 0, (size_t)h->num_labels * sizeof(float));
    return 0;
}

/* The dropout multiplier of element c of sample s: 0 or 1/(1-p). */
static float drop_mult(uint64_t seed, int64_t s, int c, float pdrop, float keep_scale) {
    return ag_rng_uniform(seed, AG_RNG_DROPOUT, (uint64_t)s, AG_XHEAD_DROPOUT_SITE, (uint64_t)c) >= pdrop
               ? keep_scale : 0.0f;
}

static int dropout_on(const ag_xhead *h, int training) { return training && h->dropout > 0.0f; }

int ag_xhead_forward(const ag_xhead *h, const ag_params *p, const float *pooled, int B,
                     const int64_t *sample, uint64_t seed, int training, float *xdrop,
                     float *logits) {
    if (check_head("ag_xhead_forward", h, p, B)) return -1;
    if (!pooled || !logits) return ag_err("ag_xhead_forward: NULL pooled or logits");
    int drop = dropout_on(h, training);
    if (drop && !sample) return ag_err("ag_xhead_forward: training dropout needs the sample indices");
    int C = h->C, L = h->num_labels;
    /* x[B,C]: the classifier's input, the caller's buffer or a temporary. */
    float *x = xdrop;
    if (!x && drop) {
        x = malloc((size_t)B * C * sizeof(float));
        if (!x) return ag_err("ag_xhead_forward: out of memory (B=%d C=%d)", B, C);
    }
    const float *in = pooled;
    if (x) {
        /* p == 1 keeps nothing (torch returns zeros); avoid the infinite scale. */
        float ks = h->dropout < 1.0f ? 1.0f / (1.0f - h->dropout) : 0.0f;
        for (int b = 0; b < B; b++)
            for (int c = 0; c < C; c++) {
                size_t i = (size_t)b * C + c;
                x[i] = drop ? pooled[i] * drop_mult(seed, sample[b], c, h->dropout, ks) : pooled[i];
            }
        in = x;
    }
    const float *W = ag_params_data(p, h->w), *bias = ag_params_data(p, h->b);
    for (int b = 0; b < B; b++) memcpy(logits + (size_t)b * L, bias, (size_t)L * sizeof(float));
    /* logits[B,L] += x[B,C] · Wᵀ (W is [L,C]) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, L, C, 1.0f, in, C, W, C, 1.0f, logits, L);
    if (x != xdrop) free(x);
    return 0;
}

int ag_xhead_loss(const ag_xhead *h, const float *logits, const float *yf, const int32_t *yi,
                  int B, float gscale, double *loss, float *dlogits) {
    if (h->num_labels == 1) {
        if (!yf) return ag_err("cross-encoder loss: one label needs float targets (yf)");
        return ag_loss_bce_logits(logits, yf, B, gscale, loss, dlogits);
    }
    if (!yi) return ag_err("cross-encoder loss: %d labels need class ids (yi)", h->num_labels);
    return ag_loss_cross_entropy(logits, yi, B, h->num_labels, gscale, loss, dlogits);
}

int ag_xhead_backward(const ag_xhead *h, ag_params *p, const float *xdrop, const float *dlogits,
                      int B, const int64_t *sample, uint64_t seed, int training, float *dpooled) {
    if (check_head("ag_xhead_backward", h, p, B)) return -1;
    if (!xdrop || !dlogits) return ag_err("ag_xhead_backward: NULL xdrop or dlogits");
    int drop = dropout_on(h, training);
    if (drop && !sample) return ag_err("ag_xhead_backward: training dropout needs the sample indices");
    int C = h->C, L = h->num_labels;
    float *dW = ag_params_grad(p, h->w), *db = ag_params_grad(p, h->b);
    const float *W = ag_params_data(p, h->w);
    /* dW[L,C] += dlogitsᵀ · x; db += Σ_b dlogits */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, L, C, B, 1.0f, dlogits, L, xdrop, C, 1.0f, dW, C);
    for (int b = 0; b < B; b++)
        for (int l = 0; l < L; l++) db[l] += dlogits[(size_t)b * L + l];
    if (!dpooled) return 0;
    if (!drop) {
        /* dpooled[B,C] += dlogits · W */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, C, L, 1.0f, dlogits, L, W, C, 1.0f, dpooled, C);
        return 0;
    }
    float *dx = malloc((size_t)B * C * sizeof(float));
    if (!dx) return ag_err("ag_xhead_backward: out of memory (B=%d C=%d)", B, C);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, C, L, 1.0f, dlogits, L, W, C, 0.0f, dx, C);
    float ks = h->dropout < 1.0f ? 1.0f / (1.0f - h->dropout) : 0.0f;
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++) {
            size_t i = (size_t)b * C + c;
            dpooled[i] += dx[i] * drop_mult(seed, sample[b], c, h->dropout, ks);
        }
    free(dx);
    return 0;
}

void ag_xhead_predict(const ag_xhead *h, const float *logits, int B, int softmax, float *out) {
    int L = h->num_labels;
    if (L == 1) {
        for (int b = 0; b < B; b++) {
            double x = logits[b];
            out[b] = (float)(x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x)));
        }
        return;
    }
    for (int b = 0; b < B; b++) {
        const float *z = logits + (size_t)b * L;
        float *o = out + (size_t)b * L;
        if (!softmax) { memmove(o, z, (size_t)L * sizeof(float)); continue; }
        double mx = z[0], s = 0;
        for (int l = 1; l < L; l++) if (z[l] > mx) mx = z[l];
        for (int l = 0; l < L; l++) s += exp(z[l] - mx);
        for (int l = 0; l < L; l++) o[l] = (float)(exp(z[l] - mx) / s);
    }
}
