/* The cross-encoder glue (jobs/crossenc.h) on the tiny inputs of make_tiny_cross:
 *   - loading: a trained cross-encoder; a bi-encoder refused by ag_cross_load with a message
 *     naming its kind; ag_cross_from_pretrained copies the encoder under "bert.", keeps a
 *     cross-encoder's own head when the label count matches and makes a new one otherwise;
 *   - pair batches: "[CLS] a [SEP] b [SEP]" with token types 0/1, truncation to max_len;
 *   - forward + backward (dropout on, keyed per pair) against central finite differences
 *     of the loss, on tensors across the model (classifier, pooler, attention, embeddings);
 *   - length-sorted prediction: same logits as one unsorted batch, in the input order;
 *   - data checks: another vocab, a pair index out of range.
 * Usage: test_crossenc DIR (the make_tiny_cross output). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/checkpoint.h"
#include "jobs/crossenc.h"
#include "nn/error.h"
#include "tests/support/check.h"

static char dir[1024];
static const char *path(const char *name) {
    static char p[4][1200];
    static int k;
    char *s = p[k++ % 4];
    snprintf(s, 1200, "%s/%s", dir, name);
    return s;
}

static double loss_of(ag_cross *x, const ag_dataset *ds, const int64_t *pairs, const int64_t *keys, int n,
                      const int32_t *yi, float *logits) {
    if (ag_cross_forward(x, ds, pairs, n, keys, 1, 5, logits)) {
        printf("forward: %s\n", ag_errmsg());
        return NAN;
    }
    double l = 0;
    ag_xhead_loss(&x->head, logits, NULL, yi, n, 1.0f, &l, NULL);
    return l;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_crossenc DIR\n");
        return 2;
    }
    snprintf(dir, sizeof dir, "%s", argv[1]);
    ag_cross x;
    ag_dataset ds;
    ag_dataset_init(&ds);
    if (!check_true("read dev.h5", ag_dataset_read(path("dev.h5"), &ds) == 0)) return check_finish();

    /* ---- loading ---- */
    check_true("bi-encoder refused by ag_cross_load",
               ag_cross_load(&x, path("bi.h5"), NULL, 0) == -1 && strstr(ag_errmsg(), "bi-encoder") &&
                   strstr(ag_errmsg(), "bi.h5"));
    check_true("missing checkpoint", ag_cross_load(&x, path("nope.h5"), NULL, 0) == -1 &&
                                          strstr(ag_errmsg(), "nope.h5"));
    int fresh = -1;
    ag_cross pre;
    if (!check_true("from pretrained bi-encoder", ag_cross_from_pretrained(&pre, path("bi.h5"), 3, NULL, 1, &fresh) == 0))
        printf("%s\n", ag_errmsg());
    check_true("new head", fresh == 1 && ag_cross_labels(&pre) == 3 && !strcmp(pre.md.id2label[2], "LABEL_2"));
    {
        ag_model_desc md;
        ag_bert m;
        ag_params p;
        ag_model_desc_init(&md);
        ag_ckpt_load_model(path("bi.h5"), &md, &m, NULL, &p, NULL);
        int same = 1, nt = 0;
        for (int i = 0; i < p.n; i++) {
            char name[AG_NAME_MAX + 8];
            snprintf(name, sizeof name, "bert.%s", p.t[i].name);
            int j = ag_params_find(&pre.p, name);
            same &= j >= 0 && !memcmp(ag_params_data(&p, i), ag_params_data(&pre.p, j), p.t[i].numel * sizeof(float));
            nt++;
        }
        check_true("encoder tensors copied under bert.", same && nt > 10);
        check_true("fresh pooler registered", ag_params_find(&pre.p, "bert.pooler.dense.weight") >= 0);
        ag_bert_free(&m);
        ag_params_free(&p);
        ag_model_desc_free(&md);
    }
    ag_cross_free(&pre);
    check_true("cross-encoder keeps its head",
               ag_cross_from_pretrained(&pre, path("cross.h5"), 2, NULL, 1, &fresh) == 0 && fresh == 0 &&
                   !strcmp(pre.md.id2label[1], "same"));
    ag_cross_free(&pre);
    check_true("cross-encoder with another label count: new head",
               ag_cross_from_pretrained(&pre, path("cross.h5"), 1, NULL, 1, &fresh) == 0 && fresh == 1);
    ag_cross_free(&pre);

    if (!check_true("load cross.h5", ag_cross_load(&x, path("cross.h5"), NULL, 0) == 0)) {
        printf("%s\n", ag_errmsg());
        return check_finish();
    }
    check_true("data check passes", ag_cross_check_data(&x, &ds, "dev.h5") == 0);

    /* ---- batch layout ---- */
    int64_t pr[4] = {0, 1, 2, 3};
    float lg[8];
    if (check_true("eval forward", ag_cross_forward(&x, &ds, pr, 4, NULL, 0, 0, lg) == 0)) {
        int na, nb, ok = 1, Tmax = 0;
        for (int r = 0; r < 4; r++) {
            const int32_t *a = ag_dataset_tokens(&ds, ds.a[r], &na), *b = ag_dataset_tokens(&ds, ds.b[r], &nb);
            const int32_t *id = x.ids + r * x.T, *ty = x.types + r * x.T, *mk = x.mask + r * x.T;
            int len = na + nb + 3;
            if (len > Tmax) Tmax = len;
            ok &= id[0] == ag_tok_cls(x.tk) && id[na + 1] == ag_tok_sep(x.tk) && id[len - 1] == ag_tok_sep(x.tk);
            ok &= !memcmp(id + 1, a, (size_t)na * 4) && !memcmp(id + na + 2, b, (size_t)nb * 4);
            for (int t = 0; t < x.T; t++) {
                ok &= mk[t] == (t < len);
                ok &= ty[t] == (t < len && t >= na + 2);
            }
        }
        check_true("[CLS] a [SEP] b [SEP], types, mask, padding to the longest", ok && x.T == Tmax);
    }
    check_true("max length 5 truncates", ag_cross_set_max_len(&x, 5) == 0 &&
                                              ag_cross_forward(&x, &ds, pr, 4, NULL, 0, 0, lg) == 0 && x.T == 5);
    check_true("max length 2 refused", ag_cross_set_max_len(&x, 2) == -1);
    ag_cross_set_max_len(&x, 32);

    /* ---- gradients: dropout on, central differences on the mean cross-entropy ---- */
    int64_t keys[4] = {11, 12, 13, 14};
    int32_t yi[4] = {0, 1, 1, 0};
    float logits[8], dlog[8];
    memset(dlog, 0, sizeof dlog);
    double l0 = loss_of(&x, &ds, pr, keys, 4, yi, logits);
    ag_params_zero_grad(&x.p);
    ag_xhead_loss(&x.head, logits, NULL, yi, 4, 1.0f, &l0, dlog);
    check_true("backward", ag_cross_backward(&x, dlog, 1, 5) == 0);
    const char *names[] = {"classifier.weight", "classifier.bias", "bert.pooler.dense.weight",
                           "bert.encoder.layer.1.output.dense.weight", "bert.encoder.layer.0.attention.self.query.weight",
                           "bert.encoder.layer.0.attention.output.LayerNorm.weight",
                           "bert.embeddings.token_type_embeddings.weight", "bert.embeddings.word_embeddings.weight"};
    for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
        int i = ag_params_find(&x.p, names[k]);
        if (!check_true(names[k], i >= 0)) continue;
        float *w = ag_params_data(&x.p, i), *g = ag_params_grad(&x.p, i);
        /* The elements with the largest gradients (the ones a difference can resolve). */
        size_t n = x.p.t[i].numel, best[3] = {0, 0, 0};
        for (size_t e = 0; e < n; e++)
            if (fabsf(g[e]) > fabsf(g[best[2]])) {
                best[2] = e;
                for (int q = 2; q > 0 && fabsf(g[best[q]]) > fabsf(g[best[q - 1]]); q--) {
                    size_t t = best[q];
                    best[q] = best[q - 1];
                    best[q - 1] = t;
                }
            }
        float num[3], ana[3];
        for (int q = 0; q < 3; q++) {
            size_t e = best[q];
            float keep = w[e], h = 1e-2f * fmaxf(1.0f, fabsf(keep));
            w[e] = keep + h;
            double lp = loss_of(&x, &ds, pr, keys, 4, yi, logits);
            w[e] = keep - h;
            double lm = loss_of(&x, &ds, pr, keys, 4, yi, logits);
            w[e] = keep;
            num[q] = (float)((lp - lm) / (2.0 * h));
            ana[q] = g[e];
        }
        char what[200];
        snprintf(what, sizeof what, "d loss / d %s (3 largest) vs central differences", names[k]);
        check_close(what, ana, num, 3, 3e-2, 2e-4);
    }

    /* ---- prediction: sorted batches give the input order ---- */
    int64_t many[40];
    for (int i = 0; i < 40; i++) many[i] = (i * 7) % (int)ds.n_pairs;
    float *one = malloc(40 * 2 * sizeof *one), *sorted = malloc(40 * 2 * sizeof *sorted);
    check_true("one batch", ag_cross_forward(&x, &ds, many, 40, NULL, 0, 0, one) == 0);
    check_true("predict in batches of 6", ag_cross_predict(&x, &ds, many, 40, 6, sorted) == 0);
    check_close("length-sorted prediction == one batch, input order", sorted, one, 80, 1e-5, 1e-6);
    many[3] = ds.n_pairs;
    check_true("pair index out of range", ag_cross_predict(&x, &ds, many, 40, 6, sorted) == -1 &&
                                                  strstr(ag_errmsg(), "outside"));
    free(one);
    free(sorted);

    /* ---- data checks ---- */
    snprintf(ds.vocab_sha256, sizeof ds.vocab_sha256, "%064d", 0);
    check_true("another vocab refused", ag_cross_check_data(&x, &ds, "dev.h5") == -1 &&
                                            strstr(ag_errmsg(), "another vocab"));
    ag_dataset_free(&ds);
    ag_dataset_init(&ds);
    check_true("sentences-only dataset refused",
               ag_dataset_read(path("sentences.h5"), &ds) == 0 && ag_cross_check_data(&x, &ds, "sentences.h5") == -1 &&
                   strstr(ag_errmsg(), "no pairs"));
    ag_dataset_free(&ds);
    ag_cross_free(&x);
    return check_finish();
}
