/* `argent tsdae`: TSDAE pre-training (reference.md section 5) of a bi-encoder on a set of
 * sentences, data-parallel through the training engine (jobs/engine.h: data order,
 * bucketed allreduce overlapped with the backward, AdamW, checkpoints, resume, stop
 * signals, metrics.jsonl).
 *
 * The corpus is the unique sentences of one or more datasets from `argent prepare`: a
 * sentences-only dataset, or a pair dataset whose sentence table already holds each text
 * once (texts repeated across files are kept once, first file first). One step on one rank:
 *   noisy_i  = deletion noise of sentence i (nn/noise.h), keyed on (seed, sentence, epoch):
 *              drawn afresh every epoch, the same whatever the rank count or resume point
 *   source   = [CLS] pieces(noisy_i) [SEP]        (tokenised here, truncated to max length)
 *   target   = [CLS] pieces(sentence_i) [SEP]     (the dataset's pieces, same truncation)
 *   loss     = DenoisingAutoEncoderLoss with the tied decoder (nn/tsdae.h), CLS pooling.
 * The global loss is the mean over every counted target token of the global batch (one
 * rank with batch 8 computes exactly what sentence-transformers computes on that batch):
 * each rank weights its local token mean by n_local / n_global tokens.
 *
 * Output (the engine's run directory): model.h5 holds the ENCODER only, as a bi-encoder
 * checkpoint with CLS pooling and no normalisation (what the TSDAE example saves), which
 * eval, encode, train-bi and export read directly; the decoder's own tensors (cross-
 * attention, LM-head transform and bias) live only in the resumable checkpoints. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dist/comm.h"
#include "dist/signals.h"
#include "io/checkpoint.h"
#include "io/dataset.h"
#include "io/hfmodel.h"
#include "io/tokenizer.h"
#include "jobs/cli.h"
#include "jobs/commands.h"
#include "jobs/device.h"
#include "jobs/encode.h"
#include "jobs/engine.h"
#include "jobs/runsetup.h"
#include "nn/bert.h"
#include "nn/error.h"
#include "nn/evaluate.h"
#include "nn/noise.h"
#include "nn/tsdae.h"

static const ag_cli_opt opts[] = {
    {"model", "SRC", "starting bi-encoder: argent checkpoint (file or run directory) or Hugging Face folder", NULL, 1},
    {"data", "FILE[,FILE..]", "datasets (argent prepare) whose unique sentences are the corpus", NULL, 1},
    {"out", "DIR", "run directory: checkpoints/, model.h5 (the encoder), metrics.jsonl; a rerun resumes", NULL, 1},
    {"max-sentences", "N", "use only the first N unique sentences (0: all)", "0", 0},
    {"del-ratio", "X", "deletion noise: probability that a word is deleted", "0.6", 0},
    {"max-length", "N", "tokens per text incl. [CLS]/[SEP] (default: the model's max_seq_length)", NULL, 0},
    {"batch", "N", "GLOBAL batch: sentences per optimiser step over all ranks", "8", 0},
    {"epochs", "N", "epochs (when --steps is not given)", "1", 0},
    {"steps", "N", "optimiser steps in all (overrides --epochs)", NULL, 0},
    {"lr", "LR", "learning rate", "3e-5", 0},
    {"schedule", "S", "constant, warmupconstant or linear", "constant", 0},
    {"warmup", "N", "warm-up steps", "0", 0},
    {"weight-decay", "W", "AdamW weight decay (none on biases and LayerNorm)", "0", 0},
    {"max-grad-norm", "X", "clip the global gradient norm (0: no clipping)", "1", 0},
    {"seed", "N", "seed of data order, noise, dropout and the decoder's new weights", "42", 0},
    {"eval", "PAIRS.h5", "STS pair dataset evaluated (CLS pooling) every --eval-every steps and at the end", NULL, 0},
    {"eval-every", "N", "evaluation period in steps (0: only at the end)", "0", 0},
    {"eval-batch", "N", "sentences per evaluation batch", "32", 0},
    {"keep", "K", "best (by the evaluation's spearman_cosine) or last", "last", 0},
    AG_RUN_CKPT_CLI_OPTS,
    AG_RUN_ALLREDUCE_CLI_OPTS,
    AG_DEVICE_CLI_OPTS,
    {0}};

/* One corpus sentence: dataset k, sentence s of it. */
typedef struct { int ds; int64_t s; } sent_ref;

typedef struct {
    ag_model_desc md;        /* the output model: bi-encoder, CLS pooling, no normalize */
    ag_bert m;               /* the encoder */
    ag_tsdae dec;            /* the tied decoder */
    ag_device dv;            /* where encoder and decoder run (jobs/device.h) */
    ag_params p;             /* encoder tensors first (n_model), then the decoder's own */
    int n_model;
    ag_encoder enc;          /* input building and evaluation */
    ag_tokenizer *tk;        /* tokenises the noisy texts */
    int nds;
    ag_dataset *ds;
    sent_ref *sent;          /* [N] the corpus */
    int64_t n_sent;
    float del_ratio;
    int max_len;
    int has_eval, eval_batch;
    ag_dataset eval;
    /* step buffers (rows = this rank's slice) */
    int64_t cap_rows;
    int32_t *src_ids, *src_mask, *tgt_ids, *tgt_mask;  /* [rows, max_len] */
    int64_t *keys;           /* [rows] dropout keys */
    int32_t **pieces;        /* [rows] noisy pieces (owned) */
    int *npieces, *cap_pieces;
    const int32_t **pc;      /* [rows] piece pointers handed to ag_encoder_input */
    int *lens;
    char *text;              /* noise output */
    size_t cap_text;
} tsdae_task;

/* ---- model ---------------------------------------------------------------------------- */

static int copy_by_name(const ag_params *src, ag_params *dst, int n_dst) {
    for (int j = 0; j < n_dst; j++) {
        int i = ag_params_find(src, dst->t[j].name);
        if (i < 0) return ag_err("the starting model has no tensor %s", dst->t[j].name);
        if (dst->t[j].numel != src->t[i].numel) return ag_err("tensor %s: size differs", dst->t[j].name);
        memcpy(ag_params_data(dst, j), ag_params_data(src, i), src->t[i].numel * sizeof(float));
    }
    return 0;
}

/* The vocab held in the model description, as a tokenizer (ag_tokenizer_load reads a file:
 * a private temporary copy, removed at once). */
static ag_tokenizer *tokenizer_from_desc(const ag_model_desc *md) {
    if (!md->vocab || !md->vocab_len) { ag_err("the model has no vocab"); return NULL; }
    const char *dir = getenv("TMPDIR");
    char path[4200];
    snprintf(path, sizeof path, "%s/argent-vocab-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0) { ag_err("%s: cannot create a temporary vocab file: %s", path, strerror(errno)); return NULL; }
    size_t done = 0;
    while (done < md->vocab_len) {
        ssize_t w = write(fd, md->vocab + done, md->vocab_len - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        done += (size_t)w;
    }
    close(fd);
    ag_tokenizer *tk = done == md->vocab_len ? ag_tokenizer_load(path, md->do_lower_case) : NULL;
    if (done != md->vocab_len) ag_err("%s: cannot write the temporary vocab file", path);
    unlink(path);
    return tk;
}

/* The starting weights (checkpoint, run directory or Hugging Face folder) into the encoder
 * part of the training table, the decoder registered after it and initialised. */
static int load_model(const char *model, tsdae_task *t, long max_len, uint64_t seed) {
    ag_params start;
    ag_bert m0;
    ag_params_init(&start);
    char cfgpath[4200];
    struct stat st;
    snprintf(cfgpath, sizeof cfgpath, "%s/config.json", model);
    int rc = stat(cfgpath, &st) == 0 ? ag_hf_import(model, &t->md, &m0, NULL, &start, NULL)
                                     : ag_load_bi_encoder(model, &t->md, &m0, &start);
    if (rc) return ag_err_ctx("--model %s", model);
    if (t->md.kind == AG_MODEL_CROSS_ENCODER) rc = ag_err("--model %s: is a cross-encoder; tsdae trains a bi-encoder", model);
    if (!rc && t->md.st_lower_case && !t->md.do_lower_case)
        rc = ag_err("--model %s: lower-cases text before a cased tokenizer (sentence_bert_config do_lower_case); "
                    "not supported by tsdae", model);
    if (!rc && max_len > t->md.max_position_embeddings)
        rc = ag_err("--max-length %ld: the model has %d positions", max_len, t->md.max_position_embeddings);
    if (!rc) {
        /* What the TSDAE example saves: the transformer with CLS pooling, nothing after. */
        t->md.kind = AG_MODEL_BI_ENCODER;
        t->md.pooling = AG_POOL_CLS;
        t->md.normalize = 0;
        if (max_len) t->md.max_seq_length = (int)max_len;
    }
    ag_params_init(&t->p);
    if (!rc) rc = ag_model_register(&t->md, &t->m, &t->p, NULL);
    t->n_model = t->p.n;
    if (!rc) rc = ag_tsdae_register(&t->dec, &t->m, &t->p);
    if (!rc) rc = ag_params_alloc(&t->p);
    if (!rc) rc = copy_by_name(&start, &t->p, t->n_model);
    if (!rc) ag_tsdae_init_weights(&t->dec, &t->p, seed);
    ag_bert_free(&m0);
    ag_params_free(&start);
    return rc;
}

/* ---- data ----------------------------------------------------------------------------- */

static int load_corpus(const char *list, long max_sent, tsdae_task *t) {
    char *copy = strdup(list);
    if (!copy) return ag_err("out of memory");
    int n = 1;
    for (const char *s = list; *s; s++) n += *s == ',';
    t->ds = calloc((size_t)n, sizeof *t->ds);
    if (!t->ds) { free(copy); return ag_err("out of memory"); }
    int rc = 0;
    char *save = NULL;
    for (char *f = strtok_r(copy, ",", &save); f && !rc; f = strtok_r(NULL, ",", &save)) {
        ag_dataset *d = &t->ds[t->nds];
        ag_dataset_init(d);
        t->nds++;
        if (ag_dataset_read(f, d)) rc = ag_err_ctx("--data");
        else if (ag_check_dataset_vocab(d, f, &t->md)) rc = ag_err_ctx("--data");
        else if (d->n_tokenized < d->n_sentences) rc = ag_err("--data %s: sentences without word pieces", f);
    }
    free(copy);
    if (rc) return -1;
    if (!t->nds) return ag_err("--data: no file given");
    /* Unique texts across the files, in order: a scratch dataset interns them. */
    int64_t total = 0;
    for (int k = 0; k < t->nds; k++) total += t->ds[k].n_sentences;
    t->sent = malloc((size_t)(total ? total : 1) * sizeof *t->sent);
    if (!t->sent) return ag_err("out of memory for %lld sentences", (long long)total);
    ag_dataset seen;
    ag_dataset_init(&seen);
    for (int k = 0; k < t->nds && !rc; k++)
        for (int64_t s = 0; s < t->ds[k].n_sentences; s++) {
            if (max_sent > 0 && t->n_sent >= max_sent) break;
            size_t len;
            const char *txt = ag_dataset_text(&t->ds[k], s, &len);
            int64_t before = seen.n_sentences, id = t->nds > 1 ? ag_dataset_intern(&seen, txt, len) : before;
            if (id < 0) { rc = -1; break; }
            if (id == before) t->sent[t->n_sent++] = (sent_ref){k, s};
        }
    ag_dataset_free(&seen);
    if (!rc && t->n_sent == 0) rc = ag_err("--data %s: no sentences", list);
    return rc;
}

static int reserve(tsdae_task *t, int64_t rows) {
    if (rows <= t->cap_rows) return 0;
    size_t rt = (size_t)rows * (size_t)t->max_len;
    int32_t **np = realloc(t->pieces, (size_t)rows * sizeof *np);
    if (!np) return ag_err("out of memory");
    t->pieces = np;
    for (int64_t i = t->cap_rows; i < rows; i++) t->pieces[i] = NULL;
    int *nn = realloc(t->npieces, (size_t)rows * sizeof *nn), *nc = NULL;
    if (nn) t->npieces = nn;
    nc = nn ? realloc(t->cap_pieces, (size_t)rows * sizeof *nc) : NULL;
    if (!nn || !nc) return ag_err("out of memory");
    t->cap_pieces = nc;
    for (int64_t i = t->cap_rows; i < rows; i++) t->npieces[i] = t->cap_pieces[i] = 0;
    free(t->src_ids); free(t->src_mask); free(t->tgt_ids); free(t->tgt_mask); free(t->keys); free(t->pc); free(t->lens);
    t->src_ids = malloc(rt * sizeof(int32_t));
    t->src_mask = malloc(rt * sizeof(int32_t));
    t->tgt_ids = malloc(rt * sizeof(int32_t));
    t->tgt_mask = malloc(rt * sizeof(int32_t));
    t->keys = malloc((size_t)rows * sizeof(int64_t));
    t->pc = malloc((size_t)rows * sizeof *t->pc);
    t->lens = malloc((size_t)rows * sizeof(int));
    if (!t->src_ids || !t->src_mask || !t->tgt_ids || !t->tgt_mask || !t->keys || !t->pc || !t->lens) {
        t->cap_rows = 0;
        return ag_err("out of memory for a batch of %lld sentences", (long long)rows);
    }
    t->cap_rows = rows;
    return 0;
}

/* ---- the engine's task ---------------------------------------------------------------- */

static int tsdae_step(void *ctx, ag_engine *e, const ag_engine_batch *b, double *loss) {
    tsdae_task *t = ctx;
    const int n = (int)b->count;
    *loss = 0;
    if (reserve(t, n > 0 ? n : 1)) return -1;
    /* Sources: fresh noise of each sentence, tokenised. */
    for (int i = 0; i < n; i++) {
        int64_t idx = b->sample[b->begin + i];
        const sent_ref *r = &t->sent[idx];
        size_t len;
        const char *txt = ag_dataset_text(&t->ds[r->ds], r->s, &len);
        if (len + 1 > t->cap_text) {
            free(t->text);
            t->cap_text = len + 1 > 256 ? len + 1 : 256;
            t->text = malloc(t->cap_text);
            if (!t->text) { t->cap_text = 0; return ag_err("out of memory"); }
        }
        if (ag_noise_delete(txt, t->del_ratio, b->seed, (uint64_t)idx, (uint32_t)b->epoch, t->text, t->cap_text,
                            NULL, NULL))
            return ag_err_ctx("sentence %lld", (long long)idx);
        t->npieces[i] = 0;
        if (ag_tok_wordpieces(t->tk, t->text, strlen(t->text), &t->pieces[i], &t->npieces[i], &t->cap_pieces[i]))
            return ag_err_ctx("sentence %lld after noise", (long long)idx);
        t->pc[i] = t->pieces[i] ? t->pieces[i] : t->src_ids;
        t->lens[i] = t->npieces[i];
        t->keys[i] = b->key[b->begin + i];
    }
    int Ts = n ? ag_encoder_input(&t->enc, t->pc, t->lens, n, t->src_ids, t->src_mask) : 0;
    /* Targets: the clean sentences' pieces from the dataset. */
    for (int i = 0; i < n; i++) {
        const sent_ref *r = &t->sent[b->sample[b->begin + i]];
        t->pc[i] = ag_dataset_tokens(&t->ds[r->ds], r->s, &t->lens[i]);
        if (!t->pc[i]) { t->pc[i] = t->tgt_ids; t->lens[i] = 0; }
    }
    int Tt = n ? ag_encoder_input(&t->enc, t->pc, t->lens, n, t->tgt_ids, t->tgt_mask) : 0;
    /* Counted labels: target[:, 1:] that are not the pad id (as the loss counts them). */
    long long tok[1] = {0}, gtok[1] = {0};
    for (int i = 0; i < n; i++)
        for (int k = 1; k < Tt; k++) tok[0] += t->tgt_ids[(size_t)i * Tt + k] != t->dec.label_pad_id;
    MPI_Allreduce(tok, gtok, 1, MPI_LONG_LONG, MPI_SUM, b->comm);
    if (n == 0) return 0;
    if (gtok[0] <= 0) return ag_err("global batch at step %lld has no target token", (long long)b->step);
    ag_bert_batch src = {n, Ts, t->src_ids, NULL, t->src_mask, t->keys};
    double local;
    ag_params *P = ag_device_params(&t->dv, &t->p);  /* the device copy on the GPU */
    if (ag_tsdae_forward(&t->dec, &t->m, P, &src, t->tgt_ids, Tt, 1, b->seed, &local)) return -1;
    float gscale = (float)((double)tok[0] / (double)gtok[0]);
    *loss = local * (double)tok[0] / (double)gtok[0];
    ag_engine_progress(e);
    if (t->dv.scaler.enabled) gscale *= ag_device_loss_scale(&t->dv);  /* fp16: unscaled after the step */
    t->dec.lm_grad = ag_engine_grad_part(e);   /* NULL at np 1 and on the GPU */
    t->dec.lm_grad_ready = ag_engine_part_ready;
    t->dec.lm_grad_ctx = e;
    return ag_tsdae_backward(&t->dec, &t->m, P, gscale);
}

static int tsdae_evaluate(void *ctx, ag_engine *e, int64_t step, ag_eval_result *out) {
    (void)e;
    (void)step;
    tsdae_task *t = ctx;
    return ag_run_sts_evaluate(&t->enc, &t->eval, t->eval_batch, out);
}

static void task_free(tsdae_task *t) {
    for (int k = 0; k < t->nds; k++) ag_dataset_free(&t->ds[k]);
    free(t->ds);
    free(t->sent);
    if (t->has_eval) ag_dataset_free(&t->eval);
    ag_tsdae_free(&t->dec);
    ag_bert_free(&t->m);
    ag_params_free(&t->p);
    ag_device_close(&t->dv);
    ag_model_desc_free(&t->md);
    if (t->tk) ag_tokenizer_free(t->tk);
    for (int64_t i = 0; i < t->cap_rows; i++) free(t->pieces[i]);
    free(t->pieces); free(t->npieces); free(t->cap_pieces);
    free(t->src_ids); free(t->src_mask); free(t->tgt_ids); free(t->tgt_mask); free(t->keys); free(t->pc); free(t->lens);
    free(t->text);
}

/* ---- the command ---------------------------------------------------------------------- */

static int setup(const ag_cli *c, tsdae_task *t, ag_engine_config *ec, char *fp, size_t fpn) {
    double d;
    if (c->npos) return ag_err("unexpected argument '%s' (every input is given with an option; see --help)", c->pos[0]);
    static const char *const keeps[] = {"last", "best", NULL};
    int keep = 0;
    if (ag_cli_choice(c, "keep", keeps, &keep)) return -1;
    if (keep && !ag_cli_given(c, "eval")) return ag_err("--keep best: needs --eval (an STS dataset to rank models)");
    ag_engine_config_default(ec);
    ec->stage = "tsdae";
    ec->out_dir = ag_cli_str(c, "out");
    ec->keep_best = keep;
    ec->lr = 3e-5;
    ec->weight_decay = 0;
    ec->schedule = AG_SCHED_CONSTANT;
    ec->global_batch = 8;
    t->eval_batch = 32;
    if (ag_run_engine_opts(c, ec, &t->eval_batch)) return -1;
    long max_sent = 0, max_len = 0;
    if (ag_cli_long(c, "max-sentences", &max_sent) || ag_cli_long(c, "max-length", &max_len)) return -1;
    if (max_sent < 0) return ag_err("--max-sentences: expected a number >= 0, got %ld", max_sent);
    if (ag_cli_given(c, "max-length") && max_len < 3)
        return ag_err("--max-length: expected at least 3 ([CLS], a word, [SEP]), got %ld", max_len);
    if (ag_cli_double(c, "del-ratio", &d)) return -1;
    if (!(d >= 0 && d <= 1)) return ag_err("--del-ratio: expected a number in [0, 1], got %g", d);
    t->del_ratio = (float)d;

    if (ag_device_open(&t->dv, ag_cli_str(c, "device"), ag_cli_str(c, "precision"), ag_comm_get()->local_rank))
        return -1;
    ag_model_desc_init(&t->md);
    if (load_model(ag_cli_str(c, "model"), t, max_len, ec->seed)) return -1;
    if (ag_encoder_init(&t->enc, &t->m, &t->p, &t->md, 0)) return -1;
    /* On the GPU encoder and decoder run on a device copy of the table (evaluation too). */
    if (ag_device_mirror(&t->dv, &t->p)) return -1;
    t->m.ops = t->dec.ops = t->dv.ops;
    t->enc.p = ag_device_params(&t->dv, &t->p);
    t->max_len = t->enc.max_len;
    if (t->max_len < 3) return ag_err("max length %d: TSDAE needs at least 3 tokens per text", t->max_len);
    if (!(t->tk = tokenizer_from_desc(&t->md))) return ag_err_ctx("--model %s", ag_cli_str(c, "model"));
    if (load_corpus(ag_cli_str(c, "data"), max_sent, t)) return -1;
    if (ag_cli_given(c, "eval") && ag_run_read_sts_eval(c, &t->md, &t->eval, &t->has_eval)) return -1;
    ec->n_samples = t->n_sent;
    snprintf(fp, fpn, "loss=tsdae del-ratio=%g max-length=%d max-sentences=%ld data=%s model=%s", (double)t->del_ratio,
             t->max_len, max_sent, ag_cli_str(c, "data"), ag_cli_str(c, "model"));
    return 0;
}

/* Before the run: the LM head's share of the tied word embeddings' gradient is reduced on
 * its own, as soon as the head's backward has it (see ag_engine_request_part); rank 0 says
 * what is trained on and how. */
static void before_run(void *ctx, ag_engine *e) {
    const tsdae_task *t = ctx;
    ag_engine_request_part(e, t->m.emb.wte);
    if (ag_comm_get()->rank == 0)
        ag_log0("tsdae: %lld unique sentences, deletion ratio %g, max length %d, CLS pooling, tied decoder "
                "(%d tensors of its own)", (long long)t->n_sent, (double)t->del_ratio, t->max_len, t->p.n - t->n_model);
}

int ag_cmd_tsdae(int argc, char **argv) {
    ag_cli c;
    int early = ag_run_parse(&c, "argent tsdae",
                           "TSDAE pre-training of a bi-encoder on sentences: deletion noise drawn afresh each epoch, CLS\n"
                           "pooling, a decoder tied to the encoder (data-parallel under mpirun; GLOBAL batch; resumable).\n"
                           "Output: OUT/model.h5, the encoder as a bi-encoder with CLS pooling (eval, train-bi, export).\n"
                           "Exit codes: 0 done, 1 error, 2 bad usage, 85 checkpointed after a stop signal (run again\n"
                           "to resume).",
                           opts, argc, argv);
    if (early >= 0) return early;
    early = ag_run_begin(&c, "argent tsdae", 0, &argc, &argv);
    if (early >= 0) return early;
    tsdae_task t;
    memset(&t, 0, sizeof t);
    ag_engine_config ec;
    char fp[8192];
    int rc = setup(&c, &t, &ec, fp, sizeof fp);
    ag_run_stage st = {"tsdae", {&t, tsdae_step, t.has_eval ? tsdae_evaluate : NULL}, &t.p, t.n_model, &t.md, &t.dv,
                       &t.m, fp, before_run, NULL};
    int code = ag_run_train_stage(&st, &ec, rc);
    task_free(&t);
    ag_cli_free(&c);
    ag_comm_finalize();
    return code;
}
