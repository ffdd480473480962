/* The CUDA op table against the CPU oracle, entry by entry, then a whole BERT forward and
 * backward (dropout on, padding, token types, pooler) through nn/bert.c with
 * m->ops = &ag_ops_cuda on a device mirror of the parameters.
 *
 * Method: random inputs, fresh each run (the seed is printed; ARGENT_TEST_SEED=N repeats
 * a run); output buffers are poisoned with NaN first, so an element an op forgets to
 * write fails the comparison; gradient buffers start from the same random values on both
 * sides, so the += contract is checked too. Tolerances (max|diff| / max|want| over the
 * whole tensor, check_rel):
 *   exact (bitwise)  memory ops, add/acc/scale/acc2d, embedding forward and its position
 *                    gradient, dropout (masks and values), every dropout mask
 *   1e-5             other forwards (cuBLAS and the CPU's OpenBLAS sum in other orders;
 *                    device erff/expf/tanhf are within a few ulps of glibc's)
 *   1e-4             gradients, and BERT gradients after 2 layers
 * With no usable GPU the test prints "SKIPPED: no CUDA device (reason)" and exits 77.
 * usage: test_cuda_ops [--quick]   (--quick leaves out the larger shapes) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/bert.h"
#include "nn/cuda/cuda.h"
#include "nn/cuda/optim.h"
#include "nn/error.h"
#include "nn/ops.h"
#include "nn/optim.h"
#include "nn/rng.h"
#include "tests/support/check.h"
#include "tests/support/gpu_check.h"

static const ag_ops *G = &ag_ops_cuda, *H_ = &ag_ops_cpu;
static uint64_t seed;
static uint32_t next_tag = 1;
static int quick;

#define FWD_TOL 1e-5
#define GRAD_TOL 1e-4

/* ------------------------------------------------------------------ host/device helpers */

static void die(const char *what) {
    fprintf(stderr, "FATAL %s: %s\n", what, ag_errmsg());
    exit(1);
}

static void *xmalloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) { fprintf(stderr, "FATAL out of host memory\n"); exit(1); }
    return p;
}

/* Host buffer of n uniforms in [lo, hi), a fresh stream of draws each call. */
static float *rnd(size_t n, float lo, float hi) {
    float *x = xmalloc(n * sizeof *x);
    uint32_t tag = next_tag++;
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * ag_rng_uniform(seed, 11, tag, 0, i);
    return x;
}

static float *nans(size_t n) {
    float *x = xmalloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = NAN;
    return x;
}

static float *hdup(const float *x, size_t n) {
    float *y = xmalloc(n * sizeof *y);
    memcpy(y, x, n * sizeof *y);
    return y;
}

static void *dev(const void *host, size_t bytes) {
    void *d = G->alloc(bytes);
    if (!d) die("device alloc");
    G->upload(d, host, bytes);
    return d;
}

static float *dev_nan(size_t n) {
    float *h = nans(n);
    float *d = dev(h, n * sizeof *h);
    free(h);
    return d;
}

static void *back(const void *d, size_t bytes) {
    void *h = xmalloc(bytes);
    G->download(h, d, bytes);
    return h;
}

/* Compare a device tensor with the CPU's. rel < 0: bitwise (NaN fails). */
static void cmp(const char *what, const float *d, const float *want, size_t n, double rel) {
    float *got = back(d, n * sizeof *got);
    if (rel < 0) check_close(what, got, want, n, 0.0, 0.0);
    else check_rel(what, got, want, n, rel);
    free(got);
}

static void cmp_u8(const char *what, const uint8_t *d, const uint8_t *want, size_t n) {
    uint8_t *got = back(d, n);
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < n; i++)
        if (got[i] != want[i]) { if (!bad) first = i; bad++; }
    char msg[256];
    if (bad) snprintf(msg, sizeof msg, "%s (%zu of %zu differ, first at %zu)", what, bad, n, first);
    else snprintf(msg, sizeof msg, "%s (all %zu equal)", what, n);
    check_true(msg, bad == 0);
    free(got);
}

static void op_done(const char *what) {
    if (ag_cuda_check()) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s: no CUDA error (%s)", what, ag_errmsg());
        check_true(msg, 0);
    }
}

/* ------------------------------------------------------------------ memory and elementwise */

static void test_memory(void) {
    size_t n = 1000003;
    float *h = rnd(n, -2, 2), *d = dev_nan(n), *d2 = dev_nan(n);
    G->upload(d, h, n * sizeof *h);
    cmp("upload/download round trip", d, h, n, -1);
    G->copy(d2, d, n);
    cmp("copy", d2, h, n, -1);
    G->zero(d2, n - 1);
    float *z = hdup(h, n);
    memset(z, 0, (n - 1) * sizeof *z);
    cmp("zero (n-1 elements, last untouched)", d2, z, n, -1);
    /* copy2d / acc2d: gather [CLS]-like rows with strides; the rest of dst stays as it was. */
    size_t rows = 7, cols = 45, lds = 3 * 45 + 5, ldd = 50;
    float *src = rnd(rows * lds, -1, 1), *dst = rnd(rows * ldd, -1, 1), *dst2 = hdup(dst, rows * ldd);
    float *ds = dev(src, rows * lds * 4), *dd = dev(dst, rows * ldd * 4);
    G->copy2d(dd, ldd, ds, lds, rows, cols);
    H_->copy2d(dst, ldd, src, lds, rows, cols);
    cmp("copy2d", dd, dst, rows * ldd, -1);
    G->upload(dd, dst2, rows * ldd * 4);
    G->acc2d(dd, ldd, ds, lds, rows, cols);
    H_->acc2d(dst2, ldd, src, lds, rows, cols);
    cmp("acc2d", dd, dst2, rows * ldd, -1);
    op_done("memory ops");
    free(h); free(z); free(src); free(dst); free(dst2);
    G->free(d); G->free(d2); G->free(ds); G->free(dd);
}

static void test_elementwise(void) {
    size_t n = quick ? 4099 : 1 << 20 | 77;
    float *a = rnd(n, -3, 3), *b = rnd(n, -3, 3), *g = rnd(n, -1, 1), *acc0 = rnd(n, -1, 1);
    float *da = dev(a, n * 4), *db = dev(b, n * 4), *dg = dev(g, n * 4), *dout = dev_nan(n);
    float *want = xmalloc(n * 4);

    H_->add(want, a, b, n);
    G->add(dout, da, db, n);
    cmp("add", dout, want, n, -1);
    G->copy(dout, da, n);
    G->add(dout, dout, db, n);
    cmp("add in place (out == a)", dout, want, n, -1);

    float *w2 = hdup(acc0, n);
    H_->acc(w2, g, n);
    G->upload(dout, acc0, n * 4);
    G->acc(dout, dg, n);
    cmp("acc", dout, w2, n, -1);
    H_->scale(w2, -0.37f, n);
    G->scale(dout, -0.37f, n);
    cmp("scale", dout, w2, n, -1);

    /* GELU and tanh: forward out of place and in place, backward accumulating. */
    H_->gelu_forward(want, a, n);
    float *p = nans(n);
    G->upload(dout, p, n * 4);
    G->gelu_forward(dout, da, n);
    cmp("gelu_forward", dout, want, n, FWD_TOL);
    G->copy(dout, da, n);
    G->gelu_forward(dout, dout, n);
    cmp("gelu_forward in place", dout, want, n, FWD_TOL);
    memcpy(w2, acc0, n * 4);
    H_->gelu_backward(w2, a, g, n);
    G->upload(dout, acc0, n * 4);
    G->gelu_backward(dout, da, dg, n);
    cmp("gelu_backward (+=)", dout, w2, n, GRAD_TOL);

    H_->tanh_forward(want, a, n);
    G->upload(dout, p, n * 4);
    G->tanh_forward(dout, da, n);
    cmp("tanh_forward", dout, want, n, FWD_TOL);
    float *dy = dev(want, n * 4);  /* backward reads the forward's output */
    memcpy(w2, acc0, n * 4);
    H_->tanh_backward(w2, want, g, n);
    G->upload(dout, acc0, n * 4);
    G->tanh_backward(dout, dy, dg, n);
    cmp("tanh_backward (+=)", dout, w2, n, GRAD_TOL);
    op_done("elementwise ops");
    free(a); free(b); free(g); free(acc0); free(want); free(w2); free(p);
    G->free(da); G->free(db); G->free(dg); G->free(dout); G->free(dy);
}

/* ------------------------------------------------------------------ linear */

static void test_linear_case(int N, int IC, int OC, int with_bias) {
    char what[160];
    float *in = rnd((size_t)N * IC, -1, 1), *W = rnd((size_t)OC * IC, -0.5f, 0.5f);
    float *b = rnd((size_t)OC, -1, 1), *dout = rnd((size_t)N * OC, -1, 1);
    float *din0 = rnd((size_t)N * IC, -1, 1), *dW0 = rnd((size_t)OC * IC, -1, 1), *db0 = rnd((size_t)OC, -1, 1);
    float *out = xmalloc((size_t)N * OC * 4);
    float *d_in = dev(in, (size_t)N * IC * 4), *d_W = dev(W, (size_t)OC * IC * 4), *d_b = dev(b, (size_t)OC * 4);
    float *d_dout = dev(dout, (size_t)N * OC * 4), *d_out = dev_nan((size_t)N * OC);
    H_->linear_forward(out, in, W, with_bias ? b : NULL, N, IC, OC);
    G->linear_forward(d_out, d_in, d_W, with_bias ? d_b : NULL, N, IC, OC);
    snprintf(what, sizeof what, "linear_forward N=%d IC=%d OC=%d %s", N, IC, OC, with_bias ? "bias" : "no bias");
    cmp(what, d_out, out, (size_t)N * OC, FWD_TOL);

    float *din = hdup(din0, (size_t)N * IC), *dW = hdup(dW0, (size_t)OC * IC), *db = hdup(db0, (size_t)OC);
    float *d_din = dev(din0, (size_t)N * IC * 4), *d_dW = dev(dW0, (size_t)OC * IC * 4), *d_db = dev(db0, (size_t)OC * 4);
    H_->linear_backward(din, dW, db, dout, in, W, N, IC, OC);
    G->linear_backward(d_din, d_dW, d_db, d_dout, d_in, d_W, N, IC, OC);
    snprintf(what, sizeof what, "linear_backward din (+=) N=%d IC=%d OC=%d", N, IC, OC);
    cmp(what, d_din, din, (size_t)N * IC, GRAD_TOL);
    snprintf(what, sizeof what, "linear_backward dW (+=) N=%d IC=%d OC=%d", N, IC, OC);
    cmp(what, d_dW, dW, (size_t)OC * IC, GRAD_TOL);
    snprintf(what, sizeof what, "linear_backward db (+=) N=%d IC=%d OC=%d", N, IC, OC);
    cmp(what, d_db, db, (size_t)OC, GRAD_TOL);
    /* NULL gradients are skipped: only dW this time, onto fresh accumulators. */
    G->upload(d_din, din0, (size_t)N * IC * 4);
    G->upload(d_dW, dW0, (size_t)OC * IC * 4);
    G->linear_backward(NULL, d_dW, NULL, d_dout, d_in, d_W, N, IC, OC);
    memcpy(dW, dW0, (size_t)OC * IC * 4);
    H_->linear_backward(NULL, dW, NULL, dout, in, W, N, IC, OC);
    cmp("linear_backward with din, db NULL: dW", d_dW, dW, (size_t)OC * IC, GRAD_TOL);
    cmp("linear_backward with din NULL: din untouched", d_din, din0, (size_t)N * IC, -1);
    op_done("linear");
    free(in); free(W); free(b); free(dout); free(din0); free(dW0); free(db0); free(out);
    free(din); free(dW); free(db);
    G->free(d_in); G->free(d_W); G->free(d_b); G->free(d_dout); G->free(d_out);
    G->free(d_din); G->free(d_dW); G->free(d_db);
}

static void test_linear(void) {
    test_linear_case(37, 45, 29, 1);
    test_linear_case(5, 3, 1, 0);
    if (!quick) {
        test_linear_case(32 * 64, 384, 1536, 1);   /* MiniLM FFN up-projection */
        test_linear_case(32 * 64, 1536, 384, 1);
    }
}

/* ------------------------------------------------------------------ embeddings */

static void test_embedding_case(int B, int T, int C, int V, int TV, int with_types, int pad_id) {
    char what[160], shape[80];
    snprintf(shape, sizeof shape, "B=%d T=%d C=%d types=%s pad=%d", B, T, C,
             TV == 0 ? "no table" : with_types ? "given" : "NULL", pad_id);
    size_t N = (size_t)B * T;
    int32_t *ids = xmalloc(N * 4), *types = xmalloc(N * 4);
    for (size_t i = 0; i < N; i++) {
        ids[i] = (int32_t)(ag_rng_u32(seed, 12, i, 0, 0) % (uint32_t)V);
        if (i % 7 == 0) ids[i] = 0;                         /* some [PAD]-id tokens */
        types[i] = TV > 1 ? (int32_t)((i % T) >= (size_t)T / 2) : 0;
    }
    float *wte = rnd((size_t)V * C, -1, 1), *wpe = rnd((size_t)T * C, -1, 1);
    float *wtt = TV ? rnd((size_t)TV * C, -1, 1) : NULL;
    float *out = xmalloc(N * C * 4);
    int32_t *d_ids = dev(ids, N * 4), *d_types = dev(types, N * 4);
    float *d_wte = dev(wte, (size_t)V * C * 4), *d_wpe = dev(wpe, (size_t)T * C * 4);
    float *d_wtt = TV ? dev(wtt, (size_t)TV * C * 4) : NULL, *d_out = dev_nan(N * C);
    H_->embedding_forward(out, ids, with_types ? types : NULL, wte, wpe, wtt, B, T, C);
    G->embedding_forward(d_out, d_ids, with_types ? d_types : NULL, d_wte, d_wpe, d_wtt, B, T, C);
    snprintf(what, sizeof what, "embedding_forward %s (bitwise)", shape);
    cmp(what, d_out, out, N * C, -1);

    float *dout = rnd(N * C, -1, 1), *d_dout = dev(dout, N * C * 4);
    float *dwte = rnd((size_t)V * C, -1, 1), *dwpe = rnd((size_t)T * C, -1, 1);
    float *dwtt = TV ? rnd((size_t)TV * C, -1, 1) : NULL;
    float *d_dwte = dev(dwte, (size_t)V * C * 4), *d_dwpe = dev(dwpe, (size_t)T * C * 4);
    float *d_dwtt = TV ? dev(dwtt, (size_t)TV * C * 4) : NULL;
    H_->embedding_backward(dwte, dwpe, dwtt, dout, ids, with_types ? types : NULL, B, T, C, pad_id);
    G->embedding_backward(d_dwte, d_dwpe, d_dwtt, d_dout, d_ids, with_types ? d_types : NULL, B, T,
                          C, pad_id);
    snprintf(what, sizeof what, "embedding_backward dwte (+=, pad row skipped) %s", shape);
    cmp(what, d_dwte, dwte, (size_t)V * C, GRAD_TOL);
    snprintf(what, sizeof what, "embedding_backward dwpe (+=, bitwise) %s", shape);
    cmp(what, d_dwpe, dwpe, (size_t)T * C, -1);
    if (TV) {
        snprintf(what, sizeof what, "embedding_backward dwtt (+=) %s", shape);
        cmp(what, d_dwtt, dwtt, (size_t)TV * C, GRAD_TOL);
    }
    op_done("embedding");
    free(ids); free(types); free(wte); free(wpe); free(wtt); free(out); free(dout);
    free(dwte); free(dwpe); free(dwtt);
    G->free(d_ids); G->free(d_types); G->free(d_wte); G->free(d_wpe); G->free(d_wtt); G->free(d_out);
    G->free(d_dout); G->free(d_dwte); G->free(d_dwpe); G->free(d_dwtt);
}

static void test_embedding(void) {
    test_embedding_case(3, 11, 45, 50, 2, 1, 0);
    test_embedding_case(2, 5, 33, 20, 2, 0, -1);
    test_embedding_case(2, 6, 8, 10, 0, 0, 0);
    if (!quick) test_embedding_case(32, 128, 384, 30522, 2, 1, 0);
}

/* ------------------------------------------------------------------ layernorm */

static void test_layernorm_case(int N, int C, float eps) {
    char what[160], shape[64];
    snprintf(shape, sizeof shape, "N=%d C=%d eps=%g", N, C, (double)eps);
    float *in = rnd((size_t)N * C, -2, 3), *w = rnd((size_t)C, 0.5f, 1.5f), *b = rnd((size_t)C, -1, 1);
    float *out = xmalloc((size_t)N * C * 4), *mean = xmalloc((size_t)N * 4), *rstd = xmalloc((size_t)N * 4);
    float *d_in = dev(in, (size_t)N * C * 4), *d_w = dev(w, (size_t)C * 4), *d_b = dev(b, (size_t)C * 4);
    float *d_out = dev_nan((size_t)N * C), *d_mean = dev_nan((size_t)N), *d_rstd = dev_nan((size_t)N);
    H_->layernorm_forward(out, mean, rstd, in, w, b, N, C, eps);
    G->layernorm_forward(d_out, d_mean, d_rstd, d_in, d_w, d_b, N, C, eps);
    snprintf(what, sizeof what, "layernorm_forward out %s", shape);
    cmp(what, d_out, out, (size_t)N * C, FWD_TOL);
    snprintf(what, sizeof what, "layernorm_forward mean %s", shape);
    cmp(what, d_mean, mean, (size_t)N, FWD_TOL);
    snprintf(what, sizeof what, "layernorm_forward rstd %s", shape);
    cmp(what, d_rstd, rstd, (size_t)N, FWD_TOL);

    float *dout = rnd((size_t)N * C, -1, 1), *din = rnd((size_t)N * C, -1, 1);
    float *dw = rnd((size_t)C, -1, 1), *db = rnd((size_t)C, -1, 1);
    float *d_dout = dev(dout, (size_t)N * C * 4), *d_din = dev(din, (size_t)N * C * 4);
    float *d_dw = dev(dw, (size_t)C * 4), *d_db = dev(db, (size_t)C * 4);
    /* Both sides use the CPU's saved statistics, so only the backward is compared. */
    G->upload(d_mean, mean, (size_t)N * 4);
    G->upload(d_rstd, rstd, (size_t)N * 4);
    H_->layernorm_backward(din, dw, db, dout, in, mean, rstd, w, N, C);
    G->layernorm_backward(d_din, d_dw, d_db, d_dout, d_in, d_mean, d_rstd, d_w, N, C);
    snprintf(what, sizeof what, "layernorm_backward din (+=) %s", shape);
    cmp(what, d_din, din, (size_t)N * C, GRAD_TOL);
    snprintf(what, sizeof what, "layernorm_backward dw (+=) %s", shape);
    cmp(what, d_dw, dw, (size_t)C, GRAD_TOL);
    snprintf(what, sizeof what, "layernorm_backward db (+=) %s", shape);
    cmp(what, d_db, db, (size_t)C, GRAD_TOL);
    op_done("layernorm");
    free(in); free(w); free(b); free(out); free(mean); free(rstd); free(dout); free(din); free(dw); free(db);
    G->free(d_in); G->free(d_w); G->free(d_b); G->free(d_out); G->free(d_mean); G->free(d_rstd);
    G->free(d_dout); G->free(d_din); G->free(d_dw); G->free(d_db);
}

static void test_layernorm(void) {
    test_layernorm_case(37, 45, 1e-12f);
    test_layernorm_case(3, 1000, 1e-5f);
    test_layernorm_case(1, 7, 1e-12f);
    if (!quick) test_layernorm_case(32 * 128, 768, 1e-12f);
}

/* ------------------------------------------------------------------ dropout */

static void test_dropout_case(int B, size_t L, float p, int in_place) {
    char what[160], shape[80];
    snprintf(shape, sizeof shape, "B=%d L=%zu p=%g%s", B, L, (double)p, in_place ? " in place" : "");
    size_t n = (size_t)B * L;
    int64_t *samp = xmalloc((size_t)B * 8);
    for (int b = 0; b < B; b++) samp[b] = b == 1 ? (int64_t)5000000123LL : 17 * b + 3;  /* > 2^32 too */
    uint64_t dseed = seed ^ 0x5DEECE66Dull;
    uint32_t site = 16 * 3 + 2;
    float *in = rnd(n, -2, 2), *out = xmalloc(n * 4);
    uint8_t *mask = xmalloc(n);
    memset(mask, 0xAB, n);
    float *d_in = dev(in, n * 4), *d_out = in_place ? d_in : dev_nan(n);
    uint8_t *d_mask = dev(mask, n);
    int64_t *d_samp = dev(samp, (size_t)B * 8);
    H_->dropout_forward(out, mask, in, B, L, samp, dseed, site, p);
    G->dropout_forward(d_out, d_mask, d_in, B, L, d_samp, dseed, site, p);
    snprintf(what, sizeof what, "dropout_forward out %s (bitwise)", shape);
    cmp(what, d_out, out, n, -1);
    snprintf(what, sizeof what, "dropout_forward mask %s (bitwise%s)", shape, p > 0 ? "" : ", untouched");
    cmp_u8(what, d_mask, mask, n);

    float *dout = rnd(n, -1, 1), *din = rnd(n, -1, 1);
    float *d_dout = dev(dout, n * 4), *d_din = dev(din, n * 4);
    if (p > 0) G->upload(d_mask, mask, n);
    H_->dropout_backward(din, dout, mask, B, L, p);
    G->dropout_backward(d_din, d_dout, d_mask, B, L, p);
    snprintf(what, sizeof what, "dropout_backward (+=) %s (bitwise)", shape);
    cmp(what, d_din, din, n, -1);
    op_done("dropout");
    free(samp); free(in); free(out); free(mask); free(dout); free(din);
    G->free(d_in); if (!in_place) G->free(d_out); G->free(d_mask); G->free(d_samp); G->free(d_dout); G->free(d_din);
}

static void test_dropout(void) {
    test_dropout_case(3, 4099, 0.1f, 0);
    test_dropout_case(2, 7, 0.5f, 1);
    test_dropout_case(2, 33, 0.0f, 0);
    if (!quick) test_dropout_case(32, (size_t)128 * 768, 0.1f, 1);
}

/* ------------------------------------------------------------------ attention */

typedef struct { int B, Tq, Tk, H, D, causal, masked; float p; } att_case;

static void test_attention_case(att_case c) {
    char what[200], shape[120];
    snprintf(shape, sizeof shape, "B=%d Tq=%d Tk=%d H=%d D=%d%s%s p=%g", c.B, c.Tq, c.Tk, c.H, c.D,
             c.causal ? " causal" : "", c.masked ? " key-mask" : "", (double)c.p);
    int C = c.H * c.D;
    size_t nq = (size_t)c.B * c.Tq * C, nk = (size_t)c.B * c.Tk * C, na = (size_t)c.B * c.H * c.Tq * c.Tk;
    float *q = rnd(nq, -2, 2), *k = rnd(nk, -2, 2), *v = rnd(nk, -1, 1);
    /* Key mask: row b keeps its first Tk - 2b keys; the last row masks every key (a fully
     * masked row must come out uniform, never NaN). */
    float *km = xmalloc((size_t)c.B * c.Tk * 4);
    for (int b = 0; b < c.B; b++)
        for (int t = 0; t < c.Tk; t++)
            km[(size_t)b * c.Tk + t] = (b == c.B - 1 && c.B > 1) ? 0.0f : (t < c.Tk - 2 * b ? 1.0f : 0.0f);
    int64_t *samp = xmalloc((size_t)c.B * 8);
    for (int b = 0; b < c.B; b++) samp[b] = 1000 * b + 7;
    uint64_t aseed = seed + 99;
    uint32_t site = 16 * 2;
    float *out = xmalloc(nq * 4), *probs = xmalloc(na * 4);
    uint8_t *pmask = xmalloc(na);
    memset(pmask, 0xAB, na);
    float *d_q = dev(q, nq * 4), *d_k = dev(k, nk * 4), *d_v = dev(v, nk * 4);
    float *d_km = c.masked ? dev(km, (size_t)c.B * c.Tk * 4) : NULL;
    int64_t *d_samp = dev(samp, (size_t)c.B * 8);
    float *d_out = dev_nan(nq), *d_probs = dev_nan(na);
    uint8_t *d_pmask = dev(pmask, na);
    H_->attention_forward(out, probs, pmask, q, k, v, c.masked ? km : NULL, c.causal, c.B, c.Tq, c.Tk,
                          c.H, c.D, samp, aseed, site, c.p);
    G->attention_forward(d_out, d_probs, d_pmask, d_q, d_k, d_v, d_km, c.causal, c.B, c.Tq, c.Tk,
                         c.H, c.D, d_samp, aseed, site, c.p);
    snprintf(what, sizeof what, "attention_forward out %s", shape);
    cmp(what, d_out, out, nq, FWD_TOL);
    snprintf(what, sizeof what, "attention_forward probs %s", shape);
    cmp(what, d_probs, probs, na, FWD_TOL);
    if (c.p > 0) {
        snprintf(what, sizeof what, "attention_forward dropout mask %s (bitwise)", shape);
        cmp_u8(what, d_pmask, pmask, na);
    }

    /* Backward from the CPU's saved probs and mask, so only the backward is compared. */
    G->upload(d_probs, probs, na * 4);
    G->upload(d_pmask, pmask, na);
    float *dout = rnd(nq, -1, 1), *dq = rnd(nq, -1, 1), *dk = rnd(nk, -1, 1), *dv = rnd(nk, -1, 1);
    float *d_dout = dev(dout, nq * 4), *d_dq = dev(dq, nq * 4), *d_dk = dev(dk, nk * 4), *d_dv = dev(dv, nk * 4);
    float *scratch = xmalloc(na * 4), *d_scratch = dev_nan(na);
    float *dq0 = hdup(dq, nq);
    H_->attention_backward(dq, dk, dv, scratch, dout, q, k, v, probs, pmask, c.B, c.Tq, c.Tk, c.H, c.D, c.p);
    G->attention_backward(d_dq, d_dk, d_dv, d_scratch, d_dout, d_q, d_k, d_v, d_probs, d_pmask, c.B,
                          c.Tq, c.Tk, c.H, c.D, c.p);
    snprintf(what, sizeof what, "attention_backward dq (+=) %s", shape);
    cmp(what, d_dq, dq, nq, GRAD_TOL);
    snprintf(what, sizeof what, "attention_backward dk (+=) %s", shape);
    cmp(what, d_dk, dk, nk, GRAD_TOL);
    snprintf(what, sizeof what, "attention_backward dv (+=) %s", shape);
    cmp(what, d_dv, dv, nk, GRAD_TOL);
    /* Only dq wanted (dk, dv NULL). */
    memcpy(dq, dq0, nq * 4);
    G->upload(d_dq, dq0, nq * 4);
    H_->attention_backward(dq, NULL, NULL, scratch, dout, q, k, v, probs, pmask, c.B, c.Tq, c.Tk, c.H, c.D, c.p);
    G->attention_backward(d_dq, NULL, NULL, d_scratch, d_dout, d_q, d_k, d_v, d_probs, d_pmask, c.B,
                          c.Tq, c.Tk, c.H, c.D, c.p);
    snprintf(what, sizeof what, "attention_backward dq alone (dk, dv NULL) %s", shape);
    cmp(what, d_dq, dq, nq, GRAD_TOL);
    op_done("attention");
    free(q); free(k); free(v); free(km); free(samp); free(out); free(probs); free(pmask);
    free(dout); free(dq); free(dk); free(dv); free(scratch); free(dq0);
    G->free(d_q); G->free(d_k); G->free(d_v); G->free(d_km); G->free(d_samp); G->free(d_out);
    G->free(d_probs); G->free(d_pmask); G->free(d_dout); G->free(d_dq); G->free(d_dk); G->free(d_dv);
    G->free(d_scratch);
}

/* The fused forward (Tk <= 128, D <= 128) against the GEMM path it replaces, on the same
 * inputs: out and probs within 1e-5, the dropout mask bit for bit. */
static void test_attention_paths(att_case c) {
    char what[200], shape[120];
    snprintf(shape, sizeof shape, "B=%d Tq=%d Tk=%d H=%d D=%d%s%s p=%g", c.B, c.Tq, c.Tk, c.H, c.D,
             c.causal ? " causal" : "", c.masked ? " key-mask" : "", (double)c.p);
    int C = c.H * c.D;
    size_t nq = (size_t)c.B * c.Tq * C, nk = (size_t)c.B * c.Tk * C, na = (size_t)c.B * c.H * c.Tq * c.Tk;
    float *q = rnd(nq, -2, 2), *k = rnd(nk, -2, 2), *v = rnd(nk, -1, 1);
    float *km = xmalloc((size_t)c.B * c.Tk * 4);
    for (int b = 0; b < c.B; b++)
        for (int t = 0; t < c.Tk; t++) km[(size_t)b * c.Tk + t] = t < c.Tk - 3 * b ? 1.0f : 0.0f;
    int64_t *samp = xmalloc((size_t)c.B * 8);
    for (int b = 0; b < c.B; b++) samp[b] = 77 * b + 1;
    float *d_q = dev(q, nq * 4), *d_k = dev(k, nk * 4), *d_v = dev(v, nk * 4);
    float *d_km = c.masked ? dev(km, (size_t)c.B * c.Tk * 4) : NULL;
    int64_t *d_samp = dev(samp, (size_t)c.B * 8);
    float *o1 = dev_nan(nq), *p1 = dev_nan(na), *o2 = dev_nan(nq), *p2 = dev_nan(na);
    uint8_t *m1 = G->alloc(na), *m2 = G->alloc(na);
    if (!m1 || !m2) die("device alloc");
    check_true("fused attention is on by default", ag_cuda_fused_attention() == 1);
    G->attention_forward(o1, p1, m1, d_q, d_k, d_v, d_km, c.causal, c.B, c.Tq, c.Tk, c.H, c.D, d_samp,
                         seed + 5, 16 * 4, c.p);
    ag_cuda_set_fused_attention(0);
    G->attention_forward(o2, p2, m2, d_q, d_k, d_v, d_km, c.causal, c.B, c.Tq, c.Tk, c.H, c.D, d_samp,
                         seed + 5, 16 * 4, c.p);
    ag_cuda_set_fused_attention(1);
    float *want = back(o2, nq * 4);
    snprintf(what, sizeof what, "attention_forward fused = GEMM path: out %s", shape);
    cmp(what, o1, want, nq, FWD_TOL);
    free(want);
    want = back(p2, na * 4);
    snprintf(what, sizeof what, "attention_forward fused = GEMM path: probs %s", shape);
    cmp(what, p1, want, na, FWD_TOL);
    free(want);
    if (c.p > 0) {
        uint8_t *wm = back(m2, na);
        snprintf(what, sizeof what, "attention_forward fused = GEMM path: dropout mask %s (bitwise)", shape);
        cmp_u8(what, m1, wm, na);
        free(wm);
    }
    op_done("attention paths");
    free(q); free(k); free(v); free(km); free(samp);
    G->free(d_q); G->free(d_k); G->free(d_v); G->free(d_km); G->free(d_samp);
    G->free(o1); G->free(p1); G->free(o2); G->free(p2); G->free(m1); G->free(m2);
}

static void test_attention(void) {
    /* Tk <= 128 and D <= 128 take the fused kernel; the others the GEMM path. */
    test_attention_paths((att_case){2, 19, 19, 3, 8, 0, 1, 0.1f});      /* 3 query tiles, dropout */
    test_attention_paths((att_case){1, 9, 9, 2, 5, 1, 1, 0.0f});        /* causal + key mask */
    test_attention_paths((att_case){2, 3, 128, 2, 128, 0, 1, 0.2f});    /* the largest fused shape */
    test_attention_case((att_case){1, 130, 130, 2, 4, 0, 1, 0.1f});     /* Tk > 128: GEMM path */
    test_attention_case((att_case){1, 5, 7, 1, 130, 0, 1, 0.1f});       /* D > 128: GEMM path */
    test_attention_case((att_case){2, 3, 128, 2, 128, 1, 1, 0.1f});     /* fused, Tk = D = 128, causal */
    test_attention_case((att_case){3, 13, 13, 4, 8, 0, 1, 0.0f});
    test_attention_case((att_case){3, 13, 13, 4, 8, 0, 1, 0.1f});
    test_attention_case((att_case){2, 9, 9, 2, 5, 1, 0, 0.2f});     /* causal */
    test_attention_case((att_case){2, 9, 9, 2, 5, 1, 1, 0.0f});     /* causal + key mask */
    test_attention_case((att_case){2, 7, 1, 3, 4, 0, 0, 0.1f});     /* TSDAE cross-attention */
    test_attention_case((att_case){2, 5, 11, 3, 4, 0, 1, 0.1f});    /* Tq != Tk */
    if (!quick) test_attention_case((att_case){4, 128, 128, 12, 64, 0, 1, 0.1f});
}

/* ------------------------------------------------------------------ fused forwards */

/* The fused entries against the CPU composition; and the CPU table's own fused entries
 * against that composition, bit for bit. */
static void test_linear_gelu_case(int N, int IC, int OC, int with_bias) {
    char what[160], shape[80];
    snprintf(shape, sizeof shape, "N=%d IC=%d OC=%d %s", N, IC, OC, with_bias ? "bias" : "no bias");
    size_t no = (size_t)N * OC;
    float *in = rnd((size_t)N * IC, -1, 1), *W = rnd((size_t)OC * IC, -0.5f, 0.5f), *b = rnd((size_t)OC, -1, 1);
    float *pre = xmalloc(no * 4), *act = xmalloc(no * 4), *pre2 = nans(no), *act2 = nans(no);
    H_->linear_forward(pre, in, W, with_bias ? b : NULL, N, IC, OC);
    H_->gelu_forward(act, pre, no);
    H_->linear_gelu_forward(pre2, act2, in, W, with_bias ? b : NULL, N, IC, OC);
    snprintf(what, sizeof what, "cpu linear_gelu_forward = composition, pre and act (bitwise) %s", shape);
    check_true(what, memcmp(pre, pre2, no * 4) == 0 && memcmp(act, act2, no * 4) == 0);
    float *d_in = dev(in, (size_t)N * IC * 4), *d_W = dev(W, (size_t)OC * IC * 4), *d_b = dev(b, (size_t)OC * 4);
    float *d_pre = dev_nan(no), *d_act = dev_nan(no);
    G->linear_gelu_forward(d_pre, d_act, d_in, d_W, with_bias ? d_b : NULL, N, IC, OC);
    snprintf(what, sizeof what, "linear_gelu_forward pre %s", shape);
    cmp(what, d_pre, pre, no, FWD_TOL);
    snprintf(what, sizeof what, "linear_gelu_forward act %s", shape);
    cmp(what, d_act, act, no, FWD_TOL);
    /* act in place over pre (the caller may keep only one buffer) */
    G->linear_gelu_forward(d_pre, d_pre, d_in, d_W, with_bias ? d_b : NULL, N, IC, OC);
    snprintf(what, sizeof what, "linear_gelu_forward act == pre (in place) %s", shape);
    cmp(what, d_pre, act, no, FWD_TOL);
    op_done("linear_gelu_forward");
    free(in); free(W); free(b); free(pre); free(act); free(pre2); free(act2);
    G->free(d_in); G->free(d_W); G->free(d_b); G->free(d_pre); G->free(d_act);
}

static void test_add_layernorm_case(int N, int C, float eps, int alias) {
    char what[160], shape[80];
    snprintf(shape, sizeof shape, "N=%d C=%d eps=%g%s", N, C, (double)eps,
             alias == 1 ? " res=x" : alias == 2 ? " res=r" : "");
    size_t n = (size_t)N * C;
    float *x = rnd(n, -2, 3), *r = rnd(n, -1, 1), *w = rnd((size_t)C, 0.5f, 1.5f), *b = rnd((size_t)C, -1, 1);
    float *res = xmalloc(n * 4), *out = xmalloc(n * 4), *mean = xmalloc((size_t)N * 4), *rstd = xmalloc((size_t)N * 4);
    H_->add(res, x, r, n);
    H_->layernorm_forward(out, mean, rstd, res, w, b, N, C, eps);
    /* CPU fused, with the same aliasing */
    float *x2 = hdup(x, n), *r2 = hdup(r, n), *res2 = alias == 1 ? x2 : alias == 2 ? r2 : nans(n);
    float *out2 = nans(n), *mean2 = nans((size_t)N), *rstd2 = nans((size_t)N);
    H_->add_layernorm_forward(res2, out2, mean2, rstd2, x2, r2, w, b, N, C, eps);
    snprintf(what, sizeof what, "cpu add_layernorm_forward = composition (bitwise) %s", shape);
    check_true(what, memcmp(res2, res, n * 4) == 0 && memcmp(out2, out, n * 4) == 0 &&
                         memcmp(mean2, mean, (size_t)N * 4) == 0 && memcmp(rstd2, rstd, (size_t)N * 4) == 0);
    float *d_x = dev(x, n * 4), *d_r = dev(r, n * 4), *d_w = dev(w, (size_t)C * 4), *d_b = dev(b, (size_t)C * 4);
    float *d_res = alias == 1 ? d_x : alias == 2 ? d_r : dev_nan(n);
    float *d_out = dev_nan(n), *d_mean = dev_nan((size_t)N), *d_rstd = dev_nan((size_t)N);
    G->add_layernorm_forward(d_res, d_out, d_mean, d_rstd, d_x, d_r, d_w, d_b, N, C, eps);
    snprintf(what, sizeof what, "add_layernorm_forward res (bitwise) %s", shape);
    cmp(what, d_res, res, n, -1);
    snprintf(what, sizeof what, "add_layernorm_forward out %s", shape);
    cmp(what, d_out, out, n, FWD_TOL);
    snprintf(what, sizeof what, "add_layernorm_forward mean, rstd %s", shape);
    float *both = xmalloc((size_t)N * 8), *dboth = xmalloc((size_t)N * 8);
    memcpy(both, mean, (size_t)N * 4);
    memcpy(both + N, rstd, (size_t)N * 4);
    G->download(dboth, d_mean, (size_t)N * 4);
    G->download(dboth + N, d_rstd, (size_t)N * 4);
    check_rel(what, dboth, both, 2 * (size_t)N, FWD_TOL);
    op_done("add_layernorm_forward");
    if (!alias) { free(res2); G->free(d_res); }
    free(x); free(r); free(w); free(b); free(res); free(out); free(mean); free(rstd); free(x2); free(r2);
    free(out2); free(mean2); free(rstd2); free(both); free(dboth);
    G->free(d_x); G->free(d_r); G->free(d_w); G->free(d_b); G->free(d_out); G->free(d_mean); G->free(d_rstd);
}

static void test_fused(void) {
    check_true("cpu table has both fused forwards", H_->linear_gelu_forward && H_->add_layernorm_forward);
    check_true("cuda table has both fused forwards", G->linear_gelu_forward && G->add_layernorm_forward);
    test_linear_gelu_case(37, 45, 29, 1);
    test_linear_gelu_case(5, 3, 1, 0);
    test_add_layernorm_case(37, 45, 1e-12f, 0);
    test_add_layernorm_case(3, 1000, 1e-5f, 1);
    test_add_layernorm_case(2, 7, 1e-12f, 2);
    if (!quick) {
        test_linear_gelu_case(32 * 64, 384, 1536, 1);
        test_add_layernorm_case(32 * 128, 768, 1e-12f, 1);
    }
}

/* ------------------------------------------------------------------ optimiser */

/* Device AdamW + clipping (nn/cuda/optim.h) against nn/optim.c over several steps of a
 * warm-up schedule, on a table of decayed and undecayed tensors: the norm within 1e-12
 * relative, every parameter within 1e-6 relative after every step, the moments after the
 * last, and a checkpoint round trip (download, upload into a fresh optimiser, one more step). */
static void test_optim(void) {
    char what[200];
    ag_params hp, dp;
    ag_params_init(&hp);
    const char *names[] = {"enc.dense.weight", "enc.dense.bias", "enc.LayerNorm.weight", "enc.LayerNorm.bias",
                           "enc.out.weight", "enc.out.weight2", "enc.out.bias", "emb.weight"};
    int64_t shapes[][2] = {{37, 45}, {37, 1}, {45, 1}, {45, 1}, {29, 37}, {quick ? 100 : 3000, 77}, {29, 1}, {13, 7}};
    for (int i = 0; i < 8; i++)
        if (ag_params_add(&hp, names[i], shapes[i][1] == 1 ? 1 : 2, shapes[i]) < 0) die("params add");
    if (ag_params_alloc(&hp)) die("params alloc");
    float *init = rnd(hp.total, -1, 1);
    memcpy(hp.data, init, hp.total * 4);
    if (ag_cuda_params_mirror(&dp, &hp)) die("params mirror");
    ag_adamw ho, go;
    if (ag_adamw_init(&ho, &hp, 0.01) || ag_cuda_adamw_init(&go, &dp, 0.01)) die("adamw init");
    ag_schedule sch = {AG_SCHED_LINEAR, 2, 7};
    double base_lr = 0.05, worst_norm = 0;
    int steps = 6, norm_ok = 1, clipped = 0;
    float *got = xmalloc(hp.total * 4);
    for (int s = 0; s < steps; s++) {
        float *g = rnd(hp.total, -0.5f, 0.5f);
        if (s == 3) for (size_t i = 0; i < hp.total; i++) g[i] *= 1e-4f;   /* a step below max_norm */
        memcpy(hp.grad, g, hp.total * 4);
        G->upload(dp.grad, g, hp.total * 4);
        double nh = ag_clip_grad_norm(&hp, 1.0), nd = ag_cuda_clip_grad_norm(&dp, 1.0);
        double rel = fabs(nd - nh) / nh;
        if (!(rel <= 1e-12)) norm_ok = 0;
        if (rel > worst_norm) worst_norm = rel;
        clipped += nh > 1.0;
        double lr = base_lr * ag_schedule_factor(&sch, ho.step);
        if (ag_adamw_step(&ho, &hp, lr) || ag_cuda_adamw_step(&go, &dp, lr)) die("adamw step");
        G->download(got, dp.data, hp.total * 4);
        snprintf(what, sizeof what, "adamw step %d (lr %.4g): every parameter within 1e-6 relative", s, lr);
        check_close(what, got, hp.data, hp.total, 1e-6, 1e-30);
        free(g);
    }
    snprintf(what, sizeof what, "clip_grad_norm: %d norms within 1e-12 relative (worst %.3g; %d of them clipped)",
             steps, worst_norm, clipped);
    check_true(what, norm_ok && clipped > 0 && clipped < steps);
    check_true("adamw: both step counters advanced",
               go.step == steps && ho.step == steps);
    /* checkpoint: moments down, then into a fresh device optimiser, one more step each */
    ag_adamw ck;
    if (ag_adamw_init(&ck, &hp, 0.5)) die("adamw init (checkpoint)");
    check_true("adamw download: 0", ag_cuda_adamw_download(&ck, &go) == 0);
    check_close("adamw download: first moments", ck.m, ho.m, hp.total, 1e-6, 1e-30);
    check_close("adamw download: second moments", ck.v, ho.v, hp.total, 1e-6, 1e-30);
    check_true("adamw download: step and weight decay carried", ck.step == steps && ck.weight_decay == 0.01);
    ag_cuda_adamw_free(&go);
    if (ag_cuda_adamw_init(&go, &dp, 0.0)) die("adamw init (fresh)");
    check_true("adamw upload: 0", ag_cuda_adamw_upload(&go, &ck) == 0);
    float *g = rnd(hp.total, -0.5f, 0.5f);
    memcpy(hp.grad, g, hp.total * 4);
    G->upload(dp.grad, g, hp.total * 4);
    double lr = base_lr * ag_schedule_factor(&sch, ho.step);
    if (ag_adamw_step(&ho, &hp, lr) || ag_cuda_adamw_step(&go, &dp, lr)) die("adamw step after upload");
    G->download(got, dp.data, hp.total * 4);
    check_close("adamw step after a checkpoint round trip: parameters within 1e-6", got, hp.data, hp.total,
                1e-6, 1e-30);
    /* a non-finite norm leaves the gradients alone */
    g[5] = NAN;
    G->upload(dp.grad, g, hp.total * 4);
    g[5] = 0;
    double nn_ = ag_cuda_clip_grad_norm(&dp, 1.0);
    G->download(got, dp.grad, hp.total * 4);
    got[5] = 0;
    check_true("clip_grad_norm with a NaN gradient: NaN norm, gradients untouched",
               isnan(nn_) && memcmp(got, g, hp.total * 4) == 0);
    /* errors */
    ag_params small = dp;
    small.total = dp.total - 1;
    check_true("adamw step on another table size: -1", ag_cuda_adamw_step(&go, &small, 0.1) == -1);
    check_true("adamw step with lr NaN: -1", ag_cuda_adamw_step(&go, &dp, NAN) == -1);
    ag_adamw none;
    memset(&none, 0, sizeof none);
    check_true("adamw step without init: -1", ag_cuda_adamw_step(&none, &dp, 0.1) == -1);
    op_done("optimiser");
    free(g); free(got); free(init);
    ag_adamw_free(&ho);
    ag_adamw_free(&ck);
    ag_cuda_adamw_free(&go);
    ag_cuda_params_free(&dp);
    ag_params_free(&hp);
}

/* ------------------------------------------------------------------ BERT end to end */

static void test_bert(const char *label, ag_bert_config cfg, int B, int T) {
    char what[512];
    ag_bert mc, mg;
    ag_params pc, layout, pd;
    /* Two registrations give identical tables: one for the CPU model, one whose layout the
     * device mirror shares (and which later receives the device gradients). */
    if (gpu_bert_twins(&mc, &pc, &mg, &layout, &cfg, "", 1)) die("bert register");
    ag_bert_init_weights(&mc, &pc, seed);
    /* Non-trivial LayerNorm and bias values, so their gradients paths are exercised. */
    for (int i = 0; i < pc.n; i++)
        if (!pc.t[i].decay) {
            float *x = ag_params_data(&pc, i), *r = rnd(pc.t[i].numel, -0.1f, 0.1f);
            for (size_t j = 0; j < pc.t[i].numel; j++) x[j] += r[j];
            free(r);
        }
    if (ag_cuda_params_mirror(&pd, &pc)) die("params mirror");
    mg.ops = G;

    size_t N = (size_t)B * T;
    int32_t *ids = xmalloc(N * 4), *types = xmalloc(N * 4), *mask = xmalloc(N * 4);
    int64_t *samp = xmalloc((size_t)B * 8);
    for (int b = 0; b < B; b++) {
        int len = T - (b * 3) % (T / 2 + 1);  /* row 0 full, others padded */
        samp[b] = b == 1 ? (int64_t)4294967301LL : 31 * b + 5;
        for (int t = 0; t < T; t++) {
            size_t i = (size_t)b * T + t;
            int real = t < len;
            ids[i] = real ? (t == 0 ? 2 : 1 + (int32_t)(ag_rng_u32(seed, 13, i, 0, 0) % (uint32_t)(cfg.vocab_size - 1))) : 0;
            types[i] = real && t >= len / 2;
            mask[i] = real;
        }
    }
    ag_bert_batch in = {B, T, ids, types, mask, samp};
    uint64_t dseed = seed * 7 + 1;
    if (ag_bert_forward(&mc, &pc, &in, 1, dseed, 1)) die("cpu bert forward");
    if (ag_bert_forward(&mg, &pd, &in, 1, dseed, 1)) die("cuda bert forward");
    int C = cfg.hidden_size;
    snprintf(what, sizeof what, "%s: last hidden state [%d,%d,%d] (dropout on)", label, B, T, C);
    cmp(what, ag_bert_hidden(&mg), ag_bert_hidden(&mc), N * C, FWD_TOL);
    snprintf(what, sizeof what, "%s: pooler output", label);
    cmp(what, ag_bert_pooled(&mg), ag_bert_pooled(&mc), (size_t)B * C, FWD_TOL);
    /* The dropout masks themselves: the embeddings' and the first layer's attention probs. */
    snprintf(what, sizeof what, "%s: embedding dropout mask (bitwise)", label);
    cmp_u8(what, mg.emb_acts.mask, mc.emb_acts.mask, N * C);
    if (cfg.num_hidden_layers > 0) {
        snprintf(what, sizeof what, "%s: layer 0 attention dropout mask (bitwise)", label);
        cmp_u8(what, mg.layer_acts[0].attn.pmask, mc.layer_acts[0].attn.pmask,
               (size_t)B * cfg.num_attention_heads * T * T);
    }

    float *dh = rnd(N * C, -1, 1), *dp = rnd((size_t)B * C, -1, 1);
    float *d_dh = dev(dh, N * C * 4), *d_dp = dev(dp, (size_t)B * C * 4);
    if (ag_bert_backward(&mc, &pc, dh, dp)) die("cpu bert backward");
    if (ag_bert_backward(&mg, &pd, d_dh, d_dp)) die("cuda bert backward");
    if (ag_cuda_params_download(&layout, &pd, 0, 1)) die("download grads");
    /* Floor of the denominator: 1e-3 of the largest gradient in the table. The attention
     * key biases' true gradient is 0 (a bias on every key shifts a softmax row by a
     * constant): what they get is rounding noise, which any change of summation order in
     * the forward (cuBLAS vs OpenBLAS, the fused attention kernel) changes completely. */
    gpu_grad_cmp gc = gpu_compare_grads(&layout, &pc, GRAD_TOL);
    snprintf(what, sizeof what, "%s: all %d parameter gradients within %.0e of max(max |want|, 1e-3 of the "
             "largest) (worst %.3g, %s)", label, pc.n, GRAD_TOL, gc.worst, gc.worst_name);
    check_true(what, gc.bad == 0);
    op_done("bert");
    free(ids); free(types); free(mask); free(samp); free(dh); free(dp);
    G->free(d_dh); G->free(d_dp);
    ag_bert_free(&mc);
    ag_bert_free(&mg);
    ag_params_free(&pc);
    ag_params_free(&layout);
    ag_cuda_params_free(&pd);
}

/* ------------------------------------------------------------------ main */

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) quick |= strcmp(argv[i], "--quick") == 0;
    gpu_test_start(&seed);
    check_true("ag_ops_select(\"cuda\") gives the CUDA table", ag_ops_select("cuda") == &ag_ops_cuda);
    check_true("ag_ops_select(\"auto\") picks the GPU", ag_ops_select("auto") == &ag_ops_cuda);

    test_memory();
    test_elementwise();
    test_linear();
    test_embedding();
    test_layernorm();
    test_dropout();
    test_attention();
    test_fused();
    test_optim();

    ag_bert_config tiny = {.vocab_size = 97, .hidden_size = 32, .num_hidden_layers = 2,
                           .num_attention_heads = 4, .intermediate_size = 64,
                           .max_position_embeddings = 40, .type_vocab_size = 2,
                           .layer_norm_eps = 1e-12f, .hidden_dropout_prob = 0.1f,
                           .attention_probs_dropout_prob = 0.1f, .pad_token_id = 0};
    test_bert("bert tiny", tiny, 3, 9);
    if (!quick) {
        ag_bert_config mini = tiny;  /* MiniLM-L6 widths, 2 layers (the CPU side stays quick) */
        mini.vocab_size = 30522;
        mini.hidden_size = 384;
        mini.num_attention_heads = 12;
        mini.intermediate_size = 1536;
        mini.max_position_embeddings = 512;
        test_bert("bert minilm-width", mini, 4, 32);
    }
    check_true("ag_cuda_check at the end: no recorded error", ag_cuda_check() == 0);
    ag_cuda_shutdown();
    return check_finish();
}
