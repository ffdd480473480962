/* Helpers of the CUDA tests; see gpu_check.h. */
#include "tests/support/gpu_check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "nn/cuda/cuda.h"
#include "nn/error.h"
#include "nn/rng.h"
#include "tests/support/check.h"

void gpu_test_start(uint64_t *seed) {
    char why[512];
    if (!ag_cuda_available(why, sizeof why)) {
        char msg[600];
        snprintf(msg, sizeof msg, "no CUDA device (%s)", why);
        check_skip(msg);
    }
    if (ag_cuda_init(-1)) {
        /* A device exists but this build cannot run on it: a failure, not a skip. */
        printf("FAIL cuda init: %s\n", ag_errmsg());
        exit(1);
    }
    printf("device: %s\n", why);
    if (!seed) return;
    const char *s = getenv("ARGENT_TEST_SEED");
    *seed = s ? strtoull(s, NULL, 10) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
    printf("seed %llu (ARGENT_TEST_SEED=%llu repeats this run)\n", (unsigned long long)*seed,
           (unsigned long long)*seed);
}

double gpu_max_abs(const float *x, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(x[i]));
    return m;
}

double gpu_max_rel(const float *got, const float *want, size_t n, double min_scale) {
    double md = 0, mw = min_scale;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (isnan(d)) return NAN;  /* at once: a later larger d must not hide it */
        if (d > md) md = d;
        if (fabs(want[i]) > mw) mw = fabs(want[i]);
    }
    return md / mw;
}

gpu_grad_cmp gpu_compare_grads(const ag_params *got, const ag_params *want, double tol) {
    gpu_grad_cmp c = {.bad = 0, .worst = 0, .worst_name = "", .gmax = gpu_max_abs(want->grad, want->total)};
    double min_scale = fmax(1e-3 * c.gmax, 1e-30);
    for (int i = 0; i < want->n; i++) {
        double r = gpu_max_rel(ag_params_grad(got, i), ag_params_grad(want, i), want->t[i].numel, min_scale);
        if (!(r <= tol)) {
            c.bad++;
            printf("     grad %s: rel %.3g\n", want->t[i].name, r);
        }
        if (!isnan(c.worst) && !(r <= c.worst)) { c.worst = r; c.worst_name = want->t[i].name; }  /* NaN stays */
    }
    return c;
}

int gpu_bert_twins(ag_bert *mc, ag_params *pc, ag_bert *mg, ag_params *layout, const ag_bert_config *cfg,
                   const char *prefix, int with_pooler) {
    ag_params_init(pc);
    ag_params_init(layout);
    if (ag_bert_register(mc, cfg, pc, prefix, with_pooler) || ag_params_alloc(pc) ||
        ag_bert_register(mg, cfg, layout, prefix, with_pooler) || ag_params_alloc(layout))
        return -1;
    return 0;
}

ag_bert_config gpu_small_bert(void) {
    ag_bert_config cfg = {.vocab_size = 97, .hidden_size = 64, .num_hidden_layers = 2,
                          .num_attention_heads = 4, .intermediate_size = 128,
                          .max_position_embeddings = 40, .type_vocab_size = 2,
                          .layer_norm_eps = 1e-12f, .hidden_dropout_prob = 0.1f,
                          .attention_probs_dropout_prob = 0.1f, .pad_token_id = 0};
    return cfg;
}

void gpu_padded_batch(int B, int T, int32_t *ids, int32_t *types, int32_t *mask) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            size_t i = (size_t)b * T + t;
            int real = t < T - 3 * b;
            ids[i] = real ? 1 + (int32_t)(ag_rng_u32(4, 13, i, 0, 0) % 96u) : 0;
            types[i] = real && t > 4;
            mask[i] = real;
        }
}
