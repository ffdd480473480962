/* MPI test of the bucketed gradient allreduce: bucket layout (reverse order, small first
 * bucket, tiling), sums equal to a direct serial computation over the same global batch
 * (exact with eighths, within 1e-6 with random floats), ready() in any order with unused
 * tensors and ranks without samples, and the fixed-point EXACT mode bit-identical to the
 * serial fixed-point sum, hence the same bits at every rank count. Row-sparse tensors
 * (embedding tables) reduced by their nonzero rows give the dense reduction's bits, also
 * with a dense share of the table kept apart in a part (ag_ar_add_part). */
#include "dist/allreduce.h"
#include "dist/comm.h"
#include "nn/error.h"
#include "tests/mpi/synth.h"
#include "tests/support/check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { KIND_EIGHTHS, KIND_UNIFORM, KIND_MIXED };

/* MIXED spans magnitudes 2^-23..1, so many values have bits below the fixed point's 2^-32
 * and the rounding rule matters. */
static float sample_value(int kind, int64_t s, size_t i) {
    if (kind == KIND_EIGHTHS) return synth_eighths(11, (uint64_t)s, i);
    if (kind == KIND_UNIFORM) return synth_uniform(12, (uint64_t)s, i);
    return ldexpf(synth_uniform(13, (uint64_t)s, i), -(int)(synth_key(14, (uint64_t)s, i) % 24));
}

/* 23 tensors of uneven sizes (1..700 floats, two larger), registered like a model's. */
static void build_table(ag_params *p) {
    ag_params_init(p);
    for (int t = 0; t < 23; t++) {
        int64_t n = 1 + (int64_t)(synth_key(7, (uint64_t)t, 0) % 700);
        if (t == 3) n = 5000;
        if (t == 20) n = 3001;
        if (t % 5 == 2) ag_params_addf(p, 2, (int64_t[]){ n, 3 }, "layer.%d.weight", t);
        else ag_params_addf(p, 1, (int64_t[]){ n }, "layer.%d.bias", t);
    }
    ag_params_alloc(p);
}

/* grad[tensor elements] += sample s's gradient; alignment gaps stay zero. */
static void add_sample(ag_params *p, int kind, int64_t s) {
    for (int t = 0; t < p->n; t++)
        for (size_t e = 0; e < p->t[t].numel; e++) {
            size_t i = p->t[t].offset + e;
            p->grad[i] += sample_value(kind, s, i);
        }
}

/* What np=1 with one big local batch computes: fp32 sum in sample order, then the mean. */
static void reference_sum(const ag_params *p, int kind, int64_t G, float *ref) {
    memset(ref, 0, p->total * sizeof *ref);
    for (int64_t s = 0; s < G; s++)
        for (int t = 0; t < p->n; t++)
            for (size_t e = 0; e < p->t[t].numel; e++) {
                size_t i = p->t[t].offset + e;
                ref[i] += sample_value(kind, s, i);
            }
    for (size_t i = 0; i < p->total; i++) ref[i] = (float)((double)ref[i] * (1.0 / (double)G));
}

/* The documented fixed-point rule, computed serially over the global batch. */
static void reference_exact(const ag_params *p, int kind, int64_t G, int F, float *ref) {
    int64_t *acc = calloc(p->total, sizeof *acc);
    for (int64_t s = 0; s < G; s++)
        for (int t = 0; t < p->n; t++)
            for (size_t e = 0; e < p->t[t].numel; e++) {
                size_t i = p->t[t].offset + e;
                acc[i] += llrint(ldexp((double)sample_value(kind, s, i), F));
            }
    for (size_t i = 0; i < p->total; i++) ref[i] = (float)(ldexp((double)acc[i], -F) / (double)G);
    free(acc);
}

/* Report tensors ready in reverse order (or a rank-specific shuffle, leaving `skip` tensors
 * unreported), with progress calls in between as a backward pass would make them. */
static int report_ready(ag_ar *ar, const ag_params *p, int shuffle, int skip, int rank) {
    int n = p->n, order[64];
    for (int i = 0; i < n; i++) order[i] = n - 1 - i;
    if (shuffle)
        for (int i = n - 1; i > 0; i--) {
            int j = (int)(synth_key(99, (uint64_t)rank, (uint64_t)i) % (uint64_t)(i + 1));
            int tmp = order[i]; order[i] = order[j]; order[j] = tmp;
        }
    for (int i = 0; i < n - skip; i++) {
        if (ag_ar_ready(ar, order[i])) return -1;
        if (i % 3 == 0 && ag_ar_progress(ar)) return -1;
    }
    return 0;
}

/* One SUM step over the global batch [0, G): this rank's slice, then the allreduce. */
static int step_sum(ag_ar *ar, ag_params *p, const ag_comm *c, int kind, int64_t G, int shuffle, int skip) {
    int64_t b, n;
    ag_batch_slice(G, c->size, c->rank, &b, &n);
    if (ag_ar_begin(ar)) return -1;
    ag_params_zero_grad(p);
    for (int64_t s = b; s < b + n; s++) add_sample(p, kind, s);
    /* A rank without samples runs no backward and reports nothing. */
    if (n > 0 && report_ready(ar, p, shuffle, skip, c->rank)) return -1;
    return ag_ar_finish(ar, G);
}

/* One EXACT step: per-sample micro-batches folded with accumulate, the last one through ready. */
static int step_exact(ag_ar *ar, ag_params *p, const ag_comm *c, int kind, int64_t G) {
    int64_t b, n;
    ag_batch_slice(G, c->size, c->rank, &b, &n);
    if (ag_ar_begin(ar)) return -1;
    for (int64_t s = b; s < b + n; s++) {
        ag_params_zero_grad(p);
        add_sample(p, kind, s);
        if (s < b + n - 1) { if (ag_ar_accumulate(ar)) return -1; }
        else if (report_ready(ar, p, 0, 0, c->rank)) return -1;
    }
    return ag_ar_finish(ar, G);
}

static void test_layout(const ag_params *p, const ag_comm *c) {
    ag_ar_config cfg;
    ag_ar_config_default(&cfg);
    cfg.first_bucket_bytes = 600;
    cfg.bucket_bytes = 5000;
    ag_ar *ar = NULL;
    check_true("create with small buckets", ag_ar_create(&ar, p, &cfg, c->world) == 0);
    int nb = ag_ar_bucket_count(ar), ok = nb > 3, next_first = p->n - 1;
    size_t top = p->t[p->n - 1].offset + p->t[p->n - 1].numel;
    for (int b = 0; b < nb; b++) {
        int first, last;
        size_t off, cnt;
        ag_ar_bucket_info(ar, b, &first, &last, &off, &cnt);
        size_t cap = b == 0 ? cfg.first_bucket_bytes : cfg.bucket_bytes;
        ok &= first == next_first && last <= first && off + cnt == top;
        /* Closed as soon as it reached its size: without its last tensor it was smaller. */
        if (b < nb - 1) ok &= cnt * 4 >= cap && (first == last || (off + cnt - p->t[last + 1].offset) * 4 < cap);
        next_first = last - 1;
        top = off;
    }
    check_true("buckets: reverse order, tile the buffer, close at their size", ok && next_first == -1 && top == 0);
    ag_ar_stats st;
    ag_ar_get_stats(ar, &st);
    check_true("stats: bucket count and bytes", st.n_buckets == nb && st.bytes == p->total * 4);
    ag_ar_free(ar);

    cfg.first_bucket_bytes = cfg.bucket_bytes = 4;   /* one tensor per bucket */
    ag_ar_create(&ar, p, &cfg, c->world);
    check_true("buckets: 4-byte caps give one bucket per tensor", ag_ar_bucket_count(ar) == p->n);
    ag_ar_free(ar);
    ag_ar_create(&ar, p, NULL, c->world);
    check_true("buckets: default 1 MiB first bucket holds this small table", ag_ar_bucket_count(ar) == 1);
    ag_ar_free(ar);

    ag_params empty;
    ag_params_init(&empty);
    check_true("create: an unallocated table is an error", ag_ar_create(&ar, &empty, NULL, c->world) == -1 && ar == NULL);
}

static void test_sum(ag_params *p, const ag_comm *c, float *ref) {
    ag_ar_config cfg;
    ag_ar_config_default(&cfg);
    cfg.first_bucket_bytes = 600;
    cfg.bucket_bytes = 5000;
    ag_ar *ar = NULL;
    ag_ar_create(&ar, p, &cfg, c->world);
    const int64_t G = 13;
    char what[128];

    reference_sum(p, KIND_EIGHTHS, G, ref);
    check_true("sum step (eighths) returns 0", step_sum(ar, p, c, KIND_EIGHTHS, G, 0, 0) == 0);
    snprintf(what, sizeof what, "sum of eighths over %d ranks is bit-exact vs serial", c->size);
    check_true(what, !memcmp(p->grad, ref, p->total * sizeof *ref));

    reference_sum(p, KIND_UNIFORM, G, ref);
    check_true("sum step (uniform) returns 0", step_sum(ar, p, c, KIND_UNIFORM, G, 0, 0) == 0);
    check_rel("sum of random floats vs serial fp32 sum", p->grad, ref, p->total, 1e-6);

    /* Shuffled ready() order per rank and 4 tensors never reported: same result. */
    check_true("shuffled/unreported step returns 0", step_sum(ar, p, c, KIND_UNIFORM, G, 1, 4) == 0);
    check_rel("sum with shuffled ready order and unused tensors", p->grad, ref, p->total, 1e-6);

    /* G=2: at np >= 3 some ranks have no samples and call only begin/finish. */
    reference_sum(p, KIND_EIGHTHS, 2, ref);
    check_true("tiny-batch step returns 0", step_sum(ar, p, c, KIND_EIGHTHS, 2, 0, 0) == 0);
    check_true("sum with ranks that hold no samples is exact", !memcmp(p->grad, ref, p->total * sizeof *ref));

    ag_ar_stats st;
    ag_ar_get_stats(ar, &st);
    check_true("stats: 4 steps, non-negative times", st.steps == 4 && st.t_mpi >= 0 && st.t_wait >= 0 &&
                                                         st.t_flight >= 0);
    ag_log0("allreduce stats over 4 steps: %d buckets, %zu bytes/step, mpi %.6f s, wait %.6f s, in flight %.6f s",
            st.n_buckets, st.bytes, st.t_mpi, st.t_wait, st.t_flight);

    /* Without overlap (blocking reductions in finish): the same sums. */
    ag_ar *blk = NULL;
    ag_ar_config bcfg = cfg;
    bcfg.overlap = 0;
    ag_ar_create(&blk, p, &bcfg, c->world);
    reference_sum(p, KIND_EIGHTHS, G, ref);
    check_true("blocking-bucket step returns 0", step_sum(blk, p, c, KIND_EIGHTHS, G, 1, 2) == 0);
    check_true("overlap off: same exact sums", !memcmp(p->grad, ref, p->total * sizeof *ref));
    ag_ar_free(blk);

    /* Buckets reduced in pieces of 44 bytes (11 floats: pieces end inside tensors), with and
     * without overlap: the same sums. */
    for (int ov = 0; ov <= 1; ov++) {
        ag_ar_config pcfg = cfg;
        pcfg.overlap = ov;
        pcfg.piece_bytes = 44;
        ag_ar_create(&blk, p, &pcfg, c->world);
        check_true("pieces step returns 0", step_sum(blk, p, c, KIND_EIGHTHS, G, 1, 2) == 0);
        snprintf(what, sizeof what, "pieces of 11 floats (overlap %d): same exact sums", ov);
        check_true(what, !memcmp(p->grad, ref, p->total * sizeof *ref));
        ag_ar_free(blk);
    }
    ag_ar_config pbad = cfg;
    pbad.piece_bytes = 4;
    check_true("piece_bytes below 8 is refused", ag_ar_create(&blk, p, &pbad, c->world) == -1 && !blk &&
                                                 strstr(ag_errmsg(), "piece_bytes"));

    /* Misuse is reported, not crashed on. */
    ag_ar_begin(ar);
    int r1 = ag_ar_ready(ar, 5), r2 = ag_ar_ready(ar, 5), r3 = ag_ar_ready(ar, 99);
    check_true("ready twice / out of range are errors", r1 == 0 && r2 == -1 && r3 == -1);
    check_true("finish after misuse still completes the collectives", ag_ar_finish(ar, 1) == 0);
    check_true("ready outside a step is an error", ag_ar_ready(ar, 0) == -1);
    check_true("finish with count 0 is an error", ag_ar_begin(ar) == 0 && ag_ar_finish(ar, 0) == -1);
    ag_ar_free(ar);
}

static void test_exact(ag_params *p, const ag_comm *c, float *ref) {
    ag_ar_config cfg;
    ag_ar_config_default(&cfg);
    cfg.mode = AG_AR_EXACT;
    cfg.first_bucket_bytes = 600;
    cfg.bucket_bytes = 5000;
    cfg.piece_bytes = 1000;   /* each bucket reduced in several collectives */
    ag_ar *ar = NULL;
    check_true("create exact", ag_ar_create(&ar, p, &cfg, c->world) == 0);
    const int64_t G = 11;
    reference_exact(p, KIND_MIXED, G, cfg.exact_frac_bits, ref);
    check_true("exact step returns 0", step_exact(ar, p, c, KIND_MIXED, G) == 0);
    char what[160];
    snprintf(what, sizeof what, "exact mode over %d ranks: bit-identical to the serial fixed-point sum "
             "(so identical at every np)", c->size);
    check_true(what, !memcmp(p->grad, ref, p->total * sizeof *ref));
    uint64_t h = ag_hash_bytes(p->grad, p->total * sizeof *p->grad);
    ag_log0("exact-mode result hash 0x%016llx (must be the same at every np)", (unsigned long long)h);
    check_true("exact mode: all ranks hold the same bits", ag_check_same(p->grad, p->total, 0, c->world) == 0);

    /* And close to the plain fp32 mean (quantisation 2^-32 per contribution). */
    float *plain = malloc(p->total * sizeof *plain);
    reference_sum(p, KIND_MIXED, G, plain);
    check_rel("exact mode vs fp32 mean", p->grad, plain, p->total, 1e-6);
    free(plain);

    /* A second step reuses the accumulator (begin zeroes it). */
    reference_exact(p, KIND_EIGHTHS, 5, cfg.exact_frac_bits, ref);
    check_true("exact step 2 returns 0", step_exact(ar, p, c, KIND_EIGHTHS, 5) == 0);
    check_true("exact mode step 2 (some ranks without samples at np 4)", !memcmp(p->grad, ref, p->total * sizeof *ref));

    /* Out-of-range and non-finite values are errors naming the tensor (no communication). */
    ag_ar_begin(ar);
    ag_params_zero_grad(p);
    p->grad[p->t[7].offset + 2] = 1e6f;
    int rc = ag_ar_accumulate(ar);
    check_true("exact: |g| >= 2^(46-F) is an error naming the tensor", rc == -1 && strstr(ag_errmsg(), "layer.7.weight"));
    ag_params_zero_grad(p);
    p->grad[p->t[9].offset] = NAN;
    rc = ag_ar_accumulate(ar);
    check_true("exact: NaN is an error naming the tensor", rc == -1 && strstr(ag_errmsg(), "layer.9.bias"));
    ag_params_zero_grad(p);
    check_true("exact: after a local error, finish fails on every rank (no hang)", ag_ar_finish(ar, 1) == -1 &&
                                                                                     strstr(ag_errmsg(), "layer.7.weight"));

    /* Only the last rank sees an Inf, in a bucket started through ready(): the collectives
     * stay matched and every rank learns that the step failed. */
    ag_ar_begin(ar);
    ag_params_zero_grad(p);
    if (c->rank == c->size - 1) p->grad[p->t[20].offset + 1] = INFINITY;
    int rr = report_ready(ar, p, 0, 0, c->rank);
    rc = ag_ar_finish(ar, 1);
    if (c->rank == c->size - 1)
        check_true("exact: the rank with the Inf reports it, naming the tensor",
                   rr == -1 && rc == -1 && strstr(ag_errmsg(), "layer.20.bias"));
    else
        check_true("exact: the other ranks fail the step too", rr == 0 && rc == -1 && strstr(ag_errmsg(), "another rank"));

    /* The next step is clean again. */
    reference_exact(p, KIND_EIGHTHS, 5, cfg.exact_frac_bits, ref);
    check_true("exact: a clean step after a failed one", step_exact(ar, p, c, KIND_EIGHTHS, 5) == 0 &&
                                                            !memcmp(p->grad, ref, p->total * sizeof *ref));
    ag_ar_free(ar);
}

/* ---- row-sparse tensors ---- */

enum { SP_ROWS = 300, SP_LEN = 16 };

/* A small model: a dense tensor, an embedding table flagged row_sparse, two dense after it. */
static void build_sparse_table(ag_params *p) {
    ag_params_init(p);
    ag_params_add(p, "embeddings.word_embeddings.weight", 2, (int64_t[]){ SP_ROWS, SP_LEN });
    ag_params_add(p, "embeddings.position_embeddings.weight", 2, (int64_t[]){ 20, SP_LEN });
    ag_params_add(p, "layer.0.weight", 2, (int64_t[]){ 7, 9 });
    ag_params_add(p, "layer.0.bias", 1, (int64_t[]){ 7 });
    p->t[0].row_sparse = 1;
    ag_params_alloc(p);
}

/* Sample s's gradient: `touch` rows of the table (eighths, so every sum is exact in any
 * order), every dense element; sample 1 writes -0.0 over all of row 7 and sample 2 a
 * single -0.0 in row 8 (a row whose only "value" is a negative zero). */
static void add_sparse_sample(ag_params *p, int64_t s, int touch) {
    float *emb = p->grad + p->t[0].offset;
    for (int j = 0; j < touch; j++) {
        size_t r = (size_t)(synth_key(31, (uint64_t)s, (uint64_t)j) % SP_ROWS);
        if (r == 7 || r == 8) continue;
        for (int c = 0; c < SP_LEN; c++) emb[r * SP_LEN + c] += synth_eighths(32, (uint64_t)s, r * SP_LEN + c);
    }
    if (s == 1) for (int c = 0; c < SP_LEN; c++) emb[7 * SP_LEN + c] = -0.0f;
    if (s == 2) emb[8 * SP_LEN + 3] = -0.0f;
    for (int t = 1; t < p->n; t++)
        for (size_t e = 0; e < p->t[t].numel; e++)
            p->grad[p->t[t].offset + e] += synth_eighths(33, (uint64_t)s, p->t[t].offset + e);
}

/* One step over the global batch [0, G): SUM (this rank's samples summed) or EXACT
 * (one micro-batch per sample). */
static int sparse_step(ag_ar *ar, ag_params *p, const ag_comm *c, int exact, int64_t G, int touch) {
    int64_t b, n;
    ag_batch_slice(G, c->size, c->rank, &b, &n);
    if (ag_ar_begin(ar)) return -1;
    ag_params_zero_grad(p);
    for (int64_t s = b; s < b + n; s++) {
        add_sparse_sample(p, s, touch);
        if (exact && s < b + n - 1) {
            if (ag_ar_accumulate(ar)) return -1;
            ag_params_zero_grad(p);
        }
    }
    if (n > 0 && report_ready(ar, p, 0, 0, c->rank)) return -1;
    return ag_ar_finish(ar, G);
}

/* The sparse and part tests' settings: tiny buckets, every row-sparse table sparse. */
static ag_ar_config small_config(int exact, int overlap, size_t piece_bytes) {
    ag_ar_config cfg;
    ag_ar_config_default(&cfg);
    cfg.mode = exact ? AG_AR_EXACT : AG_AR_SUM;
    cfg.overlap = overlap;
    cfg.first_bucket_bytes = 64;
    cfg.bucket_bytes = 256;
    cfg.sparse_min_bytes = 0;
    cfg.piece_bytes = piece_bytes;
    return cfg;
}

static void test_sparse(const ag_comm *c) {
    ag_params p;
    build_sparse_table(&p);
    float *dense = malloc(p.total * sizeof *dense);
    char what[200];
    for (int exact = 0; exact <= 1; exact++)
        for (int overlap = 0; overlap <= 1; overlap++) {
            /* the packed rows go in several pieces */
            ag_ar_config cfg = small_config(exact, overlap, 200 + 56 * (size_t)overlap);
            ag_ar *sp = NULL, *dn = NULL;
            ag_ar_create(&sp, &p, &cfg, c->world);
            cfg.sparse = 0;
            cfg.piece_bytes = (size_t)16 << 20;
            ag_ar_create(&dn, &p, &cfg, c->world);
            ag_ar_stats st;
            ag_ar_get_stats(sp, &st);
            int first, last;
            size_t off, cnt;
            ag_ar_bucket_info(sp, ag_ar_bucket_count(sp) - 1, &first, &last, &off, &cnt);
            snprintf(what, sizeof what, "sparse (%s, overlap %d): the table has a bucket of its own",
                     exact ? "exact" : "sum", overlap);
            check_true(what, st.n_sparse == 1 && first == 0 && last == 0 && off == 0);
            /* 3 rows per sample (sparse), then 200 (more than half the rows: dense), then 3. */
            const int touch[3] = { 3, 200, 3 };
            const int64_t G[3] = { 9, 9, 2 };
            for (int k = 0; k < 3; k++) {
                int rd = sparse_step(dn, &p, c, exact, G[k], touch[k]);
                memcpy(dense, p.grad, p.total * sizeof *dense);
                int rs = sparse_step(sp, &p, c, exact, G[k], touch[k]);
                snprintf(what, sizeof what, "sparse (%s, overlap %d, np %d, %d rows per sample, G %lld): the dense "
                         "reduction's bits", exact ? "exact" : "sum", overlap, c->size, touch[k], (long long)G[k]);
                check_true(what, rd == 0 && rs == 0 && !memcmp(p.grad, dense, p.total * sizeof *dense));
            }
            /* -0.0 alone in row 7 (sample 1) gives -0.0 only when no other rank adds +0.0 there. */
            ag_ar_get_stats(sp, &st);
            int64_t dense_rows = SP_ROWS;
            snprintf(what, sizeof what, "sparse (%s, overlap %d): rows counted (%lld: two sparse steps, one dense)",
                     exact ? "exact" : "sum", overlap, (long long)st.sparse_rows);
            check_true(what, st.steps == 3 && st.sparse_rows > dense_rows && st.sparse_rows < dense_rows + 2 * 30 &&
                             st.sent < 3.0 * p.total * (exact ? 8 : 4));
            /* Two dense steps in a row: the next ones skip the scan (reduced densely, all rows
             * counted) and still give the dense reduction's bits. */
            const int touch2[3] = { 200, 200, 3 };
            int64_t before = 0;
            for (int k = 0; k < 3; k++) {
                if (k == 2) { ag_ar_get_stats(sp, &st); before = st.sparse_rows; }
                int rd = sparse_step(dn, &p, c, exact, 9, touch2[k]);
                memcpy(dense, p.grad, p.total * sizeof *dense);
                int rs = sparse_step(sp, &p, c, exact, 9, touch2[k]);
                check_true("sparse after dense steps: the dense reduction's bits",
                           rd == 0 && rs == 0 && !memcmp(p.grad, dense, p.total * sizeof *dense));
            }
            ag_ar_get_stats(sp, &st);
            check_true("after two dense steps in a row the table is reduced densely without a look",
                       st.sparse_rows - before == SP_ROWS);
            ag_ar_free(sp);
            ag_ar_free(dn);
        }
    /* A table below sparse_min_bytes (default 1 MiB) is reduced densely. */
    ag_ar *ar = NULL;
    ag_ar_create(&ar, &p, NULL, c->world);
    ag_ar_stats st;
    ag_ar_get_stats(ar, &st);
    check_true("sparse: a table under sparse_min_bytes stays in the dense buckets", st.n_sparse == 0 &&
                                                                                  ag_ar_bucket_count(ar) == 1);
    ag_ar_free(ar);
    free(dense);
    ag_params_free(&p);
}

/* ---- a part: a dense share of one tensor's gradient in a buffer of its own ---- */

/* One step over [0, G) where every sample adds `touch` lookup rows to the table (tensor 0)
 * and a dense share to all of it: into `part` (the allreduce's part buffer) when given,
 * else into the table itself at the end of each micro-batch (the reference: what the
 * gradient was before the share was kept apart). report: 0 part ready before the tensors,
 * 1 after them, 2 never (finish starts it). */
static int part_step(ag_ar *ar, ag_params *p, const ag_comm *c, int exact, int64_t G, int touch, float *part,
                     float *tmp, int report) {
    const size_t n0 = p->t[0].numel;
    int64_t b, n;
    ag_batch_slice(G, c->size, c->rank, &b, &n);
    if (ag_ar_begin(ar)) return -1;
    ag_params_zero_grad(p);
    memset(tmp, 0, n0 * sizeof *tmp);
    for (int64_t s = b; s < b + n; s++) {
        add_sparse_sample(p, s, touch);
        float *dst = part ? part : tmp;
        for (size_t i = 0; i < n0; i++) dst[i] += synth_eighths(40, (uint64_t)s, i);
        int last = s == b + n - 1;
        if (!part && (exact || last)) {
            for (size_t i = 0; i < n0; i++) p->grad[p->t[0].offset + i] += tmp[i];
            memset(tmp, 0, n0 * sizeof *tmp);
        }
        if (exact && !last) {
            if (ag_ar_accumulate(ar)) return -1;
            ag_params_zero_grad(p);
        }
    }
    if (n > 0) {
        if (part && report == 0 && ag_ar_part_ready(ar)) return -1;
        if (report_ready(ar, p, c->rank % 2, 0, c->rank)) return -1;
        if (part && report == 1 && ag_ar_part_ready(ar)) return -1;
    }
    return ag_ar_finish(ar, G);
}

static void test_part(const ag_comm *c) {
    ag_params p;
    build_sparse_table(&p);
    const size_t n0 = p.t[0].numel;
    float *want = malloc(p.total * sizeof *want), *tmp = malloc(n0 * sizeof *tmp);
    char what[240];
    for (int exact = 0; exact <= 1; exact++)
        for (int overlap = 0; overlap <= 1; overlap++)
            for (int report = 0; report <= 2; report++) {
                /* the part (4800 values) in several pieces */
                ag_ar_config cfg = small_config(exact, overlap, 1000);
                ag_ar *ar = NULL, *ref = NULL;
                ag_ar_create(&ar, &p, &cfg, c->world);
                cfg.sparse = 0;
                ag_ar_create(&ref, &p, &cfg, c->world);
                int nb = ag_ar_bucket_count(ar);
                float *part = NULL;
                int rc = ag_ar_add_part(ar, 0, &part);
                int first, last;
                size_t off, cnt;
                ag_ar_bucket_info(ar, 0, &first, &last, &off, &cnt);
                snprintf(what, sizeof what, "part (%s, overlap %d): one more bucket, first, holding the table's span",
                         exact ? "exact" : "sum", overlap);
                check_true(what, rc == 0 && part && ag_ar_bucket_count(ar) == nb + 1 && first == 0 && last == 0 &&
                                 off == p.t[0].offset && cnt == n0);
                /* Sparse lookups (3 rows per sample), then 200 rows (the table's own bucket
                 * dense), then a step with ranks that have no sample (np 4). */
                const int touch[3] = { 3, 200, 3 };
                const int64_t G[3] = { 9, 9, 2 };
                for (int k = 0; k < 3; k++) {
                    int rr = part_step(ref, &p, c, exact, G[k], touch[k], NULL, tmp, report);
                    memcpy(want, p.grad, p.total * sizeof *want);
                    int rp = part_step(ar, &p, c, exact, G[k], touch[k], part, tmp, report);
                    int zero = 1;
                    for (size_t i = 0; i < n0; i++) zero &= part[i] == 0.0f && !signbit(part[i]);
                    snprintf(what, sizeof what, "part (%s, overlap %d, np %d, part reported %s, %d rows per "
                             "sample, G %lld): the bits of the reduction of table + share, part buffer zero after",
                             exact ? "exact" : "sum", overlap, c->size,
                             report == 0 ? "first" : report == 1 ? "last" : "never", touch[k], (long long)G[k]);
                    check_true(what, rr == 0 && rp == 0 && !memcmp(p.grad, want, p.total * sizeof *want) && zero);
                }
                ag_ar_free(ar);
                ag_ar_free(ref);
            }
    /* Misuse is an error, not a hang or a second bucket. */
    ag_ar *ar = NULL;
    ag_ar_create(&ar, &p, NULL, c->world);
    float *part = NULL;
    check_true("part: ready without a part is an error", ag_ar_begin(ar) == 0 && ag_ar_part_ready(ar) == -1 &&
                                                            strstr(ag_errmsg(), "no part"));
    check_true("part: adding one inside a step is an error", ag_ar_add_part(ar, 0, &part) == -1 && !part &&
                                                                 strstr(ag_errmsg(), "inside a step"));
    ag_ar_finish(ar, 1);
    check_true("part: a tensor index out of range is an error", ag_ar_add_part(ar, 9, &part) == -1);
    check_true("part: added", ag_ar_add_part(ar, 0, &part) == 0 && part);
    float *again = NULL;
    check_true("part: a second one is an error naming the first", ag_ar_add_part(ar, 2, &again) == -1 &&
                                                                     strstr(ag_errmsg(), "word_embeddings"));
    ag_ar_begin(ar);
    int r1 = ag_ar_part_ready(ar), r2 = ag_ar_part_ready(ar);
    check_true("part: reported twice in a step is an error", r1 == 0 && r2 == -1 && strstr(ag_errmsg(), "twice"));
    check_true("part: the step still finishes", ag_ar_finish(ar, 1) == 0);
    ag_ar_free(ar);
    free(want);
    free(tmp);
    ag_params_free(&p);
}

int main(int argc, char **argv) {
    if (ag_comm_init(&argc, &argv)) ag_fatal("init: %s", ag_errmsg());
    const ag_comm *c = ag_comm_get();
    ag_params p;
    build_table(&p);
    float *ref = malloc(p.total * sizeof *ref);
    test_layout(&p, c);
    test_sum(&p, c, ref);
    test_exact(&p, c, ref);
    test_sparse(c);
    test_part(c);
    free(ref);
    ag_params_free(&p);
    int mine = check_failed, worst = 0;
    MPI_Allreduce(&mine, &worst, 1, MPI_INT, MPI_MAX, c->world);
    int rc = check_finish();
    ag_comm_finalize();
    return rc ? rc : worst ? 1 : 0;
}
