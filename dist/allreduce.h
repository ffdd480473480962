/* Data-parallel helpers: broadcast of flat float buffers, slicing a global batch over ranks,
 * the bucketed gradient allreduce overlapped with the backward pass, and a parameter
 * checksum that catches ranks drifting apart.
 *
 * Bucketed allreduce. The gradient buffer of an ag_params table is cut into buckets of
 * consecutive tensors taken in REVERSE parameter order, the order the backward pass
 * finishes them: a small first bucket (first_bucket_bytes, default 1 MiB) so communication
 * starts early, then buckets of about bucket_bytes (default 25 MiB). A bucket spans the
 * contiguous float range of its tensors in the flat buffer (alignment gaps included; they
 * stay zero). Per step:
 *
 *   ag_ar_begin(ar);                      // before the backward pass
 *   ... backward: ag_ar_ready(ar, i) when tensor i's gradient is final,
 *                 ag_ar_progress(ar) between layers (Open MPI 4.1 has no async progress)
 *   ag_ar_finish(ar, global_count);       // wait, then grad *= 1/global_count
 *
 * A bucket starts (MPI_Iallreduce, SUM, in place) when all its tensors are ready AND every
 * earlier bucket has started, so all ranks issue the collectives in the same order even if
 * ready() calls come in another order, some tensors are never reported (unused), or a rank
 * has no samples and reports nothing: ag_ar_finish starts whatever is left, in order.
 *
 * AG_AR_SUM reduces fp32 directly: bits depend on the rank count (within ~1e-7 relative).
 * AG_AR_EXACT makes the sum independent of the rank count, bit for bit. Each contribution
 * is rounded to 64-bit fixed point, q = llrint(g * 2^F) with F = exact_frac_bits (default
 * 32), and integers are summed (int64 MPI_SUM is associative, so any grouping gives the
 * same bits); the result is g = (float)(ldexp((double)S, -F) / global_count). For results
 * that do not depend on how samples are spread over ranks, give it contributions that do
 * not either: run the backward per fixed micro-batch (the same micro-batches at any rank
 * count) and call ag_ar_accumulate() after each one except the last, whose buckets are
 * folded in by ready()/finish(). Range: every contribution must satisfy |g| < 2^(46-F)
 * (32768 for F=32; resolution 2^-F), leaving 16 bits of headroom for up to 65536 summed
 * contributions; a value outside it, or a NaN/Inf, is an error naming the tensor. EXACT
 * mode keeps an int64 accumulator the size of the gradient buffer (2x its memory).
 *
 * Row-sparse tensors. A tensor flagged row_sparse in the table (an embedding table: its
 * gradient is zero except in the rows of the batch's tokens) with at least sparse_min_bytes
 * gets a bucket of its own, and only its rows that are nonzero on some rank are reduced.
 * When the bucket starts, each rank marks the rows of its gradient that hold any nonzero bit
 * (-0.0 counts; in EXACT mode: any nonzero fixed-point value), one small MPI_Allreduce (BOR)
 * of that bitmap gives every rank the same union, and the union's rows are packed, reduced
 * and written back. Every other row is +0.0 on every rank, which is what the dense sum would
 * give, so the result equals the dense reduction; at np 2, and in EXACT mode at any np, bit
 * for bit (at np > 2 the library's summation order may depend on the message size). The
 * rows are found by looking at the gradient, so a caller cannot get them wrong; when more
 * than half the rows are in the union (TSDAE's tied decoder writes every row) the bucket is
 * reduced densely.
 *
 * A part. ag_ar_add_part(ar, t, &buf) gives tensor t a second gradient buffer `buf` (its
 * numel floats, zero) for a dense share of its gradient that is final long before the rest:
 * TSDAE's tied word embeddings get the LM head's projection gradient (every row, computed
 * first in the backward) there, and only the lookups' rows (a few hundred, computed last)
 * in the table. The part has a bucket of its own, first in the start order, started by
 * ag_ar_part_ready() (or by ag_ar_finish); finish adds the reduced share into tensor t's
 * reduced gradient and zeroes buf for the next step, so the result is the reduction of the
 * sum of both buffers: in SUM mode up to fp32 rounding (each share is summed over ranks on
 * its own, then the two sums are added), in EXACT mode bit for bit the fixed-point sum of
 * the shares' contributions, rounded per share (so still the same bits at every np for
 * fixed micro-batches). Every rank must add the same part before its first step. */
#ifndef ARGENT_DIST_ALLREDUCE_H
#define ARGENT_DIST_ALLREDUCE_H
#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "nn/params.h"

/* ---- broadcast and batch slicing ---- */

/* Broadcast n floats from root (in pieces, so n may exceed INT_MAX). 0 or -1. */
int ag_bcast_floats(float *buf, size_t n, int root, MPI_Comm comm);
/* Broadcast a parameter table's data (initial weights) from rank 0. Every rank must have
 * built the same table; the total size is checked first. 0 or -1 with ag_errmsg(). */
int ag_bcast_params(ag_params *p, MPI_Comm comm);

/* Slice a global batch of `global` samples over `nranks` ranks: rank r gets the contiguous
 * range [begin, begin + count). The first (global % nranks) ranks get one sample more than
 * the others, so slices differ by at most one and may be empty when global < nranks;
 * concatenating the slices in rank order gives the global batch in order. */
void ag_batch_slice(int64_t global, int nranks, int rank, int64_t *begin, int64_t *count);

/* ---- bucketed gradient allreduce ---- */

typedef enum { AG_AR_SUM = 0, AG_AR_EXACT = 1 } ag_ar_mode;

typedef struct {
    ag_ar_mode mode;
    size_t first_bucket_bytes; /* default 1 MiB */
    size_t bucket_bytes;       /* default 25 MiB */
    int exact_frac_bits;       /* AG_AR_EXACT: F, fraction bits of the fixed point (1..40) */
    int overlap;               /* 1 (default): start buckets during the backward pass; 0: reduce
                                  them all in ag_ar_finish with blocking MPI_Allreduce (same sums;
                                  faster where ranks share a node's cores, see docs/dist.md) */
    int sparse;                /* 1 (default): reduce row_sparse tensors by their nonzero rows */
    size_t sparse_min_bytes;   /* default 1 MiB: smaller row_sparse tensors are reduced densely */
    size_t piece_bytes;        /* default 16 MiB: a bucket's reduction is issued as collectives of
                                  at most this many bytes (below glibc's 32 MiB mmap ceiling, so
                                  the MPI library's temporaries are reused, not re-mapped) */
} ag_ar_config;

/* Timing, accumulated over steps (seconds of wall time, MPI_Wtime). */
typedef struct {
    int n_buckets;
    size_t bytes;       /* bytes reduced per step (gradient span; 2x floats in EXACT mode) */
    int64_t steps;      /* finished steps */
    double t_mpi;       /* inside MPI calls made by ag_ar_* (start, test, wait) */
    double t_wait;      /* blocked in ag_ar_finish waiting for outstanding buckets */
    double t_flight;    /* sum over buckets of (completion seen - start) */
    double t_convert;   /* EXACT: float <-> fixed-point conversion */
    double t_sparse;    /* row-sparse buckets: finding, packing and unpacking the rows */
    double sent;        /* bytes actually reduced, summed over steps (sparse buckets: their rows) */
    int n_sparse;       /* buckets holding a row-sparse tensor */
    int64_t sparse_rows;/* rows reduced in those buckets, summed over steps (dense fallback: all) */
} ag_ar_stats;

typedef struct ag_ar ag_ar;

void ag_ar_config_default(ag_ar_config *cfg);
/* Plan the buckets for table p (allocated; p->grad is read at each use, so it may be
 * replaced). cfg NULL means defaults. comm is duplicated. 0, or -1 with ag_errmsg(). */
int ag_ar_create(ag_ar **out, const ag_params *p, const ag_ar_config *cfg, MPI_Comm comm);
void ag_ar_free(ag_ar *ar);
/* Start a step: nothing ready, nothing in flight, EXACT accumulator zeroed. -1 if the
 * previous step was not finished. */
int ag_ar_begin(ag_ar *ar);
/* EXACT: fold the whole float gradient buffer into the fixed-point accumulator and zero it
 * (after a micro-batch's backward; no communication). SUM: nothing to do (gradients keep
 * accumulating in fp32). -1 if a bucket already started this step, or a value is out of range. */
int ag_ar_accumulate(ag_ar *ar);
/* Tensor t's gradient is final for this step. Starts every bucket that can start. */
int ag_ar_ready(ag_ar *ar, int t);
/* Let outstanding reductions advance (MPI_Test). Cheap; call between layers. */
int ag_ar_progress(ag_ar *ar);
/* Give tensor t a part (see above): *buf receives the share's buffer, owned by ar (valid
 * until ag_ar_free). Outside a step; at most one part per allreduce; every rank alike.
 * 0, or -1 with ag_errmsg(). */
int ag_ar_add_part(ag_ar *ar, int t, float **buf);
/* The part's share is final for this step: starts its bucket (the first one). */
int ag_ar_part_ready(ag_ar *ar);
/* Start what is left, wait for everything, scale by 1/global_count. The gradient buffer
 * then holds the global mean gradient on every rank. If any rank hit an error this step
 * (EXACT range errors; its buckets were still reduced so the collectives stay matched), a
 * one-int MPI_Allreduce makes ag_ar_finish return -1 on EVERY rank. */
int ag_ar_finish(ag_ar *ar, int64_t global_count);

int ag_ar_bucket_count(const ag_ar *ar);
/* Bucket b: tensors first..last (first >= last: reverse order), float span [offset, offset+count). */
void ag_ar_bucket_info(const ag_ar *ar, int b, int *first, int *last, size_t *offset, size_t *count);
void ag_ar_get_stats(const ag_ar *ar, ag_ar_stats *st);
void ag_ar_reset_stats(ag_ar *ar);

/* ---- parameter checksum ---- */

/* A 64-bit hash of n bytes (not cryptographic; equal bytes give equal hashes everywhere). */
uint64_t ag_hash_bytes(const void *p, size_t n);
/* Collective: hash n floats on every rank and compare. 0 if all ranks agree; otherwise -1
 * on every rank, with a message naming the step and the ranks whose parameters differ from
 * rank 0's. */
int ag_check_same(const float *data, size_t n, int64_t step, MPI_Comm comm);
#endif
