/* The set-up and run that the stage programs share: the engine options of the training
 * stages (train-bi, tsdae), their STS evaluation set, the one drive of the engine after
 * set-up; the bi-encoder + dataset pair that encode and eval open; the start of a job
 * (usage errors before MPI) and a cross-encoder moved onto the device.
 *
 * Every function leaves its message in ag_errmsg naming the option or the file; the
 * caller prefixes its program name, so the messages users see are the stage's own. */
#ifndef AG_JOBS_RUNSETUP_H
#define AG_JOBS_RUNSETUP_H

#include "io/dataset.h"
#include "io/hfmodel.h"
#include "jobs/cli.h"
#include "jobs/crossenc.h"
#include "jobs/device.h"
#include "jobs/encode.h"
#include "jobs/engine.h"
#include "nn/bert.h"
#include "nn/params.h"

/* ag_cli_parse for a stage: --help exits AG_EXIT_OK, a bad command line AG_EXIT_USAGE (its
 * message names the program). Returns -1 to go on; otherwise the exit code. */
int ag_run_parse(ag_cli *c, const char *prog, const char *summary, const ag_cli_opt *opts, int argc, char **argv);

/* After the program's own option checks (opts_rc: 0, or non-zero with the message set): a
 * bad command line exits AG_EXIT_USAGE before MPI starts, then MPI starts (AG_EXIT_FAIL if
 * it cannot). Returns -1 to go on; otherwise the exit code, with the cli freed. */
int ag_run_begin(ag_cli *c, const char *prog, int opts_rc, int *argc, char ***argv);

/* --batch (sentences per batch) and --max-length (0: the model's), as encode and eval read
 * them. */
int ag_run_encode_opts(const ag_cli *c, long *batch, long *max_len);

/* Option-table rows that ag_run_engine_opts reads and every training stage words alike (the
 * stage's own rows give batch, lr, schedule, weight decay and the rest with its defaults). */
#define AG_RUN_CKPT_CLI_OPTS                                                                                     \
    {"ckpt-every", "N", "checkpoint period in steps (0: only at stops and at the end)", "500", 0},               \
    {"keep-ckpts", "N", "resumable checkpoints kept", "2", 0},                                                   \
    {"check-every", "N", "compare a parameter checksum across ranks every N steps", "50", 0},                    \
    {"stop-after", "N", "checkpoint after N steps and exit 85 as if preempted (resume by running again)", NULL, 0}, \
    {"log-every", "N", "progress line period when not on a terminal", "10", 0}
#define AG_RUN_ALLREDUCE_CLI_OPTS                                                                                \
    {"bucket-mb", "MB", "allreduce bucket size", "25", 0},                                                       \
    {"exact", NULL, "fixed-point gradient allreduce (sum independent of the rank count)", NULL, 0},              \
    {"no-overlap", NULL, "reduce gradients after the backward instead of during it (benchmarks)", NULL, 0},      \
    {"no-shuffle", NULL, "keep the data order (debugging)", NULL, 0}

/* The engine options train-bi and tsdae share (batch, epochs, steps, warm-up, periods,
 * seed, optimiser, schedule, allreduce buckets and flags) into ec, which holds the stage's
 * defaults; --eval-batch into *eval_batch. */
int ag_run_engine_opts(const ag_cli *c, ag_engine_config *ec, int *eval_batch);

/* --eval: the STS pair dataset the training stages rank models by (its vocabulary checked
 * against md; at least 2 labelled pairs). *has_eval is set before reading, so the caller
 * frees eval whatever happened. */
int ag_run_read_sts_eval(const ag_cli *c, const ag_model_desc *md, ag_dataset *eval, int *has_eval);

/* An engine evaluation: the STS correlations of enc on eval, spearman_cosine primary. */
int ag_run_sts_evaluate(const ag_encoder *enc, const ag_dataset *eval, int batch, ag_eval_result *out);

/* A training stage after its set-up: what the engine drives, and what the stage adds. */
typedef struct {
    const char *stage;           /* "train-bi": messages read "argent train-bi: ..." */
    ag_engine_task task;
    ag_params *p;
    int n_model;                 /* the first n tensors of p are the saved model */
    const ag_model_desc *md;
    ag_device *dv;
    ag_bert *m;                  /* its backward hook starts the gradient allreduce */
    const char *fingerprint;
    void (*before)(void *ctx, ag_engine *e);          /* optional: made, not yet run */
    void (*after)(void *ctx, ag_engine *e, int rc);   /* optional: run, rc its result */
} ag_run_stage;

/* Every rank agrees whether set-up (setup_rc, its own) went well; then the engine runs
 * the stage. Returns the exit code: 0, 1 (an error, said) or AG_EXIT_REQUEUE. */
int ag_run_train_stage(const ag_run_stage *s, const ag_engine_config *ec, int setup_rc);

/* A bi-encoder checkpoint and the dataset it reads, as encode and eval open them. */
typedef struct {
    ag_model_desc md;
    ag_bert m;
    ag_params p;
    ag_dataset ds;
    ag_encoder enc;
    int have_model;
} ag_bi_input;

void ag_bi_input_init(ag_bi_input *b);
/* Reads the model and the dataset (need_pairs: the dataset must hold pairs; the message
 * says that `need_pairs` needs them), checks the dataset's vocabulary, makes the encoder
 * (max_len 0: the model's). */
int ag_bi_input_open(ag_bi_input *b, const char *model, const char *data, int max_len, const char *need_pairs);
void ag_bi_input_free(ag_bi_input *b);

/* On the GPU a cross-encoder's BERT runs on a device copy of its table; the pooler and
 * classifier stay on the host. */
int ag_run_cross_on_device(ag_cross *x, ag_device *dv);

#endif
