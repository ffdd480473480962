/* Bi-encoder losses (sentence-transformers 6.2) with explicit backward; see losses.h.
 * Reductions and softmaxes run in double: the result is then at least as close to the exact
 * value as torch's float32 arithmetic, so the comparison tolerance only has to absorb torch's
 * own rounding. Similarity matrices go through cblas_sgemm. */
#include "nn/losses.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "nn/error.h"
#include "nn/pooling.h"
#include "nn/rng.h"

#define COS_EPS 1e-8    /* torch.cosine_similarity: each norm clamped to >= eps */
#define NORM_EPS 1e-12  /* torch.nn.functional.normalize */

static int bad_shape(const char *fn, int B, int C) {
    return ag_err("%s: bad shape B=%d C=%d (expected B >= 1, C >= 1)", fn, B, C);
}

/* ---- pairwise cosine: cos_b = (u_b / max(|u_b|, eps)) · (v_b / max(|v_b|, eps)) ---------- */

typedef struct {
    double nu, nv;   /* unclamped norms */
    double cos;
} pair_cos;

static pair_cos pair_cos_forward(const float *u, const float *v, int C, double eps) {
    double su = 0, sv = 0, uv = 0;
    for (int c = 0; c < C; c++) {
        su += (double)u[c] * u[c];
        sv += (double)v[c] * v[c];
        uv += (double)u[c] * v[c];
    }
    pair_cos r = {sqrt(su), sqrt(sv), 0};
    double du = r.nu > eps ? r.nu : eps, dv = r.nv > eps ? r.nv : eps;
    r.cos = uv / (du * dv);
    return r;
}

/* du += g·∂cos/∂u, dv += g·∂cos/∂v. With û = u/nu, v̂ = v/nv: ∂cos/∂u = (v̂ - cos·û)/nu; a
 * clamped norm is a constant, so then ∂cos/∂u = v̂/eps. */
static void pair_cos_backward(const float *u, const float *v, int C, double eps, pair_cos r,
                              double g, float *du, float *dv) {
    int cu = !(r.nu > eps), cv = !(r.nv > eps);
    double nu = cu ? eps : r.nu, nv = cv ? eps : r.nv;
    for (int c = 0; c < C; c++) {
        double uh = u[c] / nu, vh = v[c] / nv;
        if (du) du[c] += (float)(g * (cu ? vh : vh - r.cos * uh) / nu);
        if (dv) dv[c] += (float)(g * (cv ? uh : uh - r.cos * vh) / nv);
    }
}

int ag_loss_cosine(const float *u, const float *v, const float *y, int B, int C, float gscale,
                   double *loss, float *du, float *dv) {
    if (B < 1 || C < 1) return bad_shape("ag_loss_cosine", B, C);
    if (!u || !v || !y || !loss) return ag_err("ag_loss_cosine: NULL argument");
    double sum = 0;
    for (int b = 0; b < B; b++) {
        const float *ub = u + (size_t)b * C, *vb = v + (size_t)b * C;
        pair_cos r = pair_cos_forward(ub, vb, C, COS_EPS);
        double e = (float)r.cos - (double)y[b];   /* torch's cos is a float */
        sum += e * e;
        if (du || dv)
            pair_cos_backward(ub, vb, C, COS_EPS, r, gscale * 2.0 * e / B,
                              du ? du + (size_t)b * C : NULL, dv ? dv + (size_t)b * C : NULL);
    }
    *loss = sum / B;
    return 0;
}

int ag_loss_contrastive(const float *u, const float *v, const float *y, int B, int C, float margin,
                        float gscale, double *loss, float *du, float *dv) {
    if (B < 1 || C < 1) return bad_shape("ag_loss_contrastive", B, C);
    if (!u || !v || !y || !loss) return ag_err("ag_loss_contrastive: NULL argument");
    double sum = 0;
    for (int b = 0; b < B; b++) {
        const float *ub = u + (size_t)b * C, *vb = v + (size_t)b * C;
        pair_cos r = pair_cos_forward(ub, vb, C, COS_EPS);
        double d = 1.0 - (float)r.cos, lab = y[b];
        double h = margin - d > 0 ? margin - d : 0;   /* relu(m - d) */
        sum += 0.5 * (lab * d * d + (1 - lab) * h * h);
        /* ∂l/∂d = y·d - (1 - y)·relu(m - d); ∂d/∂cos = -1 */
        double gd = lab * d - (1 - lab) * h;
        if (du || dv)
            pair_cos_backward(ub, vb, C, COS_EPS, r, -gscale * gd / B,
                              du ? du + (size_t)b * C : NULL, dv ? dv + (size_t)b * C : NULL);
    }
    *loss = sum / B;
    return 0;
}

int ag_loss_cosent(const float *u, const float *v, const float *y, int B, int C, float scale,
                   float gscale, double *loss, float *du, float *dv) {
    if (B < 1 || C < 1) return bad_shape("ag_loss_cosent", B, C);
    if (!u || !v || !y || !loss) return ag_err("ag_loss_cosent: NULL argument");
    pair_cos *r = malloc((size_t)B * sizeof *r);
    double *s = malloc((size_t)B * sizeof *s), *g = calloc((size_t)B, sizeof *g);
    if (!r || !s || !g) { free(r); free(s); free(g); return ag_err("ag_loss_cosent: out of memory (B=%d)", B); }
    for (int b = 0; b < B; b++) {
        r[b] = pair_cos_forward(u + (size_t)b * C, v + (size_t)b * C, C, NORM_EPS);
        s[b] = (double)scale * (float)r[b].cos;
    }
    /* log(1 + Σ exp(s_i - s_j)) over pairs with y_i < y_j, shifted by the largest term
     * (0 for the "1") so that exp never overflows. */
    double mx = 0;
    for (int i = 0; i < B; i++)
        for (int j = 0; j < B; j++)
            if (y[i] < y[j] && s[i] - s[j] > mx) mx = s[i] - s[j];
    double z = exp(-mx);
    for (int i = 0; i < B; i++)
        for (int j = 0; j < B; j++)
            if (y[i] < y[j]) z += exp(s[i] - s[j] - mx);
    *loss = mx + log(z);
    if (du || dv) {
        /* ∂L/∂s_i = Σ_j w_ij - Σ_k w_ki, w_ij = exp(s_i - s_j) / Z over counted pairs */
        for (int i = 0; i < B; i++)
            for (int j = 0; j < B; j++)
                if (y[i] < y[j]) {
                    double w = exp(s[i] - s[j] - mx) / z;
                    g[i] += w;
                    g[j] -= w;
                }
        for (int b = 0; b < B; b++)
            pair_cos_backward(u + (size_t)b * C, v + (size_t)b * C, C, NORM_EPS, r[b],
                              (double)gscale * scale * g[b],
                              du ? du + (size_t)b * C : NULL, dv ? dv + (size_t)b * C : NULL);
    }
    free(r); free(s); free(g);
    return 0;
}

int ag_loss_mse(const float *s, const float *t, int B, int C, float gscale, double *loss, float *ds) {
    if (B < 1 || C < 1) return bad_shape("ag_loss_mse", B, C);
    if (!s || !t || !loss) return ag_err("ag_loss_mse: NULL argument");
    size_t n = (size_t)B * C;
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        double e = (double)s[i] - t[i];
        sum += e * e;
        if (ds) ds[i] += (float)(gscale * 2.0 * e / (double)n);
    }
    *loss = sum / (double)n;
    return 0;
}

/* ---- cross-entropy ------------------------------------------------------------------------ */

/* One row: returns logsumexp(x) and, if p is given, writes softmax(x) to p[L]. */
static double row_lse(const float *x, int L, double *p) {
    double mx = -INFINITY;
    for (int j = 0; j < L; j++) if (x[j] > mx) mx = x[j];
    if (mx == -INFINITY) mx = 0;   /* all -inf: keep exp finite, the lse is -inf */
    double z = 0;
    for (int j = 0; j < L; j++) {
        double e = exp((double)x[j] - mx);
        if (p) p[j] = e;
        z += e;
    }
    if (p) for (int j = 0; j < L; j++) p[j] /= z;
    return mx + log(z);
}

int ag_loss_cross_entropy(const float *logits, const int32_t *labels, int B, int L, float gscale,
                          double *loss, float *dlogits) {
    if (B < 1 || L < 1) return ag_err("ag_loss_cross_entropy: bad shape B=%d L=%d", B, L);
    if (!logits || !labels || !loss) return ag_err("ag_loss_cross_entropy: NULL argument");
    int cnt = 0;
    for (int b = 0; b < B; b++) {
        if (labels[b] == AG_IGNORE_INDEX) continue;
        if (labels[b] < 0 || labels[b] >= L)
            return ag_err("ag_loss_cross_entropy: label[%d] = %d, expected a class id in [0, %d) "
                          "or %d (ignored)", b, labels[b], L, AG_IGNORE_INDEX);
        cnt++;
    }
    double *p = dlogits ? malloc((size_t)L * sizeof *p) : NULL;
    if (dlogits && !p) return ag_err("ag_loss_cross_entropy: out of memory (L=%d)", L);
    double sum = 0;
    for (int b = 0; b < B; b++) {
        if (labels[b] == AG_IGNORE_INDEX) continue;
        const float *x = logits + (size_t)b * L;
        sum += row_lse(x, L, p) - x[labels[b]];
        if (dlogits) {
            float *d = dlogits + (size_t)b * L;
            double w = (double)gscale / cnt;
            for (int j = 0; j < L; j++) d[j] += (float)(w * (p[j] - (j == labels[b])));
        }
    }
    free(p);
    *loss = cnt ? sum / cnt : NAN;
    return 0;
}

int ag_loss_bce_logits(const float *x, const float *y, int B, float gscale, double *loss, float *dx) {
    if (B < 1) return ag_err("ag_loss_bce_logits: bad batch size B=%d", B);
    if (!x || !y || !loss) return ag_err("ag_loss_bce_logits: NULL argument");
    double sum = 0;
    for (int b = 0; b < B; b++) {
        double xb = x[b], yb = y[b];
        sum += (xb > 0 ? xb : 0) - xb * yb + log1p(exp(-fabs(xb)));
        if (dx) {
            double sig = xb >= 0 ? 1 / (1 + exp(-xb)) : exp(xb) / (1 + exp(xb));
            dx[b] += (float)(gscale * (sig - yb) / B);
        }
    }
    *loss = sum / B;
    return 0;
}

/* ---- MultipleNegativesRankingLoss -------------------------------------------------------- */

/* Softmax cross-entropy of row S[0..n) with target t, in place: S becomes w·(softmax - onehot).
 * Returns the row's loss. */
static double ce_row_inplace(float *S, int n, int t, double w) {
    double mx = -INFINITY;
    for (int j = 0; j < n; j++) if (S[j] > mx) mx = S[j];
    double z = 0;
    for (int j = 0; j < n; j++) z += exp((double)S[j] - mx);
    double lse = mx + log(z), l = lse - S[t];
    for (int j = 0; j < n; j++) S[j] = (float)(w * (exp((double)S[j] - lse) - (j == t)));
    return l;
}

/* The shared implementation: forward rows (q[self[i]] against cand, target pos[i]) and, if
 * sym, backward rows (cand[pos[i]] against q, target self[i]). */
static int mnrl_impl(const char *fn, const float *q, int nq, const int32_t *self, int nl,
                     const float *cand, int nc, int C, const int32_t *pos, float scale, int sym,
                     float gscale, double *loss_sum, float *dq, float *dcand) {
    if (nl < 0 || nq < 0 || nc < 0 || C < 1 || nl > nq)
        return ag_err("%s: bad sizes nl=%d nq=%d nc=%d C=%d", fn, nl, nq, nc, C);
    if (!loss_sum) return ag_err("%s: NULL loss_sum", fn);
    if (nl == 0) { *loss_sum = 0; return 0; }
    if (nc < 1) return ag_err("%s: %d anchors but no candidates", fn, nl);
    if (!q || !cand || !pos) return ag_err("%s: NULL tensor argument", fn);
    for (int i = 0; i < nl; i++) {
        if (pos[i] < 0 || pos[i] >= nc)
            return ag_err("%s: pos[%d] = %d outside the %d candidates", fn, i, pos[i], nc);
        if (self && (self[i] < 0 || self[i] >= nq))
            return ag_err("%s: self[%d] = %d outside the %d anchors", fn, i, self[i], nq);
    }
    int grad = dq || dcand;
    size_t C_ = (size_t)C;
    /* Workspace: qn[nq,C] qnorm[nq] cn[nc,C] cnorm[nc] an[nl,C] S[nl,nc]; and for the
     * backward dqn[nq,C] dcn[nc,C] dan[nl,C]; with sym also pn[nl,C] S2[nl,nq] dpn[nl,C]. */
    size_t nflt = (size_t)nq * C_ + nq + (size_t)nc * C_ + nc + (size_t)nl * C_ + (size_t)nl * nc;
    if (grad) nflt += (size_t)nq * C_ + (size_t)nc * C_ + (size_t)nl * C_;
    if (sym) nflt += 2 * (size_t)nl * C_ + (size_t)nl * nq;
    float *ws = malloc(nflt * sizeof(float));
    if (!ws) return ag_err("%s: out of memory (%zu floats of workspace)", fn, nflt);
    float *qn = ws, *qnorm = qn + (size_t)nq * C_, *cn = qnorm + nq, *cnorm = cn + (size_t)nc * C_;
    float *an = cnorm + nc, *S = an + (size_t)nl * C_, *next = S + (size_t)nl * nc;
    float *dqn = NULL, *dcn = NULL, *dan = NULL, *pn = NULL, *S2 = NULL, *dpn = NULL;
    if (grad) { dqn = next; dcn = dqn + (size_t)nq * C_; dan = dcn + (size_t)nc * C_; next = dan + (size_t)nl * C_; }
    if (sym) { pn = next; S2 = pn + (size_t)nl * C_; dpn = S2 + (size_t)nl * nq; }

    ag_l2norm_forward(q, nq, C, qn, qnorm);
    ag_l2norm_forward(cand, nc, C, cn, cnorm);
    for (int i = 0; i < nl; i++)
        memcpy(an + (size_t)i * C_, qn + (size_t)(self ? self[i] : i) * C_, C_ * sizeof(float));
    /* S[nl,nc] = scale · an · cnᵀ */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nl, nc, C, scale, an, C, cn, C, 0.0f, S, nc);
    if (sym) {
        for (int i = 0; i < nl; i++)
            memcpy(pn + (size_t)i * C_, cn + (size_t)pos[i] * C_, C_ * sizeof(float));
        /* S2[nl,nq] = scale · pn · qnᵀ: positive i against every anchor */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nl, nq, C, scale, pn, C, qn, C, 0.0f, S2, nq);
    }
    double w = sym ? 0.5 * gscale : gscale, sum = 0;
    for (int i = 0; i < nl; i++) {
        double l = ce_row_inplace(S + (size_t)i * nc, nc, pos[i], w);
        if (sym) l = 0.5 * (l + ce_row_inplace(S2 + (size_t)i * nq, nq, self ? self[i] : i, w));
        sum += l;
    }
    *loss_sum = sum;
    if (grad) {
        /* S now holds dS. dan = scale·dS·cn, dcn = scale·dSᵀ·an. */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nl, C, nc, scale, S, nc, cn, C, 0.0f, dan, C);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nc, C, nl, scale, S, nc, an, C, 0.0f, dcn, C);
        memset(dqn, 0, (size_t)nq * C_ * sizeof(float));
        if (sym) {
            /* dpn = scale·dS2·qn; dqn = scale·dS2ᵀ·pn */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nl, C, nq, scale, S2, nq, qn, C, 0.0f, dpn, C);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nq, C, nl, scale, S2, nq, pn, C, 0.0f, dqn, C);
            for (int i = 0; i < nl; i++) {
                float *d = dcn + (size_t)pos[i] * C_, *s = dpn + (size_t)i * C_;
                for (int c = 0; c < C; c++) d[c] += s[c];
            }
        }
        for (int i = 0; i < nl; i++) {
            float *d = dqn + (size_t)(self ? self[i] : i) * C_, *s = dan + (size_t)i * C_;
            for (int c = 0; c < C; c++) d[c] += s[c];
        }
        if (dq) ag_l2norm_backward(qn, qnorm, dqn, nq, C, dq);
        if (dcand) ag_l2norm_backward(cn, cnorm, dcn, nc, C, dcand);
    }
    free(ws);
    return 0;
}

int ag_mnrl_block(const float *a, int nl, const float *cand, int nc, int C, const int32_t *pos,
                  float scale, float gscale, double *loss_sum, float *da, float *dcand) {
    return mnrl_impl("ag_mnrl_block", a, nl, NULL, nl, cand, nc, C, pos, scale, 0, gscale,
                     loss_sum, da, dcand);
}

int ag_mnrl_sym_block(const float *q, int nq, const int32_t *self, int nl, const float *cand,
                      int nc, int C, const int32_t *pos, float scale, float gscale,
                      double *loss_sum, float *dq, float *dcand) {
    if (!self && nl != nq)
        return ag_err("ag_mnrl_sym_block: self is NULL but nl=%d != nq=%d", nl, nq);
    return mnrl_impl("ag_mnrl_sym_block", q, nq, self, nl, cand, nc, C, pos, scale, 1, gscale,
                     loss_sum, dq, dcand);
}

int ag_loss_mnrl(const float *a, const float *p, const float *n, int nneg, int B, int C,
                 float scale, int symmetric, float gscale, double *loss, float *da, float *dp,
                 float *dn) {
    if (B < 1 || C < 1) return bad_shape("ag_loss_mnrl", B, C);
    if (nneg < 0 || (nneg > 0 && !n))
        return ag_err("ag_loss_mnrl: nneg=%d hard-negative columns but n is %s", nneg, n ? "set" : "NULL");
    if (!a || !p || !loss) return ag_err("ag_loss_mnrl: NULL argument");
    size_t rows = (size_t)B * (1 + (size_t)nneg), C_ = (size_t)C;
    int grad_c = dp || (nneg > 0 && dn);
    /* The candidate block is the positives followed by the negatives, as ST concatenates. */
    float *cand = NULL, *dcand = NULL;
    int32_t *pos = malloc((size_t)B * sizeof *pos);
    if (nneg > 0) cand = malloc(rows * C_ * sizeof(float));
    if (grad_c) dcand = calloc(rows * C_, sizeof(float));
    if (!pos || (nneg > 0 && !cand) || (grad_c && !dcand)) {
        free(pos); free(cand); free(dcand);
        return ag_err("ag_loss_mnrl: out of memory (B=%d, %d negative columns, C=%d)", B, nneg, C);
    }
    if (nneg > 0) {
        memcpy(cand, p, (size_t)B * C_ * sizeof(float));
        memcpy(cand + (size_t)B * C_, n, (size_t)nneg * B * C_ * sizeof(float));
    }
    for (int i = 0; i < B; i++) pos[i] = i;
    double sum;
    int rc = mnrl_impl("ag_loss_mnrl", a, B, NULL, B, nneg > 0 ? cand : p, (int)rows, C, pos,
                       scale, symmetric != 0, gscale / B, &sum, da, dcand);
    if (rc == 0) {
        *loss = sum / B;
        if (dcand) {
            if (dp) for (size_t i = 0; i < (size_t)B * C_; i++) dp[i] += dcand[i];
            if (nneg > 0 && dn)
                for (size_t i = 0; i < (size_t)nneg * B * C_; i++) dn[i] += dcand[(size_t)B * C_ + i];
        }
    }
    free(pos); free(cand); free(dcand);
    return rc;
}

/* ---- SoftmaxLoss ------------------------------------------------------------------------- */

uint64_t ag_name_hash(const char *name) {
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *s = (const unsigned char *)name; *s; s++) {
        h ^= *s;
        h *= 1099511628211ull;
    }
    return h;
}

int ag_softmax_loss_register(ag_softmax_loss *s, ag_params *p, int C, int num_labels) {
    if (C < 1 || num_labels < 1)
        return ag_err("SoftmaxLoss: bad sizes C=%d num_labels=%d (expected >= 1)", C, num_labels);
    s->C = C;
    s->num_labels = num_labels;
    s->w = ag_params_add(p, "classifier.weight", 2, (int64_t[]){num_labels, 3 * (int64_t)C});
    s->b = ag_params_add(p, "classifier.bias", 1, (int64_t[]){num_labels});
    if (s->w < 0 || s->b < 0)
        return ag_err("SoftmaxLoss: cannot register classifier.weight/bias (name taken, or the "
                      "table is already allocated)");
    return 0;
}

static int check_table(const char *fn, const ag_params *p, int wi, int bi, int L, int64_t in) {
    if (!p || !p->data) return ag_err("%s: parameter table not allocated", fn);
    if (wi < 0 || wi >= p->n || bi < 0 || bi >= p->n) return ag_err("%s: classifier not registered", fn);
    const ag_tensor_info *w = &p->t[wi], *b = &p->t[bi];
    if (w->ndim != 2 || w->shape[0] != L || w->shape[1] != in || b->ndim != 1 || b->shape[0] != L)
        return ag_err("%s: %s / %s have the wrong shape (expected [%d,%lld] and [%d])", fn,
                      w->name, b->name, L, (long long)in, L);
    return 0;
}

int ag_softmax_loss_init(const ag_softmax_loss *s, ag_params *p, uint64_t seed) {
    int64_t in = 3 * (int64_t)s->C;
    if (check_table("ag_softmax_loss_init", p, s->w, s->b, s->num_labels, in)) return -1;
    double bound = 1.0 / sqrt((double)in);
    int idx[2] = {s->w, s->b};
    for (int k = 0; k < 2; k++) {
        const ag_tensor_info *t = &p->t[idx[k]];
        uint64_t a = ag_name_hash(t->name);
        float *d = ag_params_data(p, idx[k]);
        for (size_t i = 0; i < t->numel; i++)
            d[i] = (float)((2.0 * ag_rng_uniform(seed, AG_RNG_INIT, a, 0, i) - 1.0) * bound);
    }
    return 0;
}

int ag_softmax_loss_forward(const ag_softmax_loss *s, ag_params *p, const float *u, const float *v,
                            const int32_t *labels, int B, float gscale, double *loss,
                            float *logits, float *du, float *dv) {
    int C = s->C, L = s->num_labels;
    int64_t F = 3 * (int64_t)C;
    if (check_table("ag_softmax_loss_forward", p, s->w, s->b, L, F)) return -1;
    if (B < 1) return ag_err("ag_softmax_loss_forward: bad batch size B=%d", B);
    if (!u || !v || !labels || !loss) return ag_err("ag_softmax_loss_forward: NULL argument");
    for (int b = 0; b < B; b++)
        if (labels[b] < 0 || labels[b] >= L)
            return ag_err("SoftmaxLoss: label[%d] = %d, expected a class id in [0, %d)", b, labels[b], L);
    int grad = du || dv;
    /* feat[B,3C] = [u, v, |u-v|]; z[B,L] logits; dz[B,L]; dfeat[B,3C] */
    size_t nflt = (size_t)B * F + 2 * (size_t)B * L + (grad ? (size_t)B * F : 0);
    float *ws = calloc(nflt, sizeof(float));
    if (!ws) return ag_err("ag_softmax_loss_forward: out of memory (B=%d C=%d)", B, C);
    float *feat = ws, *z = feat + (size_t)B * F, *dz = z + (size_t)B * L, *dfeat = dz + (size_t)B * L;
    for (int b = 0; b < B; b++) {
        const float *ub = u + (size_t)b * C, *vb = v + (size_t)b * C;
        float *f = feat + (size_t)b * F;
        memcpy(f, ub, (size_t)C * sizeof(float));
        memcpy(f + C, vb, (size_t)C * sizeof(float));
        for (int c = 0; c < C; c++) f[2 * C + c] = fabsf(ub[c] - vb[c]);
    }
    const float *W = ag_params_data(p, s->w), *bias = ag_params_data(p, s->b);
    for (int b = 0; b < B; b++) memcpy(z + (size_t)b * L, bias, (size_t)L * sizeof(float));
    /* z[B,L] += feat[B,F] · Wᵀ (W is [L,F]) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, L, (int)F, 1.0f, feat, (int)F, W, (int)F, 1.0f, z, L);
    if (logits) memcpy(logits, z, (size_t)B * L * sizeof(float));
    int rc = ag_loss_cross_entropy(z, labels, B, L, gscale, loss, grad ? dz : NULL);
    if (rc == 0 && grad) {
        float *dW = ag_params_grad(p, s->w), *db = ag_params_grad(p, s->b);
        /* dW[L,F] += dzᵀ · feat; db += Σ_b dz; dfeat = dz · W */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, L, (int)F, B, 1.0f, dz, L, feat, (int)F, 1.0f, dW, (int)F);
        for (int b = 0; b < B; b++)
            for (int l = 0; l < L; l++) db[l] += dz[(size_t)b * L + l];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, (int)F, L, 1.0f, dz, L, W, (int)F, 0.0f, dfeat, (int)F);
        for (int b = 0; b < B; b++) {
            const float *ub = u + (size_t)b * C, *vb = v + (size_t)b * C, *g = dfeat + (size_t)b * F;
            for (int c = 0; c < C; c++) {
                /* d|x|/dx = sign(x), 0 at 0 (torch's abs backward) */
                float dif = ub[c] - vb[c];
                float sg = dif > 0 ? 1.0f : (dif < 0 ? -1.0f : 0.0f);
                if (du) du[(size_t)b * C + c] += g[c] + sg * g[2 * C + c];
                if (dv) dv[(size_t)b * C + c] += g[C + c] - sg * g[2 * C + c];
            }
        }
    }
    free(ws);
    return rc;
}
