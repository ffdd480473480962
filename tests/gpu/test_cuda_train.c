/* Training on the GPU end to end, against the same training on the CPU (argent_nn +
 * argent_cuda only: no MPI, HDF5 or data files, so it runs in the stand-alone GPU build).
 *
 * 1. Bi-encoder: a tiny BERT (random init, hidden 64, 2 layers, 4 heads, dropout on)
 *    trained 20 steps on padded batches of random token ids (6 pairs), a different T every
 *    step (5..12) and rows of different lengths. Each step: encode 2B rows (B pairs, the two sides in one
 *    batch), mean pooling and the CoSENT loss on the host (the last hidden state moves with
 *    ops->download_act, its gradient back with ops->upload_act), backward, clipping to norm
 *    1, AdamW with a linear warm-up schedule. Once with ag_ops_cpu and nn/optim.c, once
 *    with ag_ops_cuda and the device optimiser (nn/cuda/optim.h). Checked: every step's
 *    loss (within 1e-4 relative) and gradient norm, and every parameter tensor at the end
 *    within 1e-4 of its max |value| (floor: 1e-3 of the largest parameter).
 *    The attention key biases are reported but not compared: their true gradient is 0
 *    (a bias on every key shifts a softmax row by a constant), so what they receive is
 *    rounding noise, which Adam's normalisation turns into steps of size lr with either
 *    sign; they do not change any output, which the loss comparison covers.
 * 2. Cross-encoder labelling: a tiny BERT with pooler ("bert." names) + the nn/head.c
 *    classification head (3 labels) scoring sentence pairs in eval mode on both backends:
 *    pooler output and logits within 1e-5 relative, argmax labels identical (except for a
 *    pair whose two best logits are closer than the score tolerance: a tie, reported).
 * With no usable GPU: "SKIPPED: no CUDA device (reason)", exit 77.
 * usage: test_cuda_train [--steps N] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/bert.h"
#include "nn/cuda/cuda.h"
#include "nn/cuda/optim.h"
#include "nn/error.h"
#include "nn/head.h"
#include "nn/losses.h"
#include "nn/ops.h"
#include "nn/optim.h"
#include "nn/pooling.h"
#include "nn/rng.h"
#include "tests/support/check.h"
#include "tests/support/gpu_check.h"

#define LOSS_TOL 1e-4
#define PARAM_TOL 1e-4
#define SCORE_TOL 1e-5

static uint64_t seed;

static void die(const char *what) {
    fprintf(stderr, "FATAL %s: %s\n", what, ag_errmsg());
    exit(1);
}

static void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size);
    if (!p) { fprintf(stderr, "FATAL out of host memory\n"); exit(1); }
    return p;
}

/* One backend's side of the run: model, parameter table, optimiser. */
typedef struct {
    const ag_ops *ops;
    ag_bert m;
    ag_params p;        /* host table (CPU side) or device mirror (CUDA side) */
    ag_adamw opt;
    float *d_dh;        /* backend buffer for the hidden-state gradient (CUDA side) */
    double loss[64], norm[64];
} side;

/* A batch of step s: 2B rows (pairs (b, B+b)), T tokens, random lengths and ids. */
typedef struct {
    int B2, T;
    int32_t *ids, *mask;
    int64_t *samp;
    float *y;           /* [B] CoSENT labels */
} batch;

static void make_batch(batch *bt, int s, int B, int V) {
    bt->B2 = 2 * B;
    bt->T = 5 + (s * 5) % 8;  /* 5 .. 12 */
    size_t N = (size_t)bt->B2 * bt->T;
    bt->ids = xcalloc(N, 4);
    bt->mask = xcalloc(N, 4);
    bt->samp = xcalloc((size_t)bt->B2, 8);
    bt->y = xcalloc((size_t)B, 4);
    for (int b = 0; b < bt->B2; b++) {
        int len = 2 + (int)(ag_rng_u32(seed, 21, (uint64_t)s, (uint32_t)b, 0) % (uint32_t)(bt->T - 1));
        if (b == 0) len = bt->T;  /* one full row */
        bt->samp[b] = (int64_t)s * bt->B2 + b;
        for (int t = 0; t < bt->T; t++) {
            size_t i = (size_t)b * bt->T + t;
            int real = t < len;
            bt->ids[i] = !real ? 0 : t == 0 ? 2 : 3 + (int32_t)(ag_rng_u32(seed, 22, (uint64_t)s, (uint32_t)i, 0) % (uint32_t)(V - 3));
            bt->mask[i] = real;
        }
    }
    for (int b = 0; b < B; b++) bt->y[b] = ag_rng_uniform(seed, 23, (uint64_t)s, (uint32_t)b, 0);
}

static void free_batch(batch *bt) {
    free(bt->ids); free(bt->mask); free(bt->samp); free(bt->y);
}

/* One training step on side x; returns 0 or dies. */
static void train_step(side *x, int is_cuda, const batch *bt, int s, const ag_schedule *sch,
                       double base_lr, int C) {
    int B2 = bt->B2, B = B2 / 2, T = bt->T;
    size_t N = (size_t)B2 * T;
    if (is_cuda) ag_cuda_params_zero_grad(&x->p);
    else ag_params_zero_grad(&x->p);
    ag_bert_batch in = {B2, T, bt->ids, NULL, bt->mask, bt->samp};
    if (ag_bert_forward(&x->m, &x->p, &in, 1, seed * 3 + 1, 0)) die("bert forward");
    float *h = xcalloc(N * C, 4), *dh = xcalloc(N * C, 4);
    float *pooled = xcalloc((size_t)B2 * C, 4), *dpooled = xcalloc((size_t)B2 * C, 4);
    x->ops->download_act(h, ag_bert_hidden(&x->m), N * C);
    if (ag_pool_forward(AG_POOL_MEAN, h, bt->mask, B2, T, C, pooled, NULL)) die("pool forward");
    double loss = 0;
    if (ag_loss_cosent(pooled, pooled + (size_t)B * C, bt->y, B, C, AG_COSENT_SCALE, 1.0f, &loss, dpooled,
                       dpooled + (size_t)B * C))
        die("cosent");
    if (ag_pool_backward(AG_POOL_MEAN, dpooled, bt->mask, NULL, B2, T, C, dh)) die("pool backward");
    const float *dh_b = dh;
    if (is_cuda) {
        x->ops->upload_act(x->d_dh, dh, N * C);
        dh_b = x->d_dh;
    }
    if (ag_bert_backward(&x->m, &x->p, dh_b, NULL)) die("bert backward");
    double lr = base_lr * ag_schedule_factor(sch, x->opt.step);
    if (is_cuda) {
        x->norm[s] = ag_cuda_clip_grad_norm(&x->p, 1.0);
        if (!isfinite(x->norm[s])) die("cuda clip_grad_norm");
        if (ag_cuda_adamw_step(&x->opt, &x->p, lr)) die("cuda adamw step");
        if (ag_cuda_check()) die("cuda step");
    } else {
        x->norm[s] = ag_clip_grad_norm(&x->p, 1.0);
        if (ag_adamw_step(&x->opt, &x->p, lr)) die("adamw step");
    }
    x->loss[s] = loss;
    free(h); free(dh); free(pooled); free(dpooled);
}

static void test_biencoder(int steps) {
    char what[512];
    ag_bert_config cfg = {.vocab_size = 211, .hidden_size = 64, .num_hidden_layers = 2,
                          .num_attention_heads = 4, .intermediate_size = 128,
                          .max_position_embeddings = 32, .type_vocab_size = 2,
                          .layer_norm_eps = 1e-12f, .hidden_dropout_prob = 0.1f,
                          .attention_probs_dropout_prob = 0.1f, .pad_token_id = 0};
    const int B = 6, C = cfg.hidden_size, maxT = 12;
    side cpu, gpu;
    memset(&cpu, 0, sizeof cpu);
    memset(&gpu, 0, sizeof gpu);
    ag_params layout;   /* the device table's layout on the host, to download into */
    if (gpu_bert_twins(&cpu.m, &cpu.p, &gpu.m, &layout, &cfg, "", 0)) die("bert register");
    ag_bert_init_weights(&cpu.m, &cpu.p, seed);
    if (ag_cuda_params_mirror(&gpu.p, &cpu.p)) die("params mirror");
    cpu.ops = &ag_ops_cpu;
    gpu.ops = gpu.m.ops = &ag_ops_cuda;
    gpu.d_dh = ag_ops_cuda.alloc((size_t)2 * B * maxT * C * sizeof(float));
    if (!gpu.d_dh) die("device alloc");
    if (ag_adamw_init(&cpu.opt, &cpu.p, 0.01) || ag_cuda_adamw_init(&gpu.opt, &gpu.p, 0.01)) die("adamw init");
    ag_schedule sch = {AG_SCHED_LINEAR, 3, steps};
    const double base_lr = 5e-4;

    for (int s = 0; s < steps; s++) {
        batch bt;
        make_batch(&bt, s, B, cfg.vocab_size);
        train_step(&cpu, 0, &bt, s, &sch, base_lr, C);
        train_step(&gpu, 1, &bt, s, &sch, base_lr, C);
        free_batch(&bt);
    }
    /* losses and norms, step by step */
    double worst_loss = 0, worst_norm = 0;
    int loss_ok = 1;
    for (int s = 0; s < steps; s++) {
        double a = gpu.loss[s], w = cpu.loss[s];
        double rl = fabs(a - w) / fmax(1.0, fabs(w));
        if (!(rl <= LOSS_TOL)) loss_ok = 0;
        if (rl > worst_loss || isnan(rl)) worst_loss = rl;
        double rn = fabs(gpu.norm[s] - cpu.norm[s]) / fmax(cpu.norm[s], 1e-30);
        if (rn > worst_norm || isnan(rn)) worst_norm = rn;
        printf("     step %2d: loss cpu %.9f cuda %.9f   grad norm cpu %.6g cuda %.6g\n", s, w, a,
               cpu.norm[s], gpu.norm[s]);
    }
    snprintf(what, sizeof what, "bi-encoder: %d per-step CoSENT losses within %.0e (worst %.3g; grad norms worst %.3g)",
             steps, LOSS_TOL, worst_loss, worst_norm);
    check_true(what, loss_ok);
    check_true("bi-encoder: the loss moved (training did something)",
               fabs(cpu.loss[steps - 1] - cpu.loss[0]) > 1e-3 && cpu.norm[steps - 1] > 0);

    /* final parameters */
    if (ag_cuda_params_download(&layout, &gpu.p, 1, 0)) die("download params");
    double table_max = gpu_max_abs(cpu.p.data, cpu.p.total);
    int bad = 0, compared = 0;
    double worst = 0, worst_key = 0;
    const char *worst_name = "";
    for (int i = 0; i < cpu.p.n; i++) {
        double r = gpu_max_rel(ag_params_data(&layout, i), ag_params_data(&cpu.p, i), cpu.p.t[i].numel,
                               1e-3 * table_max);
        int nan = isnan(r);
        if (strstr(cpu.p.t[i].name, "attention.self.key.bias")) {
            worst_key = fmax(worst_key, r);
            continue;
        }
        compared++;
        if (nan || r > PARAM_TOL) {
            bad++;
            printf("     param %s: rel %.3g%s\n", cpu.p.t[i].name, r, nan ? " (NaN)" : "");
        }
        if (r > worst) { worst = r; worst_name = cpu.p.t[i].name; }
    }
    snprintf(what, sizeof what, "bi-encoder: after %d steps %d parameter tensors within %.0e (worst %.3g, %s; "
             "key biases, not compared: %.3g)", steps, compared, PARAM_TOL, worst, worst_name, worst_key);
    check_true(what, bad == 0 && compared > 0);
    /* the parameters did move */
    ag_params init;
    ag_params_init(&init);
    ag_bert init_m;
    if (ag_bert_register(&init_m, &cfg, &init, "", 0) || ag_params_alloc(&init)) die("bert register");
    ag_bert_init_weights(&init_m, &init, seed);
    double moved = 0;
    for (size_t j = 0; j < cpu.p.total; j++) moved = fmax(moved, fabs(cpu.p.data[j] - init.data[j]));
    snprintf(what, sizeof what, "bi-encoder: parameters moved from the init (max |change| %.3g)", moved);
    check_true(what, moved > 1e-3);
    ag_bert_free(&init_m);
    ag_params_free(&init);

    ag_ops_cuda.free(gpu.d_dh);
    ag_adamw_free(&cpu.opt);
    ag_cuda_adamw_free(&gpu.opt);
    ag_bert_free(&cpu.m);
    ag_bert_free(&gpu.m);
    ag_params_free(&cpu.p);
    ag_params_free(&layout);
    ag_cuda_params_free(&gpu.p);
}

static void test_cross_encoder(void) {
    char what[256];
    ag_bert_config cfg = {.vocab_size = 211, .hidden_size = 64, .num_hidden_layers = 2,
                          .num_attention_heads = 4, .intermediate_size = 128,
                          .max_position_embeddings = 40, .type_vocab_size = 2,
                          .layer_norm_eps = 1e-12f, .hidden_dropout_prob = 0.1f,
                          .attention_probs_dropout_prob = 0.1f, .pad_token_id = 0};
    const int B = 12, T = 24, C = cfg.hidden_size, L = 3;
    ag_bert mc, mg;
    ag_params pc, layout, pd, hp;
    ag_params_init(&hp);
    if (gpu_bert_twins(&mc, &pc, &mg, &layout, &cfg, "bert.", 1)) die("bert register");
    ag_bert_init_weights(&mc, &pc, seed + 5);
    /* Weights of std 0.1 instead of HF's 0.02: at 0.02 a random encoder's pooled vectors
     * are nearly the same for every input, and the scores' input-dependent part is small
     * next to their rounding (a poor test of labels). */
    for (int i = 0; i < pc.n; i++)
        if (pc.t[i].decay) {
            float *x = ag_params_data(&pc, i);
            for (size_t j = 0; j < pc.t[i].numel; j++) x[j] *= 5.0f;
        }
    if (ag_cuda_params_mirror(&pd, &pc)) die("params mirror");
    mg.ops = &ag_ops_cuda;
    /* The head lives in its own host table: it runs on the host on downloaded pooled rows. */
    ag_xhead xh;
    if (ag_xhead_register(&xh, &hp, C, L, 0.1f) || ag_params_alloc(&hp) || ag_xhead_init(&xh, &hp, seed + 6))
        die("head");
    /* N(0, 0.02) weights give logits within ~0.05 of each other: spread them, so argmax
     * compares classes that differ in more than rounding. */
    float *hw = ag_params_data(&hp, xh.w);
    for (size_t j = 0; j < hp.t[xh.w].numel; j++) hw[j] *= 50.0f;
    /* pairs: [CLS] a [SEP] b [SEP], types 0 then 1, padded */
    size_t N = (size_t)B * T;
    int32_t *ids = xcalloc(N, 4), *types = xcalloc(N, 4), *mask = xcalloc(N, 4);
    for (int b = 0; b < B; b++) {
        int la = 2 + (int)(ag_rng_u32(seed, 25, (uint64_t)b, 0, 0) % 8);
        int lb = 2 + (int)(ag_rng_u32(seed, 25, (uint64_t)b, 1, 0) % 10);
        int len = 1 + la + 1 + lb + 1;
        for (int t = 0; t < len; t++) {
            size_t i = (size_t)b * T + t;
            int sep = t == la + 1 || t == len - 1;
            ids[i] = t == 0 ? 2 : sep ? 3 : 4 + (int32_t)(ag_rng_u32(seed, 26, (uint64_t)i, 0, 0) % (uint32_t)(cfg.vocab_size - 4));
            types[i] = t > la + 1;
            mask[i] = 1;
        }
    }
    ag_bert_batch in = {B, T, ids, types, mask, NULL};
    if (ag_bert_forward(&mc, &pc, &in, 0, 0, 1) || ag_bert_forward(&mg, &pd, &in, 0, 0, 1)) die("bert forward");
    float *pooled_c = xcalloc((size_t)B * C, 4), *pooled_g = xcalloc((size_t)B * C, 4);
    memcpy(pooled_c, ag_bert_pooled(&mc), (size_t)B * C * 4);
    ag_ops_cuda.download_act(pooled_g, ag_bert_pooled(&mg), (size_t)B * C);
    snprintf(what, sizeof what, "cross-encoder: pooler output [%d,%d] within %.0e", B, C, SCORE_TOL);
    check_rel(what, pooled_g, pooled_c, (size_t)B * C, SCORE_TOL);
    float *lc = xcalloc((size_t)B * L, 4), *lg = xcalloc((size_t)B * L, 4);
    /* Random pooled rows share most of their direction, so one class would win every pair:
     * set the bias to centre each class's logit over this batch (CPU side), so the labels
     * spread and argmax compares close classes too. */
    if (ag_xhead_forward(&xh, &hp, pooled_c, B, NULL, 0, 0, NULL, lc)) die("head forward");
    float *hb = ag_params_data(&hp, xh.b);
    for (int l = 0; l < L; l++) {
        double m = 0;
        for (int b = 0; b < B; b++) m += lc[b * L + l];
        hb[l] = (float)(-m / B);
    }
    if (ag_xhead_forward(&xh, &hp, pooled_c, B, NULL, 0, 0, NULL, lc) ||
        ag_xhead_forward(&xh, &hp, pooled_g, B, NULL, 0, 0, NULL, lg))
        die("head forward");
    snprintf(what, sizeof what, "cross-encoder: %d pairs x %d label scores within %.0e", B, L, SCORE_TOL);
    check_rel(what, lg, lc, (size_t)B * L, SCORE_TOL);
    /* Labels must agree wherever the CPU's winner leads by more than the score tolerance
     * allows the two sides to differ (2 x 1e-5 of the largest logit); a closer call is a tie
     * within tolerance, reported and counted, not compared. */
    double lmax = 0;
    for (int i = 0; i < B * L; i++) lmax = fmax(lmax, fabs(lc[i]));
    int same = 1, spread = 0, ties = 0;
    double margin = INFINITY;
    for (int b = 0; b < B; b++) {
        int ac = 0, ag = 0;
        for (int l = 1; l < L; l++) {
            if (lc[b * L + l] > lc[b * L + ac]) ac = l;
            if (lg[b * L + l] > lg[b * L + ag]) ag = l;
        }
        double mb = INFINITY;
        for (int l = 0; l < L; l++)
            if (l != ac) mb = fmin(mb, lc[b * L + ac] - lc[b * L + l]);
        margin = fmin(margin, mb);
        spread |= 1 << ac;
        if (mb <= 2 * SCORE_TOL * lmax) ties++;
        else same &= ac == ag;
    }
    snprintf(what, sizeof what, "cross-encoder: argmax labels identical (%d of %d pairs; smallest margin %.3g; "
             "labels used: %s%s%s)", B - ties, B, margin, spread & 1 ? "0" : "", spread & 2 ? "1" : "",
             spread & 4 ? "2" : "");
    check_true(what, same && ties < B / 2);
    free(ids); free(types); free(mask); free(pooled_c); free(pooled_g); free(lc); free(lg);
    ag_bert_free(&mc);
    ag_bert_free(&mg);
    ag_params_free(&pc);
    ag_params_free(&layout);
    ag_params_free(&hp);
    ag_cuda_params_free(&pd);
    if (ag_cuda_check()) die("cuda at the end of the cross-encoder check");
}

int main(int argc, char **argv) {
    int steps = 20;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--steps") == 0 && i + 1 < argc) steps = atoi(argv[++i]);
        else { fprintf(stderr, "usage: test_cuda_train [--steps N]\n"); return 2; }
    }
    if (steps < 2 || steps > 64) { fprintf(stderr, "test_cuda_train: --steps %d: expected 2..64\n", steps); return 2; }
    gpu_test_start(&seed);
    test_biencoder(steps);
    test_cross_encoder();
    check_true("ag_cuda_check at the end: no recorded error", ag_cuda_check() == 0);
    ag_cuda_shutdown();
    return check_finish();
}
