/* Broadcast, batch slicing, the bucketed (optionally fixed-point exact) gradient allreduce
 * and the cross-rank parameter checksum; see allreduce.h. */
#include "dist/allreduce.h"

#include "nn/error.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- broadcast and batch slicing ---- */

int ag_bcast_floats(float *buf, size_t n, int root, MPI_Comm comm) {
    /* MPI counts are int: send in pieces of 2^30 floats (4 GiB). */
    const size_t piece = (size_t)1 << 30;
    for (size_t off = 0; off < n; off += piece) {
        size_t k = n - off < piece ? n - off : piece;
        if (MPI_Bcast(buf + off, (int)k, MPI_FLOAT, root, comm) != MPI_SUCCESS)
            return ag_err("ag_bcast_floats: MPI_Bcast of %zu floats at offset %zu failed", k, off);
    }
    return 0;
}

int ag_bcast_params(ag_params *p, MPI_Comm comm) {
    int rank = 0;
    MPI_Comm_rank(comm, &rank);
    /* Agree on the layout first: a rank that built a different model must not receive
     * (and silently truncate or overrun) rank 0's bytes. */
    uint64_t shape[2] = { (uint64_t)p->n, (uint64_t)p->total };
    uint64_t root[2] = { shape[0], shape[1] };
    MPI_Bcast(root, 2, MPI_UINT64_T, 0, comm);
    int ok = root[0] == shape[0] && root[1] == shape[1] && p->data != NULL, all_ok = 0;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, comm);
    if (!all_ok) {
        if (!ok)
            return ag_err("ag_bcast_params: rank %d has %d tensors / %zu floats%s, rank 0 has %llu / %llu: "
                          "every rank must build the same model", rank, p->n, p->total,
                          p->data ? "" : " (not allocated)", (unsigned long long)root[0],
                          (unsigned long long)root[1]);
        return ag_err("ag_bcast_params: another rank's parameter table differs from rank 0's "
                      "(see that rank's message)");
    }
    return ag_bcast_floats(p->data, p->total, 0, comm);
}

void ag_batch_slice(int64_t global, int nranks, int rank, int64_t *begin, int64_t *count) {
    if (global < 0) global = 0;
    if (nranks < 1 || rank < 0 || rank >= nranks) { *begin = 0; *count = 0; return; }
    int64_t base = global / nranks, extra = global % nranks;
    *count = base + (rank < extra);
    *begin = (int64_t)rank * base + (rank < extra ? rank : extra);
}

/* ---- bucketed gradient allreduce ---- */

typedef struct {
    int first, last;     /* tensor indices, first >= last */
    size_t off, cnt;     /* float span in the flat gradient buffer */
    int n_tensors, n_ready;
    int started, done;
    MPI_Request *req;    /* one collective per piece of at most piece_bytes (piece_count) */
    int n_pieces;
    double t_start;
    /* A row-sparse tensor alone in its bucket: rows x row_len values from float rows_off. */
    int sparse;
    size_t rows_off, n_rows, row_len;
    uint64_t *bits;      /* [bit_words] rows with a nonzero value, this rank, then the union */
    size_t bit_words;
    int32_t *list;       /* [n_rows] the union's rows, ascending */
    void *pack;          /* the union's rows packed (float, or int64 in EXACT mode); room
                            for half the rows */
    int packed;          /* this step: reduced as pack[0 .. n_list * row_len) */
    int64_t dense_runs;  /* steps in a row whose union held more than half the rows */
    int64_t skipped;     /* steps reduced densely without looking since the last look */
    size_t n_list;
    /* The part bucket (ag_ar_add_part): tensor `first`'s share kept in `own` (and own_acc
     * in EXACT mode), reduced on its own and added into the tensor's gradient at finish. */
    float *own;
    int64_t *own_acc;
} ar_bucket;

struct ag_ar {
    const ag_params *p;
    MPI_Comm comm;
    ag_ar_config cfg;
    int nb;
    ar_bucket *b;
    int *bucket_of;          /* [n tensors] */
    unsigned char *ready;    /* [n tensors] this step */
    int64_t *acc;            /* EXACT: [p->total] fixed-point sums */
    int next_start;          /* first bucket not started this step */
    int in_step;
    int any_started;
    int failed;              /* a local error this step; ag_ar_finish makes every rank see it */
    char errmsg[512];        /* the first such error's message */
    ag_ar_stats st;
};

void ag_ar_config_default(ag_ar_config *cfg) {
    cfg->mode = AG_AR_SUM;
    cfg->first_bucket_bytes = (size_t)1 << 20;
    cfg->bucket_bytes = (size_t)25 << 20;
    cfg->exact_frac_bits = 32;
    cfg->overlap = 1;
    cfg->sparse = 1;
    cfg->sparse_min_bytes = (size_t)1 << 20;
    cfg->piece_bytes = (size_t)16 << 20;
}

/* Bytes per reduced value: fp32, or 64-bit fixed point in EXACT mode. */
static size_t value_bytes(const ag_ar_config *cfg) {
    return cfg->mode == AG_AR_EXACT ? sizeof(int64_t) : sizeof(float);
}

/* The collectives that reduce `count` values in pieces of at most piece_bytes (an empty
 * bucket still takes part in one). */
static int piece_count(const ag_ar_config *cfg, size_t count) {
    size_t per_piece = cfg->piece_bytes / value_bytes(cfg);
    return count ? (int)((count + per_piece - 1) / per_piece) : 1;
}

/* The part bucket (ag_ar_add_part), always bucket 0, or NULL. */
static ar_bucket *part_bucket(const ag_ar *ar) {
    return ar->nb > 0 && ar->b[0].own ? &ar->b[0] : NULL;
}

int ag_ar_create(ag_ar **out, const ag_params *p, const ag_ar_config *cfg_in, MPI_Comm comm) {
    *out = NULL;
    ag_ar_config cfg;
    if (cfg_in) cfg = *cfg_in; else ag_ar_config_default(&cfg);
    if (!p || p->n < 1 || !p->grad)
        return ag_err("ag_ar_create: the parameter table is empty or not allocated (call ag_params_alloc)");
    if (cfg.mode != AG_AR_SUM && cfg.mode != AG_AR_EXACT)
        return ag_err("ag_ar_create: unknown mode %d (AG_AR_SUM or AG_AR_EXACT)", (int)cfg.mode);
    if (cfg.first_bucket_bytes < 4 || cfg.bucket_bytes < 4)
        return ag_err("ag_ar_create: bucket sizes %zu / %zu bytes are below one float",
                      cfg.first_bucket_bytes, cfg.bucket_bytes);
    if (cfg.piece_bytes < 8)
        return ag_err("ag_ar_create: piece_bytes %zu is below one value", cfg.piece_bytes);
    if (cfg.mode == AG_AR_EXACT && (cfg.exact_frac_bits < 1 || cfg.exact_frac_bits > 40))
        return ag_err("ag_ar_create: exact_frac_bits %d outside 1..40", cfg.exact_frac_bits);
    /* Buckets are contiguous spans only if tensors sit in registration order. */
    for (int i = 1; i < p->n; i++)
        if (p->t[i].offset < p->t[i - 1].offset + p->t[i - 1].numel)
            return ag_err("ag_ar_create: tensor %d '%s' (offset %zu) overlaps or precedes tensor %d '%s'",
                          i, p->t[i].name, p->t[i].offset, i - 1, p->t[i - 1].name);

    ag_ar *ar = calloc(1, sizeof *ar);
    if (!ar) return ag_err("ag_ar_create: out of memory");
    ar->comm = MPI_COMM_NULL;
    ar->p = p;
    ar->cfg = cfg;
    ar->b = calloc((size_t)p->n, sizeof *ar->b);
    ar->bucket_of = calloc((size_t)p->n, sizeof *ar->bucket_of);
    ar->ready = calloc((size_t)p->n, 1);
    if (!ar->b || !ar->bucket_of || !ar->ready) { ag_ar_free(ar); return ag_err("ag_ar_create: out of memory"); }

    /* Walk tensors from last to first; close a bucket once it reaches its size. A row-sparse
     * tensor closes the bucket before it and takes one of its own. */
    size_t end = p->t[p->n - 1].offset + p->t[p->n - 1].numel;
    int nb = 0;
    ar_bucket *cur = NULL;
    for (int i = p->n - 1; i >= 0; i--) {
        const ag_tensor_info *ti = &p->t[i];
        int sparse = cfg.sparse && ti->row_sparse && ti->ndim == 2 && ti->shape[0] > 0 &&
                     ti->numel * sizeof(float) >= cfg.sparse_min_bytes;
        if (sparse && cur) {
            end = cur->off;
            cur = NULL;
        }
        if (!cur) {
            cur = &ar->b[nb++];
            cur->first = i;
        }
        cur->last = i;
        cur->n_tensors++;
        ar->bucket_of[i] = nb - 1;
        /* The span starts where this tensor starts (tensor 0 starts at 0) and ends where the
         * previous bucket began, so buckets tile the buffer, gaps included. */
        size_t start = i == 0 ? 0 : p->t[i].offset;
        cur->off = start;
        cur->cnt = end - start;
        size_t cap = nb == 1 ? cfg.first_bucket_bytes : cfg.bucket_bytes;
        if (sparse) {
            cur->sparse = 1;
            cur->rows_off = ti->offset;
            cur->n_rows = (size_t)ti->shape[0];
            cur->row_len = ti->numel / cur->n_rows;
            cur->bit_words = (cur->n_rows + 63) / 64;
            cur->bits = calloc(cur->bit_words, sizeof *cur->bits);
            cur->list = malloc(cur->n_rows * sizeof *cur->list);
            /* Packed only while at most half the rows are in the union: room for that many,
             * allocated now so that no step can fail half-way through its collectives. */
            cur->pack = malloc((cur->n_rows / 2 ? cur->n_rows / 2 : 1) * cur->row_len * value_bytes(&cfg));
            if (!cur->bits || !cur->list || !cur->pack || cur->n_rows > INT32_MAX || cur->bit_words > INT_MAX) {
                ar->nb = nb;
                ag_ar_free(ar);
                return ag_err("ag_ar_create: out of memory (or too many rows) for the row-sparse tensor '%s'",
                              ti->name);
            }
            ar->st.n_sparse++;
        }
        if (cur->cnt * sizeof(float) >= cap || i == 0 || sparse) {
            if (cur->cnt > INT_MAX) {
                int first = cur->first;
                ar->nb = nb;
                ag_ar_free(ar);
                return ag_err("ag_ar_create: bucket ending at tensor '%s' has %zu floats, over MPI's "
                              "int count limit", p->t[first].name, (size_t)(end - start));
            }
            end = start;
            cur = NULL;
        }
    }
    ar->nb = nb;
    for (int b = 0; b < nb; b++) {
        ar->b[b].req = malloc((size_t)piece_count(&cfg, ar->b[b].cnt) * sizeof *ar->b[b].req);
        if (!ar->b[b].req) { ag_ar_free(ar); return ag_err("ag_ar_create: out of memory"); }
    }
    if (cfg.mode == AG_AR_EXACT) {
        ar->acc = calloc(p->total ? p->total : 1, sizeof *ar->acc);
        if (!ar->acc) {
            ag_ar_free(ar);
            return ag_err("ag_ar_create: out of memory for the %zu-value fixed-point accumulator", p->total);
        }
    }
    if (MPI_Comm_dup(comm, &ar->comm) != MPI_SUCCESS) {
        ag_ar_free(ar);
        return ag_err("ag_ar_create: MPI_Comm_dup failed");
    }
    ar->st.n_buckets = nb;
    ar->st.bytes = p->total * value_bytes(&cfg);
    *out = ar;
    return 0;
}

void ag_ar_free(ag_ar *ar) {
    if (!ar) return;
    /* A step abandoned mid-way (error path) still has requests in flight: complete them
     * rather than free buffers MPI may still write. */
    for (int b = 0; b < ar->nb; b++)
        if (ar->b[b].started && !ar->b[b].done) MPI_Waitall(ar->b[b].n_pieces, ar->b[b].req, MPI_STATUSES_IGNORE);
    if (ar->comm != MPI_COMM_NULL) MPI_Comm_free(&ar->comm);
    for (int b = 0; b < ar->nb; b++) {
        free(ar->b[b].bits);
        free(ar->b[b].list);
        free(ar->b[b].pack);
        free(ar->b[b].req);
        free(ar->b[b].own);
        free(ar->b[b].own_acc);
    }
    free(ar->b);
    free(ar->bucket_of);
    free(ar->ready);
    free(ar->acc);
    free(ar);
}

int ag_ar_bucket_count(const ag_ar *ar) { return ar->nb; }

void ag_ar_bucket_info(const ag_ar *ar, int b, int *first, int *last, size_t *offset, size_t *count) {
    const ar_bucket *k = &ar->b[b];
    if (first) *first = k->first;
    if (last) *last = k->last;
    if (offset) *offset = k->off;
    if (count) *count = k->cnt;
}

void ag_ar_get_stats(const ag_ar *ar, ag_ar_stats *st) { *st = ar->st; }

void ag_ar_reset_stats(ag_ar *ar) {
    int nb = ar->st.n_buckets, ns = ar->st.n_sparse;
    size_t bytes = ar->st.bytes;
    memset(&ar->st, 0, sizeof ar->st);
    ar->st.n_buckets = nb;
    ar->st.n_sparse = ns;
    ar->st.bytes = bytes;
}

int ag_ar_begin(ag_ar *ar) {
    if (ar->in_step && ar->any_started)
        return ag_err("ag_ar_begin: the previous step's allreduce was started but not finished "
                      "(call ag_ar_finish)");
    memset(ar->ready, 0, (size_t)ar->p->n);
    for (int b = 0; b < ar->nb; b++) {
        ar->b[b].n_ready = 0;
        ar->b[b].started = ar->b[b].done = ar->b[b].packed = 0;
    }
    if (ar->acc) memset(ar->acc, 0, ar->p->total * sizeof *ar->acc);
    ar_bucket *part = part_bucket(ar);
    if (part && part->own_acc) memset(part->own_acc, 0, part->cnt * sizeof *part->own_acc);
    ar->next_start = 0;
    ar->in_step = 1;
    ar->any_started = 0;
    ar->failed = 0;
    return 0;
}

/* The tensor holding flat index i (for error messages). */
static int tensor_at(const ag_params *p, size_t i) {
    int lo = 0, hi = p->n - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (p->t[mid].offset <= i) lo = mid; else hi = mid - 1;
    }
    return lo;
}

/* EXACT: a[0..cnt) += round(g * 2^F); g = 0. Values outside the range (and NaN) are left
 * in g unfolded and reported, naming the tensor at flat index off + i. The accumulator
 * cannot overflow within the documented limits (|q| < 2^46, at most 65536 contributions
 * per element). */
static int fold_values(ag_ar *ar, float *g, int64_t *a, size_t cnt, size_t off) {
    const int F = ar->cfg.exact_frac_bits;
    const double limit = ldexp(1.0, 46 - F), scale = ldexp(1.0, F);
    /* Adding and subtracting 1.5 * 2^52 rounds a double of magnitude below 2^51 to the
     * nearest integer, ties to even (the default rounding mode), exactly like llrint but
     * without a libm call per element, so the loop vectorises. */
    const double round_magic = 6755399441055744.0;
    double t0 = MPI_Wtime();
    int bad = 0;
    #pragma omp parallel for reduction(|:bad) schedule(static)
    for (size_t i = 0; i < cnt; i++) {
        double v = g[i];
        int ok = fabs(v) < limit;          /* false for NaN and Inf */
        double x = ok ? v * scale : 0.0;   /* v * 2^F is exact */
        a[i] += (int64_t)((x + round_magic) - round_magic);
        g[i] = ok ? 0.0f : g[i];
        bad |= !ok;
    }
    ar->st.t_convert += MPI_Wtime() - t0;
    if (!bad) return 0;
    for (size_t i = 0; i < cnt; i++) {
        if (g[i] == 0.0f) continue;   /* folded */
        int t = tensor_at(ar->p, off + i);
        return ag_err("allreduce (exact mode): gradient of '%s' element %zu is %g, outside the "
                      "fixed-point range |g| < %g (exact_frac_bits %d); lower exact_frac_bits or "
                      "use AG_AR_SUM", ar->p->t[t].name, off + i - ar->p->t[t].offset, (double)g[i],
                      limit, F);
    }
    return ag_err("allreduce (exact mode): out-of-range gradient in [%zu, %zu)", off, off + cnt);
}

/* EXACT: the gradient buffer's span [off, off + cnt) into the accumulator. */
static int fold_span(ag_ar *ar, size_t off, size_t cnt) {
    return fold_values(ar, ar->p->grad + off, ar->acc + off, cnt, off);
}

/* Remember the first local error of the step (returns -1). */
static int note_failure(ag_ar *ar) {
    if (!ar->failed) snprintf(ar->errmsg, sizeof ar->errmsg, "%s", ag_errmsg());
    ar->failed = 1;
    return -1;
}

int ag_ar_accumulate(ag_ar *ar) {
    if (!ar->in_step) return ag_err("ag_ar_accumulate: outside a step (call ag_ar_begin first)");
    if (ar->cfg.mode != AG_AR_EXACT) return 0;
    if (ar->any_started)
        return ag_err("ag_ar_accumulate: a bucket already started this step; accumulate earlier "
                      "micro-batches before reporting the last one's tensors ready");
    int rc = fold_span(ar, 0, ar->p->total);
    ar_bucket *part = part_bucket(ar);
    if (part && fold_values(ar, part->own, part->own_acc, part->cnt, part->off)) rc = -1;
    return rc ? note_failure(ar) : 0;
}

/* The buffer a bucket reduces from and its value size: the fp32 gradient, or in EXACT mode
 * the fixed-point accumulator. */
static char *values(const ag_ar *ar, size_t *esz) {
    *esz = value_bytes(&ar->cfg);
    return ar->cfg.mode == AG_AR_EXACT ? (char *)ar->acc : (char *)ar->p->grad;
}

/* A row-sparse bucket (its gradient already folded into acc in EXACT mode): mark the rows
 * holding a nonzero value, agree on the union, and pack the union's rows into k->pack (room
 * for half the rows, allocated at create). Returns the number of values to reduce from
 * k->pack (k->packed set), or 0 to reduce the bucket densely (more than half the rows in
 * the union), or -1 when the bitmap's collective failed. */
static int64_t sparse_pack(ag_ar *ar, ar_bucket *k) {
    const int exact = ar->cfg.mode == AG_AR_EXACT;
    const size_t L = k->row_len, R = k->n_rows;
    double t0 = MPI_Wtime();
    memset(k->bits, 0, k->bit_words * sizeof *k->bits);
    #pragma omp parallel for schedule(static)
    for (size_t w = 0; w < k->bit_words; w++) {
        uint64_t word = 0;
        for (size_t r = w * 64; r < R && r < w * 64 + 64; r++) {
            uint64_t any = 0;
            if (exact) {
                const int64_t *a = ar->acc + k->rows_off + r * L;
                for (size_t j = 0; j < L; j++) any |= (uint64_t)a[j];
            } else {
                const uint32_t *g = (const uint32_t *)(ar->p->grad + k->rows_off + r * L);
                for (size_t j = 0; j < L; j++) any |= g[j];
            }
            word |= (uint64_t)(any != 0) << (r - w * 64);
        }
        k->bits[w] = word;
    }
    double t1 = MPI_Wtime();
    int rc = MPI_Allreduce(MPI_IN_PLACE, k->bits, (int)k->bit_words, MPI_UINT64_T, MPI_BOR, ar->comm);
    double t2 = MPI_Wtime();
    ar->st.t_mpi += t2 - t1;
    if (rc != MPI_SUCCESS) return ag_err("allreduce: the row bitmap of '%s' could not be combined",
                                         ar->p->t[k->first].name);
    size_t n = 0;
    for (size_t w = 0; w < k->bit_words; w++)
        for (uint64_t word = k->bits[w]; word; word &= word - 1)
            k->list[n++] = (int32_t)(w * 64 + (size_t)__builtin_ctzll(word));
    k->n_list = n;
    ar->st.sparse_rows += (int64_t)(2 * n > R ? R : n);
    if (2 * n > R) { ar->st.t_sparse += MPI_Wtime() - t2 + (t1 - t0); return 0; }
    size_t esz;
    const char *src = values(ar, &esz);
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        memcpy((char *)k->pack + i * L * esz, src + (k->rows_off + (size_t)k->list[i] * L) * esz, L * esz);
    k->packed = 1;
    ar->st.t_sparse += MPI_Wtime() - t2 + (t1 - t0);
    return (int64_t)(n * L);
}

/* Write a packed bucket's reduced rows back (grad, or acc in EXACT mode). */
static void sparse_unpack(ag_ar *ar, ar_bucket *k) {
    const size_t L = k->row_len;
    double t0 = MPI_Wtime();
    size_t esz;
    char *dst = values(ar, &esz);
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < k->n_list; i++)
        memcpy(dst + (k->rows_off + (size_t)k->list[i] * L) * esz, (const char *)k->pack + i * L * esz, L * esz);
    k->packed = 0;
    ar->st.t_sparse += MPI_Wtime() - t0;
}

static int start_bucket(ag_ar *ar, int b) {
    ar_bucket *k = &ar->b[b];
    int rc, bad = 0;
    /* The part bucket reduces its own buffers, every other one its span of the table's. */
    float *g = k->own ? k->own : ar->p->grad + k->off;
    void *buf = g;
    MPI_Datatype type = MPI_FLOAT;
    size_t count = k->cnt;
    if (ar->cfg.mode == AG_AR_EXACT) {
        int64_t *a = k->own ? k->own_acc : ar->acc + k->off;
        /* On a range error the bucket is still reduced: the other ranks are already in this
         * collective, and skipping it would mismatch every later one. */
        bad = fold_values(ar, g, a, k->cnt, k->off) ? note_failure(ar) : 0;
        buf = a;
        type = MPI_INT64_T;
    }
    /* A table whose every step so far needed the dense path (TSDAE's tied decoder writes
     * all rows) is reduced densely without the scan and the bitmap, looking again every
     * 64 steps. The union is the same on every rank, so every rank decides the same. */
    int look = k->sparse;
    if (look && k->dense_runs >= 2 && k->skipped < 64) {
        look = 0;
        k->skipped++;
        ar->st.sparse_rows += (int64_t)k->n_rows;
    }
    if (look) {
        k->skipped = 0;
        int64_t m = sparse_pack(ar, k);
        if (m < 0) {
            /* An MPI failure (fatal under the default error handler): nothing to match. */
            note_failure(ar);
            k->started = 1;
            k->done = 1;
            return -1;
        }
        if (k->packed) { buf = k->pack; count = (size_t)m; }
        k->dense_runs = k->packed ? 0 : k->dense_runs + 1;
    }
    const size_t esz = value_bytes(&ar->cfg);
    ar->st.sent += (double)(count * esz);
    /* In pieces of at most piece_bytes: the library's temporary buffer for a large
     * reduction is then small enough for malloc to keep and reuse, instead of mapping and
     * zeroing fresh pages at every step (glibc maps anything above 32 MiB). Each element is
     * summed in one piece, so the sums are those of a single call. */
    const size_t per_piece = ar->cfg.piece_bytes / esz;
    const int pieces = piece_count(&ar->cfg, count);
    double t0 = MPI_Wtime();
    rc = MPI_SUCCESS;
    for (k->n_pieces = 0; k->n_pieces < pieces && rc == MPI_SUCCESS; k->n_pieces++) {
        size_t off = (size_t)k->n_pieces * per_piece;
        int n = (int)(count - off < per_piece ? count - off : per_piece);
        void *at = (char *)buf + off * esz;
        if (ar->cfg.overlap)
            rc = MPI_Iallreduce(MPI_IN_PLACE, at, n, type, MPI_SUM, ar->comm, &k->req[k->n_pieces]);
        else
            rc = MPI_Allreduce(MPI_IN_PLACE, at, n, type, MPI_SUM, ar->comm);
    }
    k->t_start = MPI_Wtime();
    ar->st.t_mpi += k->t_start - t0;
    if (!ar->cfg.overlap) {
        /* Blocking: complete already; all of it was exposed wait. */
        k->done = 1;
        ar->st.t_flight += k->t_start - t0;
        ar->st.t_wait += k->t_start - t0;
    }
    if (rc != MPI_SUCCESS)
        return ag_err("allreduce: MPI_Iallreduce of bucket %d (%zu values) failed", b, k->cnt);
    k->started = 1;
    ar->any_started = 1;
    return bad;
}

/* Start buckets in order while the next one is complete. */
static int start_ready(ag_ar *ar, int force) {
    if (!ar->cfg.overlap && !force) return 0;   /* everything waits for ag_ar_finish */
    int rc = 0;
    while (ar->next_start < ar->nb) {
        ar_bucket *k = &ar->b[ar->next_start];
        if (!force && k->n_ready < k->n_tensors) break;
        /* A failed bucket was still started: keep going so the collectives stay matched. */
        if (start_bucket(ar, ar->next_start) && !rc) rc = -1;
        ar->next_start++;
    }
    return rc;
}

int ag_ar_progress(ag_ar *ar) {
    for (int b = 0; b < ar->next_start; b++) {
        ar_bucket *k = &ar->b[b];
        if (!k->started || k->done) continue;
        int flag = 0;
        double t0 = MPI_Wtime();
        int rc = MPI_Testall(k->n_pieces, k->req, &flag, MPI_STATUSES_IGNORE);
        double t1 = MPI_Wtime();
        ar->st.t_mpi += t1 - t0;
        if (rc != MPI_SUCCESS) return ag_err("allreduce: MPI_Test of bucket %d failed", b);
        if (flag) { k->done = 1; ar->st.t_flight += t1 - k->t_start; }
    }
    return 0;
}

int ag_ar_ready(ag_ar *ar, int t) {
    if (!ar->in_step) return ag_err("ag_ar_ready: outside a step (call ag_ar_begin first)");
    if (t < 0 || t >= ar->p->n)
        return ag_err("ag_ar_ready: tensor index %d outside 0..%d", t, ar->p->n - 1);
    if (ar->ready[t])
        return ag_err("ag_ar_ready: tensor %d '%s' reported ready twice in one step", t, ar->p->t[t].name);
    ar->ready[t] = 1;
    ar->b[ar->bucket_of[t]].n_ready++;
    if (start_ready(ar, 0)) return -1;
    return ag_ar_progress(ar);
}

int ag_ar_add_part(ag_ar *ar, int t, float **buf) {
    *buf = NULL;
    if (ar->in_step) return ag_err("ag_ar_add_part: called inside a step (add the part before ag_ar_begin)");
    if (t < 0 || t >= ar->p->n) return ag_err("ag_ar_add_part: tensor index %d outside 0..%d", t, ar->p->n - 1);
    if (part_bucket(ar)) return ag_err("ag_ar_add_part: this allreduce already has a part (tensor '%s')",
                                       ar->p->t[ar->b[0].first].name);
    const ag_tensor_info *ti = &ar->p->t[t];
    if (ti->numel > INT_MAX) return ag_err("ag_ar_add_part: '%s' has %zu values, over MPI's int count limit",
                                           ti->name, ti->numel);
    ar_bucket *nb = realloc(ar->b, (size_t)(ar->nb + 1) * sizeof *nb);
    if (!nb) return ag_err("ag_ar_add_part: out of memory");
    ar->b = nb;
    ar_bucket k;
    memset(&k, 0, sizeof k);
    k.first = k.last = t;
    k.off = ti->offset;
    k.cnt = ti->numel;
    k.n_tensors = 1;
    int exact = ar->cfg.mode == AG_AR_EXACT;
    k.own = calloc(k.cnt ? k.cnt : 1, sizeof *k.own);
    k.own_acc = exact ? calloc(k.cnt ? k.cnt : 1, sizeof *k.own_acc) : NULL;
    k.req = malloc((size_t)piece_count(&ar->cfg, k.cnt) * sizeof *k.req);
    if (!k.own || (exact && !k.own_acc) || !k.req) {
        free(k.own); free(k.own_acc); free(k.req);
        return ag_err("ag_ar_add_part: out of memory for a %zu-value share of '%s'", k.cnt, ti->name);
    }
    /* First in the start order: every rank starts it before any other bucket. */
    memmove(ar->b + 1, ar->b, (size_t)ar->nb * sizeof *ar->b);
    ar->b[0] = k;
    ar->nb++;
    for (int i = 0; i < ar->p->n; i++) ar->bucket_of[i]++;
    ar->st.n_buckets = ar->nb;
    ar->st.bytes += k.cnt * value_bytes(&ar->cfg);
    *buf = k.own;
    return 0;
}

int ag_ar_part_ready(ag_ar *ar) {
    if (!ar->in_step) return ag_err("ag_ar_part_ready: outside a step (call ag_ar_begin first)");
    ar_bucket *part = part_bucket(ar);
    if (!part) return ag_err("ag_ar_part_ready: no part was added (ag_ar_add_part)");
    if (part->n_ready) return ag_err("ag_ar_part_ready: the part of '%s' reported ready twice in one step",
                                     ar->p->t[part->first].name);
    part->n_ready = 1;
    if (start_ready(ar, 0)) return -1;
    return ag_ar_progress(ar);
}

int ag_ar_finish(ag_ar *ar, int64_t global_count) {
    if (!ar->in_step) return ag_err("ag_ar_finish: outside a step (call ag_ar_begin first)");
    if (global_count < 1) return ag_err("ag_ar_finish: global_count %lld must be >= 1", (long long)global_count);
    int rc = start_ready(ar, 1);
    /* Wait for everything started, even after an error, so no request outlives the step. */
    double tw = MPI_Wtime();
    for (int b = 0; b < ar->next_start; b++) {
        ar_bucket *k = &ar->b[b];
        if (!k->started || k->done) continue;
        double t0 = MPI_Wtime();
        int r = MPI_Waitall(k->n_pieces, k->req, MPI_STATUSES_IGNORE);
        double t1 = MPI_Wtime();
        ar->st.t_mpi += t1 - t0;
        if (r != MPI_SUCCESS && !rc) rc = ag_err("allreduce: MPI_Wait of bucket %d failed", b);
        k->done = 1;
        ar->st.t_flight += t1 - k->t_start;
    }
    /* (Without overlap the blocking reductions counted their own time as wait.) */
    if (ar->cfg.overlap) ar->st.t_wait += MPI_Wtime() - tw;
    for (int b = 0; b < ar->nb; b++)
        if (ar->b[b].packed) sparse_unpack(ar, &ar->b[b]);
    ar_bucket *k = part_bucket(ar);
    if (k) {
        /* The reduced share joins the tensor's reduced gradient; `own` starts the next step
         * at zero (EXACT: folded, hence zero, already; own_acc is zeroed by begin). */
        double t0 = MPI_Wtime();
        if (ar->cfg.mode == AG_AR_EXACT) {
            int64_t *a = ar->acc + k->off;
            #pragma omp parallel for schedule(static)
            for (size_t i = 0; i < k->cnt; i++) a[i] += k->own_acc[i];
            /* out-of-range values stay in `own` unfolded: clear them for the next step */
            if (ar->failed || rc) memset(k->own, 0, k->cnt * sizeof *k->own);
        } else {
            float *g = ar->p->grad + k->off;
            #pragma omp parallel for schedule(static)
            for (size_t i = 0; i < k->cnt; i++) { g[i] += k->own[i]; k->own[i] = 0.0f; }
        }
        ar->st.t_convert += MPI_Wtime() - t0;
    }
    ar->in_step = 0;
    ar->any_started = 0;
    /* Agree on failure: a rank whose gradients are unusable must not be the only one to
     * stop, or the others would wait for it in the next collective. */
    if (rc) note_failure(ar);
    int mine = ar->failed, any = 0;
    MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, ar->comm);
    if (any) {
        if (mine) return ag_err("%s", ar->errmsg);
        return ag_err("allreduce: another rank failed in this step (see its message); the summed "
                      "gradients are not usable");
    }

    float *g = ar->p->grad;
    size_t n = ar->p->total;
    if (ar->cfg.mode == AG_AR_EXACT) {
        double t0 = MPI_Wtime();
        const int64_t *a = ar->acc;
        const int F = ar->cfg.exact_frac_bits;
        const double cnt = (double)global_count, unscale = ldexp(1.0, -F);
        /* (double)a * 2^-F equals ldexp((double)a, -F) exactly (no subnormals: |a| >= 1). */
        #pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) g[i] = (float)((double)a[i] * unscale / cnt);
        ar->st.t_convert += MPI_Wtime() - t0;
    } else if (global_count != 1) {
        const double inv = 1.0 / (double)global_count;
        #pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) g[i] = (float)((double)g[i] * inv);
    }
    ar->st.steps++;
    return 0;
}

/* ---- parameter checksum ---- */

static inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

/* Four independent lanes (so the loop is not one long dependency chain), each a
 * multiply-rotate over 8-byte words, folded with a final avalanche. */
uint64_t ag_hash_bytes(const void *p, size_t n) {
    const uint64_t K1 = 0x9E3779B185EBCA87ull, K2 = 0xC2B2AE3D27D4EB4Full;
    const unsigned char *s = p;
    uint64_t h[4] = { K1 ^ n, K2 ^ n, rotl64(K1, 17) ^ n, rotl64(K2, 31) ^ n };
    size_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int l = 0; l < 4; l++) {
            uint64_t w;
            memcpy(&w, s + i + 8 * l, 8);
            h[l] = rotl64(h[l] ^ (w * K2), 31) * K1;
        }
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        h[0] = rotl64(h[0] ^ (w * K2), 31) * K1;
    }
    uint64_t tail = 0;
    for (size_t j = 0; i + j < n; j++) tail |= (uint64_t)s[i + j] << (8 * j);
    h[1] = rotl64(h[1] ^ (tail * K2), 31) * K1;
    uint64_t x = rotl64(h[0], 1) + rotl64(h[1], 7) + rotl64(h[2], 12) + rotl64(h[3], 18);
    x ^= x >> 33; x *= K2; x ^= x >> 29; x *= K1; x ^= x >> 32;
    return x;
}

int ag_check_same(const float *data, size_t n, int64_t step, MPI_Comm comm) {
    int rank = 0, size = 1;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    uint64_t mine = ag_hash_bytes(data, n * sizeof(float));
    uint64_t *all = malloc((size_t)size * sizeof *all);
    /* Every rank must take part in the collective even when it cannot allocate. */
    int ok = all != NULL, all_ok = 0;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, comm);
    if (!all_ok) { free(all); return ag_err("ag_check_same: out of memory at step %lld", (long long)step); }
    MPI_Allgather(&mine, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, comm);
    char list[256] = "";
    int ndiff = 0;
    size_t len = 0;
    for (int r = 1; r < size; r++) {
        if (all[r] == all[0]) continue;
        if (ndiff < 8 && len < sizeof list - 16)
            len += (size_t)snprintf(list + len, sizeof list - len, "%s%d", ndiff ? ", " : "", r);
        ndiff++;
    }
    if (!ndiff) { free(all); return 0; }
    unsigned long long h0 = (unsigned long long)all[0];
    free(all);
    return ag_err("parameters diverged across ranks at step %lld: %d rank(s) (%s%s) hold parameters "
                  "whose checksum differs from rank 0's (0x%016llx; this rank 0x%016llx); the "
                  "data-parallel replicas are no longer identical", (long long)step, ndiff, list,
                  ndiff > 8 ? ", ..." : "", h0, (unsigned long long)mine);
}
