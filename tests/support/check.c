/* Assertion helpers; see check.h. */
#include "tests/support/check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

int check_passed, check_failed;

static int report(const char *what, int ok, const char *fmt_detail, double a, double b, double c, size_t idx) {
    if (ok) check_passed++; else check_failed++;
    printf("%s %s", ok ? "ok  " : "FAIL", what);
    if (fmt_detail) printf(fmt_detail, a, b, c, idx);
    printf("\n");
    fflush(stdout);
    return ok;
}

int check_close(const char *what, const float *a, const float *want, size_t n, double rtol, double atol) {
    double worst = -1; size_t wi = 0; int ok = 1;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)want[i]);
        double lim = atol + rtol * fabs((double)want[i]);
        if (!(d <= lim)) ok = 0;               /* NaN fails too */
        double ex = isnan(d) ? INFINITY : d - lim;
        if (ex > worst || i == 0) { worst = ex; wi = i; }
    }
    if (n == 0) return report(what, 0, " (empty)%g%g%g%zu", 0, 0, 0, 0);
    return report(what, ok, " (worst: got %.8g want %.8g, |diff| %.3g at %zu)",
                  a[wi], want[wi], fabs((double)a[wi] - want[wi]), wi);
}

int check_rel(const char *what, const float *a, const float *want, size_t n, double rel) {
    double maxd = 0, maxw = 0; size_t wi = 0; int nan = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)want[i]);
        if (isnan(d)) nan = 1;
        if (d > maxd) { maxd = d; wi = i; }
        if (fabs(want[i]) > maxw) maxw = fabs(want[i]);
    }
    double r = maxd / (maxw > 1e-30 ? maxw : 1e-30);
    int ok = !nan && n > 0 && r <= rel;
    return report(what, ok, " (max|diff|/max|want| = %.3g, max|diff| %.3g, tol %.1g, at %zu)", r, maxd, rel, wi);
}

int check_true(const char *what, int cond) { return report(what, cond != 0, NULL, 0, 0, 0, 0); }

int check_finish(void) {
    printf("%d passed, %d failed\n", check_passed, check_failed);
    return check_failed ? 1 : 0;
}

void check_skip(const char *why) {
    printf("SKIPPED: %s\n", why);
    exit(77);
}
