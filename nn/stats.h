/* Correlation statistics for the evaluators: Pearson, and Spearman with average ranks for
 * ties (as scipy.stats.spearmanr, which sentence-transformers' evaluators use). */
#ifndef ARGENT_NN_STATS_H
#define ARGENT_NN_STATS_H
#include <stddef.h>

/* Pearson correlation of x and y (n >= 2); NaN when either has zero variance. */
double ag_pearson(const double *x, const double *y, size_t n);
/* Ranks 1..n with ties given their average rank. Returns 0, -1 on allocation failure. */
int ag_rank_average(const double *x, size_t n, double *rank);
/* Spearman = Pearson of the average ranks. NaN on allocation failure or zero variance. */
double ag_spearman(const double *x, const double *y, size_t n);
#endif
