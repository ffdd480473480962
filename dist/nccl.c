/* NCCL gradient allreduce overlapped with the backward pass (see dist/nccl.h). Built into
 * argent_cuda with ARGENT_HAVE_NCCL=1 when CUDA and NCCL are found; the dist/ layer's glob
 * also compiles this file, without the macro, to an empty unit. */
#ifdef ARGENT_HAVE_NCCL
#include "dist/nccl.h"

#include <mpi.h>
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/cuda/cuda.h"
#include "nn/cuda/internal.h"
#include "nn/error.h"

/* ---------------------------------------------------------------- bucket plan */

int ag_nccl_plan_make(ag_nccl_plan *plan, const ag_params *p, size_t first_bytes, size_t bytes)
{
    memset(plan, 0, sizeof *plan);
    if (!p || p->n < 1) return ag_err("nccl plan: the parameter table is empty");
    if (first_bytes < sizeof(float) || bytes < sizeof(float))
        return ag_err("nccl plan: bucket sizes %zu / %zu bytes are below one float", first_bytes, bytes);
    for (int i = 1; i < p->n; i++)
        if (p->t[i].offset < p->t[i - 1].offset + p->t[i - 1].numel)
            return ag_err("nccl plan: tensor %d '%s' (offset %zu) overlaps or precedes tensor %d '%s'",
                          i, p->t[i].name, p->t[i].offset, i - 1, p->t[i - 1].name);
    plan->b = calloc((size_t)p->n, sizeof *plan->b);
    plan->bucket_of = calloc((size_t)p->n, sizeof *plan->bucket_of);
    if (!plan->b || !plan->bucket_of) {
        ag_nccl_plan_free(plan);
        return ag_err("nccl plan: out of memory for %d tensors", p->n);
    }
    plan->n_tensors = p->n;
    /* The rule of dist/allreduce.c: walk from the last tensor; a bucket's span starts where
     * its earliest tensor starts (tensor 0 at 0) and ends where the previous bucket began,
     * so buckets tile the buffer; close it once it reaches its size. */
    size_t end = p->t[p->n - 1].offset + p->t[p->n - 1].numel;
    ag_nccl_bucket *cur = NULL;
    for (int i = p->n - 1; i >= 0; i--) {
        if (!cur) {
            cur = &plan->b[plan->n++];
            cur->first = i;
        }
        cur->last = i;
        plan->bucket_of[i] = plan->n - 1;
        size_t start = i == 0 ? 0 : p->t[i].offset;
        cur->offset = start;
        cur->count = end - start;
        size_t cap = plan->n == 1 ? first_bytes : bytes;
        if (cur->count * sizeof(float) >= cap || i == 0) {
            end = start;
            cur = NULL;
        }
    }
    return 0;
}

void ag_nccl_plan_free(ag_nccl_plan *plan)
{
    free(plan->b);
    free(plan->bucket_of);
    memset(plan, 0, sizeof *plan);
}

void ag_nccl_config_default(ag_nccl_config *cfg)
{
    cfg->first_bucket_bytes = (size_t)1 << 20;
    cfg->bucket_bytes = (size_t)25 << 20;
    cfg->overlap = 1;
}

/* ---------------------------------------------------------------- communicator */

struct ag_nccl {
    ncclComm_t comm;
    cudaStream_t stream;     /* the comm stream; the compute stream is ag_cuda_stream() */
    cudaEvent_t done;        /* recorded on the comm stream at finish */
    cudaEvent_t *ready_ev;   /* [buckets] compute-stream point each bucket waits for */
    int rank, size, device;
    const ag_params *dev;
    ag_nccl_config cfg;
    ag_nccl_plan plan;
    int *pending;            /* [buckets] tensors not yet ready this step */
    unsigned char *ready;    /* [tensors] */
    int next_start, in_step;
};

static int nccl_fail(const char *what, ncclResult_t r)
{
    return ag_err("nccl: %s failed: %s (%d)", what, ncclGetErrorString(r), (int)r);
}

static int cuda_fail(const char *what, cudaError_t e)
{
    return ag_err("nccl: %s failed: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

/* Every rank learns whether all ranks succeeded; a rank that did not keeps its own
 * message, the others get one naming the first rank that failed. */
static int agree(const ag_comm *c, int ok, const char *stage)
{
    int bad_rank = ok ? c->size : c->rank, first_bad = c->size;
    if (MPI_Allreduce(&bad_rank, &first_bad, 1, MPI_INT, MPI_MIN, c->world) != MPI_SUCCESS)
        return ag_err("nccl: MPI_Allreduce while agreeing on %s failed", stage);
    if (first_bad == c->size) return 0;
    if (ok) return ag_err("nccl: %s failed on rank %d (see its message); every rank stops", stage, first_bad);
    return -1;
}

int ag_nccl_init(ag_nccl **out, const ag_comm *c, int local_rank)
{
    *out = NULL;
    if (!c || !c->initialized || c->world == MPI_COMM_NULL)
        return ag_err("ag_nccl_init: the communicator is not initialised (call ag_comm_init first)");
    /* Stage 1: each rank checks its own GPU; all agree before any NCCL call. */
    int ok = 1;
    char why[256] = "";
    if (local_rank < 0) {
        ag_err("ag_nccl_init: rank %d: node-local rank %d (expected >= 0)", c->rank, local_rank);
        ok = 0;
    } else if (!ag_cuda_available(why, sizeof why)) {
        ag_err("ag_nccl_init: rank %d: no CUDA device (%s); NCCL needs one GPU per rank", c->rank, why);
        ok = 0;
    } else {
        int ndev = 0;
        cudaError_t e = cudaGetDeviceCount(&ndev);
        if (e != cudaSuccess) {
            cuda_fail("cudaGetDeviceCount", e);
            ok = 0;
        } else if (local_rank >= ndev) {
            ag_err("ag_nccl_init: rank %d is node-local rank %d but only %d GPU(s) are visible on "
                   "its node; start one rank per GPU", c->rank, local_rank, ndev);
            ok = 0;
        } else if (ag_cuda_init(local_rank) != 0) {
            ag_err_ctx("ag_nccl_init: rank %d, GPU %d", c->rank, local_rank);
            ok = 0;
        }
    }
    if (agree(c, ok, "GPU selection") != 0) return -1;

    ag_nccl *nc = calloc(1, sizeof *nc);
    if (!nc) ok = ag_err("ag_nccl_init: out of memory") + 1;
    /* Stage 2: the unique id travels over MPI; then the (collective) NCCL init. */
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    if (c->rank == 0) {
        ncclResult_t r = ncclGetUniqueId(&id);
        if (r != ncclSuccess) { nccl_fail("ncclGetUniqueId", r); ok = 0; }
    }
    if (agree(c, ok, "ncclGetUniqueId") != 0) { free(nc); return -1; }
    /* From here on every rank has its struct (agree() above saw no failed calloc). */
    if (MPI_Bcast(&id, (int)sizeof id, MPI_BYTE, 0, c->world) != MPI_SUCCESS) {
        free(nc);
        return ag_err("ag_nccl_init: MPI_Bcast of the NCCL unique id failed");
    }
    nc->rank = c->rank;
    nc->size = c->size;
    nc->device = local_rank;
    ncclResult_t r = ncclCommInitRank(&nc->comm, c->size, id, c->rank);
    if (r != ncclSuccess) { nccl_fail("ncclCommInitRank", r); ok = 0; nc->comm = NULL; }
    if (ok) {
        /* The comm stream gets the highest priority so reductions are not starved by the
         * backward's kernels queued on the compute stream. */
        int lo = 0, hi = 0;
        cudaDeviceGetStreamPriorityRange(&lo, &hi);
        cudaError_t e = cudaStreamCreateWithPriority(&nc->stream, cudaStreamNonBlocking, hi);
        if (e == cudaSuccess) e = cudaEventCreateWithFlags(&nc->done, cudaEventDisableTiming);
        if (e != cudaSuccess) { cuda_fail("creating the comm stream", e); ok = 0; }
    }
    if (agree(c, ok, "ncclCommInitRank") != 0) { ag_nccl_free(nc); return -1; }
    ag_nccl_config_default(&nc->cfg);
    *out = nc;
    return 0;
}

static void release_plan(ag_nccl *nc)
{
    for (int b = 0; nc->ready_ev && b < nc->plan.n; b++)
        if (nc->ready_ev[b]) cudaEventDestroy(nc->ready_ev[b]);
    free(nc->ready_ev);
    free(nc->pending);
    free(nc->ready);
    nc->ready_ev = NULL;
    nc->pending = NULL;
    nc->ready = NULL;
    ag_nccl_plan_free(&nc->plan);
    nc->dev = NULL;
}

int ag_nccl_attach(ag_nccl *nc, const ag_params *dev, const ag_nccl_config *cfg)
{
    if (!nc) return ag_err("ag_nccl_attach: no communicator (ag_nccl_init failed or was not called)");
    if (!dev || !dev->grad) return ag_err("ag_nccl_attach: the table has no gradient buffer");
    if (nc->in_step) return ag_err("ag_nccl_attach: a step is in progress (call ag_nccl_finish first)");
    release_plan(nc);
    if (cfg) nc->cfg = *cfg; else ag_nccl_config_default(&nc->cfg);
    if (ag_nccl_plan_make(&nc->plan, dev, nc->cfg.first_bucket_bytes, nc->cfg.bucket_bytes) != 0)
        return ag_err_ctx("ag_nccl_attach");
    int nb = nc->plan.n;
    nc->ready_ev = calloc((size_t)nb, sizeof *nc->ready_ev);
    nc->pending = calloc((size_t)nb, sizeof *nc->pending);
    nc->ready = calloc((size_t)dev->n, 1);
    if (!nc->ready_ev || !nc->pending || !nc->ready) {
        release_plan(nc);
        return ag_err("ag_nccl_attach: out of memory for %d buckets", nb);
    }
    for (int b = 0; b < nb; b++) {
        cudaError_t e = cudaEventCreateWithFlags(&nc->ready_ev[b], cudaEventDisableTiming);
        if (e != cudaSuccess) { release_plan(nc); return cuda_fail("cudaEventCreate", e); }
    }
    nc->dev = dev;
    return 0;
}

const ag_nccl_plan *ag_nccl_get_plan(const ag_nccl *nc) { return nc ? &nc->plan : NULL; }

int ag_nccl_begin(ag_nccl *nc)
{
    if (!nc || !nc->dev) return ag_err("ag_nccl_begin: no table attached (call ag_nccl_attach)");
    if (nc->in_step) return ag_err("ag_nccl_begin: the previous step was not finished");
    memset(nc->ready, 0, (size_t)nc->plan.n_tensors);
    for (int b = 0; b < nc->plan.n; b++)
        nc->pending[b] = nc->plan.b[b].first - nc->plan.b[b].last + 1;
    nc->next_start = 0;
    nc->in_step = 1;
    return 0;
}

/* Bucket b's tensors are all queued on the compute stream: mark that point, have the comm
 * stream wait for it, and queue the in-place SUM there. */
static int start_bucket(ag_nccl *nc, int b)
{
    const ag_nccl_bucket *k = &nc->plan.b[b];
    cudaError_t e = cudaEventRecord(nc->ready_ev[b], ag_cuda_stream());
    if (e == cudaSuccess) e = cudaStreamWaitEvent(nc->stream, nc->ready_ev[b], 0);
    if (e != cudaSuccess) return cuda_fail("ordering a bucket after the backward", e);
    float *g = nc->dev->grad + k->offset;
    ncclResult_t r = ncclAllReduce(g, g, k->count, ncclFloat, ncclSum, nc->comm, nc->stream);
    if (r != ncclSuccess) {
        char what[96];
        snprintf(what, sizeof what, "ncclAllReduce of bucket %d (%zu floats)", b, k->count);
        return nccl_fail(what, r);
    }
    return 0;
}

/* Start buckets in plan order while the next one is complete, so every rank issues the
 * collectives in the same order whatever order ready() calls arrive in. */
static int start_ready(ag_nccl *nc)
{
    while (nc->next_start < nc->plan.n && nc->pending[nc->next_start] == 0) {
        if (start_bucket(nc, nc->next_start) != 0) return -1;
        nc->next_start++;
    }
    return 0;
}

int ag_nccl_ready(ag_nccl *nc, int t)
{
    if (!nc || !nc->in_step) return ag_err("ag_nccl_ready: no step in progress (call ag_nccl_begin)");
    if (t < 0 || t >= nc->plan.n_tensors)
        return ag_err("ag_nccl_ready: tensor %d outside the table's %d tensors", t, nc->plan.n_tensors);
    if (nc->ready[t]) return 0;
    nc->ready[t] = 1;
    nc->pending[nc->plan.bucket_of[t]]--;
    return nc->cfg.overlap ? start_ready(nc) : 0;
}

int ag_nccl_finish(ag_nccl *nc, int64_t global_count)
{
    if (!nc || !nc->in_step) return ag_err("ag_nccl_finish: no step in progress (call ag_nccl_begin)");
    if (global_count < 1) return ag_err("ag_nccl_finish: global_count %lld (expected >= 1)", (long long)global_count);
    nc->in_step = 0;
    /* Unreported tensors (unused, or a rank without samples) still take part. */
    for (int b = nc->next_start; b < nc->plan.n; b++) nc->pending[b] = 0;
    if (start_ready(nc) != 0) return -1;
    cudaError_t e = cudaEventRecord(nc->done, nc->stream);
    if (e == cudaSuccess) e = cudaStreamWaitEvent(ag_cuda_stream(), nc->done, 0);
    if (e != cudaSuccess) return cuda_fail("ordering the compute stream after the reductions", e);
    ag_cuda_scale(nc->dev->grad, (float)(1.0 / (double)global_count), nc->dev->total);
    return 0;
}

int ag_nccl_allreduce_sum(ag_nccl *nc, float *buf, size_t n)
{
    if (!nc) return ag_err("ag_nccl_allreduce_sum: no communicator");
    if (!n) return 0;
    cudaError_t e = cudaEventRecord(nc->done, ag_cuda_stream());
    if (e == cudaSuccess) e = cudaStreamWaitEvent(nc->stream, nc->done, 0);
    if (e != cudaSuccess) return cuda_fail("ordering a reduction after the compute stream", e);
    ncclResult_t r = ncclAllReduce(buf, buf, n, ncclFloat, ncclSum, nc->comm, nc->stream);
    if (r != ncclSuccess) return nccl_fail("ncclAllReduce", r);
    e = cudaStreamSynchronize(nc->stream);
    if (e != cudaSuccess) return cuda_fail("waiting for a reduction", e);
    return 0;
}

void ag_nccl_free(ag_nccl *nc)
{
    if (!nc) return;
    if (nc->stream) cudaStreamSynchronize(nc->stream);
    release_plan(nc);
    if (nc->comm) ncclCommDestroy(nc->comm);
    if (nc->done) cudaEventDestroy(nc->done);
    if (nc->stream) cudaStreamDestroy(nc->stream);
    free(nc);
}
#else
/* This build has no NCCL: nothing to compile (see dist/nccl.h). */
typedef int ag_nccl_unit_is_empty;
#endif
