/* The 16-bit activation op tables ("cuda-bf16", "cuda-fp16": ag_cuda_ops_for, nn/cuda/
 * lowp_ops.cu) against the fp32 CPU oracle (ag_ops_cpu):
 *  - every entry of nn/ops.h on fresh random inputs rounded to the table's 16-bit type (so
 *    oracle and table see the same values), every output buffer poisoned first (NaN in
 *    the 16-bit buffers, NaN in the fp32 ones: an element left unwritten fails);
 *  - 16-bit outputs within 1e-2 (bf16) / 2e-3 (fp16) of max |want| (one rounding of the
 *    result is 2^-9 / 2^-12 of its magnitude; attention adds the rounding of its
 *    probabilities for the 16-bit context product); fp32 outputs (parameter gradients,
 *    LayerNorm statistics, attention probs) within 1e-4 (products of 16-bit values are exact in
 *    fp32: only the summation order differs); copies, zero, upload/download round trips
 *    and dropout masks exact;
 *  - a 2-layer BERT (hidden 64, dropout, padding, pooler) forward + backward on the bf16
 *    and fp16 tables against the fp32 CPU run: hidden state and pooler output within 3e-2
 *    (bf16) / 5e-3 (fp16), every parameter gradient within 3e-2 / 5e-3 of max(its max
 *    |want|, 1e-3 of the largest gradient) (the floor: the attention key biases' true
 *    gradient is 0), dropout masks bitwise;
 *  - a TSDAE step (2-layer encoder and tied decoder, hidden 32, dropout, padding; logits
 *    and their gradient through download_act / upload_act): loss within 2e-3 / 5e-4
 *    relative, every parameter gradient within 6e-2 / 1e-2 as above (errors pile up over
 *    encoder, decoder and LM head; measured through the emulator: 2e-2 / 2.3e-3).
 * Without a GPU: "SKIPPED: no CUDA device" (77); test_cuda_lowp_emu runs it through the CPU
 * emulator (tests/gpu/emu). */
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
#include "nn/tsdae.h"
#include "tests/support/check.h"
#include "tests/support/gpu_check.h"

static const ag_ops *H = &ag_ops_cpu, *G32 = &ag_ops_cuda;
static const ag_ops *L;      /* the 16-bit table under test */
static ag_precision P;
static uint64_t draw;

/* Host random values in [-scale, scale), rounded to the table's 16-bit type. */
static float *hrand(size_t n, float scale)
{
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = (ag_rng_uniform(78, 5, draw, 0, i) * 2.0f - 1.0f) * scale;
    draw++;
    ag_round_to(P, x, x, n);
    return x;
}

static float *hcopy(const float *x, size_t n)
{
    float *y = malloc(n * sizeof *y);
    memcpy(y, x, n * sizeof *y);
    return y;
}

/* Device activation (16-bit) holding x. */
static float *dact(const float *x, size_t n)
{
    float *d = L->alloc(n * L->act_bytes);
    L->upload_act(d, x, n);
    return d;
}

/* Device activation poisoned with NaN (the bit pattern is NaN in bf16 and fp16). */
static float *dact_nan(size_t n)
{
    uint16_t *b = malloc(n * 2);
    for (size_t i = 0; i < n; i++) b[i] = 0x7FC0u;
    float *d = L->alloc(n * L->act_bytes);
    L->upload(d, b, n * 2);
    free(b);
    return d;
}

static float *getact(const float *d, size_t n)
{
    float *x = malloc(n * sizeof *x);
    L->download_act(x, d, n);
    return x;
}

/* fp32 device buffers (parameters, gradients, statistics, probs). */
static float *d32(const float *x, size_t n)
{
    float *d = G32->alloc(n * sizeof *d);
    G32->upload(d, x, n * sizeof *d);
    return d;
}

static float *d32_nan(size_t n)
{
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = NAN;
    float *d = d32(x, n);
    free(x);
    return d;
}

static float *get32(const float *d, size_t n)
{
    float *x = malloc(n * sizeof *x);
    G32->download(x, d, n * sizeof *x);
    return x;
}

static char W[640];  /* room for a table name and the longest message (400) */
static const char *what(const char *s)
{
    snprintf(W, sizeof W, "%s: %s", L->name, s);
    return W;
}

/* The 16-bit result d[n] against want (freed after). */
static void check_act(const char *s, const float *d, const float *want, size_t n, double tol)
{
    float *got = getact(d, n);
    check_rel(what(s), got, want, n, tol);
    free(got);
}

static void check_f32(const char *s, const float *d, const float *want, size_t n, double tol)
{
    float *got = get32(d, n);
    check_rel(what(s), got, want, n, tol);
    free(got);
}

static void check_exact(const char *s, const float *d, const float *want, size_t n)
{
    float *got = getact(d, n);
    check_true(what(s), memcmp(got, want, n * sizeof *got) == 0);
    free(got);
}

/* ---------------------------------------------------------------- memory and elementwise */

static void memory_elementwise(double tol)
{
    enum { R = 5, CC = 301 };
    size_t n = (size_t)R * CC;
    float *x = hrand(n, 3), *y = hrand(n, 3), *z = hrand(n, 1), *want = malloc(n * sizeof *want);

    /* upload_act / download_act: rounding to the type and back is exact on 16-bit values;
     * on general fp32 values it is ag_round_to (round to nearest even). */
    float *dx = dact(x, n);
    check_exact("upload_act/download_act round trip", dx, x, n);
    float *g = malloc(n * sizeof *g);
    for (size_t i = 0; i < n; i++) g[i] = (ag_rng_uniform(78, 6, 0, 0, i) - 0.5f) * 1000.0f;
    ag_round_to(P, want, g, n);
    float *dg = dact(g, n);
    check_exact("upload_act rounds fp32 to nearest even", dg, want, n);

    float *dz = dact_nan(n);
    L->zero(dz, n);
    memset(want, 0, n * sizeof *want);
    check_exact("zero", dz, want, n);
    float *dc = dact_nan(n);
    L->copy(dc, dx, n);
    check_exact("copy", dc, x, n);

    float *dy = dact(y, n), *dout = dact_nan(n);
    L->add(dout, dx, dy, n);
    H->add(want, x, y, n);
    check_act("add", dout, want, n, tol);
    L->add(dc, dc, dy, n);  /* in place */
    check_act("add in place", dc, want, n, tol);

    float *dacc = dact(z, n);
    L->acc(dacc, dy, n);
    memcpy(want, z, n * sizeof *want);
    H->acc(want, y, n);
    check_act("acc (+=)", dacc, want, n, tol);

    L->upload_act(dc, x, n);
    L->scale(dc, -0.37f, n);
    memcpy(want, x, n * sizeof *want);
    H->scale(want, -0.37f, n);
    check_act("scale", dc, want, n, tol);

    /* copy2d gathers column block [7, 7+40) of every row; acc2d scatters it back. */
    size_t cols = 40;
    float *dsub = dact_nan(R * cols), *sub = malloc(R * cols * sizeof *sub);
    L->copy2d(dsub, cols, dx, CC, R, cols);
    H->copy2d(sub, cols, x, CC, R, cols);
    check_exact("copy2d", dsub, sub, R * cols);
    L->upload_act(dacc, z, n);
    L->acc2d(dacc, CC, dsub, cols, R, cols);
    memcpy(want, z, n * sizeof *want);
    H->acc2d(want, CC, sub, cols, R, cols);
    check_act("acc2d (+=)", dacc, want, n, tol);

    /* GELU, tanh */
    L->gelu_forward(dout, dx, n);
    H->gelu_forward(want, x, n);
    check_act("gelu forward", dout, want, n, tol);
    L->upload_act(dacc, z, n);
    L->gelu_backward(dacc, dx, dy, n);
    memcpy(want, z, n * sizeof *want);
    H->gelu_backward(want, x, y, n);
    check_act("gelu backward (+=)", dacc, want, n, tol);
    float *th = malloc(n * sizeof *th);
    L->upload_act(dout, x, n);  /* overwritten below */
    L->tanh_forward(dout, dx, n);
    H->tanh_forward(th, x, n);
    check_act("tanh forward", dout, th, n, tol);
    /* backward reads the forward output: give both the same 16-bit values */
    float *th16 = getact(dout, n);
    L->upload_act(dacc, z, n);
    L->tanh_backward(dacc, dout, dy, n);
    memcpy(want, z, n * sizeof *want);
    H->tanh_backward(want, th16, y, n);
    check_act("tanh backward (+=)", dacc, want, n, tol);

    /* dropout (rows R of length CC), then p = 0 */
    int64_t sidx[R] = {4, 19, 0, 7, 1000003};
    int64_t *dsidx = G32->alloc(sizeof sidx);
    G32->upload(dsidx, sidx, sizeof sidx);
    uint8_t *dmask = G32->alloc(n), *hmask = malloc(n), *gmask = malloc(n);
    G32->upload(dmask, memset(gmask, 0xAB, n), n);
    L->upload_act(dout, x, n);
    L->dropout_forward(dout, dmask, dout, R, CC, dsidx, 1234, 7, 0.3f);  /* in place */
    H->dropout_forward(want, hmask, x, R, CC, sidx, 1234, 7, 0.3f);
    check_act("dropout forward (in place)", dout, want, n, tol);
    G32->download(gmask, dmask, n);
    check_true(what("dropout masks = CPU"), memcmp(gmask, hmask, n) == 0);
    L->upload_act(dacc, z, n);
    L->dropout_backward(dacc, dy, dmask, R, CC, 0.3f);
    memcpy(want, z, n * sizeof *want);
    H->dropout_backward(want, y, hmask, R, CC, 0.3f);
    check_act("dropout backward (+=)", dacc, want, n, tol);
    float *d0 = dact_nan(n);
    L->dropout_forward(d0, NULL, dx, R, CC, NULL, 1234, 7, 0.0f);
    check_exact("dropout p = 0: copy", d0, x, n);
    L->upload_act(dacc, z, n);
    L->dropout_backward(dacc, dy, NULL, R, CC, 0.0f);
    memcpy(want, z, n * sizeof *want);
    H->acc(want, y, n);
    check_act("dropout backward p = 0 (+=)", dacc, want, n, tol);

    L->free(dx); L->free(dg); L->free(dz); L->free(dc); L->free(dy); L->free(dout); L->free(dacc);
    L->free(dsub); L->free(d0);
    G32->free(dsidx); G32->free(dmask);
    free(x); free(y); free(z); free(want); free(g); free(sub); free(th); free(th16); free(hmask); free(gmask);
}

/* ---------------------------------------------------------------- linear, LayerNorm, embeddings */

static void linear_layernorm(double tol)
{
    int N = 37, IC = 72, OC = 90;
    size_t ni = (size_t)N * IC, no = (size_t)N * OC, nw = (size_t)OC * IC;
    float *in = hrand(ni, 2), *Wt = hrand(nw, 0.3f), *b = hrand(OC, 1), *dout = hrand(no, 1);
    float *din0 = hrand(ni, 1), *dW0 = hrand(nw, 1), *db0 = hrand(OC, 1);
    float *want = malloc((no > ni ? no : ni) * sizeof *want);
    float *d_in = dact(in, ni), *d_dout = dact(dout, no), *d_out = dact_nan(no);
    float *d_W = d32(Wt, nw), *d_b = d32(b, OC);

    L->linear_forward(d_out, d_in, d_W, d_b, N, IC, OC);
    H->linear_forward(want, in, Wt, b, N, IC, OC);
    check_act("linear forward", d_out, want, no, tol);
    L->free(d_out);
    d_out = dact_nan(no);
    L->linear_forward(d_out, d_in, d_W, NULL, N, IC, OC);
    H->linear_forward(want, in, Wt, NULL, N, IC, OC);
    check_act("linear forward, no bias", d_out, want, no, tol);

    float *d_din = dact(din0, ni), *d_dW = d32(dW0, nw), *d_db = d32(db0, OC);
    L->linear_backward(d_din, d_dW, d_db, d_dout, d_in, d_W, N, IC, OC);
    float *hdin = hcopy(din0, ni), *hdW = hcopy(dW0, nw), *hdb = hcopy(db0, OC);
    H->linear_backward(hdin, hdW, hdb, dout, in, Wt, N, IC, OC);
    check_act("linear din (+=)", d_din, hdin, ni, tol);
    check_f32("linear dW (+=, fp32)", d_dW, hdW, nw, 1e-4);
    check_f32("linear db (+=, fp32)", d_db, hdb, OC, 1e-4);
    /* din NULL, dW only */
    L->linear_backward(NULL, d_dW, NULL, d_dout, d_in, d_W, N, IC, OC);
    H->linear_backward(NULL, hdW, NULL, dout, in, Wt, N, IC, OC);
    check_f32("linear dW only (+=, fp32)", d_dW, hdW, nw, 1e-4);

    /* LayerNorm over C = OC on the linear's input shape [N, OC] */
    int C = OC;
    size_t nc = no;
    float *x = hrand(nc, 3), *lw = hrand(C, 1), *lb = hrand(C, 0.5f), *g = hrand(nc, 1);
    float *mean = malloc(N * sizeof *mean), *rstd = malloc(N * sizeof *rstd);
    float *d_x = dact(x, nc), *d_g = dact(g, nc), *d_lw = d32(lw, C), *d_lb = d32(lb, C);
    float *d_mean = d32_nan(N), *d_rstd = d32_nan(N), *d_y = dact_nan(nc);
    L->layernorm_forward(d_y, d_mean, d_rstd, d_x, d_lw, d_lb, N, C, 1e-12f);
    H->layernorm_forward(want, mean, rstd, x, lw, lb, N, C, 1e-12f);
    check_act("layernorm forward", d_y, want, nc, tol);
    check_f32("layernorm mean (fp32)", d_mean, mean, N, 1e-5);
    check_f32("layernorm rstd (fp32)", d_rstd, rstd, N, 1e-5);
    float *dx0 = hrand(nc, 1), *dw0 = hrand(C, 1), *dbb0 = hrand(C, 1);
    float *d_dx = dact(dx0, nc), *d_dw = d32(dw0, C), *d_dbb = d32(dbb0, C);
    L->layernorm_backward(d_dx, d_dw, d_dbb, d_g, d_x, d_mean, d_rstd, d_lw, N, C);
    H->layernorm_backward(dx0, dw0, dbb0, g, x, mean, rstd, lw, N, C);
    check_act("layernorm din (+=)", d_dx, dx0, nc, tol);
    check_f32("layernorm dw (+=, fp32)", d_dw, dw0, C, 1e-4);
    check_f32("layernorm db (+=, fp32)", d_dbb, dbb0, C, 1e-4);

    /* the optional fused forwards: NULL in the 16-bit tables (model code composes) */
    check_true(what("fused forwards absent (NULL)"), !L->linear_gelu_forward && !L->add_layernorm_forward);

    L->free(d_in); L->free(d_dout); L->free(d_out); L->free(d_din); L->free(d_x); L->free(d_g);
    L->free(d_y); L->free(d_dx);
    G32->free(d_W); G32->free(d_b); G32->free(d_dW); G32->free(d_db); G32->free(d_lw); G32->free(d_lb);
    G32->free(d_mean); G32->free(d_rstd); G32->free(d_dw); G32->free(d_dbb);
    free(in); free(Wt); free(b); free(dout); free(din0); free(dW0); free(db0); free(want);
    free(hdin); free(hdW); free(hdb); free(x); free(lw); free(lb); free(g); free(mean); free(rstd);
    free(dx0); free(dw0); free(dbb0);
}

static void embeddings(double tol)
{
    int B = 3, T = 13, C = 48, V = 29, TV = 2, PMAX = 20;
    size_t n = (size_t)B * T * C;
    int32_t ids[39], types[39];
    for (int i = 0; i < B * T; i++) {
        ids[i] = (int32_t)(ag_rng_u32(5, 3, (uint64_t)i, 0, 0) % (uint32_t)V);
        if (i % 5 == 0) ids[i] = 0;  /* pad id 0: no word gradient */
        types[i] = (i / 4) % TV;
    }
    float *wte = hrand((size_t)V * C, 1), *wpe = hrand((size_t)PMAX * C, 1), *wtt = hrand((size_t)TV * C, 1);
    float *want = malloc(n * sizeof *want), *dout = hrand(n, 1);
    int32_t *d_ids = G32->alloc(sizeof ids), *d_types = G32->alloc(sizeof types);
    G32->upload(d_ids, ids, sizeof ids);
    G32->upload(d_types, types, sizeof types);
    float *d_wte = d32(wte, (size_t)V * C), *d_wpe = d32(wpe, (size_t)PMAX * C), *d_wtt = d32(wtt, (size_t)TV * C);
    float *d_out = dact_nan(n), *d_dout = dact(dout, n);
    L->embedding_forward(d_out, d_ids, d_types, d_wte, d_wpe, d_wtt, B, T, C);
    H->embedding_forward(want, ids, types, wte, wpe, wtt, B, T, C);
    check_act("embedding forward", d_out, want, n, tol);
    L->embedding_forward(d_out, d_ids, NULL, d_wte, d_wpe, NULL, B, T, C);
    H->embedding_forward(want, ids, NULL, wte, wpe, NULL, B, T, C);
    check_act("embedding forward, no types", d_out, want, n, tol);

    float *gte = hrand((size_t)V * C, 1), *gpe = hrand((size_t)PMAX * C, 1), *gtt = hrand((size_t)TV * C, 1);
    float *d_gte = d32(gte, (size_t)V * C), *d_gpe = d32(gpe, (size_t)PMAX * C), *d_gtt = d32(gtt, (size_t)TV * C);
    L->embedding_backward(d_gte, d_gpe, d_gtt, d_dout, d_ids, d_types, B, T, C, 0);
    H->embedding_backward(gte, gpe, gtt, dout, ids, types, B, T, C, 0);
    check_f32("embedding dwte (+=, fp32, pad skipped)", d_gte, gte, (size_t)V * C, 1e-5);
    check_f32("embedding dwpe (+=, fp32)", d_gpe, gpe, (size_t)PMAX * C, 1e-5);
    check_f32("embedding dwtt (+=, fp32)", d_gtt, gtt, (size_t)TV * C, 1e-5);

    G32->free(d_ids); G32->free(d_types); G32->free(d_wte); G32->free(d_wpe); G32->free(d_wtt);
    G32->free(d_gte); G32->free(d_gpe); G32->free(d_gtt);
    L->free(d_out); L->free(d_dout);
    free(wte); free(wpe); free(wtt); free(want); free(dout); free(gte); free(gpe); free(gtt);
}

/* ---------------------------------------------------------------- attention */

static void attention(double tol, int causal, float p, int Tq, int Tk)
{
    int B = 2, Hh = 3, D = 16, C = Hh * D;
    size_t nq = (size_t)B * Tq * C, nk = (size_t)B * Tk * C, np = (size_t)B * Hh * Tq * Tk;
    float *q = hrand(nq, 1.5f), *k = hrand(nk, 1.5f), *v = hrand(nk, 1), *dout = hrand(nq, 1);
    float *km = malloc((size_t)B * Tk * sizeof *km);
    for (int i = 0; i < B * Tk; i++) km[i] = (i % Tk) >= Tk - 2 * (i / Tk) ? 0.0f : 1.0f;  /* pads in row 1 */
    int64_t sidx[2] = {11, 3};
    int64_t *d_sidx = G32->alloc(sizeof sidx);
    G32->upload(d_sidx, sidx, sizeof sidx);
    float *hout = malloc(nq * sizeof *hout), *hprobs = malloc(np * sizeof *hprobs);
    uint8_t *hpm = malloc(np), *gpm = malloc(np), *d_pm = G32->alloc(np);
    H->attention_forward(hout, hprobs, hpm, q, k, v, causal ? NULL : km, causal, B, Tq, Tk, Hh, D,
                         sidx, 42, 9, p);
    float *d_q = dact(q, nq), *d_k = dact(k, nk), *d_v = dact(v, nk), *d_km = d32(km, (size_t)B * Tk);
    float *d_out = dact_nan(nq), *d_probs = d32_nan(np);
    L->attention_forward(d_out, d_probs, d_pm, d_q, d_k, d_v, causal ? NULL : d_km, causal, B, Tq, Tk,
                         Hh, D, d_sidx, 42, 9, p);
    char s[160];
    const char *kind = causal ? "causal" : Tq != Tk ? "cross" : "key mask";
    snprintf(s, sizeof s, "attention forward (%s, dropout %.1f)", kind, (double)p);
    check_act(s, d_out, hout, nq, tol);
    snprintf(s, sizeof s, "attention probs (fp32; %s)", kind);
    check_f32(s, d_probs, hprobs, np, 1e-4);
    if (p > 0.0f) {
        G32->download(gpm, d_pm, np);
        snprintf(s, sizeof s, "attention dropout masks = CPU (%s)", kind);
        check_true(what(s), memcmp(gpm, hpm, np) == 0);
    }
    float *dq0 = hrand(nq, 1), *dk0 = hrand(nk, 1), *dv0 = hrand(nk, 1);
    float *d_dq = dact(dq0, nq), *d_dk = dact(dk0, nk), *d_dv = dact(dv0, nk), *d_dout = dact(dout, nq);
    float *d_scr = d32_nan(np), *hscr = malloc(np * sizeof *hscr);
    L->attention_backward(d_dq, d_dk, d_dv, d_scr, d_dout, d_q, d_k, d_v, d_probs, d_pm, B, Tq, Tk, Hh, D, p);
    H->attention_backward(dq0, dk0, dv0, hscr, dout, q, k, v, hprobs, hpm, B, Tq, Tk, Hh, D, p);
    snprintf(s, sizeof s, "attention dq (+=; %s)", kind); check_act(s, d_dq, dq0, nq, tol);
    snprintf(s, sizeof s, "attention dk (+=; %s)", kind); check_act(s, d_dk, dk0, nk, tol);
    snprintf(s, sizeof s, "attention dv (+=; %s)", kind); check_act(s, d_dv, dv0, nk, tol);
    /* dk only (dq, dv NULL) */
    float *dk1 = hrand(nk, 1), *d_dk1 = dact(dk1, nk);
    L->attention_backward(NULL, d_dk1, NULL, d_scr, d_dout, d_q, d_k, d_v, d_probs, d_pm, B, Tq, Tk, Hh, D, p);
    H->attention_backward(NULL, dk1, NULL, hscr, dout, q, k, v, hprobs, hpm, B, Tq, Tk, Hh, D, p);
    snprintf(s, sizeof s, "attention dk only (+=; %s)", kind); check_act(s, d_dk1, dk1, nk, tol);

    G32->free(d_sidx); G32->free(d_pm); G32->free(d_km); G32->free(d_probs); G32->free(d_scr);
    L->free(d_q); L->free(d_k); L->free(d_v); L->free(d_out); L->free(d_dq); L->free(d_dk); L->free(d_dv);
    L->free(d_dout); L->free(d_dk1);
    free(q); free(k); free(v); free(dout); free(km); free(hout); free(hprobs); free(hpm); free(gpm);
    free(dq0); free(dk0); free(dv0); free(hscr); free(dk1);
}

/* ---------------------------------------------------------------- models end to end */

/* Every parameter gradient of `got` (downloaded) against `want`: max |diff| / max(max |want|
 * of the tensor, 1e-3 of the largest gradient) <= tol (gpu_compare_grads). */
static void check_grads(const char *model, const ag_params *got, const ag_params *want, double tol)
{
    gpu_grad_cmp gc = gpu_compare_grads(got, want, tol);
    char s[400];
    snprintf(s, sizeof s, "all %d %s parameter gradients within %.0e (worst %.3g, %s)", want->n, model,
             tol, gc.worst, gc.worst_name);
    check_true(what(s), gc.bad == 0 && gc.gmax > 0);
}

static void bert(double tol_h, double tol_g)
{
    ag_bert_config cfg = gpu_small_bert();
    int B = 3, T = 11, C = cfg.hidden_size;
    ag_bert mc, mg;
    ag_params pc, layout, pd;
    if (gpu_bert_twins(&mc, &pc, &mg, &layout, &cfg, "", 1) ||
        (ag_bert_init_weights(&mc, &pc, 5), ag_cuda_params_mirror(&pd, &pc))) {
        printf("FAIL bert setup: %s\n", ag_errmsg());
        check_true(what("bert setup"), 0);
        return;
    }
    mg.ops = L;
    size_t N = (size_t)B * T;
    int32_t ids[33], types[33], mask[33];
    int64_t samp[3] = {3, 8, 1};
    gpu_padded_batch(B, T, ids, types, mask);
    ag_bert_batch in = {B, T, ids, types, mask, samp};
    int rc = ag_bert_forward(&mc, &pc, &in, 1, 77, 1) | ag_bert_forward(&mg, &pd, &in, 1, 77, 1);
    if (rc) printf("  bert forward: %s\n", ag_errmsg());
    char s[400];
    snprintf(s, sizeof s, "BERT hidden state (2 layers, dropout on, padding) within %.0e", tol_h);
    check_act(s, ag_bert_hidden(&mg), ag_bert_hidden(&mc), N * C, tol_h);
    snprintf(s, sizeof s, "BERT pooler output within %.0e", tol_h);
    check_act(s, ag_bert_pooled(&mg), ag_bert_pooled(&mc), (size_t)B * C, tol_h);
    uint8_t *gm = malloc(N * C);
    G32->download(gm, mg.emb_acts.mask, N * C);
    check_true(what("BERT embedding dropout mask bitwise"), memcmp(gm, mc.emb_acts.mask, N * C) == 0);
    float *dh = hrand(N * C, 1), *d_dh = dact(dh, N * C);
    float *dp = hrand((size_t)B * C, 1), *d_dp = dact(dp, (size_t)B * C);
    rc |= ag_bert_backward(&mc, &pc, dh, dp) | ag_bert_backward(&mg, &pd, d_dh, d_dp);
    if (rc) printf("  bert backward: %s\n", ag_errmsg());
    rc |= ag_cuda_params_download(&layout, &pd, 0, 1);
    check_true(what("BERT forward/backward ran"), rc == 0);
    check_grads("BERT", &layout, &pc, tol_g);
    free(gm); free(dh); free(dp);
    L->free(d_dh); L->free(d_dp);
    ag_bert_free(&mc);
    ag_bert_free(&mg);
    ag_cuda_params_free(&pd);
    ag_params_free(&pc);
    ag_params_free(&layout);
}

/* A TSDAE step (2-layer encoder, tied decoder with cross-attention, LM head, host loss on
 * logits downloaded with download_act, their gradient uploaded with upload_act). */
static void tsdae(double tol_loss, double tol_g)
{
    ag_bert_config cfg = {.vocab_size = 61, .hidden_size = 32, .num_hidden_layers = 2,
                          .num_attention_heads = 2, .intermediate_size = 64,
                          .max_position_embeddings = 24, .type_vocab_size = 2,
                          .layer_norm_eps = 1e-12f, .hidden_dropout_prob = 0.1f,
                          .attention_probs_dropout_prob = 0.1f, .pad_token_id = 0};
    ag_bert mc, mg;
    ag_tsdae dc, dg;
    ag_params pc, layout, pd;
    ag_params_init(&pc);
    ag_params_init(&layout);
    memset(&dc, 0, sizeof dc);
    memset(&dg, 0, sizeof dg);
    int rc = ag_bert_register(&mc, &cfg, &pc, "", 0) || ag_tsdae_register(&dc, &mc, &pc) ||
             ag_params_alloc(&pc);
    if (!rc) {
        ag_bert_init_weights(&mc, &pc, 9);
        ag_tsdae_init_weights(&dc, &pc, 9);
        rc = ag_bert_register(&mg, &cfg, &layout, "", 0);
        mg.ops = L;
        rc = rc || ag_tsdae_register(&dg, &mg, &layout) || ag_params_alloc(&layout) ||
             ag_cuda_params_mirror(&pd, &pc);
        dg.ops = L;
    }
    if (rc) {
        printf("FAIL tsdae setup: %s\n", ag_errmsg());
        check_true(what("tsdae setup"), 0);
        return;
    }
    enum { B = 3, Ts = 8, Tt = 9 };
    int32_t ids[B * Ts], mask[B * Ts], tgt[B * Tt];
    int64_t samp[B] = {21, 4, 9};
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < Ts; t++) {
            int i = b * Ts + t, real = t < Ts - 2 * b;
            ids[i] = real ? 1 + (int32_t)(ag_rng_u32(6, 1, (uint64_t)i, 0, 0) % 60u) : 0;
            mask[i] = real;
        }
        for (int t = 0; t < Tt; t++) {
            int i = b * Tt + t;
            tgt[i] = t < Tt - b ? 1 + (int32_t)(ag_rng_u32(6, 2, (uint64_t)i, 0, 0) % 60u) : 0;
        }
    }
    ag_bert_batch noisy = {B, Ts, ids, NULL, mask, samp};
    double lc = 0, lg = 0;
    rc = ag_tsdae_forward(&dc, &mc, &pc, &noisy, tgt, Tt, 1, 31, &lc) ||
         ag_tsdae_forward(&dg, &mg, &pd, &noisy, tgt, Tt, 1, 31, &lg);
    if (rc) printf("  tsdae forward: %s\n", ag_errmsg());
    char s[200];
    snprintf(s, sizeof s, "TSDAE loss within %.0e relative (CPU %.6f, table %.6f)", tol_loss, lc, lg);
    check_true(what(s), !rc && fabs(lg - lc) <= tol_loss * fabs(lc));
    rc = ag_tsdae_backward(&dc, &mc, &pc, 1.0f) || ag_tsdae_backward(&dg, &mg, &pd, 1.0f) ||
         ag_cuda_params_download(&layout, &pd, 0, 1);
    if (rc) printf("  tsdae backward: %s\n", ag_errmsg());
    check_true(what("TSDAE forward/backward ran"), rc == 0);
    if (!rc) check_grads("TSDAE", &layout, &pc, tol_g);
    ag_tsdae_free(&dc);
    ag_tsdae_free(&dg);
    ag_bert_free(&mc);
    ag_bert_free(&mg);
    ag_cuda_params_free(&pd);
    ag_params_free(&pc);
    ag_params_free(&layout);
}

static void run_table(ag_precision p, double tol, double tol_h, double tol_g, double tol_loss,
                      double tol_tg)
{
    P = p;
    L = ag_cuda_ops_for(p);
    if (!L) {
        printf("FAIL ag_cuda_ops_for(%s): %s\n", ag_precision_name(p), ag_errmsg());
        check_true("16-bit table available", 0);
        return;
    }
    char want[32];
    snprintf(want, sizeof want, "cuda-%s", ag_precision_name(p));
    check_true(what("name and act_bytes 2"), strcmp(L->name, want) == 0 && L->act_bytes == 2);
    ag_precision before = ag_cuda_precision();
    memory_elementwise(tol);
    linear_layernorm(tol);
    embeddings(tol);
    attention(tol, 0, 0.0f, 9, 9);
    attention(tol, 0, 0.2f, 9, 9);
    attention(tol, 1, 0.2f, 7, 7);
    attention(tol, 0, 0.1f, 6, 1);  /* a TSDAE cross-attention: memory of length 1 */
    check_true(what("GEMM mode setting restored after attention"), ag_cuda_precision() == before);
    bert(tol_h, tol_g);
    tsdae(tol_loss, tol_tg);
    if (ag_cuda_check() != 0) {
        printf("FAIL queued GPU work: %s\n", ag_errmsg());
        check_true(what("no recorded GPU error"), 0);
    }
}

int main(void)
{
    gpu_test_start(NULL);
    check_true("ag_cuda_ops_for(fp32) is ag_ops_cuda", ag_cuda_ops_for(AG_PREC_FP32) == &ag_ops_cuda);
    check_true("ag_cuda_ops_for(7) refused", ag_cuda_ops_for((ag_precision)7) == NULL &&
                                             strstr(ag_errmsg(), "unknown"));
    run_table(AG_PREC_BF16, 1e-2, 3e-2, 3e-2, 2e-3, 6e-2);
    run_table(AG_PREC_FP16, 2e-3, 5e-3, 5e-3, 5e-4, 1e-2);
    ag_cuda_shutdown();
    return check_finish();
}
