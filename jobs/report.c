/* The end-of-run report of `argent pipeline`: results table (Markdown and CSV) and training
 * curves (gnuplot PNGs); see report.h. */
#include "jobs/report.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nn/error.h"

extern char **environ;

#define PATH_CAP 4200

/* ---- small helpers -------------------------------------------------------------------- */

/* snprintf into a path buffer; -1 with ag_err when the result does not fit. */
static int pathf(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int pathf(char *out, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(out, cap, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= cap) return ag_err("path too long: %.80s...", out);
    return 0;
}

static int mkdir_one(const char *path) {
    if (mkdir(path, 0777) && errno != EEXIST) return ag_err("%s: cannot create directory: %s", path, strerror(errno));
    return 0;
}

static const char *base_name(const char *path) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    const char *s = path + n;
    while (s > path && s[-1] != '/') s--;
    return s;
}

/* The last path component without a trailing slash, into out. */
static void last_component(const char *path, char *out, size_t cap) {
    const char *b = base_name(path);
    size_t n = strlen(b);
    while (n > 0 && b[n - 1] == '/') n--;
    if (n >= cap) n = cap - 1;
    memcpy(out, b, n);
    out[n] = 0;
}

int ag_report_which(const char *prog, char *out, size_t cap) {
    const char *path = getenv("PATH");
    if (!path || !*path) path = "/usr/local/bin:/usr/bin:/bin";
    const char *s = path;
    while (*s) {
        const char *e = strchr(s, ':');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n > 0 && n + strlen(prog) + 2 < cap) {
            snprintf(out, cap, "%.*s/%s", (int)n, s, prog);
            if (access(out, X_OK) == 0) return 1;
        }
        if (!e) break;
        s = e + 1;
    }
    return 0;
}

/* ---- metrics.jsonl -------------------------------------------------------------------- */

typedef struct {
    int n, cap;
    double *x, *y;
} series;

/* Append (x, y), first dropping points at x or later: a resumed run repeats steps and its
 * lines come last, so they win. */
static int series_put(series *s, double x, double y) {
    while (s->n > 0 && s->x[s->n - 1] >= x) s->n--;
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 256;
        double *nx = realloc(s->x, (size_t)cap * sizeof *nx);
        if (!nx) return ag_err("out of memory");
        s->x = nx;
        double *ny = realloc(s->y, (size_t)cap * sizeof *ny);
        if (!ny) return ag_err("out of memory");
        s->y = ny;
        s->cap = cap;
    }
    s->x[s->n] = x;
    s->y[s->n] = y;
    s->n++;
    return 0;
}

static void series_free(series *s) {
    free(s->x);
    free(s->y);
    memset(s, 0, sizeof *s);
}

typedef struct {
    series loss, eval;        /* loss per step; the primary metric per evaluation */
    char primary[64];         /* name of the primary metric of the last evaluation */
    int has_eval;
} run_curves;

/* Read a run directory's metrics.jsonl. A missing file is not an error (found = 0); a line
 * that is not JSON (a run killed mid-line) is skipped. */
static int read_metrics(const char *dir, run_curves *rc, int *found) {
    char path[PATH_CAP];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    memset(rc, 0, sizeof *rc);
    *found = 0;
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    *found = 1;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int err = 0;
    while (!err && (len = getline(&line, &cap, f)) >= 0) {
        json_error_t je;
        json_t *j = json_loads(line, 0, &je);
        if (!j) continue;
        json_t *step = json_object_get(j, "step"), *loss = json_object_get(j, "loss"), *ev = json_object_get(j, "eval");
        const char *prim = json_string_value(json_object_get(j, "primary"));
        if (json_is_integer(step)) {
            double x = (double)json_integer_value(step);
            if (json_is_number(loss)) err = series_put(&rc->loss, x, json_number_value(loss));
            if (!err && json_is_object(ev) && prim && *prim) {
                json_t *v = json_object_get(ev, prim);
                if (json_is_number(v)) {
                    err = series_put(&rc->eval, x, json_number_value(v));
                    snprintf(rc->primary, sizeof rc->primary, "%s", prim);
                    rc->has_eval = 1;
                }
            }
        }
        json_decref(j);
    }
    free(line);
    fclose(f);
    if (err) {
        series_free(&rc->loss);
        series_free(&rc->eval);
        return ag_err_ctx("%s", path);
    }
    return 0;
}

/* ---- eval --csv ----------------------------------------------------------------------- */

/* The primary metric of an eval CSV (metric,value rows): spearman_cosine, else max_ap, else
 * the first row. 1 when found, 0 when the file is missing or empty. */
static int read_eval_csv(const char *path, char *metric, size_t mcap, double *value) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char line[512], first[64] = "", name[64];
    double v, fv = NAN;
    int got = 0, best = 0;  /* best: 2 spearman_cosine, 1 max_ap */
    while (fgets(line, sizeof line, f)) {
        char *comma = strchr(line, ',');
        if (!comma || !strncmp(line, "metric,", 7)) continue;
        size_t n = (size_t)(comma - line);
        if (n >= sizeof name) continue;
        memcpy(name, line, n);
        name[n] = 0;
        v = strtod(comma + 1, NULL);
        if (!first[0]) { snprintf(first, sizeof first, "%s", name); fv = v; }
        int rank = !strcmp(name, "spearman_cosine") ? 2 : !strcmp(name, "max_ap") ? 1 : 0;
        if (rank > best) {
            best = rank;
            snprintf(metric, mcap, "%s", name);
            *value = v;
        }
        got = 1;
    }
    fclose(f);
    if (got && !best) {
        snprintf(metric, mcap, "%s", first);
        *value = fv;
    }
    return got;
}

/* ---- results -------------------------------------------------------------------------- */

static int is_training(const char *stage) {
    return !strcmp(stage, "train-bi") || !strcmp(stage, "train-cross") || !strcmp(stage, "tsdae");
}

int ag_report_collect(const ag_report_stage *st, int n, ag_report_row **rows, int *nrows) {
    *rows = calloc((size_t)(n > 0 ? n : 1), sizeof **rows);
    *nrows = 0;
    if (!*rows) return ag_err("out of memory");
    for (int i = 0; i < n; i++) {
        ag_report_row r;
        memset(&r, 0, sizeof r);
        r.index = st[i].index;
        r.seconds = st[i].seconds;
        snprintf(r.stage, sizeof r.stage, "%s", st[i].stage);
        int got = 0;
        if (!strcmp(st[i].stage, "eval") && st[i].csv) {
            got = read_eval_csv(st[i].csv, r.metric, sizeof r.metric, &r.value);
            if (st[i].name) snprintf(r.result, sizeof r.result, "%s", st[i].name);
            else last_component(st[i].csv, r.result, sizeof r.result);
        } else if (is_training(st[i].stage) && st[i].out) {
            run_curves c;
            int found;
            if (read_metrics(st[i].out, &c, &found)) {
                free(*rows);
                *rows = NULL;
                return -1;
            }
            if (found && c.has_eval) {
                got = 1;
                snprintf(r.metric, sizeof r.metric, "%s", c.primary);
                r.value = c.eval.y[c.eval.n - 1];
                last_component(st[i].out, r.result, sizeof r.result);
            }
            series_free(&c.loss);
            series_free(&c.eval);
        }
        if (got) (*rows)[(*nrows)++] = r;
    }
    return 0;
}

/* ---- plots ---------------------------------------------------------------------------- */

static int write_dat(const char *path, const series *s) {
    FILE *f = fopen(path, "w");
    if (!f) return ag_err("%s: cannot create: %s", path, strerror(errno));
    for (int i = 0; i < s->n; i++) fprintf(f, "%.17g %.17g\n", s->x[i], s->y[i]);
    if (fclose(f)) return ag_err("%s: write failed", path);
    return 0;
}

/* gnuplot script for one curve; the PNG is drawn only when gnuplot exists. Returns 1 when a
 * PNG was drawn. */
static int plot(const char *gnuplot, const char *dir, const char *stem, const char *title, const char *ylabel,
                const series *s, int *failed) {
    char dat[PATH_CAP], gp[PATH_CAP], png[PATH_CAP];
    if (pathf(dat, sizeof dat, "%s/%s.dat", dir, stem) || pathf(gp, sizeof gp, "%s/%s.gp", dir, stem) ||
        pathf(png, sizeof png, "%s/%s.png", dir, stem))
        return -1;
    if (write_dat(dat, s)) return -1;
    FILE *f = fopen(gp, "w");
    if (!f) return ag_err("%s: cannot create: %s", gp, strerror(errno));
    /* Paths relative to the script's folder, so the folder can be moved and redrawn. */
    fprintf(f, "# draw with: cd %s && gnuplot %s.gp\n", dir, stem);
    fprintf(f, "set terminal png size 800,480\nset output '%s.png'\nset title '%s' noenhanced\n"
               "set xlabel 'step'\nset ylabel '%s' noenhanced\nset grid\nset key off\n"
               "plot '%s.dat' using 1:2 with %s lw 2\n",
            stem, title, ylabel, stem, s->n > 30 ? "lines" : "linespoints");
    if (fclose(f)) return ag_err("%s: write failed", gp);
    if (!gnuplot) return 0;
    /* posix_spawn rather than system(): no shell, and no fork of a process holding MPI's
     * memory registrations. "cd" first: the script names its files relative to plots/, and
     * is itself named relative to it (dir may be a relative path). */
    char cd[PATH_CAP + 16], script[PATH_CAP];
    snprintf(cd, sizeof cd, "cd '%s'", dir);
    if (pathf(script, sizeof script, "%s.gp", stem)) return -1;
    char *argv[] = {(char *)gnuplot, "-e", cd, script, NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, gnuplot, NULL, NULL, argv, environ);
    if (rc) {
        (*failed)++;
        return 0;
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    struct stat stp;
    if (!WIFEXITED(status) || WEXITSTATUS(status) || stat(png, &stp)) {
        (*failed)++;
        return 0;
    }
    return 1;
}

/* ---- report.md / results.csv ----------------------------------------------------------- */

static void fmt_time(double s, char *buf, size_t n) {
    if (!(s >= 0)) snprintf(buf, n, "-");
    else if (s >= 60) snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else snprintf(buf, n, "%.1fs", s);
}

static void print_results(FILE *f, const ag_report_row *rows, int n) {
    fprintf(f, "| # | stage | result | metric | value | stage time |\n|---|---|---|---|---|---|\n");
    for (int i = 0; i < n; i++) {
        char t[32];
        fmt_time(rows[i].seconds, t, sizeof t);
        fprintf(f, "| %d | %s | %s | %s | %.4f | %s |\n", rows[i].index, rows[i].stage, rows[i].result, rows[i].metric,
                rows[i].value, t);
    }
}

int ag_report_write(const char *dir, const char *title, const ag_report_stage *st, int n, FILE *table) {
    char path[PATH_CAP], plots[PATH_CAP], gnuplot[PATH_CAP];
    if (mkdir_one(dir)) return -1;
    snprintf(plots, sizeof plots, "%s/plots", dir);
    if (mkdir_one(plots)) return -1;
    int have_gp = ag_report_which("gnuplot", gnuplot, sizeof gnuplot);
    ag_report_row *rows;
    int nrows;
    if (ag_report_collect(st, n, &rows, &nrows)) return -1;

    /* results.csv */
    snprintf(path, sizeof path, "%s/results.csv", dir);
    FILE *f = fopen(path, "w");
    if (!f) { free(rows); return ag_err("%s: cannot create: %s", path, strerror(errno)); }
    fprintf(f, "index,stage,result,metric,value,seconds\n");
    for (int i = 0; i < nrows; i++)
        fprintf(f, "%d,%s,\"%s\",%s,%.17g,%.1f\n", rows[i].index, rows[i].stage, rows[i].result, rows[i].metric,
                rows[i].value, rows[i].seconds);
    if (fclose(f)) { free(rows); return ag_err("%s: write failed", path); }

    /* plots, then report.md */
    char md_plots[8192] = "";
    size_t mp = 0;
    int drawn = 0, failed = 0, curves = 0, rc = 0;
    double total = 0;
    for (int i = 0; i < n && !rc; i++) {
        total += st[i].seconds > 0 ? st[i].seconds : 0;
        if (!is_training(st[i].stage) || !st[i].out) continue;
        run_curves c;
        int found;
        if (read_metrics(st[i].out, &c, &found)) { rc = -1; break; }
        char name[128], stem[200], ttl[300];
        last_component(st[i].out, name, sizeof name);
        for (int k = 0; k < 2 && !rc; k++) {
            const series *s = k ? &c.eval : &c.loss;
            if (s->n < 1) continue;
            snprintf(stem, sizeof stem, "%02d-%s-%s", st[i].index, name, k ? "eval" : "loss");
            snprintf(ttl, sizeof ttl, "%s %s: %s", st[i].stage, name, k ? c.primary : "training loss");
            curves++;
            int d = plot(have_gp ? gnuplot : NULL, plots, stem, ttl, k ? c.primary : "loss", s, &failed);
            if (d < 0) rc = -1;
            else if (d > 0) {
                drawn++;
                if (mp < sizeof md_plots)
                    mp += (size_t)snprintf(md_plots + mp, sizeof md_plots - mp, "![%s](plots/%s.png)\n\n", ttl, stem);
            }
        }
        series_free(&c.loss);
        series_free(&c.eval);
    }
    if (rc) { free(rows); return -1; }

    snprintf(path, sizeof path, "%s/report.md", dir);
    f = fopen(path, "w");
    if (!f) { free(rows); return ag_err("%s: cannot create: %s", path, strerror(errno)); }
    fprintf(f, "# %s\n\n## Results\n\n", title);
    if (nrows) print_results(f, rows, nrows);
    else fprintf(f, "(no stage produced an evaluation)\n");
    fprintf(f, "\n## Stages\n\n| # | stage | output | time | this run |\n|---|---|---|---|---|\n");
    for (int i = 0; i < n; i++) {
        char t[32];
        fmt_time(st[i].seconds, t, sizeof t);
        fprintf(f, "| %d | %s | %s | %s | %s |\n", st[i].index, st[i].stage,
                st[i].csv ? st[i].csv : st[i].out ? st[i].out : "-", t, st[i].skipped ? "skipped (done before)" : "ran");
    }
    char tt[32];
    fmt_time(total, tt, sizeof tt);
    fprintf(f, "\nTotal stage time %s (the runs that completed each stage).\n\n## Curves\n\n", tt);
    if (!curves) fprintf(f, "(no training curves)\n");
    else if (!have_gp)
        fprintf(f, "Plots skipped: gnuplot is not installed (Debian: gnuplot-nox, see scripts/install-deps.sh). "
                   "The data and scripts are in plots/ (cd plots && gnuplot NAME.gp).\n");
    else {
        fputs(md_plots, f);
        if (failed) fprintf(f, "(%d plot%s could not be drawn by %s; the scripts are in plots/)\n", failed,
                            failed == 1 ? "" : "s", gnuplot);
    }
    if (fclose(f)) { free(rows); return ag_err("%s: write failed", path); }
    if (table) {
        fprintf(table, "\n");
        if (nrows) print_results(table, rows, nrows);
        else fprintf(table, "(no stage produced an evaluation)\n");
        fprintf(table, "\nreport: %s/report.md, %s/results.csv%s\n", dir, dir,
                !curves ? "" : have_gp ? (drawn ? ", plots in plots/" : " (plots failed)") : " (plots skipped: no gnuplot)");
        fflush(table);
    }
    free(rows);
    return 0;
}
