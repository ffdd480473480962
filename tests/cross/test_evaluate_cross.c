/* The cross-encoder evaluators (nn/evaluate_cross.h) against sentence-transformers' own
 * CrossEncoderCorrelationEvaluator / CrossEncoderClassificationEvaluator on synthetic
 * predictions (fixture: tests/fixtures/gen_evaluate_cross.py), plus the argument checks.
 * Ratios must agree within 1e-12; thresholds (float32 midpoints in both) exactly. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "nn/error.h"
#include "nn/evaluate_cross.h"
#include "tests/support/check.h"
#include "tests/support/fixture.h"

/* Compare doubles: |a - w| <= 1e-12 (+ 1e-12 relative). */
static void check_d(const char *what, const double *got, const double *want, int n, const char *const *names) {
    for (int i = 0; i < n; i++) {
        char buf[160];
        snprintf(buf, sizeof buf, "%s %s: argent %.17g, sentence-transformers %.17g", what, names[i], got[i], want[i]);
        int ok = (isnan(got[i]) && isnan(want[i])) || fabs(got[i] - want[i]) <= 1e-12 + 1e-12 * fabs(want[i]);
        if (!ok) printf("%s\n", buf);
        check_true(buf, ok);
    }
}

static void binary_case(const agfx *fx, const char *name) {
    char k[64];
    size_t n, ng, nw;
    snprintf(k, sizeof k, "%s_pred", name);
    const float *pred = agfx_f32(fx, k, &n);
    snprintf(k, sizeof k, "%s_gold", name);
    const int32_t *gold = agfx_i32(fx, k, &ng);
    snprintf(k, sizeof k, "%s_want", name);
    const agfx_tensor *w = agfx_find(fx, k);
    check_true("fixture shapes", w && ng == n && (nw = w->numel) == 7);
    ag_xeval_class r;
    if (!check_true(name, ag_xeval_classification(pred, 1, gold, n, &r) == 0)) { printf("%s\n", ag_errmsg()); return; }
    double got[7] = {r.accuracy, r.accuracy_threshold, r.f1, r.f1_threshold, r.precision, r.recall, r.average_precision};
    static const char *names[] = {"accuracy", "accuracy_threshold", "f1", "f1_threshold", "precision", "recall",
                                  "average_precision"};
    check_d(name, got, (const double *)w->data, 7, names);
    check_true("binary primary = average_precision", ag_xeval_class_primary(&r) == r.average_precision);
}

static void multi_case(const agfx *fx, const char *name) {
    char k[64];
    size_t n, ng;
    snprintf(k, sizeof k, "%s_pred", name);
    const agfx_tensor *p = agfx_find(fx, k);
    snprintf(k, sizeof k, "%s_gold", name);
    const int32_t *gold = agfx_i32(fx, k, &ng);
    snprintf(k, sizeof k, "%s_want", name);
    const agfx_tensor *w = agfx_find(fx, k);
    if (!check_true("fixture tensors", p && w && p->ndim == 2 && w->numel == 4)) return;
    n = (size_t)p->dims[0];
    int L = (int)p->dims[1];
    check_true("fixture gold", ng == n);
    ag_xeval_class r;
    if (!check_true(name, ag_xeval_classification(p->data, L, gold, n, &r) == 0)) { printf("%s\n", ag_errmsg()); return; }
    double got[4] = {r.f1_macro, r.f1_micro, r.f1_weighted, r.accuracy};
    static const char *names[] = {"f1_macro", "f1_micro", "f1_weighted", "accuracy"};
    check_d(name, got, (const double *)w->data, 4, names);
    check_true("multi-class primary = f1_macro", ag_xeval_class_primary(&r) == r.f1_macro);
}

int main(void) {
    agfx fx;
    if (agfx_load(&fx, ARGENT_FIXTURES "/evaluate_cross.agfx")) return 1;
    const char *bins[] = {"bin_ties", "bin_cont", "bin_const", "bin_noneg", "bin_sep", "bin_one"};
    for (size_t i = 0; i < sizeof bins / sizeof *bins; i++) binary_case(&fx, bins[i]);
    multi_case(&fx, "multi3");
    multi_case(&fx, "multi4");

    size_t n, ng;
    const float *pred = agfx_f32(&fx, "corr_pred", &n);
    const float *gold = agfx_f32(&fx, "corr_gold", &ng);
    const agfx_tensor *w = agfx_find(&fx, "corr_want");
    ag_xeval_corr c;
    if (check_true("correlation", w && ng == n && ag_xeval_correlation(pred, gold, n, &c) == 0)) {
        double got[2] = {c.pearson, c.spearman};
        static const char *names[] = {"pearson", "spearman"};
        check_d("corr", got, (const double *)w->data, 2, names);
    }

    /* Bad arguments: errors with messages, never a crash. */
    ag_xeval_class r;
    int32_t bad[3] = {0, 2, 1};
    float s3[3] = {0.1f, 0.2f, 0.3f};
    check_true("binary rejects label 2", ag_xeval_binary(s3, bad, 3, &r) == -1 && strstr(ag_errmsg(), "not 0 or 1"));
    int32_t bad2[3] = {0, 3, 1};
    check_true("multi-class rejects label >= L",
               ag_xeval_multiclass(s3, 1, bad2, 3, &r) == -1 && strstr(ag_errmsg(), "need at least 2"));
    float l6[6] = {0};
    check_true("multi-class rejects label outside [0, L)",
               ag_xeval_multiclass(l6, 2, bad2, 3, &r) == -1 && strstr(ag_errmsg(), "outside"));
    check_true("empty input", ag_xeval_binary(s3, bad, 0, &r) == -1);
    check_true("correlation needs 2", ag_xeval_correlation(s3, s3, 1, &c) == -1);
    float nanv[2] = {NAN, 0.5f};
    int32_t y2[2] = {0, 1};
    check_true("NaN score rejected", ag_xeval_binary(nanv, y2, 2, &r) == -1 && strstr(ag_errmsg(), "NaN"));
    agfx_free(&fx);
    return check_finish();
}
