/* Real-weights parity, the C half (driven by tests/parity/minilm_parity.py, which writes the
 * sentence-transformers reference into OUT first):
 *   bi-encoder: load OUT/minilm.h5 (made by `argent import`), tokenise every sentence of
 *     OUT/sentences.txt with argent's tokenizer using the vocab stored in the checkpoint,
 *     run BERT + pooling + normalize as the checkpoint says, compare with SentenceTransformer
 *     (max |diff| <= 1e-4, cosine >= 0.99999), write OUT/argent_emb.f32 [N,C].
 *   cross-encoder: load OUT/ce.h5 (a MiniLM cross-encoder with a random head, imported from
 *     the folder the driver built), score OUT/pairs.tsv, compare with CrossEncoder.predict,
 *     write OUT/argent_ce.f32 [P].
 * Usage: minilm_parity OUT. Exit 77 (skip) when OUT has no reference. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/checkpoint.h"
#include "io/tokenizer.h"
#include "nn/error.h"
#include "nn/pooling.h"
#include "tests/support/check.h"
#include "tests/support/fixture.h"

typedef struct { int n; char **s; } lines;

static int read_lines(const char *path, lines *L) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    L->n = 0;
    L->s = NULL;
    char *buf = NULL;
    size_t cap = 0;
    ssize_t k;
    while ((k = getline(&buf, &cap, f)) >= 0) {
        if (k && buf[k - 1] == '\n') buf[--k] = 0;
        L->s = realloc(L->s, (size_t)(L->n + 1) * sizeof *L->s);
        L->s[L->n++] = strdup(buf);
    }
    free(buf);
    fclose(f);
    return 0;
}

static void free_lines(lines *L) {
    for (int i = 0; i < L->n; i++) free(L->s[i]);
    free(L->s);
}

/* Vocab text of a checkpoint -> a file the tokenizer loads. */
static ag_tokenizer *tokenizer_from(const ag_model_desc *md, const char *out, const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", out, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(md->vocab, 1, md->vocab_len, f) != md->vocab_len) { if (f) fclose(f); return NULL; }
    fclose(f);
    return ag_tokenizer_load(path, md->do_lower_case);
}

static int write_f32(const char *path, const float *x, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(x, sizeof *x, n, f);
    return fclose(f) || w != n ? -1 : 0;
}

typedef struct { int32_t *ids, *types; int len; } seq;

/* Run batches of up to `bs` sequences (consecutive in `order`) through the encoder; for each
 * batch call fn with the hidden states / pooled output. */
typedef void (*batch_fn)(void *ctx, const ag_bert *m, const int *rows, int B, int T, const int32_t *mask);

static int run_batches(ag_bert *m, const ag_params *p, const seq *sq, const int *order, int n, int bs,
                       int want_pooled, batch_fn fn, void *ctx) {
    for (int s = 0; s < n; s += bs) {
        int B = n - s < bs ? n - s : bs, T = 0;
        for (int b = 0; b < B; b++) if (sq[order[s + b]].len > T) T = sq[order[s + b]].len;
        int32_t *ids = calloc((size_t)B * T, 4), *types = calloc((size_t)B * T, 4), *mask = calloc((size_t)B * T, 4);
        for (int b = 0; b < B; b++) {
            const seq *q = &sq[order[s + b]];
            memcpy(ids + (size_t)b * T, q->ids, (size_t)q->len * 4);
            memcpy(types + (size_t)b * T, q->types, (size_t)q->len * 4);
            for (int t = 0; t < q->len; t++) mask[(size_t)b * T + t] = 1;
        }
        ag_bert_batch in = {B, T, ids, types, mask, NULL};
        int rc = ag_bert_forward(m, p, &in, 0, 0, want_pooled);
        if (!rc) fn(ctx, m, order + s, B, T, mask);
        free(ids); free(types); free(mask);
        if (rc) return -1;
    }
    return 0;
}

/* Length-sorted order, as inference should batch. */
static const seq *sort_base;
static int by_len(const void *a, const void *b) {
    return sort_base[*(const int *)a].len - sort_base[*(const int *)b].len;
}

typedef struct { const ag_model_desc *md; float *emb; int C; } bi_ctx;

static void bi_batch(void *vctx, const ag_bert *m, const int *rows, int B, int T, const int32_t *mask) {
    bi_ctx *c = vctx;
    float *pooled = malloc((size_t)B * c->C * sizeof *pooled);
    int32_t *argmax = malloc((size_t)B * c->C * sizeof *argmax);
    ag_pool_forward(c->md->pooling, ag_bert_hidden(m), mask, B, T, c->C, pooled, argmax);
    if (c->md->normalize) ag_l2norm_forward(pooled, B, c->C, pooled, NULL);
    for (int b = 0; b < B; b++) memcpy(c->emb + (size_t)rows[b] * c->C, pooled + (size_t)b * c->C, (size_t)c->C * 4);
    free(pooled);
    free(argmax);
}

static void bi_encoder(const char *out) {
    char path[1024];
    agfx fx;
    snprintf(path, sizeof path, "%s/ref.agfx", out);
    if (agfx_load(&fx, path)) check_skip("no reference in OUT (run tests/parity/minilm_parity.py)");
    lines L;
    snprintf(path, sizeof path, "%s/sentences.txt", out);
    if (read_lines(path, &L)) check_skip("no sentences.txt in OUT");
    size_t nref;
    const float *ref = agfx_f32(&fx, "emb", &nref);
    const int32_t *rid = agfx_i32(&fx, "ids", NULL), *roff = agfx_i32(&fx, "offsets", NULL);

    ag_model_desc md;
    ag_bert m;
    ag_params p;
    ag_model_desc_init(&md);
    snprintf(path, sizeof path, "%s/minilm.h5", out);
    int rc = ag_ckpt_load_model(path, &md, &m, NULL, &p, NULL);
    if (rc) printf("  %s\n", ag_errmsg());
    if (!check_true("load the imported all-MiniLM-L6-v2 checkpoint", rc == 0)) exit(check_finish());
    check_true("checkpoint says: mean pooling, normalize, max_seq_length 256",
               md.pooling == AG_POOL_MEAN && md.normalize == 1 && md.max_seq_length == 256);
    ag_tokenizer *tk = tokenizer_from(&md, out, "vocab-from-ckpt.txt");
    if (!check_true("tokenizer from the checkpoint's vocab", tk != NULL)) exit(check_finish());

    int n = L.n, C = md.hidden_size, bad_ids = 0, first_bad = -1;
    check_true("reference has one embedding per sentence", nref == (size_t)n * C);
    seq *sq = calloc((size_t)n, sizeof *sq);
    int32_t *wp = NULL;
    int wn = 0, wcap = 0;
    for (int i = 0; i < n; i++) {
        wn = 0;
        if (ag_tok_wordpieces(tk, L.s[i], strlen(L.s[i]), &wp, &wn, &wcap)) { printf("  %s\n", ag_errmsg()); exit(1); }
        sq[i].ids = malloc((size_t)md.max_seq_length * 4);
        sq[i].types = malloc((size_t)md.max_seq_length * 4);
        sq[i].len = ag_tok_build_single(tk, wp, wn, md.max_seq_length, sq[i].ids, sq[i].types);
        int rl = roff[i + 1] - roff[i];
        if (rl != sq[i].len || memcmp(rid + roff[i], sq[i].ids, (size_t)rl * 4)) {
            bad_ids++;
            if (first_bad < 0) first_bad = i;
        }
    }
    free(wp);
    char what[256];
    snprintf(what, sizeof what, "argent's token ids equal Hugging Face's for all %d sentences (%d differ%s%.60s)", n,
             bad_ids, bad_ids ? ", first: " : "", bad_ids ? L.s[first_bad] : "");
    check_true(what, bad_ids == 0);

    int *order = malloc((size_t)n * sizeof *order);
    for (int i = 0; i < n; i++) order[i] = i;
    sort_base = sq;
    qsort(order, (size_t)n, sizeof *order, by_len);
    float *emb = calloc((size_t)n * C, sizeof *emb);
    bi_ctx ctx = {&md, emb, C};
    rc = run_batches(&m, &p, sq, order, n, 32, 0, bi_batch, &ctx);
    if (rc) printf("  %s\n", ag_errmsg());
    check_true("forward over every sentence", rc == 0);
    double maxd = 0, mincos = 1;
    int worst = 0;
    for (int i = 0; i < n; i++) {
        double dot = 0, na = 0, nb = 0;
        for (int c = 0; c < C; c++) {
            double a = emb[(size_t)i * C + c], b = ref[(size_t)i * C + c];
            if (fabs(a - b) > maxd || isnan(a)) { maxd = isnan(a) ? INFINITY : fabs(a - b); worst = i; }
            dot += a * b; na += a * a; nb += b * b;
        }
        double cs = dot / sqrt(na * nb + 1e-30);
        if (cs < mincos || isnan(cs)) mincos = isnan(cs) ? -1 : cs;
    }
    printf("  STS-B dev, %d sentences: max |diff| %.3g (sentence %d), min cosine %.9f\n", n, maxd, worst, mincos);
    check_true("embeddings: max |diff| <= 1e-4 against SentenceTransformer", maxd <= 1e-4);
    check_true("embeddings: cosine >= 0.99999 for every sentence", mincos >= 0.99999);
    snprintf(path, sizeof path, "%s/argent_emb.f32", out);
    check_true("write argent_emb.f32", write_f32(path, emb, (size_t)n * C) == 0);

    for (int i = 0; i < n; i++) { free(sq[i].ids); free(sq[i].types); }
    free(sq); free(order); free(emb);
    ag_tokenizer_free(tk);
    ag_bert_free(&m);
    ag_params_free(&p);
    ag_model_desc_free(&md);
    free_lines(&L);
    agfx_free(&fx);
}

typedef struct { const ag_xhead *h; const ag_params *p; float *score; int C; } ce_ctx;

static void ce_batch(void *vctx, const ag_bert *m, const int *rows, int B, int T, const int32_t *mask) {
    (void)T; (void)mask;
    ce_ctx *c = vctx;
    int L = c->h->num_labels;
    float *logits = malloc((size_t)B * L * sizeof *logits), *pr = malloc((size_t)B * L * sizeof *pr);
    ag_xhead_forward(c->h, c->p, ag_bert_pooled(m), B, NULL, 0, 0, NULL, logits);
    ag_xhead_predict(c->h, logits, B, 0, pr);
    for (int b = 0; b < B; b++) c->score[rows[b]] = pr[(size_t)b * L];
    free(logits);
    free(pr);
}

static void cross_encoder(const char *out) {
    char path[1024];
    agfx fx;
    snprintf(path, sizeof path, "%s/ref.agfx", out);
    if (agfx_load(&fx, path)) return;
    lines L;
    snprintf(path, sizeof path, "%s/pairs.tsv", out);
    if (read_lines(path, &L)) { check_true("pairs.tsv present", 0); return; }
    size_t np;
    const float *ref = agfx_f32(&fx, "ce_scores", &np);
    ag_model_desc md;
    ag_bert m;
    ag_xhead head;
    ag_params p;
    ag_model_desc_init(&md);
    snprintf(path, sizeof path, "%s/ce.h5", out);
    int rc = ag_ckpt_load_model(path, &md, &m, &head, &p, NULL);
    if (rc) printf("  %s\n", ag_errmsg());
    if (!check_true("load the imported cross-encoder checkpoint", rc == 0)) return;
    check_true("cross-encoder with 1 label, bert. prefix", md.kind == AG_MODEL_CROSS_ENCODER && md.num_labels == 1 &&
                                                            ag_params_find(&p, "bert.pooler.dense.weight") >= 0);
    ag_tokenizer *tk = tokenizer_from(&md, out, "vocab-from-ce.txt");
    int n = L.n;
    check_true("one reference score per pair", np == (size_t)n && tk);
    seq *sq = calloc((size_t)n, sizeof *sq);
    int32_t *a = NULL, *b = NULL;
    int na = 0, ca = 0, nb = 0, cb = 0;
    for (int i = 0; i < n; i++) {
        char *tab = strchr(L.s[i], '\t');
        if (!tab) { check_true("pairs.tsv line has a tab", 0); return; }
        na = nb = 0;
        ag_tok_wordpieces(tk, L.s[i], (size_t)(tab - L.s[i]), &a, &na, &ca);
        ag_tok_wordpieces(tk, tab + 1, strlen(tab + 1), &b, &nb, &cb);
        sq[i].ids = malloc((size_t)md.max_seq_length * 4);
        sq[i].types = malloc((size_t)md.max_seq_length * 4);
        sq[i].len = ag_tok_build_pair(tk, a, na, b, nb, md.max_seq_length, sq[i].ids, sq[i].types);
    }
    free(a); free(b);
    int *order = malloc((size_t)n * sizeof *order);
    for (int i = 0; i < n; i++) order[i] = i;
    sort_base = sq;
    qsort(order, (size_t)n, sizeof *order, by_len);
    float *score = calloc((size_t)n, sizeof *score);
    ce_ctx ctx = {&head, &p, score, md.hidden_size};
    rc = run_batches(&m, &p, sq, order, n, 32, 1, ce_batch, &ctx);
    if (rc) printf("  %s\n", ag_errmsg());
    check_true("cross-encoder forward over every pair", rc == 0);
    check_close("cross-encoder scores vs CrossEncoder.predict (sigmoid)", score, ref, (size_t)n, 1e-4, 1e-5);
    snprintf(path, sizeof path, "%s/argent_ce.f32", out);
    check_true("write argent_ce.f32", write_f32(path, score, (size_t)n) == 0);
    for (int i = 0; i < n; i++) { free(sq[i].ids); free(sq[i].types); }
    free(sq); free(order); free(score);
    ag_tokenizer_free(tk);
    ag_bert_free(&m);
    ag_params_free(&p);
    ag_model_desc_free(&md);
    free_lines(&L);
    agfx_free(&fx);
}

int main(int argc, char **argv) {
    if (argc < 2) check_skip("usage: minilm_parity OUT (run by tests/parity/minilm_parity.py)");
    bi_encoder(argv[1]);
    cross_encoder(argv[1]);
    return check_finish();
}
