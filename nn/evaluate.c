/* Evaluator math (STS correlations, binary classification sweeps), as sentence-transformers'
 * EmbeddingSimilarityEvaluator and BinaryClassificationEvaluator compute them. See evaluate.h. */
#include "nn/evaluate.h"

#include <math.h>
#include <stdlib.h>

#include "nn/error.h"
#include "nn/stats.h"

static const char *const sim_names[AG_SIM_COUNT] = {"cosine", "manhattan", "euclidean", "dot"};

const char *ag_sim_name(ag_sim_fn f) {
    return (unsigned)f < AG_SIM_COUNT ? sim_names[f] : "?";
}

void ag_sim_pairwise(ag_sim_fn f, const float *u, const float *v, size_t n, int C, double *s) {
    for (size_t i = 0; i < n; i++) {
        const float *a = u + i * (size_t)C, *b = v + i * (size_t)C;
        double acc = 0, na = 0, nb = 0;
        switch (f) {
        case AG_SIM_COSINE:
            for (int c = 0; c < C; c++) { acc += (double)a[c] * b[c]; na += (double)a[c] * a[c]; nb += (double)b[c] * b[c]; }
            /* normalize() clamps each norm at 1e-12 before the dot product. */
            s[i] = acc / (fmax(sqrt(na), 1e-12) * fmax(sqrt(nb), 1e-12));
            break;
        case AG_SIM_MANHATTAN:
            for (int c = 0; c < C; c++) acc += fabs((double)a[c] - b[c]);
            s[i] = -acc;
            break;
        case AG_SIM_EUCLIDEAN:
            for (int c = 0; c < C; c++) { double d = (double)a[c] - b[c]; acc += d * d; }
            s[i] = -sqrt(acc);
            break;
        default:
            for (int c = 0; c < C; c++) acc += (double)a[c] * b[c];
            s[i] = acc;
        }
    }
}

int ag_eval_sts(const float *u, const float *v, const double *gold, size_t n, int C, ag_sts_result *r) {
    if (!u || !v || !gold || !r || C <= 0) return ag_err("sts evaluator: NULL input or C = %d", C);
    if (n < 2) return ag_err("sts evaluator: %zu pairs; correlations need at least 2", n);
    double *s = malloc(n * sizeof *s);
    if (!s) return ag_err("sts evaluator: out of memory for %zu scores", n);
    r->pearson_max = r->spearman_max = -INFINITY;
    for (int f = 0; f < AG_SIM_COUNT; f++) {
        ag_sim_pairwise((ag_sim_fn)f, u, v, n, C, s);
        r->pearson[f] = ag_pearson(gold, s, n);
        r->spearman[f] = ag_spearman(gold, s, n);
        /* Python's max() over the dict: a NaN is kept only if it comes first; fmax skips it. */
        r->pearson_max = fmax(r->pearson_max, r->pearson[f]);
        r->spearman_max = fmax(r->spearman_max, r->spearman[f]);
    }
    free(s);
    return 0;
}

/* Rows sorted by score (descending when higher_better, else ascending), stable, so that ties
 * stay in input order as Python's sorted() keeps them. */
typedef struct { double s; int y; size_t i; } row;
static int row_cmp_asc(const void *pa, const void *pb) {
    const row *a = pa, *b = pb;
    if (a->s != b->s) return a->s < b->s ? -1 : 1;
    return a->i < b->i ? -1 : a->i > b->i;
}
static int row_cmp_desc(const void *pa, const void *pb) {
    const row *a = pa, *b = pb;
    if (a->s != b->s) return a->s > b->s ? -1 : 1;
    return a->i < b->i ? -1 : a->i > b->i;
}

static row *sorted_rows(const double *scores, const int *labels, size_t n, int desc, const char *who) {
    row *r = malloc((n ? n : 1) * sizeof *r);
    if (!r) { ag_err("%s: out of memory for %zu rows", who, n); return NULL; }
    for (size_t i = 0; i < n; i++) {
        if (labels[i] != 0 && labels[i] != 1) {
            ag_err("%s: label %d of pair %zu is not 0 or 1", who, labels[i], i);
            free(r);
            return NULL;
        }
        r[i] = (row){scores[i], labels[i], i};
    }
    qsort(r, n, sizeof *r, desc ? row_cmp_desc : row_cmp_asc);
    return r;
}

int ag_best_accuracy(const double *scores, const int *labels, size_t n, int higher_better, double *acc,
                     double *threshold) {
    row *r = sorted_rows(scores, labels, n, higher_better, "best accuracy");
    if (!r) return -1;
    size_t neg = 0, pos_so_far = 0;
    for (size_t i = 0; i < n; i++) neg += labels[i] == 0;
    double best = 0, thr = -1;
    if (n) {
        best = (double)neg / (double)n;
        /* ST: np.nextafter(first score, +-inf) in the scores' float32. */
        thr = nextafterf((float)r[0].s, higher_better ? INFINITY : -INFINITY);
    }
    for (size_t i = 0; i < n; i++) {
        if (r[i].y == 1) pos_so_far++;
        else neg--;
        int last = i == n - 1;
        if (!last && r[i].s == r[i + 1].s) continue;
        double a = (double)(pos_so_far + neg) / (double)n;
        if (a > best) {
            best = a;
            thr = last ? r[i].s : (r[i].s + r[i + 1].s) / 2;
            if (!last && thr == r[i + 1].s) thr = r[i].s;
        }
    }
    free(r);
    *acc = best;
    *threshold = thr;
    return 0;
}

int ag_best_f1(const double *scores, const int *labels, size_t n, int higher_better, double *f1,
               double *precision, double *recall, double *threshold) {
    row *r = sorted_rows(scores, labels, n, higher_better, "best F1");
    if (!r) return -1;
    size_t total_pos = 0, extracted = 0, correct = 0;
    for (size_t i = 0; i < n; i++) total_pos += labels[i] == 1;
    double bf = 0, bp = 0, br = 0, thr = 0;
    for (size_t i = 0; i < n; i++) {
        extracted++;
        if (r[i].y == 1) correct++;
        int last = i == n - 1;
        if (!last && r[i].s == r[i + 1].s) continue;
        if (correct > 0) {
            double p = (double)correct / (double)extracted, rc = (double)correct / (double)total_pos;
            double f = 2 * p * rc / (p + rc);
            if (f > bf) {
                bf = f; bp = p; br = rc;
                thr = last ? r[i].s : (r[i].s + r[i + 1].s) / 2;
                if (!last && thr == r[i + 1].s) thr = r[i].s;
            }
        }
    }
    free(r);
    *f1 = bf; *precision = bp; *recall = br; *threshold = thr;
    return 0;
}

int ag_average_precision(const double *scores, const int *labels, size_t n, double *ap) {
    row *r = sorted_rows(scores, labels, n, 1, "average precision");
    if (!r) return -1;
    size_t total_pos = 0;
    for (size_t i = 0; i < n; i++) total_pos += labels[i] == 1;
    double sum = 0, prev_recall = 0;
    size_t tp = 0;
    for (size_t i = 0; i < n; i++) {
        tp += r[i].y == 1;
        if (i + 1 < n && r[i].s == r[i + 1].s) continue;  /* one threshold per distinct score */
        if (!total_pos) continue;
        double rec = (double)tp / (double)total_pos, prec = (double)tp / (double)(i + 1);
        sum += (rec - prev_recall) * prec;
        prev_recall = rec;
    }
    free(r);
    *ap = sum;
    return 0;
}

double ag_mcc(const int *labels, const int *pred, size_t n) {
    double tp = 0, tn = 0, fp = 0, fn = 0;
    for (size_t i = 0; i < n; i++) {
        if (labels[i]) { if (pred[i]) tp++; else fn++; }
        else { if (pred[i]) fp++; else tn++; }
    }
    double den = (tp + fp) * (tp + fn) * (tn + fp) * (tn + fn);
    return den > 0 ? (tp * tn - fp * fn) / sqrt(den) : 0.0;
}

int ag_eval_binary(const float *u, const float *v, const int *labels, size_t n, int C, ag_binclf_result *r) {
    if (!u || !v || !labels || !r || C <= 0) return ag_err("binary evaluator: NULL input or C = %d", C);
    if (n < 1) return ag_err("binary evaluator: no pairs");
    double *s = malloc(n * sizeof *s), *neg = malloc(n * sizeof *neg);
    int *pred = malloc(n * sizeof *pred);
    if (!s || !neg || !pred) {
        free(s); free(neg); free(pred);
        return ag_err("binary evaluator: out of memory for %zu pairs", n);
    }
    int rc = 0;
    for (int f = 0; f < AG_SIM_COUNT && !rc; f++) {
        ag_binclf_metrics *m = &r->fn[f];
        ag_sim_pairwise((ag_sim_fn)f, u, v, n, C, s);
        int higher = f == AG_SIM_COSINE || f == AG_SIM_DOT;
        if (!higher)  /* ST reports distances, where lower means more similar */
            for (size_t i = 0; i < n; i++) s[i] = -s[i];
        for (size_t i = 0; i < n; i++) neg[i] = higher ? s[i] : -s[i];
        rc = ag_best_accuracy(s, labels, n, higher, &m->accuracy, &m->accuracy_threshold);
        if (!rc) rc = ag_best_f1(s, labels, n, higher, &m->f1, &m->precision, &m->recall, &m->f1_threshold);
        if (!rc) rc = ag_average_precision(neg, labels, n, &m->ap);
        if (rc) break;
        for (size_t i = 0; i < n; i++) pred[i] = higher ? s[i] >= m->f1_threshold : s[i] <= m->f1_threshold;
        m->mcc = ag_mcc(labels, pred, n);
    }
    if (!rc) {
        ag_binclf_metrics *mx = &r->max;
        *mx = r->fn[0];
        for (int f = 1; f < AG_SIM_COUNT; f++) {
            const ag_binclf_metrics *m = &r->fn[f];
            mx->accuracy = fmax(mx->accuracy, m->accuracy);
            mx->accuracy_threshold = fmax(mx->accuracy_threshold, m->accuracy_threshold);
            mx->f1 = fmax(mx->f1, m->f1);
            mx->precision = fmax(mx->precision, m->precision);
            mx->recall = fmax(mx->recall, m->recall);
            mx->f1_threshold = fmax(mx->f1_threshold, m->f1_threshold);
            mx->ap = fmax(mx->ap, m->ap);
            mx->mcc = fmax(mx->mcc, m->mcc);
        }
    }
    free(s); free(neg); free(pred);
    return rc;
}
