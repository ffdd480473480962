/* `argent demo`: a small, real data-parallel training run on data the program generates,
 * so that a fresh machine can see argent train without any download.
 *
 * The data: sentences expressing a (subject, action, object) meaning, each concept written
 * with one of three synonyms (made-up words) plus random filler words. A pair's gold score
 * is the fraction of concepts the two sentences share. A tiny BERT (random init) is trained
 * as a bi-encoder (mean pooling, CosineSimilarityLoss) on generated pairs; the Spearman
 * correlation of cosine similarity with the gold score on held-out pairs is reported before
 * and after training. Every rank generates the same data; each takes its slice of every
 * global batch; gradients are summed with the bucketed allreduce. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dist/allreduce.h"
#include "dist/comm.h"
#include "io/tokenizer.h"
#include "jobs/commands.h"
#include "nn/bert.h"
#include "nn/error.h"
#include "nn/losses.h"
#include "nn/optim.h"
#include "nn/pooling.h"
#include "nn/rng.h"
#include "nn/stats.h"

enum { N_SLOT = 3, N_CONCEPT = 10, N_SYN = 3, N_FILL = 8 };
static const char *syll[] = {"ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pu", "ga", "do"};
static const char *fillers[N_FILL] = {"the", "a", "today", "quickly", "again", "very", "then", "so"};

/* The word for synonym k of concept c in slot s: three syllables, unique per (s, c, k). */
static void word_of(int s, int c, int k, char *buf, size_t n) {
    int id = (s * N_CONCEPT + c) * N_SYN + k;
    snprintf(buf, n, "%s%s%s", syll[id % 12], syll[(id / 12) % 12], syll[(id / 144 + s) % 12]);
}

typedef struct { int c[N_SLOT]; } meaning;

/* A sentence for meaning m, its surface drawn from (seed, key). */
static void render(const meaning *m, uint64_t seed, uint64_t key, char *out, size_t n) {
    char w[32];
    size_t len = 0;
    out[0] = 0;
    uint32_t j = 0;
    for (int s = 0; s < N_SLOT; s++) {
        if (ag_rng_uniform(seed, AG_RNG_NOISE, key, 1, j++) < 0.4f)
            len += (size_t)snprintf(out + len, n - len, "%s ", fillers[ag_rng_u32(seed, AG_RNG_NOISE, key, 2, j++) % N_FILL]);
        word_of(s, m->c[s], (int)(ag_rng_u32(seed, AG_RNG_NOISE, key, 3, j++) % N_SYN), w, sizeof w);
        len += (size_t)snprintf(out + len, n - len, "%s ", w);
    }
    if (len) out[len - 1] = 0;
}

typedef struct {
    int n;
    int32_t *ids[2];  /* per pair and side: word pieces (no specials), MAXP each */
    int *len[2];
    float *score;
} pairset;

enum { MAXP = 12 };

/* n pairs: a third paraphrases (same meaning), the rest share each concept with prob. 1/2. */
static int make_pairs(pairset *ps, int n, uint64_t seed, uint64_t base, const ag_tokenizer *tk) {
    ps->n = n;
    ps->score = malloc((size_t)n * sizeof(float));
    for (int s = 0; s < 2; s++) {
        ps->ids[s] = malloc((size_t)n * MAXP * sizeof(int32_t));
        ps->len[s] = malloc((size_t)n * sizeof(int));
    }
    int32_t *tmp = NULL;
    int tn = 0, tcap = 0;
    for (int i = 0; i < n; i++) {
        uint64_t key = base + (uint64_t)i;
        meaning a, b;
        int same = 0;
        int para = ag_rng_uniform(seed, AG_RNG_NOISE, key, 10, 0) < 0.33f;
        for (int s = 0; s < N_SLOT; s++) {
            a.c[s] = (int)(ag_rng_u32(seed, AG_RNG_NOISE, key, 11, (uint64_t)s) % N_CONCEPT);
            int keep = para || ag_rng_uniform(seed, AG_RNG_NOISE, key, 12, (uint64_t)s) < 0.5f;
            b.c[s] = keep ? a.c[s] : (int)(ag_rng_u32(seed, AG_RNG_NOISE, key, 13, (uint64_t)s) % N_CONCEPT);
            same += a.c[s] == b.c[s];
        }
        ps->score[i] = (float)same / N_SLOT;
        char text[256];
        for (int side = 0; side < 2; side++) {
            render(side ? &b : &a, seed, key * 2 + (uint64_t)side, text, sizeof text);
            tn = 0;
            if (ag_tok_wordpieces(tk, text, strlen(text), &tmp, &tn, &tcap)) { free(tmp); return -1; }
            if (tn > MAXP) tn = MAXP;
            memcpy(ps->ids[side] + (size_t)i * MAXP, tmp, (size_t)tn * sizeof(int32_t));
            ps->len[side][i] = tn;
        }
    }
    free(tmp);
    return 0;
}

static void pairset_free(pairset *ps) {
    for (int s = 0; s < 2; s++) { free(ps->ids[s]); free(ps->len[s]); }
    free(ps->score);
}

static int write_vocab(const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) return ag_err("%s: cannot create the demo vocabulary", path);
    const char *special[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
    for (int i = 0; i < 5; i++) fprintf(f, "%s\n", special[i]);
    for (int i = 0; i < N_FILL; i++) fprintf(f, "%s\n", fillers[i]);
    char w[32];
    for (int s = 0; s < N_SLOT; s++)
        for (int c = 0; c < N_CONCEPT; c++)
            for (int k = 0; k < N_SYN; k++) { word_of(s, c, k, w, sizeof w); fprintf(f, "%s\n", w); }
    return fclose(f) ? ag_err("%s: write failed", path) : 0;
}

/* Build the [2n, T] batch of both sides of pairs idx[0..n): rows 0..n-1 side a, n..2n-1 side b. */
typedef struct { int32_t *ids, *mask; int64_t *sample; int T; } batch_buf;

static void build_batch(batch_buf *bb, const pairset *ps, const int64_t *idx, int n, const ag_tokenizer *tk) {
    int T = 0;
    for (int i = 0; i < n; i++)
        for (int s = 0; s < 2; s++)
            if (ps->len[s][idx[i]] + 2 > T) T = ps->len[s][idx[i]] + 2;
    bb->T = T;
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < n; i++) {
            int r = s * n + i;
            int32_t types[MAXP + 2];
            int len = ag_tok_build_single(tk, ps->ids[s] + idx[i] * MAXP, ps->len[s][idx[i]], T,
                                          bb->ids + (size_t)r * T, types);
            for (int t = 0; t < T; t++) {
                bb->mask[(size_t)r * T + t] = t < len;
                if (t >= len) bb->ids[(size_t)r * T + t] = ag_tok_pad(tk);
            }
            bb->sample[r] = idx[i] * 2 + s;  /* dropout keyed on (pair, side): rank-count free */
        }
}

/* Spearman of cos(u, v) against gold on a pair set (eval mode). */
static int evaluate(ag_bert *m, ag_params *p, const pairset *ps, const ag_tokenizer *tk, double *rho) {
    int n = ps->n, C = m->cfg.hidden_size;
    int64_t *idx = malloc((size_t)n * sizeof *idx);
    batch_buf bb = {malloc((size_t)2 * n * (MAXP + 2) * 4), malloc((size_t)2 * n * (MAXP + 2) * 4),
                    malloc((size_t)2 * n * 8), 0};
    float *emb = malloc((size_t)2 * n * C * sizeof(float));
    double *cs = malloc((size_t)n * sizeof(double)), *gold = malloc((size_t)n * sizeof(double));
    for (int i = 0; i < n; i++) idx[i] = i;
    build_batch(&bb, ps, idx, n, tk);
    ag_bert_batch in = {2 * n, bb.T, bb.ids, NULL, bb.mask, bb.sample};
    int rc = ag_bert_forward(m, p, &in, 0, 0, 0);
    if (!rc) rc = ag_pool_forward(AG_POOL_MEAN, ag_bert_hidden(m), bb.mask, 2 * n, bb.T, C, emb, NULL);
    if (!rc) {
        for (int i = 0; i < n; i++) {
            const float *u = emb + (size_t)i * C, *v = emb + (size_t)(n + i) * C;
            double uv = 0, uu = 0, vv = 0;
            for (int c = 0; c < C; c++) { uv += u[c] * v[c]; uu += u[c] * u[c]; vv += v[c] * v[c]; }
            cs[i] = uv / (sqrt(uu) * sqrt(vv) + 1e-12);
            gold[i] = ps->score[i];
        }
        *rho = ag_spearman(cs, gold, (size_t)n);
    }
    free(idx); free(bb.ids); free(bb.mask); free(bb.sample); free(emb); free(cs); free(gold);
    return rc;
}

int ag_cmd_demo(int argc, char **argv) {
    int steps = 300, gbatch = 32, seed = 1, log_every = 10;
    const char *out = "argent-demo";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: argent demo [--steps N] [--batch GLOBAL_BATCH] [--seed S] [--out DIR]\n"
                   "Trains a tiny bi-encoder on generated paraphrase pairs (data-parallel over\n"
                   "the MPI ranks) and prints the loss and the held-out Spearman before/after.\n");
            return 0;
        }
        if (i + 1 >= argc) { fprintf(stderr, "argent demo: option %s needs a value\n", argv[i]); return 2; }
        char *end;
        long v = strtol(argv[i + 1], &end, 10);
        if (!strcmp(argv[i], "--out")) { out = argv[++i]; continue; }
        if (*end || v <= 0) { fprintf(stderr, "argent demo: %s wants a positive integer, got '%s'\n", argv[i], argv[i + 1]); return 2; }
        if (!strcmp(argv[i], "--steps")) steps = (int)v;
        else if (!strcmp(argv[i], "--batch")) gbatch = (int)v;
        else if (!strcmp(argv[i], "--seed")) seed = (int)v;
        else { fprintf(stderr, "argent demo: unknown option %s\n", argv[i]); return 2; }
        i++;
    }
    if (ag_comm_init(&argc, &argv)) { fprintf(stderr, "argent demo: %s\n", ag_errmsg()); return 1; }
    const ag_comm *cm = ag_comm_get();
    char vocab[1024];
    snprintf(vocab, sizeof vocab, "%s/vocab.txt", out);
    if (cm->rank == 0) {
        mkdir(out, 0777);
        if (write_vocab(vocab)) ag_fatal("%s", ag_errmsg());
    }
    MPI_Barrier(cm->world);
    ag_tokenizer *tk = ag_tokenizer_load(vocab, 1);
    if (!tk) ag_fatal("%s", ag_errmsg());

    pairset train, test;
    if (make_pairs(&train, 4096, (uint64_t)seed, 0, tk) || make_pairs(&test, 400, (uint64_t)seed, 1u << 30, tk))
        ag_fatal("generating pairs: %s", ag_errmsg());

    ag_bert_config cfg = {.vocab_size = ag_tokenizer_vocab_size(tk), .hidden_size = 64, .num_hidden_layers = 2,
                          .num_attention_heads = 4, .intermediate_size = 128, .max_position_embeddings = 32,
                          .type_vocab_size = 2, .layer_norm_eps = 1e-12f, .hidden_dropout_prob = 0.1f,
                          .attention_probs_dropout_prob = 0.1f};
    ag_bert m;
    ag_params p;
    ag_params_init(&p);
    if (ag_bert_register(&m, &cfg, &p, "", 0) || ag_params_alloc(&p)) ag_fatal("model: %s", ag_errmsg());
    ag_bert_init_weights(&m, &p, (uint64_t)seed);
    if (ag_bcast_params(&p, cm->world)) ag_fatal("broadcast: %s", ag_errmsg());
    ag_adamw opt;
    ag_ar *ar;
    if (ag_adamw_init(&opt, &p, 0.01) || ag_ar_create(&ar, &p, NULL, cm->world)) ag_fatal("%s", ag_errmsg());
    ag_schedule sched = {AG_SCHED_LINEAR, steps / 10, steps};
    const double lr = 1e-3;

    double rho0;
    if (evaluate(&m, &p, &test, tk, &rho0)) ag_fatal("eval: %s", ag_errmsg());
    ag_log0("demo: %d ranks, %d threads each; tiny BERT (%zu parameters), %d train pairs, %d test pairs",
            cm->size, cm->threads, p.total, train.n, test.n);
    ag_log0("demo: held-out Spearman(cosine, gold) before training: %.4f", rho0);

    const int C = cfg.hidden_size;
    int64_t *gidx = malloc((size_t)gbatch * sizeof *gidx);
    batch_buf bb = {malloc((size_t)2 * gbatch * (MAXP + 2) * 4), malloc((size_t)2 * gbatch * (MAXP + 2) * 4),
                    malloc((size_t)2 * gbatch * 8), 0};
    float *emb = malloc((size_t)2 * gbatch * C * sizeof(float));
    float *demb = malloc((size_t)2 * gbatch * C * sizeof(float));
    float *dh = NULL;
    size_t dh_cap = 0;
    double t0 = MPI_Wtime(), loss_acc = 0;
    int loss_n = 0;
    for (int step = 0; step < steps; step++) {
        /* Global batch: pairs drawn by position (seeded, same on every rank). */
        for (int i = 0; i < gbatch; i++)
            gidx[i] = ag_rng_u32((uint64_t)seed, AG_RNG_SHUFFLE, (uint64_t)step, 0, (uint64_t)i) % (uint32_t)train.n;
        int64_t begin, count;
        ag_batch_slice(gbatch, cm->size, cm->rank, &begin, &count);
        int n = (int)count;
        double loss = 0;
        ag_ar_begin(ar);
        if (n > 0) {
            build_batch(&bb, &train, gidx + begin, n, tk);
            ag_bert_batch in = {2 * n, bb.T, bb.ids, NULL, bb.mask, bb.sample};
            if (ag_bert_forward(&m, &p, &in, 1, (uint64_t)seed, 0)) ag_fatal("forward: %s", ag_errmsg());
            if (ag_pool_forward(AG_POOL_MEAN, ag_bert_hidden(&m), bb.mask, 2 * n, bb.T, C, emb, NULL))
                ag_fatal("pool: %s", ag_errmsg());
            float y[1024];
            for (int i = 0; i < n && i < 1024; i++) y[i] = train.score[gidx[begin + i]];
            memset(demb, 0, (size_t)2 * n * C * sizeof(float));
            if (ag_loss_cosine(emb, emb + (size_t)n * C, y, n, C, (float)n / gbatch, &loss, demb, demb + (size_t)n * C))
                ag_fatal("loss: %s", ag_errmsg());
            size_t need = (size_t)2 * n * bb.T * C;
            if (need > dh_cap) { free(dh); dh = malloc(need * sizeof(float)); dh_cap = need; }
            memset(dh, 0, need * sizeof(float));
            ag_pool_backward(AG_POOL_MEAN, demb, bb.mask, NULL, 2 * n, bb.T, C, dh);
            if (ag_bert_backward(&m, &p, dh, NULL)) ag_fatal("backward: %s", ag_errmsg());
        }
        if (ag_ar_finish(ar, 1)) ag_fatal("allreduce: %s", ag_errmsg());
        double gl = loss * n / gbatch;
        MPI_Allreduce(MPI_IN_PLACE, &gl, 1, MPI_DOUBLE, MPI_SUM, cm->world);
        ag_clip_grad_norm(&p, 1.0);
        double cur_lr = lr * ag_schedule_factor(&sched, opt.step);
        ag_adamw_step(&opt, &p, cur_lr);
        ag_params_zero_grad(&p);
        loss_acc += gl;
        loss_n++;
        if ((step + 1) % log_every == 0 || step + 1 == steps) {
            ag_log0("demo: step %4d/%d  loss %.5f  lr %.2e  %.1f pairs/s", step + 1, steps, loss_acc / loss_n,
                    cur_lr, (double)(step + 1) * gbatch / (MPI_Wtime() - t0));
            loss_acc = 0;
            loss_n = 0;
        }
    }
    if (ag_check_same(p.data, p.total, steps, cm->world)) ag_fatal("%s", ag_errmsg());
    double rho1;
    if (evaluate(&m, &p, &test, tk, &rho1)) ag_fatal("eval: %s", ag_errmsg());
    if (cm->rank == 0) {
        printf("\n| held-out pairs (%d) | Spearman(cosine, gold) |\n|---|---|\n", test.n);
        printf("| before training | %.4f |\n| after %d steps | %.4f |\n", rho0, steps, rho1);
        fflush(stdout);
    }
    free(gidx); free(bb.ids); free(bb.mask); free(bb.sample); free(emb); free(demb); free(dh);
    pairset_free(&train); pairset_free(&test);
    ag_ar_free(ar);
    ag_adamw_free(&opt);
    ag_bert_free(&m);
    ag_params_free(&p);
    ag_tokenizer_free(tk);
    ag_comm_finalize();
    return rho1 > rho0 ? 0 : 3;
}
