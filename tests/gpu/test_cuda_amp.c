/* Mixed precision on the GPU (nn/cuda/amp.h) against the CPU oracle and nn/amp:
 *  - casts fp32 -> bf16 / fp16 on the device equal ag_f32_to_bf16 / ag_f32_to_f16 bit for
 *    bit (random values over the whole range, ties, subnormals, overflow; NaN excluded);
 *    widening back is exact;
 *  - 16-bit add, GELU forward/backward, dropout (same masks), LayerNorm forward/backward
 *    against ag_ops_cpu run on the same 16-bit-rounded inputs: outputs within 1e-2 (bf16)
 *    / 2e-3 (fp16) relative (max |diff| / max |want|; one 16-bit rounding of the result is
 *    2^-9 / 2^-12), fp32 weight gradients and statistics within 1e-4 / 1e-5;
 *  - bf16 / fp16 GEMM mode (ag_cuda_set_precision): linear forward/backward and attention
 *    on operands that are already 16-bit values give the fp32 oracle's results within the
 *    fp32 tolerances (products of 16-bit values are exact in fp32), and on general fp32
 *    inputs within 1e-2 (bf16) / 2e-3 (fp16);
 *  - a tiny BERT (2 layers, dropout, padding) forward + backward through nn/bert.c in bf16
 *    GEMM mode against the fp32 CPU run: hidden state within 1e-2, every parameter
 *    gradient within 2e-2 (max |diff| / max(max |want|, 1e-3 of the largest gradient) per
 *    tensor: the key biases' true gradient is 0), dropout masks bitwise;
 *  - device unscale = ag_scaler_unscale bit for bit, found_inf flag with and without inf.
 * Every output buffer is NaN-poisoned first. Without a GPU: "SKIPPED: no CUDA device" (77);
 * test_cuda_amp_emu runs it through the CPU emulator (tests/gpu/emu). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/amp.h"
#include "nn/bert.h"
#include "nn/cuda/amp.h"
#include "nn/cuda/cuda.h"
#include "nn/error.h"
#include "nn/ops.h"
#include "nn/rng.h"
#include "tests/support/check.h"
#include "tests/support/gpu_check.h"

static const ag_ops *G = &ag_ops_cuda, *H = &ag_ops_cpu;
static uint64_t draw;

static float *hrand(size_t n, float scale)
{
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = (ag_rng_uniform(77, 5, draw, 0, i) * 2.0f - 1.0f) * scale;
    draw++;
    return x;
}

static float *hnan(size_t n)
{
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = NAN;
    return x;
}

/* device copies: fp32 and 16-bit */
static float *d32(const float *h, size_t n)
{
    float *d = G->alloc(n * sizeof *d);
    G->upload(d, h, n * sizeof *d);
    return d;
}

static void *d16(ag_precision p, const float *h, size_t n)
{
    uint16_t *b = malloc(n * 2);
    for (size_t i = 0; i < n; i++) b[i] = p == AG_PREC_BF16 ? ag_f32_to_bf16(h[i]) : ag_f32_to_f16(h[i]);
    void *d = G->alloc(n * 2);
    G->upload(d, b, n * 2);
    free(b);
    return d;
}

static void *d16_nan(size_t n)
{
    void *d = G->alloc(n * 2);
    uint16_t *b = malloc(n * 2);
    for (size_t i = 0; i < n; i++) b[i] = 0x7FC0u | 0x0200u;  /* NaN in both formats */
    G->upload(d, b, n * 2);
    free(b);
    return d;
}

static float *get16(ag_precision p, const void *d, size_t n)
{
    uint16_t *b = malloc(n * 2);
    float *x = malloc(n * sizeof *x);
    G->download(b, d, n * 2);
    for (size_t i = 0; i < n; i++) x[i] = p == AG_PREC_BF16 ? ag_bf16_to_f32(b[i]) : ag_f16_to_f32(b[i]);
    free(b);
    return x;
}

static float *get32(const float *d, size_t n)
{
    float *x = malloc(n * sizeof *x);
    G->download(x, d, n * sizeof *x);
    return x;
}

static void casts(void)
{
    enum { N = 6000 };
    float *x = malloc(N * sizeof *x);
    for (size_t i = 0; i < N; i++) {
        uint32_t u = ag_rng_u32(91, 1, i, 0, 0);
        if (i % 7 == 0) u = (u & ~0xFFFFu) | 0x8000u;   /* bf16 ties */
        if (i % 11 == 0) u = (u & 0x80000000u) | (0x33000000u + (u % 0x14800000u)); /* fp16 range */
        if (i % 13 == 0) u = (u & ~0x1FFFu) | 0x1000u;  /* fp16 ties */
        if ((u & 0x7F800000u) == 0x7F800000u && (u & 0x7FFFFFu)) u &= ~0x7FFFFFu;  /* no NaN: inf */
        memcpy(&x[i], &u, sizeof u);
    }
    float *dx = d32(x, N);
    for (int k = 0; k < 2; k++) {
        ag_precision p = k ? AG_PREC_FP16 : AG_PREC_BF16;
        void *d = d16_nan(N);
        ag_cuda_lowp_from_f32(p, d, dx, N);
        uint16_t *b = malloc(N * 2);
        G->download(b, d, N * 2);
        size_t bad = 0;
        for (size_t i = 0; i < N; i++) {
            uint16_t want = k ? ag_f32_to_f16(x[i]) : ag_f32_to_bf16(x[i]);
            if (b[i] != want && bad++ == 0)
                printf("  %s(%.9g): device 0x%04x, host 0x%04x\n", ag_precision_name(p), x[i], b[i], want);
        }
        char w[80];
        snprintf(w, sizeof w, "device cast to %s = host RNE, bit for bit", ag_precision_name(p));
        check_true(w, bad == 0);
        float *back = G->alloc(N * sizeof(float)), *want = malloc(N * sizeof(float));
        ag_cuda_lowp_to_f32(p, back, d, N);
        float *got = get32(back, N);
        ag_round_to(p, want, x, N);
        snprintf(w, sizeof w, "%s -> fp32 exact", ag_precision_name(p));
        check_true(w, memcmp(got, want, N * sizeof(float)) == 0);
        G->free(back); G->free(d); free(b); free(got); free(want);
    }
    G->free(dx);
    free(x);
}

static void elementwise_16(ag_precision p, double tol)
{
    const char *pn = ag_precision_name(p);
    char w[96];
    enum { B = 3, L = 1000 };
    size_t n = (size_t)B * L;
    float *a = hrand(n, 3), *b = hrand(n, 3), *g = hrand(n, 1), *acc0 = hrand(n, 1);
    ag_round_to(p, a, a, n); ag_round_to(p, b, b, n); ag_round_to(p, g, g, n); ag_round_to(p, acc0, acc0, n);
    float *want = malloc(n * sizeof *want);
    void *da = d16(p, a, n), *db = d16(p, b, n), *dg = d16(p, g, n), *dout = d16_nan(n);

    ag_cuda_lowp_add(p, dout, da, db, n);
    H->add(want, a, b, n);
    float *got = get16(p, dout, n);
    snprintf(w, sizeof w, "%s add", pn); check_rel(w, got, want, n, tol); free(got);

    ag_cuda_lowp_gelu_forward(p, dout, da, n);
    H->gelu_forward(want, a, n);
    got = get16(p, dout, n);
    snprintf(w, sizeof w, "%s gelu forward", pn); check_rel(w, got, want, n, tol); free(got);

    void *ddin = d16(p, acc0, n);
    ag_cuda_lowp_gelu_backward(p, ddin, da, dg, n);
    memcpy(want, acc0, n * sizeof *want);
    H->gelu_backward(want, a, g, n);
    got = get16(p, ddin, n);
    snprintf(w, sizeof w, "%s gelu backward (+=)", pn); check_rel(w, got, want, n, tol); free(got);

    /* dropout: the masks are the fp32 kernel's (same Philox draws) */
    int64_t sidx[B] = {5, 17, 2};
    int64_t *dsidx = G->alloc(sizeof sidx);
    G->upload(dsidx, sidx, sizeof sidx);
    uint8_t *dmask = G->alloc(n), *hmask = malloc(n), *gmask = malloc(n);
    ag_cuda_lowp_dropout_forward(p, dout, dmask, da, B, L, dsidx, 99, 3, 0.25f);
    H->dropout_forward(want, hmask, a, B, L, sidx, 99, 3, 0.25f);
    got = get16(p, dout, n);
    G->download(gmask, dmask, n);
    snprintf(w, sizeof w, "%s dropout values", pn); check_rel(w, got, want, n, tol); free(got);
    snprintf(w, sizeof w, "%s dropout masks = CPU", pn); check_true(w, memcmp(gmask, hmask, n) == 0);

    /* LayerNorm: rows of C = 384 */
    int C = 384, N = (int)(n / 384);
    float *lw = hrand((size_t)C, 1), *lb = hrand((size_t)C, 0.5f);
    float *mean = malloc(N * sizeof *mean), *rstd = malloc(N * sizeof *rstd);
    float *dlw = d32(lw, C), *dlb = d32(lb, C);
    float *nanN = hnan((size_t)N), *dmean = d32(nanN, N), *drstd = d32(nanN, N);
    size_t nc = (size_t)N * C;
    ag_cuda_lowp_layernorm_forward(p, dout, dmean, drstd, da, dlw, dlb, N, C, 1e-12f);
    H->layernorm_forward(want, mean, rstd, a, lw, lb, N, C, 1e-12f);
    got = get16(p, dout, nc);
    float *gm = get32(dmean, N), *gr = get32(drstd, N);
    snprintf(w, sizeof w, "%s layernorm forward", pn); check_rel(w, got, want, nc, tol);
    snprintf(w, sizeof w, "%s layernorm mean (fp32)", pn); check_rel(w, gm, mean, N, 1e-5);
    snprintf(w, sizeof w, "%s layernorm rstd (fp32)", pn); check_rel(w, gr, rstd, N, 1e-5);
    free(got); free(gm); free(gr);
    float *gw0 = hrand((size_t)C, 1), *gb0 = hrand((size_t)C, 1);
    float *dgw = d32(gw0, C), *dgb = d32(gb0, C);
    void *ddin2 = d16(p, acc0, nc);
    ag_cuda_lowp_layernorm_backward(p, ddin2, dgw, dgb, dg, da, dmean, drstd, dlw, N, C);
    memcpy(want, acc0, nc * sizeof *want);
    float *hw = malloc(C * sizeof *hw), *hb = malloc(C * sizeof *hb);
    memcpy(hw, gw0, C * sizeof *hw);
    memcpy(hb, gb0, C * sizeof *hb);
    H->layernorm_backward(want, hw, hb, g, a, mean, rstd, lw, N, C);
    got = get16(p, ddin2, nc);
    float *gw = get32(dgw, C), *gb = get32(dgb, C);
    snprintf(w, sizeof w, "%s layernorm din (+=)", pn); check_rel(w, got, want, nc, tol);
    snprintf(w, sizeof w, "%s layernorm dw (fp32, +=)", pn); check_rel(w, gw, hw, C, 1e-4);
    snprintf(w, sizeof w, "%s layernorm db (fp32, +=)", pn); check_rel(w, gb, hb, C, 1e-4);
    free(got); free(gw); free(gb); free(hw); free(hb); free(gw0); free(gb0);
    G->free(dgw); G->free(dgb); G->free(ddin2);
    G->free(dlw); G->free(dlb); G->free(dmean); G->free(drstd);
    free(lw); free(lb); free(mean); free(rstd); free(nanN);
    G->free(dsidx); G->free(dmask); free(hmask); free(gmask);
    G->free(da); G->free(db); G->free(dg); G->free(dout); G->free(ddin);
    free(a); free(b); free(g); free(acc0); free(want);
}

/* Linear and attention through ag_ops_cuda in GEMM mode p. exact_inputs: operands are
 * 16-bit values already, so only the summation order differs from the fp32 oracle. */
static void gemm_mode(ag_precision p, int exact_inputs, double loose)
{
    char w[128];
    const char *pn = ag_precision_name(p);
    const char *kind = exact_inputs ? "16-bit inputs" : "fp32 inputs";
    double tf = exact_inputs ? 1e-5 : loose, tg = exact_inputs ? 1e-4 : loose;
    ag_cuda_set_precision(p);
    int N = 70, IC = 96, OC = 130;
    float *in = hrand((size_t)N * IC, 2), *W = hrand((size_t)OC * IC, 0.3f), *b = hrand(OC, 1);
    float *dout = hrand((size_t)N * OC, 1);
    if (exact_inputs) {
        ag_round_to(p, in, in, (size_t)N * IC);
        ag_round_to(p, W, W, (size_t)OC * IC);
        ag_round_to(p, dout, dout, (size_t)N * OC);
    }
    float *din0 = hrand((size_t)N * IC, 1), *dW0 = hrand((size_t)OC * IC, 1), *db0 = hrand(OC, 1);
    float *want = malloc(sizeof(float) * N * OC), *nan = hnan((size_t)N * OC);
    float *d_in = d32(in, (size_t)N * IC), *d_W = d32(W, (size_t)OC * IC), *d_b = d32(b, OC);
    float *d_out = d32(nan, (size_t)N * OC), *d_dout = d32(dout, (size_t)N * OC);
    G->linear_forward(d_out, d_in, d_W, d_b, N, IC, OC);
    H->linear_forward(want, in, W, b, N, IC, OC);
    float *got = get32(d_out, (size_t)N * OC);
    snprintf(w, sizeof w, "%s GEMM mode, %s: linear forward", pn, kind);
    check_rel(w, got, want, (size_t)N * OC, tf);
    free(got);
    float *d_din = d32(din0, (size_t)N * IC), *d_dW = d32(dW0, (size_t)OC * IC), *d_db = d32(db0, OC);
    G->linear_backward(d_din, d_dW, d_db, d_dout, d_in, d_W, N, IC, OC);
    H->linear_backward(din0, dW0, db0, dout, in, W, N, IC, OC);
    float *gi = get32(d_din, (size_t)N * IC), *gW = get32(d_dW, (size_t)OC * IC), *gb = get32(d_db, OC);
    snprintf(w, sizeof w, "%s GEMM mode, %s: linear din (+=)", pn, kind);
    check_rel(w, gi, din0, (size_t)N * IC, tg);
    snprintf(w, sizeof w, "%s GEMM mode, %s: linear dW (+=, fp32)", pn, kind);
    check_rel(w, gW, dW0, (size_t)OC * IC, tg);
    snprintf(w, sizeof w, "%s GEMM mode, %s: linear db (+=, fp32)", pn, kind);
    check_rel(w, gb, db0, OC, 1e-4);
    free(gi); free(gW); free(gb);

    /* attention forward (B 2, T 9, H 2, D 16, one padded key), no dropout */
    int B = 2, T = 9, Hh = 2, D = 16, C = Hh * D;
    size_t nq = (size_t)B * T * C, np = (size_t)B * Hh * T * T;
    float *q = hrand(nq, 1), *k = hrand(nq, 1), *v = hrand(nq, 1);
    if (exact_inputs) { ag_round_to(p, q, q, nq); ag_round_to(p, k, k, nq); ag_round_to(p, v, v, nq); }
    float km[18];
    for (int i = 0; i < B * T; i++) km[i] = i == 17 ? 0.0f : 1.0f;
    float *hout = malloc(nq * sizeof *hout), *hprobs = malloc(np * sizeof *hprobs);
    H->attention_forward(hout, hprobs, NULL, q, k, v, km, 0, B, T, T, Hh, D, NULL, 0, 0, 0.0f);
    float *nq_nan = hnan(np > nq ? np : nq);
    float *dq = d32(q, nq), *dk = d32(k, nq), *dv = d32(v, nq), *dkm = d32(km, 18);
    float *dO = d32(nq_nan, nq), *dP = d32(nq_nan, np);
    G->attention_forward(dO, dP, NULL, dq, dk, dv, dkm, 0, B, T, T, Hh, D, NULL, 0, 0, 0.0f);
    float *go = get32(dO, nq), *gp = get32(dP, np);
    /* the probabilities: exact-input scores are exact products; P . V then rounds P */
    snprintf(w, sizeof w, "%s GEMM mode, %s: attention probs", pn, kind);
    check_rel(w, gp, hprobs, np, exact_inputs ? 1e-5 : loose);
    snprintf(w, sizeof w, "%s GEMM mode, %s: attention out", pn, kind);
    check_rel(w, go, hout, nq, loose);
    free(go); free(gp); free(q); free(k); free(v); free(hout); free(hprobs); free(nq_nan);
    G->free(dq); G->free(dk); G->free(dv); G->free(dkm); G->free(dO); G->free(dP);

    ag_cuda_set_precision(AG_PREC_FP32);
    G->free(d_in); G->free(d_W); G->free(d_b); G->free(d_out); G->free(d_dout);
    G->free(d_din); G->free(d_dW); G->free(d_db);
    free(in); free(W); free(b); free(dout); free(din0); free(dW0); free(db0); free(want); free(nan);
}

static void bert_bf16(void)
{
    ag_bert_config cfg = gpu_small_bert();
    int B = 3, T = 11, C = cfg.hidden_size;
    ag_bert mc, mg;
    ag_params pc, layout, pd;
    if (gpu_bert_twins(&mc, &pc, &mg, &layout, &cfg, "", 0) ||
        (ag_bert_init_weights(&mc, &pc, 5), ag_cuda_params_mirror(&pd, &pc))) {
        printf("FAIL bert setup: %s\n", ag_errmsg());
        check_true("bf16 bert setup", 0);
        return;
    }
    mg.ops = G;
    size_t N = (size_t)B * T;
    int32_t ids[33], types[33], mask[33];
    int64_t samp[3] = {3, 8, 1};
    gpu_padded_batch(B, T, ids, types, mask);
    ag_bert_batch in = {B, T, ids, types, mask, samp};
    ag_cuda_set_precision(AG_PREC_BF16);
    int rc = ag_bert_forward(&mc, &pc, &in, 1, 77, 0) | ag_bert_forward(&mg, &pd, &in, 1, 77, 0);
    if (rc) printf("  bert forward: %s\n", ag_errmsg());
    float *gh = get32(ag_bert_hidden(&mg), N * C);
    check_rel("bf16 GEMM mode: BERT hidden state (dropout on, padding)", gh, ag_bert_hidden(&mc), N * C, 1e-2);
    uint8_t *gm = malloc(N * C);
    G->download(gm, mg.emb_acts.mask, N * C);
    check_true("bf16 GEMM mode: BERT embedding dropout mask bitwise", memcmp(gm, mc.emb_acts.mask, N * C) == 0);
    float *dh = hrand(N * C, 1), *d_dh = d32(dh, N * C);
    rc |= ag_bert_backward(&mc, &pc, dh, NULL) | ag_bert_backward(&mg, &pd, d_dh, NULL);
    rc |= ag_cuda_params_download(&layout, &pd, 0, 1);
    check_true("bf16 BERT forward/backward ran", rc == 0);
    /* Each tensor's floor is 1e-3 of the largest gradient (the attention key biases' true
     * gradient is 0); gmax > 0: all-zero gradients are a failure, not a match. */
    gpu_grad_cmp gc = gpu_compare_grads(&layout, &pc, 2e-2);
    char w[400];
    snprintf(w, sizeof w, "bf16 GEMM mode: all %d BERT parameter gradients within 2e-2 (worst %.3g, %s)",
             pc.n, gc.worst, gc.worst_name);
    check_true(w, gc.bad == 0 && gc.gmax > 0);
    ag_cuda_set_precision(AG_PREC_FP32);
    free(gh); free(gm); free(dh);
    G->free(d_dh);
    ag_bert_free(&mc);
    ag_bert_free(&mg);
    ag_cuda_params_free(&pd);
    ag_params_free(&pc);
    ag_params_free(&layout);
}

static void unscale(void)
{
    enum { N = 5000 };
    float *g = hrand(N, 3e4f);
    ag_grad_scaler s;
    ag_scaler_config(&s, 3.0 * 65536, 2, 0.5, 2000, 1);
    for (int inf = 0; inf < 2; inf++) {
        if (inf) g[1234] = INFINITY;
        float *dg = d32(g, N), zero = 0, *dfound = d32(&zero, 1);
        ag_cuda_unscale(dg, N, ag_scaler_inv_scale(&s), dfound);
        float *got = get32(dg, N), found = 0;
        G->download(&found, dfound, sizeof found);
        float *want = malloc(N * sizeof *want);
        memcpy(want, g, N * sizeof *want);
        int hbad = ag_scaler_unscale(&s, want, N);
        check_true(inf ? "device unscale: inf found" : "device unscale: nothing found",
                   (found == 1.0f) == (hbad == 1) && hbad == inf);
        check_true("device unscale = ag_scaler_unscale, bit for bit",
                   memcmp(got, want, N * sizeof *want) == 0);
        free(got); free(want);
        G->free(dg); G->free(dfound);
    }
    free(g);
}

int main(void)
{
    gpu_test_start(NULL);
    check_true("set_precision refuses 7", ag_cuda_set_precision((ag_precision)7) == -1 &&
                                           strstr(ag_errmsg(), "unknown precision"));
    check_true("precision defaults to fp32", ag_cuda_precision() == AG_PREC_FP32);
    casts();
    elementwise_16(AG_PREC_BF16, 1e-2);
    elementwise_16(AG_PREC_FP16, 2e-3);
    gemm_mode(AG_PREC_BF16, 1, 1e-2);
    gemm_mode(AG_PREC_BF16, 0, 1e-2);
    gemm_mode(AG_PREC_FP16, 1, 2e-3);
    gemm_mode(AG_PREC_FP16, 0, 2e-3);
    unscale();
    bert_bf16();
    if (ag_cuda_check() != 0) {
        printf("FAIL queued GPU work: %s\n", ag_errmsg());
        check_true("no recorded GPU error", 0);
    }
    ag_cuda_shutdown();
    return check_finish();
}
