/* `argent train-bi`: train a bi-encoder (SBERT) on one or more pair datasets (gold +
 * silver; a pair whose two texts already came in an earlier file or row is dropped) with
 * any of the bi-encoder losses of nn/losses.h, data-parallel through the training engine
 * (jobs/engine.h): checkpoints, resume, preemption, evaluation on an STS set every N
 * steps, the best or the last model kept as <out>/model.h5 (`argent export` turns it into
 * a sentence-transformers folder).
 *
 * One step on one rank: its slice of the global batch of pairs (a_i, b_i) is encoded as
 * one BERT batch of 2n rows (the a texts, then the b texts; dropout keyed on the sample's
 * global key * 2 + side, so the masks do not depend on the rank count), pooled and
 * optionally normalised, the loss gives d(embeddings), and the backward runs back through
 * normalisation, pooling and BERT, whose hook starts the gradient allreduce layer by layer.
 *
 * Losses over the whole global batch (so that any np computes the np = 1 loss):
 *   mnrl, mnrl-symmetric with global negatives (the default): the positives (and for the
 *     symmetric loss the anchors) are all-gathered; each rank scores its own anchors
 *     against every candidate; a reduce-scatter returns each candidate's gradient to its
 *     owner (dist/gather.h);
 *   cosent: the embeddings of the global batch are gathered, every rank evaluates the same
 *     loss and keeps the gradient of its own rows.
 * The others (cosine, contrastive, softmax, mse) are means over pairs, split as they are. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dist/comm.h"
#include "dist/gather.h"
#include "dist/signals.h"
#include "io/checkpoint.h"
#include "io/dataset.h"
#include "io/hfmodel.h"
#include "io/readers.h"
#include "jobs/cli.h"
#include "jobs/commands.h"
#include "jobs/device.h"
#include "jobs/encode.h"
#include "jobs/engine.h"
#include "jobs/runsetup.h"
#include "nn/bert.h"
#include "nn/error.h"
#include "nn/evaluate.h"
#include "nn/losses.h"
#include "nn/pooling.h"

enum { L_COSINE, L_MNRL, L_MNRL_SYM, L_COSENT, L_SOFTMAX, L_CONTRASTIVE, L_MSE };
static const char *const loss_names[] = {"cosine", "mnrl", "mnrl-symmetric", "cosent", "softmax", "contrastive", "mse", NULL};

static const ag_cli_opt opts[] = {
    {"model", "CKPT|DIR", "start from a checkpoint (argent import, train-bi, tsdae) or a Hugging Face / "
                          "sentence-transformers folder", NULL, 0},
    {"fresh", "SPEC", "or a new random model: hidden=H,layers=L,heads=A,inter=I[,maxpos=P] (needs --vocab)", NULL, 0},
    {"vocab", "FILE", "vocab.txt of a --fresh model", NULL, 0},
    {"data", "FILE[,FILE..]", "pair datasets (argent prepare / label), e.g. gold,silver; duplicates dropped", NULL, 1},
    {"out", "DIR", "run directory: checkpoints/, model.h5, metrics.jsonl (an existing run is resumed)", NULL, 1},
    {"loss", "L", "cosine, mnrl, mnrl-symmetric, cosent, softmax, contrastive or mse", "cosine", 0},
    {"negatives", "N", "mnrl: global (gathered over ranks, any np = np 1) or local (per rank, as ST per device)", "global", 0},
    {"only-label", "X", "use only pairs with this label (e.g. 1 for entailment pairs with mnrl)", NULL, 0},
    {"teacher", "EMB.h5", "mse: teacher embeddings of the dataset's sentences (argent encode)", NULL, 0},
    {"scale", "S", "mnrl / cosent scale", "20", 0},
    {"margin", "M", "contrastive margin", "0.5", 0},
    {"num-labels", "N", "softmax: classes (default: the datasets' num_classes)", NULL, 0},
    {"pooling", "P", "cls, mean or max (default: the model's)", NULL, 0},
    {"normalize", "yes|no", "L2-normalise the embeddings (default: the model's)", NULL, 0},
    {"max-length", "N", "tokens per text incl. [CLS]/[SEP] (default: the model's max_seq_length)", NULL, 0},
    {"batch", "N", "GLOBAL batch: pairs per optimiser step over all ranks", "32", 0},
    {"epochs", "N", "epochs (when --steps is not given)", "1", 0},
    {"steps", "N", "optimiser steps in all (overrides --epochs)", NULL, 0},
    {"lr", "LR", "peak learning rate", "2e-5", 0},
    {"warmup", "N", "warm-up steps", "0", 0},
    {"schedule", "S", "linear, constant or warmupconstant", "linear", 0},
    {"weight-decay", "W", "AdamW weight decay (none on biases and LayerNorm)", "0.01", 0},
    {"max-grad-norm", "X", "clip the global gradient norm (0: no clipping)", "1", 0},
    {"seed", "N", "seed of data order, dropout and new weights", "42", 0},
    {"eval", "PAIRS.h5", "STS pair dataset evaluated every --eval-every steps and at the end", NULL, 0},
    {"eval-every", "N", "evaluation period in steps (0: only at the end)", "0", 0},
    {"eval-batch", "N", "sentences per evaluation batch", "32", 0},
    {"keep", "K", "best (by the evaluation's spearman_cosine) or last", NULL, 0},
    AG_RUN_CKPT_CLI_OPTS,
    {"progress", "P", "auto (a bar when rank 0's stderr is a terminal), bar, or lines", "auto", 0},
    AG_RUN_ALLREDUCE_CLI_OPTS,
    AG_DEVICE_CLI_OPTS,
    {0}};

/* One training pair: dataset, its sentence ids, label. */
typedef struct { int ds; int32_t a, b; float y; } pair;

typedef struct {
    int loss, global_neg, C, max_len;
    ag_pool_mode pool;
    int normalize;
    float scale, margin;
    /* model */
    ag_model_desc md;
    ag_bert m;
    ag_params p;
    int n_model;
    ag_softmax_loss smx;
    int32_t cls, sep, pad;
    ag_encoder enc;
    /* data */
    int nds;
    ag_dataset *ds;
    pair *pairs;
    int64_t n_pairs;
    float *teacher;   /* [S, C] (mse) */
    /* evaluation */
    ag_dataset eval;
    int has_eval, eval_batch;
    /* step buffers (capacity cap rows of 2 sides) */
    int64_t cap;
    int32_t *ids, *mask, *labels_i, *argmax;
    int64_t *keys;
    float *emb, *pooled, *norms, *demb, *dpool, *dh, *y, *tgt;
    size_t cap_dh;
    float *gbuf, *gdbuf, *gdbuf2, *glab;   /* gathered [G,C] and their gradients */
    int64_t gcap;
    /* where the encoder runs (jobs/device.h): hidden states down, their gradient up */
    ag_device dv;
    ag_act_buf hbuf, dbuf;
} bi_task;

/* ---- model ---------------------------------------------------------------------------- */

static int parse_fresh(const char *spec, ag_model_desc *md) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", spec);
    int got = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(t, '=');
        char *end = NULL;
        long v = eq ? strtol(eq + 1, &end, 10) : 0;
        if (!eq || !end || *end || v <= 0)
            return ag_err("--fresh: '%s' is not key=positive-number (expected hidden=H,layers=L,heads=A,inter=I)", t);
        *eq = 0;
        if (!strcmp(t, "hidden")) { md->hidden_size = (int)v; got |= 1; }
        else if (!strcmp(t, "layers")) { md->num_hidden_layers = (int)v; got |= 2; }
        else if (!strcmp(t, "heads")) { md->num_attention_heads = (int)v; got |= 4; }
        else if (!strcmp(t, "inter")) { md->intermediate_size = (int)v; got |= 8; }
        else if (!strcmp(t, "maxpos")) md->max_position_embeddings = (int)v;
        else return ag_err("--fresh: unknown key '%s' (hidden, layers, heads, inter, maxpos)", t);
    }
    if (got != 15) return ag_err("--fresh '%s': give hidden, layers, heads and inter", spec);
    return 0;
}

static int read_file(const char *path, char **out, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return ag_err("%s: cannot open", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    *out = malloc((size_t)(n > 0 ? n : 0) + 1);
    if (!*out || n < 0 || fread(*out, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        free(*out);
        *out = NULL;
        return ag_err("%s: cannot read", path);
    }
    fclose(f);
    (*out)[n] = 0;
    *len = (size_t)n;
    return 0;
}

/* Copy every tensor of src into the same-named tensor of dst (shapes equal by construction). */
static int copy_by_name(const ag_params *src, ag_params *dst) {
    for (int i = 0; i < src->n; i++) {
        int j = ag_params_find(dst, src->t[i].name);
        if (j < 0) continue;
        if (dst->t[j].numel != src->t[i].numel) return ag_err("tensor %s: size changed", src->t[i].name);
        memcpy(ag_params_data(dst, j), ag_params_data(src, i), src->t[i].numel * sizeof(float));
    }
    return 0;
}

/* Load or create the model description and starting weights into a staging table. */
static int load_start(const ag_cli *c, bi_task *t, ag_params *start, ag_bert *m0, int *have_start) {
    const char *model = ag_cli_str(c, "model"), *fresh = ag_cli_str(c, "fresh");
    *have_start = 0;
    if (!model == !fresh) return ag_err("give exactly one of --model (start from a checkpoint) and --fresh (a new model)");
    if (model) {
        char cfgpath[4200];
        struct stat st;
        snprintf(cfgpath, sizeof cfgpath, "%s/config.json", model);
        int rc = stat(cfgpath, &st) == 0 ? ag_hf_import(model, &t->md, m0, NULL, start, NULL)
                                         : ag_load_bi_encoder(model, &t->md, m0, start);
        if (rc) return ag_err_ctx("--model %s", model);
        if (t->md.kind == AG_MODEL_CROSS_ENCODER) {
            ag_bert_free(m0);
            ag_params_free(start);
            return ag_err("--model %s: is a cross-encoder; train-bi trains bi-encoders", model);
        }
        t->md.kind = AG_MODEL_BI_ENCODER;
        *have_start = 1;
        return 0;
    }
    const char *vocab = ag_cli_str(c, "vocab");
    if (!vocab) return ag_err("--fresh needs --vocab FILE (the vocab.txt the datasets were prepared with)");
    t->md.num_hidden_layers = 0;
    if (parse_fresh(fresh, &t->md)) return -1;
    if (read_file(vocab, &t->md.vocab, &t->md.vocab_len)) return ag_err_ctx("--vocab");
    int lines = 0;
    for (size_t i = 0; i < t->md.vocab_len; i++) lines += t->md.vocab[i] == '\n';
    if (t->md.vocab_len && t->md.vocab[t->md.vocab_len - 1] != '\n') lines++;
    t->md.vocab_size = lines;
    t->md.kind = AG_MODEL_BI_ENCODER;
    t->md.has_pooler = 0;
    snprintf(t->md.architecture, sizeof t->md.architecture, "BertModel");
    if (t->md.max_seq_length > t->md.max_position_embeddings) t->md.max_seq_length = t->md.max_position_embeddings;
    return ag_model_desc_check(&t->md) ? ag_err_ctx("--fresh") : 0;
}

/* ---- data ----------------------------------------------------------------------------- */

/* FNV-1a over both texts (with a separator), for duplicate detection. */
static uint64_t pair_hash(const char *a, size_t na, const char *b, size_t nb) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < na; i++) h = (h ^ (uint8_t)a[i]) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull;
    for (size_t i = 0; i < nb; i++) h = (h ^ (uint8_t)b[i]) * 1099511628211ull;
    return h;
}

static int same_pair(const bi_task *t, const pair *x, const pair *y) {
    size_t l1, l2;
    const char *s1 = ag_dataset_text(&t->ds[x->ds], x->a, &l1), *s2 = ag_dataset_text(&t->ds[y->ds], y->a, &l2);
    if (l1 != l2 || memcmp(s1, s2, l1)) return 0;
    s1 = ag_dataset_text(&t->ds[x->ds], x->b, &l1);
    s2 = ag_dataset_text(&t->ds[y->ds], y->b, &l2);
    return l1 == l2 && !memcmp(s1, s2, l1);
}

static int load_data(const ag_cli *c, bi_task *t, int num_labels_opt, int *num_labels) {
    char files[8192];
    snprintf(files, sizeof files, "%s", ag_cli_str(c, "data"));
    int n = 1;
    for (char *s = files; *s; s++) n += *s == ',';
    t->ds = calloc((size_t)n, sizeof *t->ds);
    if (!t->ds) return ag_err("out of memory");
    const char *only = ag_cli_str(c, "only-label");
    double only_v = 0;
    if (only) {
        char *end;
        only_v = strtod(only, &end);
        if (*end || end == only) return ag_err("--only-label: expected a number, got '%s'", only);
    }
    int64_t total = 0;
    char *save = NULL;
    for (char *f = strtok_r(files, ",", &save); f; f = strtok_r(NULL, ",", &save)) {
        ag_dataset *d = &t->ds[t->nds];
        ag_dataset_init(d);
        t->nds++;
        if (ag_dataset_read(f, d)) return ag_err_ctx("--data");
        if (d->n_pairs == 0) return ag_err("--data %s: has no pairs (a dataset of sentences?)", f);
        if (ag_check_dataset_vocab(d, f, &t->md)) return ag_err_ctx("--data");
        total += d->n_pairs;
        if (t->loss == L_SOFTMAX) {
            if (d->label_kind != AG_LABEL_CLASS)
                return ag_err("--data %s: --loss softmax needs class labels (label_kind class), this has %s", f,
                              ag_label_kind_name(d->label_kind));
            if (d->num_classes > *num_labels) *num_labels = d->num_classes;
        }
    }
    if (num_labels_opt > 0) *num_labels = num_labels_opt;
    if (t->loss == L_MSE && t->nds != 1) return ag_err("--loss mse: give one --data file (the teacher embeddings are per sentence of it)");
    t->pairs = malloc((size_t)total * sizeof *t->pairs);
    int64_t hcap = 16;
    while (hcap < 2 * total) hcap *= 2;
    int64_t *table = malloc((size_t)hcap * sizeof *table);
    if (!t->pairs || !table) { free(table); return ag_err("out of memory for %lld pairs", (long long)total); }
    for (int64_t i = 0; i < hcap; i++) table[i] = -1;
    int64_t dup = 0, unlabeled = 0, filtered = 0;
    int needs_label = t->loss != L_MNRL && t->loss != L_MNRL_SYM && t->loss != L_MSE;
    for (int k = 0; k < t->nds; k++) {
        const ag_dataset *d = &t->ds[k];
        for (int64_t i = 0; i < d->n_pairs; i++) {
            pair x = {k, d->a[i], d->b[i], d->label[i]};
            if (only && !(x.y == (float)only_v)) { filtered++; continue; }
            if (needs_label && !isfinite(x.y)) { unlabeled++; continue; }
            if (t->loss == L_SOFTMAX && (x.y != floorf(x.y) || x.y < 0 || x.y >= *num_labels))
                return ag_err("--data: pair %lld (line %lld) has class %g, outside 0..%d", (long long)i,
                              (long long)d->line[i], x.y, *num_labels - 1);
            size_t la, lb;
            const char *sa = ag_dataset_text(d, x.a, &la), *sb = ag_dataset_text(d, x.b, &lb);
            uint64_t h = pair_hash(sa, la, sb, lb);
            int64_t slot = (int64_t)(h & (uint64_t)(hcap - 1));
            int is_dup = 0;
            while (table[slot] >= 0) {
                if (same_pair(t, &t->pairs[table[slot]], &x)) { is_dup = 1; break; }
                slot = (slot + 1) & (hcap - 1);
            }
            if (is_dup) { dup++; continue; }
            table[slot] = t->n_pairs;
            t->pairs[t->n_pairs++] = x;
        }
    }
    free(table);
    if (t->n_pairs == 0)
        return ag_err("--data: no usable pairs (%lld without a label, %lld filtered by --only-label, %lld duplicates)",
                      (long long)unlabeled, (long long)filtered, (long long)dup);
    ag_log0("train-bi: %lld training pairs from %d file%s (%lld duplicates dropped, %lld without a label, %lld "
            "filtered by --only-label)", (long long)t->n_pairs, t->nds, t->nds == 1 ? "" : "s", (long long)dup,
            (long long)unlabeled, (long long)filtered);
    return 0;
}

/* ---- the step ------------------------------------------------------------------------- */

#define GROWF(ptr, n) do { free(ptr); (ptr) = malloc((size_t)(n) * sizeof *(ptr)); if (!(ptr)) return ag_err("out of memory"); } while (0)

static int reserve(bi_task *t, int64_t rows, int64_t global) {
    if (rows > t->cap) {
        int64_t r2 = 2 * rows;
        GROWF(t->ids, r2 * t->max_len);
        GROWF(t->mask, r2 * t->max_len);
        GROWF(t->keys, r2);
        GROWF(t->argmax, r2 * t->C);
        GROWF(t->emb, r2 * t->C);
        GROWF(t->pooled, r2 * t->C);
        GROWF(t->norms, r2);
        GROWF(t->demb, r2 * t->C);
        GROWF(t->dpool, r2 * t->C);
        GROWF(t->y, rows);
        GROWF(t->labels_i, rows);
        GROWF(t->tgt, r2 * t->C);
        t->cap = rows;
    }
    if (global > t->gcap) {
        GROWF(t->gbuf, 2 * global * t->C);
        GROWF(t->gdbuf, 2 * global * t->C);
        GROWF(t->gdbuf2, 2 * global * t->C);
        GROWF(t->glab, global);
        t->gcap = global;
    }
    return 0;
}

/* Loss on the local rows (u, v [n,C]) -> *loss (contribution to the global mean) and
 * du, dv (+= into t->demb, zeroed by the caller). Collective for the global losses. */
static int loss_step(bi_task *t, const ag_engine_batch *b, int n, double *loss) {
    const int C = t->C;
    float *u = t->emb, *v = t->emb + (size_t)n * C, *du = t->demb, *dv = t->demb + (size_t)n * C;
    double l = 0;
    int rc = 0;
    switch (t->loss) {
    case L_COSINE:
        rc = n ? ag_loss_cosine(u, v, t->y, n, C, b->gscale, &l, du, dv) : 0;
        *loss = l * b->gscale;
        return rc;
    case L_CONTRASTIVE:
        rc = n ? ag_loss_contrastive(u, v, t->y, n, C, t->margin, b->gscale, &l, du, dv) : 0;
        *loss = l * b->gscale;
        return rc;
    case L_SOFTMAX:
        rc = n ? ag_softmax_loss_forward(&t->smx, &t->p, u, v, t->labels_i, n, b->gscale, &l, NULL, du, dv) : 0;
        *loss = l * b->gscale;
        return rc;
    case L_MSE: {
        double la = 0, lb = 0;
        if (n) {
            rc = ag_loss_mse(u, t->tgt, n, C, b->gscale / 2, &la, du);
            if (!rc) rc = ag_loss_mse(v, t->tgt + (size_t)n * C, n, C, b->gscale / 2, &lb, dv);
        }
        *loss = (la + lb) / 2 * b->gscale;
        return rc;
    }
    default: break;
    }
    if ((t->loss == L_MNRL || t->loss == L_MNRL_SYM) && !t->global_neg) {  /* per rank, as ST per device */
        rc = n ? ag_loss_mnrl(u, v, NULL, 0, n, C, t->scale, t->loss == L_MNRL_SYM, b->gscale, &l, du, dv, NULL) : 0;
        *loss = l * b->gscale;
        return rc;
    }
    /* Global losses: gather the batch's embeddings from every rank (rank order = batch order). */
    ag_gather_plan g;
    if (ag_gather_plan_init(&g, n, C, b->comm)) return -1;
    const int64_t G = g.total, off = g.offset;
    float *ga = t->gbuf, *gb = t->gbuf + (size_t)G * C;        /* all anchors / all b texts [G,C] */
    float *dga = t->gdbuf, *dgb = t->gdbuf + (size_t)G * C;
    memset(t->gdbuf, 0, (size_t)2 * G * C * sizeof(float));
    int32_t *pos = malloc((size_t)(n ? n : 1) * sizeof *pos);
    if (!pos) { ag_gather_plan_free(&g); return ag_err("out of memory"); }
    for (int i = 0; i < n; i++) pos[i] = (int32_t)(off + i);
    double lsum = 0;
    if (t->loss == L_MNRL) {
        rc = ag_gather_rows(&g, v, gb);
        if (!rc && n) rc = ag_mnrl_block(u, n, gb, (int)G, C, pos, t->scale, 1.0f / (float)G, &lsum, du, dgb);
        if (!rc) rc = ag_scatter_grad(&g, dgb, t->gdbuf2);
        if (!rc) for (size_t k = 0; k < (size_t)n * C; k++) dv[k] += t->gdbuf2[k];
        *loss = lsum / (double)G;
    } else if (t->loss == L_MNRL_SYM) {
        rc = ag_gather_rows(&g, u, ga);
        if (!rc) rc = ag_gather_rows(&g, v, gb);
        if (!rc && n) rc = ag_mnrl_sym_block(ga, (int)G, pos, n, gb, (int)G, C, pos, t->scale, 1.0f / (float)G, &lsum,
                                             dga, dgb);
        if (!rc) rc = ag_scatter_grad(&g, dga, t->gdbuf2);
        if (!rc) for (size_t k = 0; k < (size_t)n * C; k++) du[k] += t->gdbuf2[k];
        if (!rc) rc = ag_scatter_grad(&g, dgb, t->gdbuf2);
        if (!rc) for (size_t k = 0; k < (size_t)n * C; k++) dv[k] += t->gdbuf2[k];
        *loss = lsum / (double)G;
    } else { /* CoSENT over the global batch: every rank the same loss, own rows' gradient */
        rc = ag_gather_rows(&g, u, ga);
        if (!rc) rc = ag_gather_rows(&g, v, gb);
        ag_gather_plan lp;
        if (!rc) rc = ag_gather_plan_init(&lp, n, 1, b->comm);
        if (!rc) {
            rc = ag_gather_rows(&lp, t->y, t->glab);
            ag_gather_plan_free(&lp);
        }
        if (!rc) rc = ag_loss_cosent(ga, gb, t->glab, (int)G, C, t->scale, 1.0f, &lsum, dga, dgb);
        if (!rc)
            for (size_t k = 0; k < (size_t)n * C; k++) {
                du[k] += dga[(size_t)off * C + k];
                dv[k] += dgb[(size_t)off * C + k];
            }
        *loss = b->rank == 0 ? lsum : 0;
    }
    free(pos);
    ag_gather_plan_free(&g);
    return rc;
}

static int bi_step(void *ctx, ag_engine *e, const ag_engine_batch *b, double *loss) {
    bi_task *t = ctx;
    const int C = t->C;
    const int n = (int)b->count;
    if (reserve(t, n > 0 ? n : 1, b->global)) return -1;
    int T = 2;
    if (n > 0) {
        const int32_t *pc[2 * n > 0 ? 2 * n : 1];
        int lens[2 * n > 0 ? 2 * n : 1];
        for (int i = 0; i < n; i++) {
            const pair *x = &t->pairs[b->sample[b->begin + i]];
            const ag_dataset *d = &t->ds[x->ds];
            pc[i] = ag_dataset_tokens(d, x->a, &lens[i]);
            pc[n + i] = ag_dataset_tokens(d, x->b, &lens[n + i]);
            if (!pc[i]) pc[i] = t->ids;
            if (!pc[n + i]) pc[n + i] = t->ids;
            t->keys[i] = b->key[b->begin + i] * 2;          /* dropout: (sample use, side) */
            t->keys[n + i] = b->key[b->begin + i] * 2 + 1;
            t->y[i] = x->y;
            t->labels_i[i] = (int32_t)x->y;
            if (t->teacher) {
                memcpy(t->tgt + (size_t)i * C, t->teacher + (size_t)x->a * C, (size_t)C * sizeof(float));
                memcpy(t->tgt + (size_t)(n + i) * C, t->teacher + (size_t)x->b * C, (size_t)C * sizeof(float));
            }
        }
        T = ag_encoder_input(&t->enc, pc, lens, 2 * n, t->ids, t->mask);
        ag_bert_batch in = {2 * n, T, t->ids, NULL, t->mask, t->keys};
        if (ag_bert_forward(&t->m, ag_device_params(&t->dv, &t->p), &in, 1, b->seed, 0)) return -1;
        const float *h = ag_device_fetch(&t->dv, &t->hbuf, ag_bert_hidden(&t->m), (size_t)2 * n * T * C);
        if (!h) return -1;
        float *pooled = t->normalize ? t->pooled : t->emb;
        if (ag_pool_forward(t->pool, h, t->mask, 2 * n, T, C, pooled, t->argmax)) return -1;
        if (t->normalize) ag_l2norm_forward(pooled, 2 * n, C, t->emb, t->norms);
        memset(t->demb, 0, (size_t)2 * n * C * sizeof(float));
    }
    /* Every rank runs the loss (the global ones are collective), an empty slice too. */
    if (loss_step(t, b, n, loss)) return -1;
    if (n == 0) return 0;
    const float *dp = t->demb;
    if (t->normalize) {
        memset(t->dpool, 0, (size_t)2 * n * C * sizeof(float));
        ag_l2norm_backward(t->emb, t->norms, t->demb, 2 * n, C, t->dpool);
        dp = t->dpool;
    }
    size_t need = (size_t)2 * n * T * C;
    if (need > t->cap_dh) {
        free(t->dh);
        t->dh = malloc(need * sizeof(float));
        if (!t->dh) { t->cap_dh = 0; return ag_err("out of memory for the hidden-state gradient"); }
        t->cap_dh = need;
    }
    memset(t->dh, 0, need * sizeof(float));
    if (ag_pool_backward(t->pool, dp, t->mask, t->argmax, 2 * n, T, C, t->dh)) return -1;
    ag_engine_progress(e);
    const float *dh = ag_device_put_grad(&t->dv, &t->dbuf, t->dh, need);
    if (!dh) return -1;
    return ag_bert_backward(&t->m, ag_device_params(&t->dv, &t->p), dh, NULL);
}

static int bi_evaluate(void *ctx, ag_engine *e, int64_t step, ag_eval_result *out) {
    (void)e;
    (void)step;
    bi_task *t = ctx;
    return ag_run_sts_evaluate(&t->enc, &t->eval, t->eval_batch, out);
}

static void task_free(bi_task *t) {
    for (int k = 0; k < t->nds; k++) ag_dataset_free(&t->ds[k]);
    free(t->ds);
    free(t->pairs);
    free(t->teacher);
    if (t->has_eval) ag_dataset_free(&t->eval);
    ag_bert_free(&t->m);
    ag_params_free(&t->p);
    ag_model_desc_free(&t->md);
    free(t->ids); free(t->mask); free(t->keys); free(t->argmax); free(t->emb); free(t->pooled); free(t->norms);
    free(t->demb); free(t->dpool); free(t->y); free(t->labels_i); free(t->tgt); free(t->dh);
    free(t->gbuf); free(t->gdbuf); free(t->gdbuf2); free(t->glab);
    ag_act_buf_free(&t->dv, &t->hbuf);
    ag_act_buf_free(&t->dv, &t->dbuf);
    ag_device_close(&t->dv);
}

/* ---- the command ---------------------------------------------------------------------- */

/* Options and inputs -> a ready task and engine config. Errors name the option or file. */
static int setup(const ag_cli *c, bi_task *t, ag_engine_config *ec, char *fp, size_t fpn) {
    double d;
    if (c->npos) return ag_err("unexpected argument '%s' (every input is given with an option; see --help)", c->pos[0]);
    if (ag_cli_choice(c, "loss", loss_names, &t->loss)) return -1;
    static const char *const negs[] = {"local", "global", NULL};
    if (ag_cli_choice(c, "negatives", negs, &t->global_neg)) return -1;
    static const char *const keeps[] = {"last", "best", NULL};
    int keep = ag_cli_given(c, "eval") ? 1 : 0;
    if (ag_cli_given(c, "keep") && ag_cli_choice(c, "keep", keeps, &keep)) return -1;
    if (keep && !ag_cli_given(c, "eval")) return ag_err("--keep best: needs --eval (an STS dataset to rank models)");
    ag_engine_config_default(ec);
    ec->stage = "train-bi";
    ec->out_dir = ag_cli_str(c, "out");
    ec->keep_best = keep;
    if (ag_cli_double(c, "scale", &d)) return -1;
    t->scale = (float)d;
    if (ag_cli_double(c, "margin", &d)) return -1;
    t->margin = (float)d;
    if (!(t->scale > 0)) return ag_err("--scale: expected a positive number");
    if (ag_run_engine_opts(c, ec, &t->eval_batch)) return -1;
    static const char *const progress[] = {"lines", "bar", "auto", NULL};
    int prog = 2;
    if (ag_cli_choice(c, "progress", progress, &prog)) return -1;
    ec->tty = prog == 2 ? -1 : prog;
    long max_len = 0, num_labels = 0;
    if (ag_cli_long(c, "max-length", &max_len) || ag_cli_long(c, "num-labels", &num_labels)) return -1;
    if (ag_cli_given(c, "max-length") && max_len < 3) return ag_err("--max-length: expected at least 3, got %ld", max_len);
    if (ag_cli_given(c, "num-labels") && num_labels < 2) return ag_err("--num-labels: expected at least 2, got %ld", num_labels);
    if (t->loss == L_MSE && !ag_cli_given(c, "teacher")) return ag_err("--loss mse: needs --teacher EMB.h5");
    if (t->loss != L_MSE && ag_cli_given(c, "teacher")) return ag_err("--teacher: only used with --loss mse");
    if (ag_cli_given(c, "num-labels") && t->loss != L_SOFTMAX) return ag_err("--num-labels: only used with --loss softmax");
    /* Check the option values that need no file before reading any file. */
    const char *pool = ag_cli_str(c, "pooling"), *norm = ag_cli_str(c, "normalize");
    if (pool && ag_pool_mode_parse(pool, &t->pool)) return ag_err_ctx("--pooling");
    if (norm && strcmp(norm, "yes") && strcmp(norm, "no")) return ag_err("--normalize: expected yes or no, got '%s'", norm);
    if (ag_device_open(&t->dv, ag_cli_str(c, "device"), ag_cli_str(c, "precision"), ag_comm_get()->local_rank))
        return -1;

    /* The model: a staging table with the starting weights, then the training table. */
    ag_params start;
    ag_bert m0;
    int have_start = 0;
    ag_params_init(&start);
    ag_model_desc_init(&t->md);
    if (load_start(c, t, &start, &m0, &have_start)) return -1;
    if (pool) t->md.pooling = t->pool;
    t->pool = t->md.pooling;
    if (norm) t->md.normalize = !strcmp(norm, "yes");
    t->normalize = t->md.normalize;
    if (max_len) {
        if (max_len > t->md.max_position_embeddings) {
            if (have_start) { ag_bert_free(&m0); ag_params_free(&start); }
            return ag_err("--max-length %ld: the model has %d positions", max_len, t->md.max_position_embeddings);
        }
        t->md.max_seq_length = (int)max_len;
    }
    t->C = t->md.hidden_size;
    ag_params_init(&t->p);
    int rc = ag_model_register(&t->md, &t->m, &t->p, NULL);
    t->n_model = t->p.n;
    int num_lab = 0;
    if (!rc) rc = load_data(c, t, (int)num_labels, &num_lab);
    if (!rc && t->loss == L_SOFTMAX) {
        if (num_lab < 2) rc = ag_err("--loss softmax: the datasets declare %d classes; give --num-labels", num_lab);
        else rc = ag_softmax_loss_register(&t->smx, &t->p, t->C, num_lab);
    }
    if (!rc) rc = ag_params_alloc(&t->p);
    if (!rc) {
        if (have_start) rc = copy_by_name(&start, &t->p);
        else ag_bert_init_weights(&t->m, &t->p, ec->seed);
        if (!rc && t->loss == L_SOFTMAX) rc = ag_softmax_loss_init(&t->smx, &t->p, ec->seed);
    }
    if (have_start) { ag_bert_free(&m0); ag_params_free(&start); }
    if (rc) return -1;
    if (ag_encoder_init(&t->enc, &t->m, &t->p, &t->md, 0)) return -1;
    t->max_len = t->enc.max_len;
    /* On the GPU the encoder (training and evaluation) runs on the device copy. */
    if (ag_device_mirror(&t->dv, &t->p)) return -1;
    /* SoftmaxLoss's classifier is host code: its gradient is accumulated on the host. */
    if (t->loss == L_SOFTMAX && (ag_device_host_grad(&t->dv, t->smx.w) || ag_device_host_grad(&t->dv, t->smx.b)))
        return -1;
    t->m.ops = t->dv.ops;
    t->enc.p = ag_device_params(&t->dv, &t->p);
    if (t->loss == L_MSE) {
        const char *tf = ag_cli_str(c, "teacher");
        int64_t rows;
        int tc;
        if (ag_embeddings_read(tf, &t->teacher, &rows, &tc)) return ag_err_ctx("--teacher");
        if (rows != t->ds[0].n_sentences || tc != t->C)
            return ag_err("--teacher %s: [%lld, %d] embeddings; the data has %lld sentences and the model width %d",
                          tf, (long long)rows, tc, (long long)t->ds[0].n_sentences, t->C);
    }
    if (ag_cli_given(c, "eval") && ag_run_read_sts_eval(c, &t->md, &t->eval, &t->has_eval)) return -1;
    ec->n_samples = t->n_pairs;
    snprintf(fp, fpn, "loss=%s negatives=%s pooling=%s normalize=%d max-length=%d scale=%g margin=%g only-label=%s "
             "data=%s teacher=%s model=%s fresh=%s", loss_names[t->loss], t->global_neg ? "global" : "local",
             ag_pool_mode_name(t->pool), t->normalize, t->max_len, t->scale, t->margin,
             ag_cli_str(c, "only-label") ? ag_cli_str(c, "only-label") : "-", ag_cli_str(c, "data"),
             ag_cli_str(c, "teacher") ? ag_cli_str(c, "teacher") : "-",
             ag_cli_str(c, "model") ? ag_cli_str(c, "model") : "-", ag_cli_str(c, "fresh") ? ag_cli_str(c, "fresh") : "-");
    return 0;
}

int ag_cmd_train_bi(int argc, char **argv) {
    ag_cli c;
    int early = ag_run_parse(&c, "argent train-bi",
                            "Train a bi-encoder on pair datasets (data-parallel under mpirun; GLOBAL batch; resumable).\n"
                            "Output: OUT/model.h5 (argent export OUT/model.h5 DIR for sentence-transformers).\n"
                            "Exit codes: 0 done, 1 error, 2 bad usage, 85 checkpointed after a stop signal (run again\n"
                            "to resume).",
                            opts, argc, argv);
    if (early >= 0) return early;
    early = ag_run_begin(&c, "argent train-bi", 0, &argc, &argv);
    if (early >= 0) return early;
    bi_task t;
    memset(&t, 0, sizeof t);
    t.eval_batch = 32;
    ag_engine_config ec;
    char fp[8192];
    int rc = setup(&c, &t, &ec, fp, sizeof fp);
    ag_run_stage st = {"train-bi", {&t, bi_step, t.has_eval ? bi_evaluate : NULL}, &t.p, t.n_model, &t.md, &t.dv,
                       &t.m, fp, NULL, NULL};
    int code = ag_run_train_stage(&st, &ec, rc);
    task_free(&t);
    ag_cli_free(&c);
    ag_comm_finalize();
    return code;
}
