/* GPU benchmark: one encoder training step, forward + backward, through nn/bert.c on the
 * CUDA table, for a MiniLM-L6-shaped BERT (6 layers, hidden 384, 12 heads, FFN 1536) and a
 * BERT-base-shaped one (12, 768, 12, 3072), vocabulary 30522, at batch 32 and sequence 128
 * (full-length rows), dropout on, in fp32 (TF32 off), TF32, and bf16 / fp16 GEMM mode
 * (nn/cuda/amp.h: 16-bit GEMM operands, fp32 accumulation and activations). A step is: zero the gradient
 * buffer, forward (uploading the batch), backward from a fixed upstream gradient of the
 * last hidden state; no pooling, loss or optimiser (bench_torch_step.py times the same
 * step in PyTorch). Each step ends with a device sync; mean and best over the timed steps.
 * Prints one JSON object per line; exit 77 (with the reason) when no GPU is usable.
 * usage: bench_cuda_step [--steps N] [--warmup N] [--batch B] [--seq T] [--model minilm|base|all]
 *                        [--precision fp32|tf32|bf16|fp16|both|all|comma list] (default both) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cuda_runtime_api.h>

#include "nn/bert.h"
#include "nn/cuda/amp.h"
#include "nn/cuda/cuda.h"
#include "nn/error.h"
#include "nn/rng.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Matmul FLOPs of forward + backward (backward = 2x forward), as bench_train_step.c. */
static double step_flops(const ag_bert_config *c, int B, int T) {
    double C = c->hidden_size, I = c->intermediate_size, N = (double)B * T;
    double per_layer = 2 * N * (4 * C * C + 2 * C * I) + 2 * 2 * (double)B * T * T * C;
    return 3.0 * c->num_hidden_layers * per_layer;
}

/* Precision modes: fp32 (checking), tf32 (fp32 GEMMs on TF32 tensor cores), bf16 / fp16
 * (GEMM operands cast to 16 bits, fp32 accumulation; nn/cuda/amp.h). */
static const char *MODES[] = {"fp32", "tf32", "bf16", "fp16"};

static int bench(const char *label, ag_bert_config cfg, int B, int T, int warmup, int steps,
                 const int *modes, int nmodes) {
    const ag_ops *ops = &ag_ops_cuda;
    ag_bert m;
    ag_params host, dev;
    ag_params_init(&host);
    if (ag_bert_register(&m, &cfg, &host, "", 0) || ag_params_alloc(&host)) return -1;
    ag_bert_init_weights(&m, &host, 1);
    if (ag_cuda_params_mirror(&dev, &host)) return -1;
    m.ops = ops;
    size_t N = (size_t)B * T, C = (size_t)cfg.hidden_size;
    int32_t *ids = malloc(N * sizeof *ids), *mask = malloc(N * sizeof *mask);
    float *g = malloc(N * C * sizeof *g);
    float *d_g = ops->alloc(N * C * sizeof *d_g);
    if (!ids || !mask || !g || !d_g) return ag_err("bench: out of memory for the batch");
    for (size_t i = 0; i < N; i++) {
        int t = (int)(i % (size_t)T);
        ids[i] = t == 0 ? 101 : t == T - 1 ? 102 : 1000 + (int)(ag_rng_u32(7, 9, i, 0, 0) % 28000);
        mask[i] = 1;
    }
    for (size_t i = 0; i < N * C; i++) g[i] = ag_rng_uniform(3, 9, i, 1, 0) - 0.5f;
    ops->upload(d_g, g, N * C * sizeof *g);
    ag_bert_batch in = {B, T, ids, NULL, mask, NULL};
    int rc = 0;
    for (int mi = 0; mi < nmodes && !rc; mi++) {
        const char *mode = MODES[modes[mi]];
        ag_precision prec = AG_PREC_FP32;
        ag_cuda_set_tf32(!strcmp(mode, "tf32"));
        if (!strcmp(mode, "bf16") || !strcmp(mode, "fp16")) ag_precision_parse(mode, &prec);
        ag_cuda_set_precision(prec);
        double total = 0, best = 1e30;
        size_t free_b = 0, total_b = 0;
        for (int s = 0; s < warmup + steps; s++) {
            double t0 = now();
            ops->zero(dev.grad, dev.total);
            if (ag_bert_forward(&m, &dev, &in, 1, (uint64_t)s + 1, 0) ||
                ag_bert_backward(&m, &dev, d_g, NULL) || ag_cuda_check()) {
                rc = -1;
                break;
            }
            double t = now() - t0;
            if (s == 0) cudaMemGetInfo(&free_b, &total_b);  /* everything allocated by now */
            if (s >= warmup) {
                total += t;
                if (t < best) best = t;
            }
        }
        if (rc) break;
        double mean = total / steps;
        printf("{\"impl\": \"argent\", \"model\": \"%s\", \"precision\": \"%s\", \"batch\": %d, "
               "\"seq\": %d, \"steps\": %d, \"step_ms\": %.3f, \"best_ms\": %.3f, \"tokens_per_s\": %.0f, "
               "\"tflops\": %.2f, \"device_mem_used_mb\": %.0f}\n",
               label, mode, B, T, steps, mean * 1e3, best * 1e3, (double)N / mean,
               step_flops(&cfg, B, T) / mean / 1e12, (double)(total_b - free_b) / 1048576.0);
        fflush(stdout);
    }
    ag_cuda_set_tf32(0);
    ag_cuda_set_precision(AG_PREC_FP32);
    ops->free(d_g);
    free(ids); free(mask); free(g);
    ag_bert_free(&m);
    ag_cuda_params_free(&dev);
    ag_params_free(&host);
    return rc;
}

static int g_modes[8], g_nmodes;

/* "both" = fp32,tf32 (the fp32 benchmark's old meaning); "all" = fp32,tf32,bf16; else a
 * comma list of mode names. 1 when valid. */
static int parse_modes(const char *s) {
    if (!strcmp(s, "both")) s = "fp32,tf32";
    else if (!strcmp(s, "all")) s = "fp32,tf32,bf16";
    g_nmodes = 0;
    while (*s) {
        size_t len = strcspn(s, ",");
        int found = -1;
        for (int m = 0; m < 4; m++)
            if (strlen(MODES[m]) == len && !strncmp(s, MODES[m], len)) found = m;
        if (found < 0 || g_nmodes == 8) return 0;
        g_modes[g_nmodes++] = found;
        s += len;
        if (*s == ',') s++;
    }
    return g_nmodes > 0;
}

int main(int argc, char **argv) {
    int steps = 10, warmup = 3, B = 32, T = 128;
    const char *model = "all", *prec = "both";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--steps")) steps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--warmup")) warmup = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--batch")) B = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seq")) T = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--model")) model = argv[i + 1];
        else if (!strcmp(argv[i], "--precision")) prec = argv[i + 1];
        else { fprintf(stderr, "bench_cuda_step: unknown option %s\n", argv[i]); return 2; }
    }
    if (steps < 1 || warmup < 1 || B < 1 || T < 2 || T > 512 ||
        !parse_modes(prec) ||
        (strcmp(model, "all") && strcmp(model, "minilm") && strcmp(model, "base"))) {
        fprintf(stderr, "bench_cuda_step: need steps >= 1, warmup >= 1, batch >= 1, 2 <= seq <= 512, "
                        "--model minilm|base|all, --precision fp32|tf32|bf16|fp16|both|all or a comma list\n");
        return 2;
    }
    char why[512];
    if (!ag_cuda_available(why, sizeof why)) {
        printf("SKIPPED: no CUDA device (%s)\n", why);
        return 77;
    }
    if (ag_cuda_init(-1)) { fprintf(stderr, "bench_cuda_step: %s\n", ag_errmsg()); return 1; }
    fprintf(stderr, "bench_cuda_step: %s\n", why);
    ag_bert_config base;
    ag_bert_config_base(&base);
    ag_bert_config mini = base;
    mini.hidden_size = 384;
    mini.num_hidden_layers = 6;
    mini.intermediate_size = 1536;
    int all = !strcmp(model, "all");
    if ((all || !strcmp(model, "minilm")) && bench("minilm-l6", mini, B, T, warmup, steps, g_modes, g_nmodes)) goto fail;
    if ((all || !strcmp(model, "base")) && bench("bert-base", base, B, T, warmup, steps, g_modes, g_nmodes)) goto fail;
    ag_cuda_shutdown();
    return 0;
fail:
    fprintf(stderr, "bench_cuda_step: %s\n", ag_errmsg());
    return 1;
}
