/* Benchmark: one training step of a MiniLM-L6-shaped bi-encoder (6 layers, hidden 384,
 * 12 heads, FFN 1536, vocab 30522) at batch 32 and sequence lengths 32, 64, 128:
 * forward of 32 sequences, mean pooling, CosineSimilarityLoss over 16 pairs, backward,
 * gradient clipping and AdamW. Also measures this machine's sgemm rate (OpenBLAS) on the
 * step's largest matrix shape, so the step's GFLOP/s can be read as a fraction of it.
 * Prints one JSON object per line (the driver bench_train_step.py makes the table).
 * usage: bench_train_step [reps] [seq...] */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "nn/bert.h"
#include "nn/blas_env.h"
#include "nn/error.h"
#include "nn/losses.h"
#include "nn/optim.h"
#include "nn/pooling.h"
#include "nn/rng.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static long peak_rss_kb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* Best-of sgemm rate for C[M,N] = A[M,K] . B[N,K]^T (the linear layers' shape). */
static double sgemm_gflops(int M, int N, int K, int reps) {
    float *A = malloc((size_t)M * K * 4), *B = malloc((size_t)N * K * 4), *C = malloc((size_t)M * N * 4);
    for (size_t i = 0; i < (size_t)M * K; i++) A[i] = (float)(i % 13) * 0.01f;
    for (size_t i = 0; i < (size_t)N * K; i++) B[i] = (float)(i % 7) * 0.01f;
    double best = 1e30;
    for (int r = 0; r < reps + 1; r++) {
        double t = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, A, K, B, K, 0.0f, C, N);
        t = now() - t;
        if (r > 0 && t < best) best = t;  /* first call warms up */
    }
    free(A); free(B); free(C);
    return 2.0 * M * N * K / best / 1e9;
}

/* Matmul FLOPs of forward + backward (backward = 2x forward) for B sequences of T tokens. */
static double step_flops(const ag_bert_config *c, int B, int T) {
    double Ct = c->hidden_size, Fi = c->intermediate_size, N = (double)B * T;
    double per_layer = 2 * N * (4 * Ct * Ct + 2 * Ct * Fi) + 2 * 2 * (double)B * T * T * Ct;
    return 3.0 * c->num_hidden_layers * per_layer;
}

int main(int argc, char **argv) {
    ag_blas_tune_reexec(argv);
    int reps = argc > 1 ? atoi(argv[1]) : 3;
    int seqs[8] = {32, 64, 128}, nseq = 3;
    if (argc > 2) { nseq = 0; for (int i = 2; i < argc && nseq < 8; i++) seqs[nseq++] = atoi(argv[i]); }
    const int B = 32;
    ag_bert_config cfg = {.vocab_size = 30522, .hidden_size = 384, .num_hidden_layers = 6,
                          .num_attention_heads = 12, .intermediate_size = 1536,
                          .max_position_embeddings = 512, .type_vocab_size = 2,
                          .layer_norm_eps = 1e-12f, .hidden_dropout_prob = 0.1f,
                          .attention_probs_dropout_prob = 0.1f};
    ag_bert m;
    ag_params p;
    ag_params_init(&p);
    if (ag_bert_register(&m, &cfg, &p, "", 0) || ag_params_alloc(&p)) { fprintf(stderr, "%s\n", ag_errmsg()); return 1; }
    ag_bert_init_weights(&m, &p, 1);
    ag_adamw opt;
    ag_adamw_init(&opt, &p, 0.01);

    int maxT = seqs[0];
    for (int i = 0; i < nseq; i++) if (seqs[i] > maxT) maxT = seqs[i];
    double peak = sgemm_gflops(B * maxT, cfg.intermediate_size, cfg.hidden_size, 5);
    printf("{\"kind\": \"sgemm\", \"core\": \"%s\", \"M\": %d, \"N\": %d, \"K\": %d, \"gflops\": %.2f}\n", ag_blas_corename(), B * maxT,
           cfg.intermediate_size, cfg.hidden_size, peak);
    fflush(stdout);

    for (int si = 0; si < nseq; si++) {
        int T = seqs[si], C = cfg.hidden_size;
        int32_t *ids = malloc((size_t)B * T * 4), *mask = malloc((size_t)B * T * 4);
        /* Full-length rows, like the PyTorch side, so both do identical work. */
        for (int i = 0; i < B * T; i++) {
            int t = i % T;
            ids[i] = t == 0 ? 101 : t == T - 1 ? 102 : 1000 + (int)(ag_rng_u32(7, 9, (uint64_t)i, 0, 0) % 28000);
            mask[i] = 1;
        }
        float *emb = malloc((size_t)B * C * 4), *demb = malloc((size_t)B * C * 4);
        float *dh = malloc((size_t)B * T * C * 4);
        float y[16];
        for (int i = 0; i < 16; i++) y[i] = (float)(i % 5) / 4.0f;
        ag_bert_batch in = {B, T, ids, NULL, mask, NULL};
        double best = 1e30, total = 0;
        for (int r = 0; r < reps + 1; r++) {
            double t0 = now();
            if (ag_bert_forward(&m, &p, &in, 1, 1, 0)) { fprintf(stderr, "%s\n", ag_errmsg()); return 1; }
            ag_pool_forward(AG_POOL_MEAN, ag_bert_hidden(&m), mask, B, T, C, emb, NULL);
            double loss;
            memset(demb, 0, (size_t)B * C * 4);
            ag_loss_cosine(emb, emb + 16 * C, y, 16, C, 1.0f, &loss, demb, demb + 16 * C);
            memset(dh, 0, (size_t)B * T * C * 4);
            ag_pool_backward(AG_POOL_MEAN, demb, mask, NULL, B, T, C, dh);
            ag_bert_backward(&m, &p, dh, NULL);
            ag_clip_grad_norm(&p, 1.0);
            ag_adamw_step(&opt, &p, 1e-5);
            ag_params_zero_grad(&p);
            double t = now() - t0;
            if (r > 0) { total += t; if (t < best) best = t; }
        }
        double mean = total / reps;
        double gf = step_flops(&cfg, B, T) / mean / 1e9;
        printf("{\"kind\": \"step\", \"impl\": \"argent\", \"batch\": %d, \"seq\": %d, \"step_s\": %.4f, "
               "\"best_s\": %.4f, \"tokens_per_s\": %.1f, \"gflops\": %.2f, \"sgemm_frac\": %.3f, \"peak_rss_mb\": %.1f}\n",
               B, T, mean, best, B * T / mean, gf, gf / peak, peak_rss_kb() / 1024.0);
        fflush(stdout);
        free(ids); free(mask); free(emb); free(demb); free(dh);
    }
    ag_adamw_free(&opt);
    ag_bert_free(&m);
    ag_params_free(&p);
    return 0;
}
