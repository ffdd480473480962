/* Gradient allreduce on the GPU with NCCL, overlapped with the backward pass: one rank per
 * GPU (picked by node-local rank), an NCCL communicator bootstrapped over MPI (rank 0's
 * ncclUniqueId is broadcast on the world communicator), and buckets of the device gradient
 * buffer reduced on a separate CUDA stream while the backward pass continues on the
 * backend's compute stream.
 *
 * Compiled only when CUDA and NCCL are found (nn/cuda/CMakeLists.txt adds dist/nccl.c to
 * argent_cuda with ARGENT_HAVE_NCCL=1, and defines the marker target argent_nccl); in other
 * builds the file is an empty unit and callers test ARGENT_HAVE_NCCL.
 *
 * Buckets follow dist/allreduce.h exactly (same planner rule, so the same buckets for the
 * same table and sizes): consecutive tensors in REVERSE parameter order, a small first
 * bucket (default 1 MiB) so communication starts early, then about 25 MiB each, tiling the
 * flat buffer gaps included. Per step, on the host thread that drives the CUDA backend:
 *
 *   ag_nccl_begin(nc);
 *   ... backward ops queued; after the last op that writes tensor i's gradient:
 *       ag_nccl_ready(nc, i);   // records an event on the compute stream; when a bucket is
 *                               // complete (and every earlier bucket started) the comm
 *                               // stream waits for that event and runs ncclAllReduce (SUM,
 *                               // fp32, in place): the reduction overlaps later backward ops
 *   ag_nccl_finish(nc, global_count);  // start what is left; the compute stream waits for
 *                                      // the comm stream, then grad *= 1/global_count
 *
 * Nothing blocks the host except ag_nccl_finish's error check (it does not synchronise the
 * device; ag_cuda_check() at the end of the step does). Reductions are fp32 on the fp32
 * gradient buffer in every precision mode (bf16/fp16 keep fp32 master gradients). */
#ifndef ARGENT_DIST_NCCL_H
#define ARGENT_DIST_NCCL_H
#include <stddef.h>
#include <stdint.h>

#include "dist/comm.h"
#include "nn/params.h"

/* ---- bucket plan (host-side, no GPU needed) ---- */
typedef struct {
    int first, last;        /* tensors first..last, first >= last (reverse order) */
    size_t offset, count;   /* float span [offset, offset + count) of the flat buffer */
} ag_nccl_bucket;

typedef struct {
    int n;                  /* buckets */
    ag_nccl_bucket *b;      /* [n], in start order */
    int *bucket_of;         /* [tensors] */
    int n_tensors;
} ag_nccl_plan;

/* Plan buckets for table p (only its tensor table is read: p->data/grad may be NULL or
 * device pointers). 0, or -1 with ag_err (empty table, sizes below one float, tensors out
 * of offset order). */
int ag_nccl_plan_make(ag_nccl_plan *plan, const ag_params *p, size_t first_bucket_bytes,
                      size_t bucket_bytes);
void ag_nccl_plan_free(ag_nccl_plan *plan);

/* ---- communicator and reduction ---- */
typedef struct ag_nccl ag_nccl;

typedef struct {
    size_t first_bucket_bytes;  /* default 1 MiB */
    size_t bucket_bytes;        /* default 25 MiB */
    int overlap;                /* 1 (default): start buckets from ag_nccl_ready; 0: all in finish */
} ag_nccl_config;

void ag_nccl_config_default(ag_nccl_config *cfg);

/* Collective over comm->world. Selects GPU local_rank (one rank per GPU; more ranks on a
 * node than visible GPUs is an error), initialises the CUDA backend on it, broadcasts
 * rank 0's ncclUniqueId, creates the NCCL communicator and the comm stream. If any rank
 * cannot use its GPU, EVERY rank returns -1 (no rank is left waiting in NCCL), with
 * ag_err giving this rank's reason or naming the first rank that failed. */
int ag_nccl_init(ag_nccl **out, const ag_comm *comm, int local_rank);
/* Reduce this device table's gradients (dev->grad: fp32 device buffer, e.g. from
 * ag_cuda_params_mirror). cfg NULL: defaults. Replaces an earlier attach. 0 or -1. */
int ag_nccl_attach(ag_nccl *nc, const ag_params *dev, const ag_nccl_config *cfg);
int ag_nccl_begin(ag_nccl *nc);
/* Tensor t's gradient is final (its last backward op is queued). 0 or -1. */
int ag_nccl_ready(ag_nccl *nc, int t);
/* Start what is left, order the compute stream after the reductions and queue
 * grad *= 1/global_count. 0 or -1 (a failed NCCL call, named). */
int ag_nccl_finish(ag_nccl *nc, int64_t global_count);
/* Blocking in-place fp32 SUM over ranks of n floats of device memory (loss sums, found_inf
 * flags), ordered after the compute stream's queued work. 0 or -1. */
int ag_nccl_allreduce_sum(ag_nccl *nc, float *dev_buf, size_t n);
const ag_nccl_plan *ag_nccl_get_plan(const ag_nccl *nc);
/* Destroys the NCCL communicator (after finishing queued work), stream and events. */
void ag_nccl_free(ag_nccl *nc);
#endif
