/* Progress output (bar on a terminal, plain lines otherwise) and metrics.jsonl; see metrics.h. */
#include "jobs/metrics.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn/error.h"

struct ag_metrics {
    int active, tty, bar_shown, log_every;
    char stage[32];
    int64_t total, resumed_at;
    FILE *jsonl;
    double loss_acc;   /* plain lines print the mean loss since the previous line */
    int loss_n;
    int64_t samples_here;  /* samples since the run (re)started, for the rate */
};

ag_metrics *ag_metrics_open(const char *dir, const char *stage, int64_t total_steps, int log_every,
                            int active, int tty) {
    ag_metrics *mx = calloc(1, sizeof *mx);
    if (!mx) { ag_err("metrics: out of memory"); return NULL; }
    mx->active = active;
    mx->total = total_steps;
    mx->log_every = log_every > 0 ? log_every : 10;
    snprintf(mx->stage, sizeof mx->stage, "%s", stage ? stage : "train");
    if (!active) return mx;
    mx->tty = tty < 0 ? isatty(STDERR_FILENO) : tty;
    if (dir) {
        char path[4200];
        snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
        mx->jsonl = fopen(path, "a");
        if (!mx->jsonl) {
            ag_err("%s: cannot open for appending the run's metrics", path);
            free(mx);
            return NULL;
        }
    }
    return mx;
}

static void clear_bar(ag_metrics *mx) {
    if (mx->bar_shown) {
        fprintf(stderr, "\r\033[K");
        mx->bar_shown = 0;
    }
}

void ag_metrics_close(ag_metrics *mx) {
    if (!mx) return;
    if (mx->active) {
        if (mx->bar_shown) fputc('\n', stderr);
        if (mx->jsonl) fclose(mx->jsonl);
    }
    free(mx);
}

void ag_metrics_resume(ag_metrics *mx, int64_t step) {
    if (mx) mx->resumed_at = step;
}

/* JSON number: finite values with 17 digits, others as null (JSON has no NaN). */
static void put_num(FILE *f, double x) {
    if (isfinite(x)) fprintf(f, "%.17g", x);
    else fputs("null", f);
}

static void fmt_eta(double s, char *buf, size_t n) {
    if (!isfinite(s) || s < 0) { snprintf(buf, n, "?"); return; }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ldh%02ldm", t / 3600, (t / 60) % 60);
    else if (t >= 60) snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
    else snprintf(buf, n, "%lds", t);
}

void ag_metrics_step(ag_metrics *mx, int64_t step, int64_t epoch, double loss, double lr, double grad_norm,
                     int64_t samples, double elapsed) {
    if (!mx || !mx->active) return;
    int64_t done_here = step - mx->resumed_at;
    double rate_steps = elapsed > 0 ? (double)done_here / elapsed : 0;
    mx->samples_here += samples;
    double sps = elapsed > 0 ? (double)mx->samples_here / elapsed : 0;
    if (mx->jsonl) {
        FILE *f = mx->jsonl;
        fprintf(f, "{\"stage\":\"%s\",\"step\":%lld,\"epoch\":%lld,\"loss\":", mx->stage, (long long)step,
                (long long)epoch);
        put_num(f, loss);
        fputs(",\"lr\":", f);
        put_num(f, lr);
        fputs(",\"grad_norm\":", f);
        put_num(f, grad_norm);
        fprintf(f, ",\"samples\":%lld,\"samples_per_s\":", (long long)samples);
        put_num(f, sps);
        fputs(",\"time\":", f);
        put_num(f, elapsed);
        fputs("}\n", f);
        fflush(f);
    }
    mx->loss_acc += loss;
    mx->loss_n++;
    char eta[32];
    fmt_eta(rate_steps > 0 ? (double)(mx->total - step) / rate_steps : NAN, eta, sizeof eta);
    if (mx->tty) {
        int width = 24, fill = mx->total > 0 ? (int)((double)width * (double)step / (double)mx->total) : 0;
        if (fill > width) fill = width;
        char bar[64];
        for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
        bar[width] = 0;
        fprintf(stderr, "\r\033[K%s [%s] %lld/%lld loss %.4f lr %.2e %.1f samples/s ETA %s", mx->stage, bar,
                (long long)step, (long long)mx->total, loss, lr, sps, eta);
        fflush(stderr);
        mx->bar_shown = 1;
        mx->loss_acc = 0;
        mx->loss_n = 0;
    } else if (step % mx->log_every == 0 || step == mx->total) {
        fprintf(stderr, "argent: %s: step %lld/%lld epoch %lld loss %.6f lr %.3e %.1f samples/s ETA %s\n", mx->stage,
                (long long)step, (long long)mx->total, (long long)epoch, mx->loss_acc / mx->loss_n, lr, sps, eta);
        fflush(stderr);
        mx->loss_acc = 0;
        mx->loss_n = 0;
    }
}

void ag_metrics_eval(ag_metrics *mx, int64_t step, int n, const char *const *names, const double *values,
                     const char *primary, int is_best) {
    if (!mx || !mx->active) return;
    if (mx->jsonl) {
        FILE *f = mx->jsonl;
        fprintf(f, "{\"stage\":\"%s\",\"step\":%lld,\"eval\":{", mx->stage, (long long)step);
        for (int i = 0; i < n; i++) {
            fprintf(f, "%s\"%s\":", i ? "," : "", names[i]);
            put_num(f, values[i]);
        }
        fprintf(f, "},\"primary\":\"%s\",\"best\":%s}\n", primary ? primary : "", is_best ? "true" : "false");
        fflush(f);
    }
    clear_bar(mx);
    double pv = NAN;
    for (int i = 0; i < n; i++)
        if (primary && !strcmp(names[i], primary)) pv = values[i];
    fprintf(stderr, "argent: %s: evaluation at step %lld: %s %.5f%s\n", mx->stage, (long long)step,
            primary ? primary : "?", pv, is_best ? " (best so far)" : "");
    fflush(stderr);
}

void ag_metrics_note(ag_metrics *mx, const char *fmt, ...) {
    if (!mx || !mx->active) return;
    clear_bar(mx);
    /* One write per line: under mpirun, stderr and stdout travel separately and a line
     * written in pieces can be cut by the other stream's output. */
    char line[10000];   /* notes may hold a few paths of up to 4 KB */
    int k = snprintf(line, sizeof line, "argent: %s: ", mx->stage);
    va_list ap;
    va_start(ap, fmt);
    if (k >= 0 && (size_t)k < sizeof line) vsnprintf(line + k, sizeof line - (size_t)k, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", line);
    fflush(stderr);
}
