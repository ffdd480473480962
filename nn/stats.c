/* Pearson and Spearman correlations; see stats.h. Sums in double, two passes for accuracy. */
#include "nn/stats.h"

#include <math.h>
#include <stdlib.h>

double ag_pearson(const double *x, const double *y, size_t n) {
    if (n < 2) return NAN;
    double mx = 0, my = 0;
    for (size_t i = 0; i < n; i++) { mx += x[i]; my += y[i]; }
    mx /= (double)n; my /= (double)n;
    double sxy = 0, sxx = 0, syy = 0;
    for (size_t i = 0; i < n; i++) {
        double dx = x[i] - mx, dy = y[i] - my;
        sxy += dx * dy; sxx += dx * dx; syy += dy * dy;
    }
    if (sxx <= 0 || syy <= 0) return NAN;
    return sxy / sqrt(sxx * syy);
}

static const double *g_keys;  /* qsort has no context argument; ranks are computed serially */
static int by_key(const void *a, const void *b) {
    double ka = g_keys[*(const size_t *)a], kb = g_keys[*(const size_t *)b];
    if (ka < kb) return -1;
    if (ka > kb) return 1;
    size_t ia = *(const size_t *)a, ib = *(const size_t *)b;  /* stable: index order */
    return ia < ib ? -1 : ia > ib;
}

int ag_rank_average(const double *x, size_t n, double *rank) {
    size_t *idx = malloc((n ? n : 1) * sizeof *idx);
    if (!idx) return -1;
    for (size_t i = 0; i < n; i++) idx[i] = i;
    g_keys = x;
    qsort(idx, n, sizeof *idx, by_key);
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j + 1 < n && x[idx[j + 1]] == x[idx[i]]) j++;
        double r = 0.5 * (double)(i + j) + 1.0;  /* average of ranks i+1 .. j+1 */
        for (size_t k = i; k <= j; k++) rank[idx[k]] = r;
        i = j + 1;
    }
    free(idx);
    return 0;
}

double ag_spearman(const double *x, const double *y, size_t n) {
    double *rx = malloc((n ? n : 1) * sizeof *rx), *ry = malloc((n ? n : 1) * sizeof *ry);
    double r = NAN;
    if (rx && ry && !ag_rank_average(x, n, rx) && !ag_rank_average(y, n, ry)) r = ag_pearson(rx, ry, n);
    free(rx); free(ry);
    return r;
}
