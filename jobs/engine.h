/* The data-parallel training engine shared by the training stages (train-bi, train-cross,
 * tsdae): a generic loop in which a TASK supplies the forward + backward of this rank's
 * slice of a global batch, and the engine does everything else, the same way for every
 * stage:
 *
 *   - data order: an epoch-keyed, seeded counter-based permutation of the N samples
 *     (Fisher-Yates driven by ag_rng_u32(seed, AG_RNG_SHUFFLE, epoch, 0, i)), cut into
 *     global batches of G (the last one of an epoch may be smaller), each sliced over the
 *     ranks with ag_batch_slice. Every rank computes the same order, so the order, and the
 *     sample keys that drive dropout and noise, do not depend on the rank count;
 *   - gradient allreduce in buckets, overlapped with the backward pass through the BERT
 *     hook (ag_engine_grad_hook), then global gradient-norm clipping, AdamW and the
 *     learning-rate schedule on the reduced gradients, identically on every rank;
 *   - the loss averaged across ranks (the sum of the ranks' contributions, see below);
 *   - periodic evaluation through the task's callback, keeping the best or the last model;
 *   - periodic checkpoints, a checkpoint when SIGTERM / SIGUSR1 arrives (then the run
 *     returns AG_EXIT_REQUEUE), resume from the newest complete checkpoint in the run
 *     directory;
 *   - a parameter checksum compared across ranks every N steps;
 *   - metrics.jsonl and progress output on rank 0 (jobs/metrics.h).
 *
 * Run directory (cfg.out_dir):
 *   checkpoints/ckpt-%06d.h5   resumable checkpoints (params incl. loss-owned heads, AdamW
 *                              moments, step, data position, schedule, seed)
 *   model.h5                   the final model (best or last; only the model's tensors, so
 *                              `argent export` and `argent eval` load it directly)
 *   best.h5, best.json         the best model so far and its score (keep_best)
 *   metrics.jsonl              one JSON object per step ("loss") and per evaluation
 *                              ("eval"); after a resume steps may repeat: the last line for
 *                              a step wins
 *
 * Task contract. task.step(ctx, batch, &loss) is called on EVERY rank for every step, also
 * on a rank whose slice is empty (count == 0), because collective calls (an all-gather of
 * embeddings for global negatives) may happen inside it. It must:
 *   - zero nothing (the engine zeroes p->grad before each step) and ACCUMULATE into p->grad
 *     the gradient of its CONTRIBUTION to the global mean loss: for a loss that is a mean
 *     over samples, the local mean times batch->gscale (= count / global), which is how
 *     nn/losses.h's gscale argument works; for a loss over gathered embeddings (MNRL block
 *     form), the local rows' sum divided by batch->global;
 *   - set *loss to that same contribution (so the sum over ranks is the global mean loss);
 *   - key dropout and noise on batch->key[i] (unique per sample use: epoch * N + position),
 *     never on rank-local positions;
 *   - for overlap, point its encoder's hook at the engine before the LAST backward pass of
 *     the step (m->grad_hook = ag_engine_grad_hook; m->grad_hook_ctx = engine) and clear it
 *     before any earlier pass; with several backward passes per step call
 *     ag_engine_accumulate() after each earlier one. Tensors never reported (heads, unused
 *     tensors) are reduced at the end of the step anyway.
 * A step that fails on one rank returns -1 there; the engine still completes the step's
 * reduction on every rank and then fails on all of them. A failure between two collectives
 * of the task itself (an all-gather) cannot be agreed on: tasks check their inputs before
 * their first collective.
 * task.evaluate (optional) is collective too: every rank calls it at the same steps; it
 * fills an ag_eval_result whose `primary` (higher is better) decides the best model.
 *
 * All functions return 0 on success and -1 with ag_errmsg() on failure; the collective
 * ones fail on every rank together when a rank's error could otherwise leave the others
 * waiting (the message then names the rank that failed). */
#ifndef ARGENT_JOBS_ENGINE_H
#define ARGENT_JOBS_ENGINE_H
#include <mpi.h>
#include <stdint.h>

#include "dist/allreduce.h"
#include "io/hfmodel.h"
#include "nn/optim.h"
#include "nn/params.h"

typedef struct ag_engine ag_engine;

/* What one step of the task works on. The global batch is positions [pos, pos + global) of
 * epoch `epoch`'s permutation; this rank's slice is rows [begin, begin + count) of it. */
typedef struct {
    int64_t step;            /* 0-based index of the optimiser step being computed */
    int64_t epoch;
    int64_t pos;             /* position of the global batch's first sample in the epoch */
    int64_t global;          /* G' = samples in this global batch (<= G on an epoch's end) */
    const int64_t *sample;   /* [global] dataset indices (0..N-1) of the whole global batch,
                                in order: the same array on every rank */
    const int64_t *key;      /* [global] RNG keys of those samples: epoch * N + position */
    int64_t begin, count;    /* this rank's rows of the global batch (count may be 0) */
    float gscale;            /* count / global: the gscale of a per-sample mean loss */
    uint64_t seed;           /* the run's seed (dropout, noise) */
    int rank, nranks;
    MPI_Comm comm;           /* for collectives inside the step (gathers) */
} ag_engine_batch;

#define AG_EVAL_MAX_METRICS 24
typedef struct {
    int n;
    struct { char name[48]; double value; } m[AG_EVAL_MAX_METRICS];
    double primary;          /* higher is better (for example spearman_cosine) */
    char primary_name[48];
} ag_eval_result;

/* Append a named metric (silently ignores more than AG_EVAL_MAX_METRICS). */
void ag_eval_add(ag_eval_result *r, const char *name, double value);

typedef struct {
    void *ctx;
    /* Forward + backward of this rank's slice; see the task contract above. */
    int (*step)(void *ctx, ag_engine *e, const ag_engine_batch *b, double *loss);
    /* Optional (NULL: no evaluation). Collective; eval mode (no dropout). */
    int (*evaluate)(void *ctx, ag_engine *e, int64_t step, ag_eval_result *out);
} ag_engine_task;

typedef struct {
    /* data and length */
    int64_t n_samples;       /* N: the task's training samples (pairs, sentences) */
    int64_t global_batch;    /* G: samples per optimiser step over all ranks */
    int64_t epochs;          /* used when total_steps == 0: epochs * ceil(N / G) steps */
    int64_t total_steps;     /* length of the run (and of the schedule); 0: from epochs */
    int64_t stop_after;      /* > 0: when the run reaches this many steps in all, checkpoint
                                and return AG_EXIT_REQUEUE as if preempted (tests); a run
                                resumed beyond it goes on */
    uint64_t seed;
    int no_shuffle;          /* 1: identity order (debugging) */
    /* optimiser */
    double lr, weight_decay, max_grad_norm;  /* max_grad_norm <= 0: no clipping */
    ag_sched_kind schedule;
    int64_t warmup_steps;
    /* distribution */
    ag_ar_config ar;         /* bucket sizes, AG_AR_SUM or AG_AR_EXACT */
    int check_every;         /* parameter checksum every N steps (0: only at the end) */
    int no_overlap;          /* 1: ignore the backward hook, reduce everything after the
                                backward (the benchmark's baseline) */
    /* output */
    const char *out_dir;     /* run directory (created by rank 0) */
    int ckpt_every;          /* periodic checkpoints (0: only at stop and at the end) */
    int keep_ckpts;          /* newest K resumable checkpoints kept (<= 0: all) */
    int eval_every;          /* evaluation every N steps and at the end (0: only at the end) */
    int keep_best;           /* 1: model.h5 is the best evaluated model; 0: the last */
    int log_every;           /* plain progress line every N steps (when not on a TTY) */
    int resume;              /* 1 (default): resume from the newest checkpoint in out_dir */
    int tty;                 /* progress bar: -1 when stderr is a terminal (default), 0 never,
                                1 always */
    const char *stage;       /* "train-bi", ... for messages and metrics */
} ag_engine_config;

/* Defaults: G 32, 1 epoch, seed 42, lr 2e-5, wd 0.01, clip 1.0, linear schedule, no
 * warm-up, default buckets, checksum every 50 steps, checkpoint every 500 (keep 2), eval
 * only at the end, keep the last, log every 10, resume on. */
void ag_engine_config_default(ag_engine_config *cfg);

/* p: the training table, allocated and initialised on rank 0 (imported or fresh; the
 * engine broadcasts rank 0's values, or loads the newest checkpoint when resuming).
 * n_model_tensors: the first n tensors of p form the model that model.h5 / best.h5 hold
 * (described by md); the rest (a loss-owned classifier) only live in resumable
 * checkpoints. The engine keeps the pointers (p, md, task ctx) until ag_engine_free.
 * Collective (creates the allreduce plan). */
int ag_engine_create(ag_engine **out, const ag_engine_config *cfg, const ag_engine_task *task,
                     ag_params *p, int n_model_tensors, const ag_model_desc *md);
void ag_engine_free(ag_engine *e);
/* Settings that change what is trained (loss, pooling, data files...), as text: kept in
 * run.json with the engine's own (batch, steps, seed, lr, ...), and a resume whose
 * settings differ is refused with a message naming each difference. Call before run. */
void ag_engine_set_fingerprint(ag_engine *e, const char *text);

/* Run (or resume) the loop to the end. Collective. Returns AG_EXIT_OK (0) when the run is
 * complete and model.h5 written, AG_EXIT_REQUEUE after a checkpoint on a stop signal or
 * at stop_after, or -1 with ag_errmsg() (also on a parameter divergence between ranks). */
int ag_engine_run(ag_engine *e);

/* Hook for ag_bert.grad_hook (ctx = the engine): tensors first..last of the table have
 * their final gradient for this step; starts the buckets that can start and lets the
 * ones in flight progress. */
int ag_engine_grad_hook(void *engine, int first, int last);
/* A dense share of tensor t's gradient that the task can compute apart, long before the
 * rest (TSDAE: the LM head's projection gradient of the tied word embeddings). Call before
 * ag_engine_run. Where it pays (np > 1 on the CPU with overlap) the run gives the allreduce
 * a part for t (dist/allreduce.h, ag_ar_add_part): ag_engine_grad_part then returns its
 * buffer, into which the task's backward accumulates that share instead of into p->grad,
 * calling ag_engine_part_ready(engine) once it is final; the reduced share is in p->grad
 * after the step. Elsewhere ag_engine_grad_part returns NULL and the share goes into p->grad
 * as usual. */
void ag_engine_request_part(ag_engine *e, int t);
float *ag_engine_grad_part(const ag_engine *e);
int ag_engine_part_ready(void *engine);
/* Between several backward passes of one step (see the task contract). */
int ag_engine_accumulate(ag_engine *e);
/* Let in-flight reductions progress (MPI_Test); cheap, call between pieces of compute. */
int ag_engine_progress(ag_engine *e);

/* GPU training (jobs/device.h): the task runs its model on d's device mirror of p.
 * Device-resident (the default, ag_device_resident): the master parameters and the AdamW
 * moments live on the device (uploaded once at the start or resume); per step the heads'
 * host gradients are added into the device gradient, which is summed across ranks (NCCL
 * overlapped with the backward through ag_engine_grad_hook when the build has it and
 * np > 1; else download, host allreduce, upload), then unscaled (fp16), clipped and
 * stepped on the device with the host's schedule, and the heads' parameters are downloaded
 * into p. p->data and the moments are brought down only for evaluation, checksums,
 * checkpoints and the final model. Host-staged (ARGENT_DEVICE_OPTIM=host): the engine
 * uploads p's data to the mirror after every change (start, resume, each optimiser step),
 * zeroes the device gradient before each step and adds it into p->grad after the task's
 * step (ag_device_end_step); the reduction, clipping and AdamW stay on the host, on p, as on
 * the CPU, and the backward hook starts nothing. In both, with fp16 loss scaling a step
 * whose reduced gradient holds an inf/NaN is skipped (no AdamW update) and the scale backs
 * off. d NULL or on the CPU: the plain CPU loop. Call before ag_engine_run. */
struct ag_device;
void ag_engine_set_device(ag_engine *e, struct ag_device *d);

/* After ag_engine_run: the last step's global loss and the final step. (The allreduce's
 * cost is in the run's log, from the engine itself.) */
double ag_engine_last_loss(const ag_engine *e);
int64_t ag_engine_step(const ag_engine *e);
#endif
