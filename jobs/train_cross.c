/* `argent train-cross`: fine-tune a cross-encoder on gold pairs, data-parallel over the MPI
 * ranks through the training engine (jobs/engine.h: data order, bucketed allreduce,
 * clipping, AdamW with linear warm-up and decay, evaluation, checkpoints, resume, stop
 * signals). The model is a pretrained encoder (argent checkpoint or Hugging Face folder)
 * with the pooler and a new classifier head (jobs/crossenc.h), as sentence-transformers'
 * CrossEncoder builds it:
 *   one label   BCE-with-logits on float labels in [0, 1] (scores, or 0/1 classes)
 *   L >= 2      cross-entropy on class ids
 * with the legacy CrossEncoder.fit defaults: lr 2e-5, weight decay 0.01 (none on biases and
 * LayerNorm weights), max grad norm 1.0, max length 128.
 *
 * --no-duplicates builds every epoch's batches as sentence-transformers'
 * NoDuplicatesBatchSampler does: walk the epoch's shuffled pairs, add a pair to the batch
 * unless one of its sentences is already in it, start the next batch from the first pair
 * left over. Pairs that never fit a full batch end the epoch; the engine cuts them into
 * batches of the global size like any others, so only those last batches may repeat a text
 * (ST makes them smaller batches instead).
 *
 * Evaluation (--dev, every --eval-every steps, before training and at the end): each rank
 * predicts a slice of the dev pairs, the logits are gathered and every rank computes the
 * same metrics (nn/evaluate_cross.h): a score dev set with one label -> Pearson/Spearman;
 * class labels -> accuracy, F1, ... (binary evaluator for one label, argmax + macro F1 for
 * more). Results go to metrics.jsonl (the step-0 line is written here, the rest by the
 * engine). The run directory is the engine's: model.h5 is what `argent label` and
 * `argent export --format cross-encoder` read. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dist/allreduce.h"
#include "dist/comm.h"
#include "dist/signals.h"
#include "io/checkpoint.h"
#include "io/dataset.h"
#include "jobs/cli.h"
#include "jobs/commands.h"
#include "jobs/crossenc.h"
#include "jobs/device.h"
#include "jobs/engine.h"
#include "jobs/metrics.h"
#include "jobs/runsetup.h"
#include "nn/error.h"
#include "nn/evaluate_cross.h"
#include "nn/rng.h"

static const ag_cli_opt xopts[] = {
    {"model", "SRC", "pretrained model: argent checkpoint (file or run directory) or Hugging Face folder", NULL, 1},
    {"train", "PAIRS.h5", "gold pairs with labels (argent prepare)", NULL, 1},
    {"dev", "PAIRS.h5", "labelled pairs to evaluate on", NULL, 0},
    {"out", "DIR", "run directory (model.h5, checkpoints/, metrics.jsonl); a rerun resumes", NULL, 1},
    {"num-labels", "N", "1 (BCE, sigmoid) or the number of classes (cross-entropy); default 1 for score "
                        "labels, num_classes for class labels", NULL, 0},
    {"label-names", "A,B,..", "class names for the exported config (id2label); default from the dataset's "
                              "label map when it names each class once, else LABEL_i", NULL, 0},
    {"lr", "X", "peak learning rate", "2e-5", 0},
    {"batch", "N", "global batch (pairs per optimiser step over all ranks)", "32", 0},
    {"epochs", "N", "epochs (when --steps is not given)", "1", 0},
    {"steps", "N", "optimiser steps in all (overrides --epochs)", NULL, 0},
    {"warmup", "N", "linear warm-up steps", "0", 0},
    {"schedule", "S", "linear, constant or constant_with_warmup", "linear", 0},
    {"max-length", "N", "tokens per pair ([CLS] a [SEP] b [SEP], longest_first truncation)", "128", 0},
    {"seed", "N", "seed of the head's initialisation, the data order and dropout", "42", 0},
    {"weight-decay", "X", "AdamW weight decay (not on biases and LayerNorm weights)", "0.01", 0},
    {"max-grad-norm", "X", "clip the global gradient norm (0: no clipping)", "1.0", 0},
    {"no-duplicates", NULL, "no sentence twice in a batch (NoDuplicatesBatchSampler)", NULL, 0},
    {"eval-every", "N", "evaluate on --dev every N steps (and before and after training)", "0", 0},
    {"eval-batch", "N", "pairs per forward pass when evaluating", "64", 0},
    {"keep-best", NULL, "model.h5 = the best evaluated model (else the last)", NULL, 0},
    {"ckpt-every", "N", "resumable checkpoint every N steps", "500", 0},
    {"stop-after", "N", "checkpoint and exit 85 after N steps in all, as if preempted (tests)", NULL, 0},
    {"log-every", "N", "progress line every N steps", "10", 0},
    AG_DEVICE_CLI_OPTS,
    {0}};

static const char *const sched_names[] = {"constant", "constant_with_warmup", "linear", NULL};
static const ag_sched_kind sched_kinds[] = {AG_SCHED_CONSTANT, AG_SCHED_CONSTANT_WARMUP, AG_SCHED_LINEAR};

typedef struct {
    ag_cross x;
    ag_device dv;            /* where the encoder runs (jobs/device.h) */
    ag_dataset train, dev;
    int has_dev, L;
    uint64_t seed;
    int64_t G;
    /* no-duplicates order of the current epoch */
    int no_dup;
    int64_t order_epoch;
    int64_t *order;          /* [N] dataset pair per epoch position */
    /* step scratch */
    int64_t *pairs, *keys;
    float *logits, *dlogits, *yf;
    int32_t *yi;
    size_t cap;
    /* evaluation */
    int eval_batch;
    int dev_corr;            /* 1: correlation (score gold with one label); 0: classification */
    ag_engine *engine;
    ag_eval_result last;
    int has_last;
} xtrain;

/* ---- data order ------------------------------------------------------------------------ */

/* The epoch's shuffle, as the engine draws it, then NoDuplicatesBatchSampler's batching. */
static int nodup_order(xtrain *t, int64_t epoch) {
    const ag_dataset *ds = &t->train;
    int64_t N = ds->n_pairs, G = t->G;
    int64_t *perm = malloc((size_t)N * sizeof *perm);
    int64_t *stamp = malloc((size_t)ds->n_sentences * sizeof *stamp);
    if (!perm || !stamp) {
        free(perm);
        free(stamp);
        return ag_err("out of memory for the no-duplicates order of %lld pairs", (long long)N);
    }
    for (int64_t i = 0; i < N; i++) perm[i] = i;
    for (int64_t i = N - 1; i > 0; i--) {
        uint64_t r = ((uint64_t)ag_rng_u32(t->seed, AG_RNG_SHUFFLE, (uint64_t)epoch, 0, (uint64_t)i) << 32) |
                     ag_rng_u32(t->seed, AG_RNG_SHUFFLE, (uint64_t)epoch, 1, (uint64_t)i);
        int64_t j = (int64_t)(r % (uint64_t)(i + 1)), tmp = perm[i];
        perm[i] = perm[j];
        perm[j] = tmp;
    }
    for (int64_t s = 0; s < ds->n_sentences; s++) stamp[s] = -1;
    /* perm[0..left) is what remains, in order; each pass takes a batch from its front. */
    int64_t left = N, out = 0, batch_no = 0;
    while (left > 0) {
        int64_t taken = 0, keep = 0;
        for (int64_t i = 0; i < left; i++) {
            int64_t q = perm[i];
            if (taken < G && stamp[ds->a[q]] != batch_no && stamp[ds->b[q]] != batch_no) {
                stamp[ds->a[q]] = stamp[ds->b[q]] = batch_no;
                t->order[out++] = q;
                taken++;
            } else {
                perm[keep++] = q;   /* left for a later batch, order kept */
            }
        }
        left = keep;
        batch_no++;
    }
    free(perm);
    free(stamp);
    t->order_epoch = epoch;
    return 0;
}

static int reserve(xtrain *t, int64_t n) {
    if ((size_t)n <= t->cap) return 0;
    size_t L = (size_t)t->L;
    free(t->pairs);
    free(t->keys);
    free(t->logits);
    free(t->dlogits);
    free(t->yf);
    free(t->yi);
    t->pairs = malloc((size_t)n * sizeof *t->pairs);
    t->keys = malloc((size_t)n * sizeof *t->keys);
    t->logits = malloc((size_t)n * L * sizeof *t->logits);
    t->dlogits = malloc((size_t)n * L * sizeof *t->dlogits);
    t->yf = malloc((size_t)n * sizeof *t->yf);
    t->yi = malloc((size_t)n * sizeof *t->yi);
    if (!t->pairs || !t->keys || !t->logits || !t->dlogits || !t->yf || !t->yi) {
        t->cap = 0;
        return ag_err("out of memory for a batch of %lld pairs", (long long)n);
    }
    t->cap = (size_t)n;
    return 0;
}

/* ---- the engine's task ---------------------------------------------------------------- */

static int xstep(void *ctx, ag_engine *e, const ag_engine_batch *b, double *loss) {
    xtrain *t = ctx;
    *loss = 0;
    if (b->count == 0) return 0;
    int n = (int)b->count;
    if (reserve(t, n)) return -1;
    if (t->no_dup && t->order_epoch != b->epoch && nodup_order(t, b->epoch)) return -1;
    for (int i = 0; i < n; i++) {
        int64_t s = b->sample[b->begin + i];
        int64_t q = t->no_dup ? t->order[s] : s;
        t->pairs[i] = q;
        t->keys[i] = b->key[b->begin + i];
        float y = t->train.label[q];
        t->yf[i] = y;
        t->yi[i] = (int32_t)y;
    }
    ag_cross *x = &t->x;
    x->grad_scale = ag_device_loss_scale(&t->dv);
    if (ag_cross_forward(x, &t->train, t->pairs, n, t->keys, 1, b->seed, t->logits)) return -1;
    memset(t->dlogits, 0, (size_t)n * (size_t)t->L * sizeof *t->dlogits);
    double l = 0;
    if (ag_xhead_loss(&x->head, t->logits, t->yf, t->yi, n, b->gscale, &l, t->dlogits)) return -1;
    *loss = l * b->gscale;
    x->m.grad_hook = ag_engine_grad_hook;
    x->m.grad_hook_ctx = e;
    int rc = ag_cross_backward(x, t->dlogits, 1, b->seed);
    x->m.grad_hook = NULL;
    x->m.grad_hook_ctx = NULL;
    return rc;
}

/* Collective: dev logits of every pair on every rank (each predicts its slice). */
static int dev_logits(xtrain *t, float **out) {
    const ag_comm *cm = ag_comm_get();
    int64_t n = t->dev.n_pairs, begin, count;
    int L = t->L;
    ag_batch_slice(n, cm->size, cm->rank, &begin, &count);
    float *all = malloc((size_t)n * (size_t)L * sizeof *all);
    int64_t *pairs = malloc((size_t)(count ? count : 1) * sizeof *pairs);
    int *cnt = malloc((size_t)cm->size * sizeof *cnt), *off = malloc((size_t)cm->size * sizeof *off);
    int rc = 0;
    if (!all || !pairs || !cnt || !off) rc = ag_err("out of memory for %lld dev pairs", (long long)n);
    if (!rc && (int64_t)n * L > INT_MAX) rc = ag_err("dev set too large (%lld pairs)", (long long)n);
    for (int64_t i = 0; !rc && i < count; i++) pairs[i] = begin + i;
    if (!rc) rc = ag_cross_predict(&t->x, &t->dev, pairs, count, t->eval_batch, all + (size_t)begin * L);
    int any = rc != 0;
    MPI_Allreduce(MPI_IN_PLACE, &any, 1, MPI_INT, MPI_MAX, cm->world);
    if (any) {
        free(all);
        free(pairs);
        free(cnt);
        free(off);
        return rc ? -1 : ag_err("evaluation failed on another rank");
    }
    for (int r = 0; r < cm->size; r++) {
        int64_t b0, c0;
        ag_batch_slice(n, cm->size, r, &b0, &c0);
        cnt[r] = (int)(c0 * L);
        off[r] = (int)(b0 * L);
    }
    MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_FLOAT, all, cnt, off, MPI_FLOAT, cm->world);
    free(pairs);
    free(cnt);
    free(off);
    *out = all;
    return 0;
}

static int xevaluate(void *ctx, ag_engine *e, int64_t step, ag_eval_result *r) {
    (void)e;
    (void)step;
    xtrain *t = ctx;
    float *lg = NULL;
    if (dev_logits(t, &lg)) return -1;
    int64_t n = t->dev.n_pairs;
    int L = t->L, rc = 0;
    /* What CrossEncoder.predict returns: sigmoid for one label, the logits for more. */
    if (L == 1)
        for (int64_t i = 0; i < n; i++) lg[i] = 1.0f / (1.0f + expf(-lg[i]));
    memset(r, 0, sizeof *r);
    if (t->dev_corr) {
        ag_xeval_corr c;
        rc = ag_xeval_correlation(lg, t->dev.label, (size_t)n, &c);
        if (!rc) {
            ag_eval_add(r, "pearson", c.pearson);
            ag_eval_add(r, "spearman", c.spearman);
            r->primary = c.spearman;
            snprintf(r->primary_name, sizeof r->primary_name, "spearman");
        }
    } else {
        int32_t *gold = malloc((size_t)n * sizeof *gold);
        ag_xeval_class c;
        if (!gold) rc = ag_err("out of memory");
        for (int64_t i = 0; !rc && i < n; i++) gold[i] = (int32_t)t->dev.label[i];
        if (!rc) rc = ag_xeval_classification(lg, L, gold, (size_t)n, &c);
        free(gold);
        if (!rc) {
            ag_eval_add(r, "accuracy", c.accuracy);
            if (L == 1) {
                ag_eval_add(r, "accuracy_threshold", c.accuracy_threshold);
                ag_eval_add(r, "f1", c.f1);
                ag_eval_add(r, "f1_threshold", c.f1_threshold);
                ag_eval_add(r, "precision", c.precision);
                ag_eval_add(r, "recall", c.recall);
                ag_eval_add(r, "average_precision", c.average_precision);
            } else {
                ag_eval_add(r, "f1_macro", c.f1_macro);
                ag_eval_add(r, "f1_micro", c.f1_micro);
                ag_eval_add(r, "f1_weighted", c.f1_weighted);
            }
            r->primary = ag_xeval_class_primary(&c);
            snprintf(r->primary_name, sizeof r->primary_name, "%s", L == 1 ? "average_precision" : "f1_macro");
        }
    }
    free(lg);
    if (!rc) {
        t->last = *r;
        t->has_last = 1;
    }
    return rc;
}

/* ---- checks ---------------------------------------------------------------------------- */

static int check_labels(const ag_dataset *ds, const char *path, int L, const char *what) {
    if (ds->label_kind == AG_LABEL_NONE)
        return ag_err("%s %s: has no labels (label_kind none); %s needs labelled pairs", what, path, what);
    for (int64_t i = 0; i < ds->n_pairs; i++) {
        float y = ds->label[i];
        if (isnan(y)) return ag_err("%s %s: pair %lld has no label (NaN)", what, path, (long long)i);
        if (L == 1 && !(y >= 0.0f && y <= 1.0f))
            return ag_err("%s %s: pair %lld has label %g; one-label (BCE) training wants labels in [0, 1] "
                          "(prepare scores with --score-scale)", what, path, (long long)i, (double)y);
        if (L >= 2 && (y != floorf(y) || y < 0 || y >= (float)L))
            return ag_err("%s %s: pair %lld has label %g; %d-class training wants class ids 0..%d", what, path,
                          (long long)i, (double)y, L, L - 1);
    }
    return 0;
}

/* id2label from a dataset's label map when every class 0..L-1 has exactly one name. */
static int names_from_map(const ag_dataset *ds, int L, char names[][AG_LABEL_MAX]) {
    if (!ds->label_map || L < 2) return 0;
    int seen[AG_MAX_LABELS] = {0};
    const char *p = ds->label_map;
    while (*p) {
        const char *comma = strchr(p, ','), *end = comma ? comma : p + strlen(p);
        const char *eq = memchr(p, '=', (size_t)(end - p));
        if (!eq) return 0;
        char *e2;
        long v = strtol(eq + 1, &e2, 10);
        if (e2 != end || v < 0 || v >= L || eq - p >= AG_LABEL_MAX || seen[v]++) return 0;
        snprintf(names[v], AG_LABEL_MAX, "%.*s", (int)(eq - p), p);
        p = comma ? comma + 1 : end;
    }
    for (int k = 0; k < L; k++)
        if (seen[k] != 1) return 0;
    return 1;
}

static int split_names(const char *s, int L, char names[][AG_LABEL_MAX]) {
    int k = 0;
    while (*s) {
        const char *comma = strchr(s, ','), *end = comma ? comma : s + strlen(s);
        if (k >= L) return ag_err("--label-names: more than %d names", L);
        if (end == s || end - s >= AG_LABEL_MAX) return ag_err("--label-names: empty or too long name %d", k);
        snprintf(names[k++], AG_LABEL_MAX, "%.*s", (int)(end - s), s);
        s = comma ? comma + 1 : end;
    }
    if (k != L) return ag_err("--label-names: %d names for %d labels", k, L);
    return 0;
}

/* ---- the command ----------------------------------------------------------------------- */

static int agree_fail(int failed, const char *prog) {
    const ag_comm *cm = ag_comm_get();
    int who = failed ? cm->rank : INT_MAX, first = INT_MAX;
    MPI_Allreduce(&who, &first, 1, MPI_INT, MPI_MIN, cm->world);
    if (first == INT_MAX) return 0;
    if (cm->rank == first) fprintf(stderr, "%s: %s\n", prog, ag_errmsg());
    return 1;
}

static void xtrain_free(xtrain *t) {
    ag_cross_free(&t->x);
    ag_device_close(&t->dv);
    ag_dataset_free(&t->train);
    ag_dataset_free(&t->dev);
    free(t->order);
    free(t->pairs);
    free(t->keys);
    free(t->logits);
    free(t->dlogits);
    free(t->yf);
    free(t->yi);
}

int ag_cmd_train_cross(int argc, char **argv) {
    const char *prog = "argent train-cross";
    ag_cli cli;
    int early = ag_run_parse(&cli, prog,
                            "Fine-tune a cross-encoder (BERT + pooler + classifier) on gold pairs, data-parallel over the\n"
                            "MPI ranks. --out is a run directory: rerunning the command resumes it.",
                            xopts, argc, argv);
    if (early >= 0) return early;
    int rc = 0;
    ag_engine_config ec;
    ag_engine_config_default(&ec);
    long num_labels = 0, batch, epochs, steps = 0, warmup, max_len, seed, eval_every, eval_batch, ckpt_every,
         stop_after = 0, log_every;
    double lr, wd, clip;
    int sched = 2;
    int bad_opts = ag_cli_long(&cli, "num-labels", &num_labels) || ag_cli_long(&cli, "batch", &batch) ||
        ag_cli_long(&cli, "epochs", &epochs) || ag_cli_long(&cli, "steps", &steps) ||
        ag_cli_long(&cli, "warmup", &warmup) || ag_cli_long(&cli, "max-length", &max_len) ||
        ag_cli_long(&cli, "seed", &seed) || ag_cli_long(&cli, "eval-every", &eval_every) ||
        ag_cli_long(&cli, "eval-batch", &eval_batch) || ag_cli_long(&cli, "ckpt-every", &ckpt_every) ||
        ag_cli_long(&cli, "stop-after", &stop_after) || ag_cli_long(&cli, "log-every", &log_every) ||
        ag_cli_double(&cli, "lr", &lr) || ag_cli_double(&cli, "weight-decay", &wd) ||
        ag_cli_double(&cli, "max-grad-norm", &clip) || ag_cli_choice(&cli, "schedule", sched_names, &sched) ||
        (ag_cli_given(&cli, "num-labels") && (num_labels < 1 || num_labels > AG_MAX_LABELS) &&
         ag_err("--num-labels: expected 1..%d, got %ld", AG_MAX_LABELS, num_labels)) ||
        ((batch < 1 || epochs < 1 || steps < 0 || warmup < 0 || seed < 0 || eval_every < 0 || eval_batch < 1 ||
          ckpt_every < 0 || stop_after < 0 || log_every < 1) &&
         ag_err("--batch, --epochs, --eval-batch, --log-every must be >= 1; --steps, --warmup, --seed, --eval-every, "
                "--ckpt-every, --stop-after >= 0")) ||
        ((max_len < 3) && ag_err("--max-length: a pair needs at least 3 tokens, got %ld", max_len)) ||
        ((!(lr > 0) || !(wd >= 0) || !(clip >= 0)) && ag_err("--lr must be > 0, --weight-decay and --max-grad-norm >= 0")) ||
        (cli.npos && ag_err("unexpected argument '%s' (all inputs are options; see --help)", cli.pos[0]));
    early = ag_run_begin(&cli, prog, bad_opts, &argc, &argv);
    if (early >= 0) return early;
    const ag_comm *cm = ag_comm_get();
    const char *train_path = ag_cli_str(&cli, "train"), *dev_path = ag_cli_str(&cli, "dev");
    const char *out = ag_cli_str(&cli, "out"), *model = ag_cli_str(&cli, "model");
    int exit_code = AG_EXIT_FAIL;
    xtrain *t = calloc(1, sizeof *t);
    ag_engine *e = NULL;
    if (!t) {
        fprintf(stderr, "%s: out of memory\n", prog);
        goto done_early;
    }
    ag_dataset_init(&t->train);
    ag_dataset_init(&t->dev);
    t->seed = (uint64_t)seed;
    t->G = batch;
    t->no_dup = ag_cli_flag(&cli, "no-duplicates");
    t->order_epoch = -1;
    t->eval_batch = (int)eval_batch;
    t->has_dev = dev_path != NULL;

    /* The device first (a missing GPU fails before anything is read or written), then data
     * (it decides the label count), then the model; every rank alike. */
    int failed = ag_device_open(&t->dv, ag_cli_str(&cli, "device"), ag_cli_str(&cli, "precision"), cm->local_rank) != 0;
    if (!failed) failed = ag_dataset_read(train_path, &t->train) != 0;
    if (!failed && t->train.n_pairs < 1)
        failed = ag_err("--train %s: holds no pairs; a cross-encoder trains on pairs", train_path) != 0;
    if (!failed && t->has_dev && ag_dataset_read(dev_path, &t->dev)) failed = 1;
    if (!failed && t->has_dev && t->dev.n_pairs < 2)
        failed = ag_err("--dev %s: needs at least 2 pairs to evaluate", dev_path) != 0;
    int L = (int)num_labels;
    if (!failed && !L) {
        if (t->train.label_kind == AG_LABEL_CLASS && t->train.num_classes >= 2) L = t->train.num_classes;
        else L = 1;
    }
    if (!failed && L > AG_MAX_LABELS)
        failed = ag_err("--train %s: %d classes, at most %d supported", train_path, L, AG_MAX_LABELS) != 0;
    if (!failed) failed = check_labels(&t->train, train_path, L, "--train") != 0;
    if (!failed && t->has_dev) {
        t->dev_corr = L == 1 && t->dev.label_kind == AG_LABEL_SCORE;
        failed = check_labels(&t->dev, dev_path, t->dev_corr ? 1 : (L == 1 ? 2 : L), "--dev") != 0;
    }
    char names[AG_MAX_LABELS][AG_LABEL_MAX];
    const char *name_ptr[AG_MAX_LABELS];
    int have_names = 0;
    if (!failed && ag_cli_given(&cli, "label-names")) {
        failed = split_names(ag_cli_str(&cli, "label-names"), L, names) != 0;
        have_names = !failed;
    } else if (!failed) {
        have_names = names_from_map(&t->train, L, names);
    }
    for (int k = 0; k < L && k < AG_MAX_LABELS; k++) name_ptr[k] = names[k];
    t->L = L;
    int fresh = 0;
    if (!failed)
        failed = ag_cross_from_pretrained(&t->x, model, L, have_names ? name_ptr : NULL, t->seed, &fresh) != 0;
    if (!failed && ag_cross_set_max_len(&t->x, (int)max_len)) failed = ag_err_ctx("--max-length") != 0;
    if (!failed) failed = ag_cross_check_data(&t->x, &t->train, train_path) != 0;
    if (!failed && t->has_dev) failed = ag_cross_check_data(&t->x, &t->dev, dev_path) != 0;
    if (!failed && t->no_dup && !(t->order = malloc((size_t)t->train.n_pairs * sizeof *t->order)))
        failed = ag_err("out of memory") != 0;
    /* On the GPU the encoder runs on a device copy; the classifier and the loss stay here, and
     * the classifier's gradient is accumulated on the host (device-resident training). */
    if (!failed) failed = ag_run_cross_on_device(&t->x, &t->dv) != 0;
    if (!failed && t->dv.gpu)
        failed = ag_device_host_grad(&t->dv, t->x.head.w) || ag_device_host_grad(&t->dv, t->x.head.b);
    if (agree_fail(failed, prog)) goto done;
    ag_device_say(&t->dv, "train-cross");
    if (cm->rank == 0)
        fprintf(stderr, "%s: %s -> cross-encoder, %d label%s (%s), %s head; %lld train pairs%s%s\n", prog, model, L,
                L == 1 ? "" : "s", L == 1 ? "BCE, sigmoid" : "cross-entropy, softmax", fresh ? "new" : "its own",
                (long long)t->train.n_pairs, t->has_dev ? ", dev " : "", t->has_dev ? dev_path : "");

    ec.n_samples = t->train.n_pairs;
    ec.global_batch = batch;
    ec.epochs = epochs;
    ec.total_steps = steps;
    ec.stop_after = stop_after;
    ec.seed = (uint64_t)seed;
    ec.no_shuffle = t->no_dup;   /* the task shuffles itself (nodup_order) */
    ec.lr = lr;
    ec.weight_decay = wd;
    ec.max_grad_norm = clip;
    ec.schedule = sched_kinds[sched];
    ec.warmup_steps = warmup;
    ec.out_dir = out;
    ec.ckpt_every = (int)ckpt_every;
    ec.eval_every = (int)eval_every;
    ec.keep_best = ag_cli_flag(&cli, "keep-best");
    ec.log_every = (int)log_every;
    ec.stage = "train-cross";
    ag_engine_task task = {t, xstep, t->has_dev ? xevaluate : NULL};
    if (agree_fail(ag_engine_create(&e, &ec, &task, &t->x.p, t->x.p.n, &t->x.md) != 0, prog)) goto done;
    t->engine = e;
    ag_engine_set_device(e, &t->dv);
    char fp[2048];
    snprintf(fp, sizeof fp, "model=%s train=%s pairs=%lld dev=%s num_labels=%d max_length=%ld no_duplicates=%d", model,
             train_path, (long long)t->train.n_pairs, dev_path ? dev_path : "-", L, max_len, t->no_dup);
    ag_engine_set_fingerprint(e, fp);

    /* Before training (fresh runs only): the dev metrics of the untrained model, as step 0. */
    if (t->has_dev) {
        char dir[4200], ck[4300];
        snprintf(dir, sizeof dir, "%s/checkpoints", out);
        int fresh_run = cm->rank == 0 ? ag_ckpt_latest(dir, ck, sizeof ck) == 0 : 0;
        MPI_Bcast(&fresh_run, 1, MPI_INT, 0, cm->world);
        if (fresh_run) {
            ag_eval_result r;
            if (agree_fail(xevaluate(t, e, 0, &r) != 0, prog)) goto done;
            if (cm->rank == 0) {
                struct stat st;
                if (stat(out, &st)) mkdir(out, 0777);
                ag_metrics *mx = ag_metrics_open(out, "train-cross", 0, (int)log_every, 1, 0);
                const char *nm[AG_EVAL_MAX_METRICS];
                double v[AG_EVAL_MAX_METRICS];
                for (int i = 0; i < r.n; i++) {
                    nm[i] = r.m[i].name;
                    v[i] = r.m[i].value;
                }
                if (mx) ag_metrics_eval(mx, 0, r.n, nm, v, r.primary_name, 0);
                ag_metrics_close(mx);
                fprintf(stderr, "%s: dev before training: %s %.4f\n", prog, r.primary_name, r.primary);
            }
        }
    }

    rc = ag_engine_run(e);
    if (rc < 0) {
        fprintf(stderr, "%s: rank %d: %s\n", prog, cm->rank, ag_errmsg());
        goto done;
    }
    if (rc == AG_EXIT_REQUEUE) {
        exit_code = AG_EXIT_REQUEUE;
        goto done;
    }
    if (cm->rank == 0) {
        printf("train-cross: %s/model.h5 after %lld steps, last loss %.6f", out, (long long)ag_engine_step(e),
               ag_engine_last_loss(e));
        if (t->has_last) printf(", dev %s %.4f", t->last.primary_name, t->last.primary);
        printf("\n");
        fflush(stdout);
    }
    exit_code = AG_EXIT_OK;
done:
    ag_engine_free(e);
    xtrain_free(t);
    free(t);
done_early:
    ag_cli_free(&cli);
    ag_comm_finalize();
    return exit_code;
}
