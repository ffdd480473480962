/* Cross-encoder evaluators (correlation, binary and multi-class classification) with
 * sentence-transformers' and sklearn's arithmetic; see evaluate_cross.h. */
#include "nn/evaluate_cross.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/error.h"
#include "nn/stats.h"

int ag_xeval_correlation(const float *pred, const float *gold, size_t n, ag_xeval_corr *out) {
    if (!pred || !gold || !out) return ag_err("ag_xeval_correlation: NULL argument");
    if (n < 2) return ag_err("ag_xeval_correlation: %zu pairs, need at least 2", n);
    double *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    if (!x || !y) {
        free(x);
        free(y);
        return ag_err("ag_xeval_correlation: out of memory for %zu pairs", n);
    }
    for (size_t i = 0; i < n; i++) {
        x[i] = pred[i];
        y[i] = gold[i];
    }
    out->pearson = ag_pearson(x, y, n);
    out->spearman = ag_spearman(x, y, n);
    free(x);
    free(y);
    return 0;
}

/* Sort indices by score, highest first. The order within a tie does not matter: every
 * evaluator below handles a run of equal scores as one group. */
typedef struct { float s; int32_t y; } scored;

static int by_score_desc(const void *a, const void *b) {
    float x = ((const scored *)a)->s, y = ((const scored *)b)->s;
    return x > y ? -1 : x < y ? 1 : 0;
}

int ag_xeval_binary(const float *scores, const int32_t *gold, size_t n, ag_xeval_class *out) {
    if (!scores || !gold || !out) return ag_err("ag_xeval_binary: NULL argument");
    if (n < 1) return ag_err("ag_xeval_binary: no pairs to evaluate");
    memset(out, 0, sizeof *out);
    out->num_labels = 1;
    scored *r = malloc(n * sizeof *r);
    if (!r) return ag_err("ag_xeval_binary: out of memory for %zu pairs", n);
    int64_t npos = 0;
    for (size_t i = 0; i < n; i++) {
        if (gold[i] != 0 && gold[i] != 1) {
            free(r);
            return ag_err("ag_xeval_binary: gold label %d of pair %zu is not 0 or 1 (a one-label "
                          "cross-encoder is evaluated as a binary classifier)", (int)gold[i], i);
        }
        if (isnan(scores[i])) {
            free(r);
            return ag_err("ag_xeval_binary: score of pair %zu is NaN", i);
        }
        r[i].s = scores[i];
        r[i].y = gold[i];
        npos += gold[i];
    }
    qsort(r, n, sizeof *r, by_score_desc);

    /* Best accuracy: start from "everything negative" (threshold just above the top score),
     * then admit one group of equal scores at a time. Thresholds are float32 midpoints. */
    int64_t pos_so_far = 0, neg_left = (int64_t)n - npos;
    double max_acc = (double)neg_left / (double)n;
    float acc_thr = nextafterf(r[0].s, INFINITY);
    /* Best F1 over the same cuts. */
    int64_t nextract = 0, ncorrect = 0;
    double best_f1 = 0, best_p = 0, best_r = 0;
    float f1_thr = 0.0f;
    for (size_t i = 0; i < n; i++) {
        if (r[i].y == 1) {
            pos_so_far++;
            ncorrect++;
        } else {
            neg_left--;
        }
        nextract++;
        int last = i + 1 == n;
        if (!last && r[i].s == r[i + 1].s) continue;
        float mid = last ? r[i].s : (r[i].s + r[i + 1].s) / 2.0f;
        /* A rounded midpoint must not include the next group. */
        if (!last && mid == r[i + 1].s) mid = r[i].s;
        double acc = (double)(pos_so_far + neg_left) / (double)n;
        if (acc > max_acc) {
            max_acc = acc;
            acc_thr = mid;
        }
        if (ncorrect > 0) {
            double precision = (double)ncorrect / (double)nextract;
            double recall = (double)ncorrect / (double)npos;
            double f1 = 2 * precision * recall / (precision + recall);
            if (f1 > best_f1) {
                best_f1 = f1;
                best_p = precision;
                best_r = recall;
                f1_thr = mid;
            }
        }
    }
    out->accuracy = max_acc;
    out->accuracy_threshold = acc_thr;
    out->f1 = best_f1;
    out->precision = best_p;
    out->recall = best_r;
    out->f1_threshold = f1_thr;

    /* Average precision: sum over the distinct thresholds (highest first) of the recall gained
     * times the precision there. Without positives sklearn sets recall to 1 everywhere, which
     * gives 0. */
    double ap = 0, prev_recall = 0;
    int64_t tp = 0;
    for (size_t i = 0; i < n && npos > 0; i++) {
        tp += r[i].y;
        if (i + 1 < n && r[i].s == r[i + 1].s) continue;
        double recall = (double)tp / (double)npos;
        double precision = (double)tp / (double)(i + 1);
        ap += (recall - prev_recall) * precision;
        prev_recall = recall;
    }
    out->average_precision = ap;
    free(r);
    return 0;
}

int ag_xeval_multiclass(const float *logits, int L, const int32_t *gold, size_t n, ag_xeval_class *out) {
    if (!logits || !gold || !out) return ag_err("ag_xeval_multiclass: NULL argument");
    if (L < 2) return ag_err("ag_xeval_multiclass: %d labels, need at least 2", L);
    if (n < 1) return ag_err("ag_xeval_multiclass: no pairs to evaluate");
    memset(out, 0, sizeof *out);
    out->num_labels = L;
    int64_t *tp = calloc((size_t)L * 3, sizeof *tp);
    if (!tp) return ag_err("ag_xeval_multiclass: out of memory");
    int64_t *npred = tp + L, *ntrue = tp + 2 * L;
    int64_t correct = 0;
    for (size_t i = 0; i < n; i++) {
        if (gold[i] < 0 || gold[i] >= L) {
            free(tp);
            return ag_err("ag_xeval_multiclass: gold label %d of pair %zu is outside [0, %d)", (int)gold[i], i, L);
        }
        const float *row = logits + i * (size_t)L;
        int best = 0;
        for (int c = 1; c < L; c++)
            if (row[c] > row[best]) best = c;   /* strict: the first maximum wins, as numpy */
        npred[best]++;
        ntrue[gold[i]]++;
        if (best == gold[i]) {
            tp[best]++;
            correct++;
        }
    }
    /* Per-class F1 = 2·tp / (true + predicted) over the classes seen in gold or predictions. */
    double sum_f = 0, sum_wf = 0;
    int64_t sum_w = 0;
    int nlab = 0;
    for (int c = 0; c < L; c++) {
        if (!ntrue[c] && !npred[c]) continue;
        double f = 2.0 * (double)tp[c] / ((double)ntrue[c] + (double)npred[c]);
        sum_f += f;
        sum_wf += f * (double)ntrue[c];
        sum_w += ntrue[c];
        nlab++;
    }
    out->f1_macro = sum_f / nlab;
    out->f1_weighted = sum_w ? sum_wf / (double)sum_w : 0.0;
    /* Single-label multi-class: micro precision = micro recall = accuracy. */
    out->f1_micro = 2.0 * (double)correct / (2.0 * (double)n);
    out->accuracy = (double)correct / (double)n;
    free(tp);
    return 0;
}

int ag_xeval_classification(const float *pred, int L, const int32_t *gold, size_t n, ag_xeval_class *out) {
    if (L == 1) return ag_xeval_binary(pred, gold, n, out);
    return ag_xeval_multiclass(pred, L, gold, n, out);
}

double ag_xeval_class_primary(const ag_xeval_class *r) {
    return r->num_labels == 1 ? r->average_precision : r->f1_macro;
}
