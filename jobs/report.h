/* The end-of-run report of `argent pipeline`: what each stage produced, in a form people
 * read (Markdown) and one programs read (CSV), plus PNG plots of the training curves.
 *
 * Inputs are the stages' own outputs, nothing else: a training run directory's
 * metrics.jsonl (jobs/metrics.h: "loss" lines per step, "eval" lines per evaluation; after
 * a resume a step may repeat and the last line wins) and `argent eval --csv` files
 * (metric,value rows). Files written into the report directory:
 *   report.md     the results table, the stages table (time, ran or skipped), the plots
 *   results.csv   index,stage,result,metric,value,seconds (one row per result)
 *   plots/NN-NAME-loss.png, plots/NN-NAME-eval.png   when gnuplot is on PATH (gnuplot-nox,
 *                 scripts/install-deps.sh); without it report.md says that the plots were
 *                 skipped, and the .dat/.gp files are kept so they can be drawn later.
 * Results: an eval stage gives its primary metric (spearman_cosine for STS, the maximum
 * average precision for binary classification; the first metric otherwise); a training
 * stage with evaluations gives its last evaluation's primary metric.
 * All functions return 0 on success, -1 with ag_err naming the file on failure. */
#ifndef ARGENT_JOBS_REPORT_H
#define ARGENT_JOBS_REPORT_H
#include <stdio.h>

typedef struct {
    int index;             /* 1-based position in the recipe */
    const char *stage;     /* the argent command: train-bi, eval, ... */
    const char *out;       /* its --out (run directory or file), or NULL */
    const char *csv;       /* eval's --csv file, or NULL */
    const char *name;      /* eval's --name, or NULL */
    double seconds;        /* wall time of the run that completed it */
    int skipped;           /* 1: complete before this invocation (seconds from its marker) */
} ag_report_stage;

/* One result row. */
typedef struct {
    int index;
    char stage[32];
    char result[256];      /* eval --name, or the run directory's last path component */
    char metric[64];
    double value;
    double seconds;
} ag_report_row;

/* The result rows of the stages (malloc'd into *rows, *n of them; free()). Stages whose
 * files are missing give no row. */
int ag_report_collect(const ag_report_stage *st, int n, ag_report_row **rows, int *nrows);

/* Write report.md, results.csv and the plots into dir (created if needed); print the
 * results table (Markdown) to `table` when it is not NULL. title heads report.md. */
int ag_report_write(const char *dir, const char *title, const ag_report_stage *st, int n, FILE *table);

/* The full path of an executable found on PATH into out (1), or 0 when there is none. */
int ag_report_which(const char *prog, char *out, size_t cap);
#endif
