/* BERT encoder parity with Hugging Face (fixture bert_tiny.agfx from gen_bert.py): forward
 * (last hidden state, pooler) within 1e-5 relative and every parameter gradient within
 * 1e-4 relative, under both name prefixes ("" bi-encoder, "bert." cross-encoder). Also:
 * outputs independent of batch composition and padding (eval and training dropout),
 * training-mode gradients by directional finite differences, HF-style init, and the error
 * messages for bad batches. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/bert.h"
#include "nn/error.h"
#include "nn/rng.h"
#include "tests/support/check.h"
#include "tests/support/fixture.h"

static agfx fx;
static ag_bert_config cfg;
static int B, T, C;
static const int32_t *ids, *types, *mask;
static const float *R1, *R2;

static int is_weight_name(const char *n) {
    return strncmp(n, "cfg.", 4) && strncmp(n, "grad.", 5) && strcmp(n, "ids") &&
           strcmp(n, "types") && strcmp(n, "mask") && strcmp(n, "last_hidden") &&
           strcmp(n, "pooler") && strcmp(n, "R1") && strcmp(n, "R2");
}

/* Register under `prefix`, allocate, copy every fixture weight in by Hugging Face name. */
static void build(ag_bert *m, ag_params *p, const char *prefix) {
    ag_params_init(p);
    if (ag_bert_register(m, &cfg, p, prefix, 1) || ag_params_alloc(p)) {
        fprintf(stderr, "FAIL register/alloc: %s\n", ag_errmsg());
        exit(1);
    }
    size_t pl = strlen(prefix);
    int names_ok = 1;
    for (int i = 0; i < p->n; i++) {
        names_ok &= strncmp(p->t[i].name, prefix, pl) == 0;
        size_t n;
        const float *w = agfx_f32(&fx, p->t[i].name + pl, &n);  /* exits if absent */
        if (n != p->t[i].numel) {
            fprintf(stderr, "FAIL %s: fixture has %zu values, model %zu\n", p->t[i].name, n, p->t[i].numel);
            exit(1);
        }
        memcpy(ag_params_data(p, i), w, n * sizeof *w);
    }
    int nw = 0;
    for (int i = 0; i < fx.n; i++) nw += is_weight_name(fx.t[i].name);
    char what[128];
    snprintf(what, sizeof what, "prefix '%s': every HF parameter registered, by name (%d)", prefix, nw);
    check_true(what, names_ok && nw == p->n);
}

static float *host_copy(const ag_bert *m, const float *dev, size_t n) {
    float *h = malloc(n * sizeof *h);
    m->ops->download(h, dev, n * sizeof *h);
    return h;
}

static void test_parity(const char *prefix) {
    ag_bert m;
    ag_params p;
    build(&m, &p, prefix);
    ag_bert_batch in = {B, T, ids, types, mask, NULL};
    char what[256];
    if (ag_bert_forward(&m, &p, &in, 0, 1, 1)) { fprintf(stderr, "FAIL forward: %s\n", ag_errmsg()); exit(1); }
    float *h = host_copy(&m, ag_bert_hidden(&m), (size_t)B * T * C);
    float *pooled = host_copy(&m, ag_bert_pooled(&m), (size_t)B * C);
    snprintf(what, sizeof what, "prefix '%s': last_hidden_state (all positions)", prefix);
    check_rel(what, h, agfx_f32(&fx, "last_hidden", NULL), (size_t)B * T * C, 1e-5);
    snprintf(what, sizeof what, "prefix '%s': pooler_output", prefix);
    check_rel(what, pooled, agfx_f32(&fx, "pooler", NULL), (size_t)B * C, 1e-5);

    ag_params_zero_grad(&p);
    if (ag_bert_backward(&m, &p, R1, R2)) { fprintf(stderr, "FAIL backward: %s\n", ag_errmsg()); exit(1); }
    size_t pl = strlen(prefix);
    /* Each tensor within 1e-4 of its own largest gradient. The key biases are the exception
     * that needs a floor: softmax is invariant to them, so their true gradient is 0 and
     * both sides hold only rounding noise (~1e-7); they are held to 1e-4 of the largest
     * gradient of the model instead. */
    double gmax = 0;
    for (int i = 0; i < p.n; i++) {
        char gname[AG_NAME_MAX + 8];
        snprintf(gname, sizeof gname, "grad.%s", p.t[i].name + pl);
        const float *w = agfx_f32(&fx, gname, NULL);
        for (size_t j = 0; j < p.t[i].numel; j++) gmax = fmax(gmax, fabs(w[j]));
    }
    for (int i = 0; i < p.n; i++) {
        char gname[AG_NAME_MAX + 8];
        snprintf(gname, sizeof gname, "grad.%s", p.t[i].name + pl);
        snprintf(what, sizeof what, "prefix '%s': grad %s", prefix, p.t[i].name);
        const float *want = agfx_f32(&fx, gname, NULL);
        if (strstr(p.t[i].name, "self.key.bias"))
            check_close(what, ag_params_grad(&p, i), want, p.t[i].numel, 0, 1e-4 * gmax);
        else
            check_rel(what, ag_params_grad(&p, i), want, p.t[i].numel, 1e-4);
    }
    printf("prefix '%s': %d parameter gradients compared (largest |grad| %.3g)\n", prefix, p.n, gmax);

    /* A second backward accumulates: gradients double. */
    float *g1 = malloc(p.total * sizeof *g1);
    memcpy(g1, p.grad, p.total * sizeof *g1);
    ag_bert_backward(&m, &p, R1, R2);
    for (size_t i = 0; i < p.total; i++) g1[i] *= 2.0f;
    snprintf(what, sizeof what, "prefix '%s': backward accumulates into p->grad", prefix);
    check_rel(what, p.grad, g1, p.total, 1e-5);
    free(g1); free(h); free(pooled);
    ag_bert_free(&m);
    ag_params_free(&p);
}

/* Rows of the fixture batch placed in another batch: order perm, padded to T2 >= T. */
typedef struct { int B, T; int32_t *ids, *types, *mask; int64_t *samp; } batch;
static batch rebatch(const int *perm, int B2, int T2, const int64_t *samp_of_row) {
    batch r = {B2, T2, calloc((size_t)B2 * T2, 4), calloc((size_t)B2 * T2, 4),
               calloc((size_t)B2 * T2, 4), calloc((size_t)B2, 8)};
    for (int b = 0; b < B2; b++) {
        int s = perm[b];
        for (int t = 0; t < T; t++) {
            r.ids[b * T2 + t] = ids[s * T + t];
            r.types[b * T2 + t] = types[s * T + t];
            r.mask[b * T2 + t] = mask[s * T + t];
        }
        r.samp[b] = samp_of_row[s];
    }
    return r;
}
static void batch_free(batch *r) { free(r->ids); free(r->types); free(r->mask); free(r->samp); }

/* Compare real positions of fixture row s (in `ref`, shape [B,T,C]) with row b of `got`. */
static int rows_match(const float *ref, const float *got, int s, int b, int T2, double tol) {
    int ok = 1;
    for (int t = 0; t < T; t++) {
        if (!mask[s * T + t]) continue;
        for (int c = 0; c < C; c++) {
            float a = ref[((size_t)s * T + t) * C + c], g = got[((size_t)b * T2 + t) * C + c];
            ok &= fabsf(a - g) <= tol * (1.0 + fabsf(a));
        }
    }
    return ok;
}

static void test_batch_independence(void) {
    ag_bert m;
    ag_params p;
    build(&m, &p, "");
    int64_t samp[3] = {100, 101, 102};
    const int perm[5] = {2, 0, 1, 0, 2};
    const int T2 = T + 3;
    for (int training = 0; training <= 1; training++) {
        ag_bert_batch in = {B, T, ids, types, mask, samp};
        ag_bert_forward(&m, &p, &in, training, 7, 1);
        float *ref = host_copy(&m, ag_bert_hidden(&m), (size_t)B * T * C);
        float *refp = host_copy(&m, ag_bert_pooled(&m), (size_t)B * C);
        batch r = rebatch(perm, 5, T2, samp);
        ag_bert_batch in2 = {r.B, r.T, r.ids, r.types, r.mask, r.samp};
        if (ag_bert_forward(&m, &p, &in2, training, 7, 1)) { fprintf(stderr, "FAIL: %s\n", ag_errmsg()); exit(1); }
        float *got = host_copy(&m, ag_bert_hidden(&m), (size_t)r.B * T2 * C);
        float *gotp = host_copy(&m, ag_bert_pooled(&m), (size_t)r.B * C);
        int ok = 1;
        for (int b = 0; b < r.B; b++) {
            ok &= rows_match(ref, got, perm[b], b, T2, 1e-5);
            for (int c = 0; c < C; c++)
                ok &= fabsf(refp[perm[b] * C + c] - gotp[b * C + c]) <= 1e-5f * (1.0f + fabsf(refp[perm[b] * C + c]));
        }
        check_true(training ? "training (dropout): rows independent of batch order, duplicates and padding"
                            : "eval: rows independent of batch order, duplicates and padding", ok);
        if (training) {
            /* Dropout really is on, and another seed changes it. */
            in.sample_idx = samp;
            ag_bert_forward(&m, &p, &in, 0, 7, 1);
            float *ev = host_copy(&m, ag_bert_hidden(&m), (size_t)B * T * C);
            ag_bert_forward(&m, &p, &in, 1, 8, 1);
            float *s8 = host_copy(&m, ag_bert_hidden(&m), (size_t)B * T * C);
            double d_ev = 0, d_seed = 0;
            for (size_t i = 0; i < (size_t)B * T * C; i++) {
                d_ev = fmax(d_ev, fabs(ev[i] - ref[i]));
                d_seed = fmax(d_seed, fabs(s8[i] - ref[i]));
            }
            check_true("training output differs from eval output", d_ev > 1e-2);
            check_true("training output depends on the seed", d_seed > 1e-2);
            free(ev); free(s8);
        }
        batch_free(&r);
        free(ref); free(refp); free(got); free(gotp);
    }
    ag_bert_free(&m);
    ag_params_free(&p);
}

/* Training mode (dropout 0.1 everywhere): directional finite differences per tensor. */
static double train_loss(ag_bert *m, ag_params *p, const ag_bert_batch *in) {
    ag_bert_forward(m, p, in, 1, 3, 1);
    const float *h = ag_bert_hidden(m), *po = ag_bert_pooled(m);
    double L = 0;
    for (size_t i = 0; i < (size_t)B * T * C; i++) L += (double)h[i] * R1[i];
    for (size_t i = 0; i < (size_t)B * C; i++) L += (double)po[i] * R2[i];
    return L;
}

static void test_training_gradients(void) {
    ag_bert m;
    ag_params p;
    build(&m, &p, "");
    ag_bert_batch in = {B, T, ids, types, mask, NULL};
    train_loss(&m, &p, &in);
    ag_params_zero_grad(&p);
    ag_bert_backward(&m, &p, R1, R2);
    int bad = 0;
    double worst = 0;
    const char *worst_name = "";
    for (int i = 0; i < p.n; i++) {
        size_t n = p.t[i].numel;
        float *w = ag_params_data(&p, i), *g = ag_params_grad(&p, i);
        float *w0 = malloc(n * sizeof *w0), *dir = malloc(n * sizeof *dir);
        memcpy(w0, w, n * sizeof *w0);
        double gd = 0, gn = 0;
        for (size_t j = 0; j < n; j++) {
            dir[j] = ag_rng_normal(5, 9, (uint64_t)i, 0, j);
            /* The [PAD] word row gets no gradient by design (padding_idx); leave it fixed. */
            if (i == m.emb.wte && j / (size_t)C == (size_t)cfg.pad_token_id) dir[j] = 0.0f;
            gd += (double)g[j] * dir[j];
            gn += fabs((double)g[j] * dir[j]);
        }
        /* Central differences at h and h/2, Richardson-combined to cancel the h^2 term:
         * a step large enough to rise above fp32 noise stays accurate. */
        double dh[2];
        for (int r = 0; r < 2; r++) {
            float h = r ? 2e-3f : 4e-3f;
            for (size_t j = 0; j < n; j++) w[j] = w0[j] + h * dir[j];
            double lp = train_loss(&m, &p, &in);
            for (size_t j = 0; j < n; j++) w[j] = w0[j] - h * dir[j];
            double lm = train_loss(&m, &p, &in);
            dh[r] = (lp - lm) / (2.0 * h);
        }
        memcpy(w, w0, n * sizeof *w0);
        double num = (4.0 * dh[1] - dh[0]) / 3.0;
        /* fp32 rounding of L (|L| ~ 1e2, summed in double from fp32 outputs) over 2*eps
         * leaves ~2e-3 absolute noise in `num`: the floor 0.5 keeps that (and the
         * key biases, whose true gradient is 0) from reading as an error. */
        double err = fabs(num - gd) / (fabs(gd) + 0.01 * gn + 0.5);
        if (err > worst) { worst = err; worst_name = p.t[i].name; }
        if (err > 1e-2) {
            bad++;
            printf("  training FD %s: analytic %.6g numeric %.6g\n", p.t[i].name, gd, num);
        }
        free(w0); free(dir);
    }
    printf("training-mode directional FD: worst relative error %.2e (%s)\n", worst, worst_name);
    check_true("training-mode (dropout) gradients match directional finite differences", bad == 0);
    ag_bert_free(&m);
    ag_params_free(&p);
}

static void expect_error(const char *what, int rc) {
    char w[256];
    snprintf(w, sizeof w, "error reported: %s -> \"%s\"", what, rc ? ag_errmsg() : "(none)");
    check_true(w, rc != 0 && strlen(ag_errmsg()) > 0);
    ag_err_clear();
}

static void test_errors_and_init(void) {
    ag_bert m;
    ag_params p;
    build(&m, &p, "");
    int32_t bid[3] = {1, 2, 64}, bty[3] = {0, 2, 0}, bm[3] = {1, 2, 1}, ok3[3] = {1, 1, 1};
    ag_bert_batch in = {1, 3, bid, NULL, NULL, NULL};
    expect_error("token id 64 with vocab 64", ag_bert_forward(&m, &p, &in, 0, 0, 0));
    bid[2] = 5;
    in.types = bty;
    expect_error("token type 2 with type_vocab 2", ag_bert_forward(&m, &p, &in, 0, 0, 0));
    in.types = NULL;
    in.mask = bm;
    expect_error("mask value 2", ag_bert_forward(&m, &p, &in, 0, 0, 0));
    in.mask = ok3;
    int32_t *longids = calloc(41, 4);
    ag_bert_batch lin = {1, 41, longids, NULL, NULL, NULL};
    expect_error("41 tokens with 40 positions", ag_bert_forward(&m, &p, &lin, 0, 0, 0));
    free(longids);
    expect_error("backward of pooler not computed",
                 (ag_bert_forward(&m, &p, &in, 0, 0, 0), ag_bert_backward(&m, &p, NULL, R2)));
    ag_bert_free(&m);
    ag_params_free(&p);

    ag_bert m2;
    ag_params p2;
    ag_params_init(&p2);
    ag_bert_register(&m2, &cfg, &p2, "", 0);
    check_true("no pooler registered without the flag", ag_params_find(&p2, "pooler.dense.weight") < 0);
    ag_params_alloc(&p2);
    expect_error("pooler output asked without pooler", ag_bert_forward(&m2, &p2, &in, 0, 0, 1));
    ag_bert_init_weights(&m2, &p2, 42);
    const float *wte = ag_params_data(&p2, m2.emb.wte);
    int pad0 = 1;
    for (int c = 0; c < C; c++) pad0 &= wte[c] == 0.0f;
    double s2 = 0;
    size_t n = p2.t[m2.layer[0].ffn.i_w].numel;
    const float *wi = ag_params_data(&p2, m2.layer[0].ffn.i_w);
    for (size_t i = 0; i < n; i++) s2 += (double)wi[i] * wi[i];
    double sd = sqrt(s2 / n);
    printf("init: intermediate.dense.weight std %.5f (want 0.02)\n", sd);
    check_true("init: [PAD] word embedding row is zero", pad0);
    check_true("init: Linear weight std ~ 0.02", fabs(sd - 0.02) < 0.002);
    check_true("init: LayerNorm weight 1, bias 0",
               ag_params_data(&p2, m2.layer[1].attn.ln_w)[3] == 1.0f &&
               ag_params_data(&p2, m2.layer[1].attn.ln_b)[3] == 0.0f &&
               ag_params_data(&p2, m2.layer[1].ffn.o_b)[0] == 0.0f);
    ag_bert_config bad = cfg;
    bad.num_attention_heads = 5;
    ag_bert m3;
    ag_params p3;
    ag_params_init(&p3);
    expect_error("5 heads not dividing hidden 32", ag_bert_register(&m3, &bad, &p3, "", 0));
    ag_params_free(&p3);
    ag_bert_free(&m2);
    ag_params_free(&p2);
}

int main(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/bert_tiny.agfx", ARGENT_FIXTURES);
    if (agfx_load(&fx, path)) return 1;
    cfg.vocab_size = (int)agfx_scalar(&fx, "cfg.vocab_size");
    cfg.hidden_size = (int)agfx_scalar(&fx, "cfg.hidden_size");
    cfg.num_hidden_layers = (int)agfx_scalar(&fx, "cfg.num_hidden_layers");
    cfg.num_attention_heads = (int)agfx_scalar(&fx, "cfg.num_attention_heads");
    cfg.intermediate_size = (int)agfx_scalar(&fx, "cfg.intermediate_size");
    cfg.max_position_embeddings = (int)agfx_scalar(&fx, "cfg.max_position_embeddings");
    cfg.type_vocab_size = (int)agfx_scalar(&fx, "cfg.type_vocab_size");
    cfg.layer_norm_eps = (float)agfx_scalar(&fx, "cfg.layer_norm_eps");
    cfg.pad_token_id = (int)agfx_scalar(&fx, "cfg.pad_token_id");
    cfg.hidden_dropout_prob = 0.1f;
    cfg.attention_probs_dropout_prob = 0.1f;
    const agfx_tensor *ti = agfx_find(&fx, "ids");
    B = (int)ti->dims[0];
    T = (int)ti->dims[1];
    C = cfg.hidden_size;
    ids = agfx_i32(&fx, "ids", NULL);
    types = agfx_i32(&fx, "types", NULL);
    mask = agfx_i32(&fx, "mask", NULL);
    R1 = agfx_f32(&fx, "R1", NULL);
    R2 = agfx_f32(&fx, "R2", NULL);

    test_parity("");
    test_parity("bert.");
    test_batch_independence();
    test_training_gradients();
    test_errors_and_init();
    agfx_free(&fx);
    return check_finish();
}
