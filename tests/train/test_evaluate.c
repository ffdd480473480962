/* nn/evaluate against sentence-transformers' EmbeddingSimilarityEvaluator and
 * BinaryClassificationEvaluator (fixture tests/fixtures/evaluate.agfx, made by
 * tests/fixtures/gen_evaluate.py running the evaluators themselves on synthetic embeddings).
 * Tolerances: correlations 1e-6 absolute (argent's similarities are double, ST's float32);
 * accuracy, F1, precision, recall, AP and MCC 1e-9 (they are ratios of counts, so any
 * difference would be a different sweep); thresholds 1e-5 relative (a float32 midpoint in
 * ST). Also argument checks. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "nn/error.h"
#include "nn/evaluate.h"
#include "tests/support/check.h"
#include "tests/support/fixture.h"

static const double *f64(const agfx *fx, const char *name, size_t *n) {
    const agfx_tensor *t = agfx_find(fx, name);
    if (!t || t->dtype != AGFX_F64) { printf("FAIL fixture lacks float64 %s\n", name); check_true(name, 0); return NULL; }
    *n = t->numel;
    return t->data;
}

static void one_case(const agfx *fx, const char *k) {
    char name[64];
    size_t nu, ng, nl, ns, nb;
    snprintf(name, sizeof name, "%s.u", k);
    const float *u = agfx_f32(fx, name, &nu);
    snprintf(name, sizeof name, "%s.v", k);
    const float *v = agfx_f32(fx, name, &nu);
    snprintf(name, sizeof name, "%s.gold", k);
    const float *gold = agfx_f32(fx, name, &ng);
    snprintf(name, sizeof name, "%s.labels", k);
    const int32_t *lab = agfx_i32(fx, name, &nl);
    snprintf(name, sizeof name, "%s.sts", k);
    const double *sts = f64(fx, name, &ns);
    snprintf(name, sizeof name, "%s.binary", k);
    const double *bin = f64(fx, name, &nb);
    if (!sts || !bin) return;
    size_t n = ng;
    int C = (int)(nu / n);
    double g[256];
    for (size_t i = 0; i < n; i++) g[i] = gold[i];

    ag_sts_result r;
    char what[128];
    snprintf(what, sizeof what, "case %s: STS evaluator runs", k);
    if (!check_true(what, ag_eval_sts(u, v, g, n, C, &r) == 0)) return;
    double got[10];
    for (int f = 0; f < AG_SIM_COUNT; f++) { got[2 * f] = r.pearson[f]; got[2 * f + 1] = r.spearman[f]; }
    got[8] = r.pearson_max;
    got[9] = r.spearman_max;
    double worst = 0;
    for (int i = 0; i < 10; i++) worst = fmax(worst, fabs(got[i] - sts[i]));
    snprintf(what, sizeof what, "case %s: 8 correlations + maxima equal ST's (max |diff| %.2g)", k, worst);
    check_true(what, worst <= 1e-6);

    int labels[256];
    for (size_t i = 0; i < n; i++) labels[i] = lab[i];
    ag_binclf_result b;
    snprintf(what, sizeof what, "case %s: binary evaluator runs", k);
    if (!check_true(what, ag_eval_binary(u, v, labels, n, C, &b) == 0)) return;
    static const ag_sim_fn order[AG_SIM_COUNT] = {AG_SIM_COSINE, AG_SIM_DOT, AG_SIM_MANHATTAN, AG_SIM_EUCLIDEAN};
    int bad = 0;
    for (int j = 0; j <= AG_SIM_COUNT; j++) {
        const ag_binclf_metrics *m = j < AG_SIM_COUNT ? &b.fn[order[j]] : &b.max;
        double mv[8] = {m->accuracy, m->accuracy_threshold, m->f1, m->precision, m->recall, m->f1_threshold, m->ap, m->mcc};
        for (int q = 0; q < 8; q++) {
            double want = bin[j * 8 + q];
            int is_thr = q == 1 || q == 5;
            double tol = is_thr ? 1e-5 * fmax(1, fabs(want)) : 1e-9;
            if (fabs(mv[q] - want) > tol) {
                printf("     case %s %s metric %d: argent %.9g, ST %.9g\n", k,
                       j < AG_SIM_COUNT ? ag_sim_name(order[j]) : "max", q, mv[q], want);
                bad++;
            }
        }
    }
    snprintf(what, sizeof what, "case %s: accuracy, F1, precision, recall, thresholds, AP, MCC equal ST's (x5)", k);
    check_true(what, bad == 0);
}

int main(void) {
    agfx fx;
    if (agfx_load(&fx, ARGENT_FIXTURES "/evaluate.agfx")) return 1;
    one_case(&fx, "a");
    one_case(&fx, "b");
    one_case(&fx, "c");
    agfx_free(&fx);

    /* Bad input: an error naming the problem, never a crash. */
    float u[4] = {1, 0, 0, 1}, v[4] = {1, 0, 0, 1};
    double g[2] = {0, 1};
    int lab[2] = {0, 2};
    ag_sts_result r;
    ag_binclf_result b;
    check_true("STS with one pair is refused", ag_eval_sts(u, v, g, 1, 2, &r) == -1 &&
                                                  strstr(ag_errmsg(), "at least 2"));
    check_true("a label other than 0/1 is refused", ag_eval_binary(u, v, lab, 2, 2, &b) == -1 &&
                                                         strstr(ag_errmsg(), "not 0 or 1"));
    /* A hand-checked AP: scores 0.9 (pos), 0.8 (neg), 0.7 (pos) -> (1/2)*1 + (1/2)*(2/3). */
    double s[3] = {0.9, 0.8, 0.7};
    int y[3] = {1, 0, 1};
    double ap = 0;
    check_true("average precision by hand", ag_average_precision(s, y, 3, &ap) == 0 && fabs(ap - (0.5 + 1.0 / 3)) < 1e-12);
    return check_finish();
}
