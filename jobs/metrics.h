/* What a training run shows and records, on rank 0: a progress bar on a terminal (step,
 * loss, lr, throughput, ETA), plain periodic lines otherwise (logs, batch jobs), and
 * metrics.jsonl in the run directory, one JSON object per line:
 *   {"stage":"train-bi","step":12,"epoch":0,"loss":0.53,"lr":2e-05,"grad_norm":1.3,
 *    "samples":384,"samples_per_s":210.5,"time":1.83}
 *   {"stage":"train-bi","step":50,"eval":{"spearman_cosine":0.81,...},"primary":
 *    "spearman_cosine","best":true}
 * Numbers are written with 17 significant digits, so a loss read back is the loss computed.
 * The file is appended to (a resumed run continues it; a step may then appear twice, the
 * last line wins) and flushed after every line, so a killed run keeps what it logged.
 * On ranks other than 0 (active == 0) every call does nothing. */
#ifndef ARGENT_JOBS_METRICS_H
#define ARGENT_JOBS_METRICS_H
#include <stdint.h>

typedef struct ag_metrics ag_metrics;

/* dir: the run directory (metrics.jsonl goes there; NULL: no file). total_steps for the
 * bar and ETA; log_every: plain lines every N steps (0: 10). tty: -1 decides from stderr
 * (isatty), 0 forces plain lines, 1 forces the bar. Returns NULL with ag_err when the file
 * cannot be opened. */
ag_metrics *ag_metrics_open(const char *dir, const char *stage, int64_t total_steps, int log_every,
                            int active, int tty);
void ag_metrics_close(ag_metrics *mx);

/* One optimiser step done: step is the count of steps done (1-based). samples: global
 * samples in this step; elapsed: seconds since the run (or the resume) started. */
void ag_metrics_step(ag_metrics *mx, int64_t step, int64_t epoch, double loss, double lr, double grad_norm,
                     int64_t samples, double elapsed);
/* An evaluation: names[n] / values[n], the primary metric's name, whether it is the best. */
void ag_metrics_eval(ag_metrics *mx, int64_t step, int n, const char *const *names, const double *values,
                     const char *primary, int is_best);
/* A free-form message line (clears the bar first); printf-style. */
void ag_metrics_note(ag_metrics *mx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Set the steps already done when a run resumes (so the ETA counts only this run's pace). */
void ag_metrics_resume(ag_metrics *mx, int64_t step);
#endif
