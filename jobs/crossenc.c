/* Cross-encoder glue shared by train-cross, label and eval: loading (trained checkpoint, or a
 * pretrained encoder plus a new head), pair batches from a dataset, forward / backward and
 * length-sorted prediction; see crossenc.h. */
#include "jobs/crossenc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/checkpoint.h"
#include "io/readers.h"
#include "nn/error.h"

/* ---- loading -------------------------------------------------------------------------- */

int ag_cross_resolve(const char *path, char *out, size_t cap) {
    struct stat st;
    if (!path || !*path) return ag_err("no model given");
    if (stat(path, &st)) return ag_err("%s: no such checkpoint file or run directory", path);
    if (!S_ISDIR(st.st_mode)) {
        if ((size_t)snprintf(out, cap, "%s", path) >= cap) return ag_err("%s: path too long", path);
        return 0;
    }
    if ((size_t)snprintf(out, cap, "%s/model.h5", path) >= cap) return ag_err("%s: path too long", path);
    if (!stat(out, &st)) return 0;
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/checkpoints", path);
    int k = ag_ckpt_latest(dir, out, cap);
    if (k < 0) return -1;
    if (k == 0) return ag_err("%s: a directory without model.h5 or checkpoints/ckpt-*.h5", path);
    return 0;
}

/* The tokenizer of a model description: its vocab bytes through a private temporary file
 * (the tokenizer reads files only). */
static int load_tokenizer(ag_cross *x) {
    if (!x->md.vocab || !x->md.vocab_len) return ag_err("the model carries no vocab");
    ag_sha256_hex(x->md.vocab, x->md.vocab_len, x->vocab_sha256);
    const char *tmpdir = getenv("TMPDIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/argent-vocab-XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0) return ag_err("%s: cannot create a temporary vocab file", path);
    FILE *f = fdopen(fd, "wb");
    int bad = !f || fwrite(x->md.vocab, 1, x->md.vocab_len, f) != x->md.vocab_len;
    if (f) bad |= fclose(f) != 0;
    else close(fd);
    if (!bad) x->tk = ag_tokenizer_load(path, x->md.do_lower_case);
    unlink(path);
    if (bad) return ag_err("%s: cannot write the temporary vocab file", path);
    if (!x->tk) return ag_err_ctx("the model's vocab");
    if (ag_tokenizer_vocab_size(x->tk) > x->md.vocab_size)
        return ag_err("the model's vocab has %d pieces but its embeddings only %d rows",
                      ag_tokenizer_vocab_size(x->tk), x->md.vocab_size);
    return 0;
}

static void cross_zero(ag_cross *x) {
    memset(x, 0, sizeof *x);
    ag_model_desc_init(&x->md);
    ag_params_init(&x->p);
}

void ag_cross_free(ag_cross *x) {
    ag_bert_free(&x->m);
    ag_params_free(&x->p);
    ag_model_desc_free(&x->md);
    ag_tokenizer_free(x->tk);
    free(x->ids);
    free(x->types);
    free(x->mask);
    free(x->keys);
    free(x->pooled);
    free(x->xdrop);
    free(x->dpooled);
    memset(x, 0, sizeof *x);
}

int ag_cross_set_max_len(ag_cross *x, int max_len) {
    if (max_len < 3 || max_len > x->md.max_position_embeddings)
        return ag_err("max length %d: a pair needs 3..%d tokens (the model's max_position_embeddings)", max_len,
                      x->md.max_position_embeddings);
    x->max_len = max_len;
    x->md.max_seq_length = max_len;
    return 0;
}

static int finish_load(ag_cross *x) {
    if (load_tokenizer(x)) return -1;
    int ml = x->md.max_seq_length;
    if (ml < 3 || ml > x->md.max_position_embeddings) ml = x->md.max_position_embeddings < 512 ? x->md.max_position_embeddings : 512;
    return ag_cross_set_max_len(x, ml);
}

int ag_cross_load(ag_cross *x, const char *path, char *resolved, size_t cap) {
    cross_zero(x);
    char file[4200];
    if (ag_cross_resolve(path, file, sizeof file)) return -1;
    if (resolved && cap) snprintf(resolved, cap, "%s", file);
    /* Check the kind before building anything, so that a bi-encoder is named as such. */
    ag_model_desc info;
    ag_model_desc_init(&info);
    if (ag_ckpt_read_info(file, &info, NULL, NULL)) {
        ag_model_desc_free(&info);
        return -1;
    }
    ag_model_kind kind = info.kind;
    ag_model_desc_free(&info);
    if (kind != AG_MODEL_CROSS_ENCODER)
        return ag_err("%s: is a %s checkpoint; this needs a cross-encoder (made by argent train-cross, or "
                      "argent import of a *ForSequenceClassification model)", file, ag_model_kind_name(kind));
    if (ag_ckpt_load_model(file, &x->md, &x->m, &x->head, &x->p, NULL)) {
        ag_model_desc_free(&x->md);
        return -1;
    }
    if (finish_load(x)) {
        ag_err_ctx("%s", file);
        ag_cross_free(x);
        return -1;
    }
    return 0;
}

/* Copy every tensor of src into dst under prefix + name (shapes checked); tensors of src
 * named in skip_prefix (the old classifier) are left out. */
static int copy_tensors(const ag_params *src, const char *src_prefix, ag_params *dst, const char *dst_prefix,
                        const char *what) {
    size_t sl = strlen(src_prefix);
    for (int i = 0; i < src->n; i++) {
        const ag_tensor_info *t = &src->t[i];
        if (!strncmp(t->name, "classifier.", 11)) continue;
        if (strncmp(t->name, src_prefix, sl)) return ag_err("%s: tensor %s lacks the prefix '%s'", what, t->name, src_prefix);
        char name[AG_NAME_MAX + 16];
        snprintf(name, sizeof name, "%s%s", dst_prefix, t->name + sl);
        int j = ag_params_find(dst, name);
        if (j < 0) return ag_err("%s: tensor %s has no place in a cross-encoder (%s)", what, t->name, name);
        if (dst->t[j].numel != t->numel || dst->t[j].ndim != t->ndim)
            return ag_err("%s: tensor %s has %zu elements, the cross-encoder's %s %zu", what, t->name, t->numel, name,
                          dst->t[j].numel);
        memcpy(ag_params_data(dst, j), ag_params_data(src, i), t->numel * sizeof(float));
    }
    return 0;
}

int ag_cross_from_pretrained(ag_cross *x, const char *path, int num_labels, const char *const *label_names,
                             uint64_t seed, int *fresh_head) {
    cross_zero(x);
    if (num_labels < 1 || num_labels > AG_MAX_LABELS)
        return ag_err("number of labels %d outside 1..%d", num_labels, AG_MAX_LABELS);
    ag_model_desc smd;
    ag_bert sm;
    ag_xhead sh;
    ag_params sp;
    ag_model_desc_init(&smd);
    memset(&sh, 0, sizeof sh);
    struct stat st;
    char file[4200], cfg[4300];
    snprintf(cfg, sizeof cfg, "%s/config.json", path ? path : "");
    int rc;
    if (path && !stat(path, &st) && S_ISDIR(st.st_mode) && !stat(cfg, &st)) {
        /* A Hugging Face folder. */
        char *notes = NULL;
        snprintf(file, sizeof file, "%s", path);
        rc = ag_hf_import(path, &smd, &sm, &sh, &sp, &notes);
        free(notes);
    } else {
        rc = ag_cross_resolve(path, file, sizeof file);
        if (!rc) rc = ag_ckpt_load_model(file, &smd, &sm, &sh, &sp, NULL);
    }
    if (rc) {
        ag_model_desc_free(&smd);
        return -1;
    }
    ag_bert_free(&sm);   /* only its tensors are needed */
    int keep_head = smd.kind == AG_MODEL_CROSS_ENCODER && smd.num_labels == num_labels;
    if (ag_model_desc_copy(&x->md, &smd)) {
        rc = ag_err("out of memory");
        goto out;
    }
    x->md.kind = AG_MODEL_CROSS_ENCODER;
    x->md.has_pooler = 1;
    x->md.num_labels = num_labels;
    if (!keep_head) {
        snprintf(x->md.architecture, sizeof x->md.architecture, "BertForSequenceClassification");
        for (int i = 0; i < num_labels; i++) {
            if (label_names && label_names[i]) snprintf(x->md.id2label[i], AG_LABEL_MAX, "%s", label_names[i]);
            else snprintf(x->md.id2label[i], AG_LABEL_MAX, "LABEL_%d", i);
        }
    }
    if (ag_model_register(&x->md, &x->m, &x->p, &x->head) || ag_params_alloc(&x->p)) {
        rc = ag_err_ctx("%s: building the cross-encoder", file);
        goto out;
    }
    /* Hugging Face initialisation first (what stays new keeps it), then the source's tensors. */
    ag_bert_init_weights(&x->m, &x->p, seed);
    if (!keep_head && ag_xhead_init(&x->head, &x->p, seed)) {
        rc = -1;
        goto out;
    }
    const char *src_prefix = smd.kind == AG_MODEL_CROSS_ENCODER ? "bert." : "";
    if ((rc = copy_tensors(&sp, src_prefix, &x->p, "bert.", file))) goto out;
    if (keep_head) {
        int w = ag_params_find(&sp, "classifier.weight"), b = ag_params_find(&sp, "classifier.bias");
        if (w < 0 || b < 0) {
            rc = ag_err("%s: a cross-encoder without classifier tensors", file);
            goto out;
        }
        memcpy(ag_params_data(&x->p, x->head.w), ag_params_data(&sp, w), sp.t[w].numel * sizeof(float));
        memcpy(ag_params_data(&x->p, x->head.b), ag_params_data(&sp, b), sp.t[b].numel * sizeof(float));
    }
    if (fresh_head) *fresh_head = !keep_head;
    rc = finish_load(x);
    if (rc) ag_err_ctx("%s", file);
out:
    ag_params_free(&sp);
    ag_model_desc_free(&smd);
    if (rc) ag_cross_free(x);
    return rc ? -1 : 0;
}

/* ---- data ---------------------------------------------------------------------------- */

int ag_cross_check_data(const ag_cross *x, const ag_dataset *ds, const char *path) {
    if (ds->n_pairs < 1) return ag_err("%s: holds no pairs (a dataset of sentences only?); a cross-encoder needs pairs", path);
    if (!ds->tok_off || ds->n_tokenized < ds->n_sentences)
        return ag_err("%s: its sentences are not tokenised", path);
    if (!ds->vocab_sha256[0] || strcmp(ds->vocab_sha256, x->vocab_sha256))
        return ag_err("%s: tokenised with another vocab (sha256 %.12s...) than the model's (%.12s...); run argent "
                      "prepare with the model's vocab.txt", path, ds->vocab_sha256[0] ? ds->vocab_sha256 : "none",
                      x->vocab_sha256);
    int64_t ntok = ds->tok_off[ds->n_sentences];
    for (int64_t i = 0; i < ntok; i++)
        if (ds->tok[i] < 0 || ds->tok[i] >= x->md.vocab_size)
            return ag_err("%s: token %lld has id %d, outside the model's vocab of %d", path, (long long)i,
                          (int)ds->tok[i], x->md.vocab_size);
    for (int64_t i = 0; i < ds->n_pairs; i++)
        if (ds->a[i] < 0 || ds->a[i] >= ds->n_sentences || ds->b[i] < 0 || ds->b[i] >= ds->n_sentences)
            return ag_err("%s: pair %lld refers to sentence %d / %d of %lld", path, (long long)i, (int)ds->a[i],
                          (int)ds->b[i], (long long)ds->n_sentences);
    return 0;
}

int ag_cross_pair_len(const ag_cross *x, const ag_dataset *ds, int64_t pair) {
    int na = 0, nb = 0;
    ag_dataset_tokens(ds, ds->a[pair], &na);
    ag_dataset_tokens(ds, ds->b[pair], &nb);
    int64_t len = (int64_t)na + nb + 3;
    return len < x->max_len ? (int)len : x->max_len;
}

static int reserve(ag_cross *x, int B) {
    size_t C = (size_t)x->md.hidden_size, tok = (size_t)B * (size_t)x->max_len;
    if (tok > x->cap_tok) {
        int32_t *a = realloc(x->ids, tok * sizeof *a), *b = a ? realloc(x->types, tok * sizeof *b) : NULL;
        if (a) x->ids = a;
        if (b) x->types = b;
        int32_t *c = b ? realloc(x->mask, tok * sizeof *c) : NULL;
        if (c) x->mask = c;
        if (!c) return ag_err("out of memory for a batch of %d pairs", B);
        x->cap_tok = tok;
    }
    if ((size_t)B > x->cap_b) {
        int64_t *k = realloc(x->keys, (size_t)B * sizeof *k);
        if (k) x->keys = k;
        float *p = k ? realloc(x->pooled, (size_t)B * C * sizeof *p) : NULL;
        if (p) x->pooled = p;
        float *d = p ? realloc(x->xdrop, (size_t)B * C * sizeof *d) : NULL;
        if (d) x->xdrop = d;
        float *g = d ? realloc(x->dpooled, (size_t)B * C * sizeof *g) : NULL;
        if (g) x->dpooled = g;
        if (!g) return ag_err("out of memory for a batch of %d pairs", B);
        x->cap_b = (size_t)B;
    }
    return 0;
}

/* Pairs -> [B,T] ids / types / mask, T = the longest built pair. Rows are first built with
 * stride max_len, then packed to stride T in place (moving rows forward only). */
static int build_batch(ag_cross *x, const ag_dataset *ds, const int64_t *pairs, int n) {
    if (n < 1) return ag_err("empty batch");
    if (reserve(x, n)) return -1;
    int L = x->max_len, T = 0;
    int32_t pad = ag_tok_pad(x->tk);
    if (pad < 0) pad = 0;
    int *len = malloc((size_t)n * sizeof *len);
    if (!len) return ag_err("out of memory");
    for (int r = 0; r < n; r++) {
        int64_t q = pairs[r];
        if (q < 0 || q >= ds->n_pairs) {
            free(len);
            return ag_err("pair index %lld outside the dataset's %lld pairs", (long long)q, (long long)ds->n_pairs);
        }
        int na = 0, nb = 0;
        const int32_t *a = ag_dataset_tokens(ds, ds->a[q], &na), *b = ag_dataset_tokens(ds, ds->b[q], &nb);
        int k = ag_tok_build_pair(x->tk, a, na, b, nb, L, x->ids + (size_t)r * L, x->types + (size_t)r * L);
        if (k < 0) {
            free(len);
            return ag_err_ctx("pair %lld", (long long)q);
        }
        len[r] = k;
        if (k > T) T = k;
    }
    for (int r = 0; r < n; r++) {
        int32_t *id = x->ids + (size_t)r * T, *ty = x->types + (size_t)r * T, *mk = x->mask + (size_t)r * T;
        memmove(id, x->ids + (size_t)r * L, (size_t)len[r] * sizeof *id);
        memmove(ty, x->types + (size_t)r * L, (size_t)len[r] * sizeof *ty);
        for (int t = 0; t < T; t++) {
            mk[t] = t < len[r];
            if (t >= len[r]) {
                id[t] = pad;
                ty[t] = 0;
            }
        }
    }
    free(len);
    x->B = n;
    x->T = T;
    return 0;
}

/* ---- compute ----------------------------------------------------------------------------- */

int ag_cross_forward(ag_cross *x, const ag_dataset *ds, const int64_t *pairs, int n, const int64_t *keys,
                     int training, uint64_t seed, float *logits) {
    if (training && !keys) return ag_err("ag_cross_forward: training needs per-pair dropout keys");
    if (build_batch(x, ds, pairs, n)) return -1;
    if (keys) memcpy(x->keys, keys, (size_t)n * sizeof *keys);
    ag_bert_batch in = {n, x->T, x->ids, x->types, x->mask, keys ? x->keys : NULL};
    if (ag_bert_forward(&x->m, x->run_p ? x->run_p : &x->p, &in, training, seed, 1)) return -1;
    size_t C = (size_t)x->md.hidden_size;
    /* The pooler output lives on the backend; the head works on host memory (fp32). */
    x->m.ops->download_act(x->pooled, ag_bert_pooled(&x->m), (size_t)n * C);
    return ag_xhead_forward(&x->head, &x->p, x->pooled, n, keys ? x->keys : NULL, seed, training, x->xdrop, logits);
}

int ag_cross_backward(ag_cross *x, const float *dlogits, int training, uint64_t seed) {
    size_t C = (size_t)x->md.hidden_size;
    memset(x->dpooled, 0, (size_t)x->B * C * sizeof(float));
    if (ag_xhead_backward(&x->head, &x->p, x->xdrop, dlogits, x->B, training ? x->keys : NULL, seed, training,
                          x->dpooled))
        return -1;
    /* The classifier's gradient is final now: tell the hook (a training engine starts its
     * allreduce bucket), as the encoder's backward does for its own blocks. */
    if (x->m.grad_hook) {
        int lo = x->head.w < x->head.b ? x->head.w : x->head.b, hi = x->head.w < x->head.b ? x->head.b : x->head.w;
        if (x->m.grad_hook(x->m.grad_hook_ctx, lo, hi)) return -1;
    }
    const float *dp = x->dpooled;
    float *dev = NULL;
    if (x->m.ops != &ag_ops_cpu) {
        dev = x->m.ops->alloc((size_t)x->B * C * x->m.ops->act_bytes);
        if (!dev) return ag_err("out of backend memory for the pooler gradient");
        x->m.ops->upload_act(dev, x->dpooled, (size_t)x->B * C);
        if (x->grad_scale != 0 && x->grad_scale != 1) x->m.ops->scale(dev, x->grad_scale, (size_t)x->B * C);
        dp = dev;
    }
    int rc = ag_bert_backward(&x->m, x->run_p ? x->run_p : &x->p, NULL, dp);
    if (dev) x->m.ops->free(dev);
    return rc;
}

typedef struct { int len; int64_t pos; } len_pos;

static int by_len_desc(const void *a, const void *b) {
    const len_pos *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

int ag_cross_longest_first(const ag_cross *x, const ag_dataset *ds, const int64_t *pairs, int64_t n, int64_t *pos) {
    if (n < 1) return 0;
    len_pos *lp = malloc((size_t)n * sizeof *lp);
    if (!lp) return ag_err("out of memory for the length order of %lld pairs", (long long)n);
    for (int64_t i = 0; i < n; i++) {
        int64_t p = pairs ? pairs[i] : i;
        if (p < 0 || p >= ds->n_pairs) {
            free(lp);
            return ag_err("pair index %lld outside the dataset's %lld pairs", (long long)p, (long long)ds->n_pairs);
        }
        lp[i].len = ag_cross_pair_len(x, ds, p);
        lp[i].pos = i;
    }
    qsort(lp, (size_t)n, sizeof *lp, by_len_desc);
    for (int64_t i = 0; i < n; i++) pos[i] = lp[i].pos;
    free(lp);
    return 0;
}

int ag_cross_predict(ag_cross *x, const ag_dataset *ds, const int64_t *pairs, int64_t n, int batch_size,
                     float *logits) {
    if (n < 1) return 0;
    if (batch_size < 1) return ag_err("prediction batch size %d must be >= 1", batch_size);
    int L = ag_cross_labels(x);
    int64_t *order = malloc((size_t)n * sizeof *order);
    int64_t *bp = malloc((size_t)batch_size * sizeof *bp);
    float *bl = malloc((size_t)batch_size * (size_t)L * sizeof *bl);
    int rc = 0;
    if (!order || !bp || !bl) rc = ag_err("out of memory for predicting %lld pairs", (long long)n);
    if (!rc) rc = ag_cross_longest_first(x, ds, pairs, n, order);
    for (int64_t s = 0; !rc && s < n; s += batch_size) {
        int b = n - s < batch_size ? (int)(n - s) : batch_size;
        for (int i = 0; i < b; i++) bp[i] = pairs[order[s + i]];
        rc = ag_cross_forward(x, ds, bp, b, NULL, 0, 0, bl);
        for (int i = 0; !rc && i < b; i++)
            memcpy(logits + (size_t)order[s + i] * L, bl + (size_t)i * L, (size_t)L * sizeof *bl);
    }
    free(order);
    free(bp);
    free(bl);
    return rc;
}
