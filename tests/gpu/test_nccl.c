/* dist/nccl (NCCL gradient allreduce): run under mpirun (np 1 and 2).
 * Everywhere: the bucket plan equals dist/allreduce's (ag_ar on MPI_COMM_SELF) for several
 * tables and sizes and tiles the buffer; planner and API error paths; ag_nccl_init on a
 * machine without a GPU fails on EVERY rank with a clear message (no hang) — or, with one
 * GPU and np 2, with "start one rank per GPU".
 * With a GPU (np 1; NCCL refuses two ranks on one GPU): an attached device table whose
 * gradients are reduced bucket by bucket while more work is queued on the compute stream,
 * then scaled by 1/global_count, equals the host computation (exact: eighths). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist/allreduce.h"
#include "dist/comm.h"
#include "dist/nccl.h"
#include "nn/cuda/cuda.h"
#include "nn/error.h"
#include "tests/support/check.h"

static void build_table(ag_params *p, int ntensors, unsigned seed)
{
    ag_params_init(p);
    for (int t = 0; t < ntensors; t++) {
        seed = seed * 1103515245u + 12345u;
        int64_t n = 1 + (int64_t)((seed >> 8) % 700);
        if (t == 3) n = 5000;
        if (t % 5 == 2) ag_params_addf(p, 2, (int64_t[]){n, 3}, "layer.%d.weight", t);
        else ag_params_addf(p, 1, (int64_t[]){n}, "layer.%d.bias", t);
    }
    ag_params_alloc(p);
}

static void plan_tests(void)
{
    static const size_t sizes[][2] = {{4, 4}, {1024, 4096}, {1 << 20, 25 << 20}, {400, 100000}, {65536, 8192}};
    int same = 1, tiles = 1;
    for (int tab = 0; tab < 3; tab++) {
        ag_params p;
        build_table(&p, tab == 0 ? 1 : 23 + tab * 7, 17u + (unsigned)tab);
        for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
            ag_nccl_plan plan;
            ag_ar_config cfg;
            ag_ar_config_default(&cfg);
            cfg.first_bucket_bytes = sizes[k][0];
            cfg.bucket_bytes = sizes[k][1];
            ag_ar *ar = NULL;
            if (ag_nccl_plan_make(&plan, &p, sizes[k][0], sizes[k][1]) != 0 ||
                ag_ar_create(&ar, &p, &cfg, MPI_COMM_SELF) != 0) {
                printf("  plan table %d sizes %zu/%zu: %s\n", tab, sizes[k][0], sizes[k][1], ag_errmsg());
                same = 0;
                ag_ar_free(ar);
                continue;
            }
            if (plan.n != ag_ar_bucket_count(ar)) same = 0;
            size_t end = p.t[p.n - 1].offset + p.t[p.n - 1].numel;
            for (int b = 0; b < plan.n && same; b++) {
                int f, l;
                size_t o, c;
                ag_ar_bucket_info(ar, b, &f, &l, &o, &c);
                const ag_nccl_bucket *q = &plan.b[b];
                if (q->first != f || q->last != l || q->offset != o || q->count != c) {
                    printf("  table %d sizes %zu/%zu bucket %d: [%d..%d] %zu+%zu vs allreduce [%d..%d] %zu+%zu\n",
                           tab, sizes[k][0], sizes[k][1], b, q->first, q->last, q->offset, q->count, f, l, o, c);
                    same = 0;
                }
                /* tiling: each bucket ends where the previous began; tensors map back */
                if (q->offset + q->count != end) tiles = 0;
                end = q->offset;
                for (int t = q->last; t <= q->first; t++)
                    if (plan.bucket_of[t] != b) tiles = 0;
            }
            if (end != 0) tiles = 0;
            ag_ar_free(ar);
            ag_nccl_plan_free(&plan);
        }
        ag_params_free(&p);
    }
    check_true("bucket plan = dist/allreduce's for 3 tables x 5 sizes", same);
    check_true("buckets tile the buffer from 0, every tensor in its bucket", tiles);

    ag_nccl_plan plan;
    ag_params empty;
    ag_params_init(&empty);
    check_true("plan: empty table refused", ag_nccl_plan_make(&plan, &empty, 4, 4) == -1 &&
                                            strstr(ag_errmsg(), "empty"));
    ag_params p;
    build_table(&p, 5, 3);
    check_true("plan: bucket below one float refused",
               ag_nccl_plan_make(&plan, &p, 2, 100) == -1 && strstr(ag_errmsg(), "below one float"));
    p.t[2].offset = 0;   /* out of order */
    check_true("plan: overlapping tensors refused, named",
               ag_nccl_plan_make(&plan, &p, 64, 64) == -1 && strstr(ag_errmsg(), "layer.2.weight"));
    ag_params_free(&p);
}

/* The GPU part: mirror a table, give each rank eighths (exact sums), reduce with overlap. */
static void gpu_reduce(ag_nccl *nc, const ag_comm *c)
{
    ag_params host, dev;
    build_table(&host, 23, 5);
    for (size_t i = 0; i < host.total; i++) {
        host.data[i] = 0;
        host.grad[i] = (float)((int)((i * 7 + 3) % 64) - 32) / 8.0f * (float)(c->rank + 1);
    }
    if (ag_cuda_params_mirror(&dev, &host) != 0 || ag_cuda_params_upload(&dev, &host, 1) != 0) {
        printf("  mirror: %s\n", ag_errmsg());
        check_true("device table", 0);
        ag_params_free(&host);
        return;
    }
    ag_nccl_config cfg;
    ag_nccl_config_default(&cfg);
    cfg.first_bucket_bytes = 4096;
    cfg.bucket_bytes = 16384;
    int rc = ag_nccl_attach(nc, &dev, &cfg);
    check_true("attach", rc == 0);
    if (rc == 0) printf("  %d buckets\n", ag_nccl_get_plan(nc)->n);
    float *busy = ag_ops_cuda.alloc(sizeof(float) << 20);
    rc |= ag_nccl_begin(nc);
    for (int t = host.n - 1; t >= 0 && rc == 0; t--) {
        /* later "backward" work queued after each tensor: the reductions overlap it */
        ag_ops_cuda.scale(busy, 1.0f, (size_t)1 << 20);
        rc |= ag_nccl_ready(nc, t);
    }
    int64_t global = 3 * (int64_t)c->size;
    rc |= ag_nccl_finish(nc, global);
    rc |= ag_cuda_check();
    if (rc) printf("  reduce: %s\n", ag_errmsg());
    check_true("begin / ready / finish", rc == 0);
    float *got = malloc(sizeof(float) * host.total), *want = malloc(sizeof(float) * host.total);
    ag_ops_cuda.download(got, dev.grad, sizeof(float) * host.total);
    double ranks = c->size * (c->size + 1) / 2.0;
    for (size_t i = 0; i < host.total; i++)
        want[i] = (float)((float)((double)((int)((i * 7 + 3) % 64) - 32) / 8.0 * ranks) * (float)(1.0 / (double)global));
    check_rel("reduced mean gradient", got, want, host.total, 1e-7);
    check_true("a second begin before finish is refused",
               ag_nccl_begin(nc) == 0 && ag_nccl_begin(nc) == -1 && ag_nccl_finish(nc, 1) == 0);
    ag_cuda_check();
    ag_ops_cuda.free(busy);
    free(got);
    free(want);
    ag_cuda_params_free(&dev);
    ag_params_free(&host);
}

int main(int argc, char **argv)
{
    if (ag_comm_init(&argc, &argv) != 0) {
        printf("FAIL comm init: %s\n", ag_errmsg());
        return 1;
    }
    const ag_comm *c = ag_comm_get();
    plan_tests();

    ag_nccl *nc = NULL;
    check_true("init without a communicator refused",
               ag_nccl_init(&nc, NULL, 0) == -1 && strstr(ag_errmsg(), "ag_comm_init") && !nc);
    check_true("attach without a communicator refused", ag_nccl_attach(NULL, NULL, NULL) == -1);
    check_true("ready without a step refused", ag_nccl_ready(NULL, 0) == -1);

    char why[256];
    int have = ag_cuda_available(why, sizeof why);
    int rc = ag_nccl_init(&nc, c, c->local_rank);
    const char *msg = ag_errmsg();
    if (c->rank == 0) printf("  rank 0: ag_nccl_init -> %d%s%s\n", rc, rc ? ": " : "", rc ? msg : "");
    /* every rank must come back with the same answer */
    int mine = rc, lo = 0, hi = 0;
    MPI_Allreduce(&mine, &lo, 1, MPI_INT, MPI_MIN, c->world);
    MPI_Allreduce(&mine, &hi, 1, MPI_INT, MPI_MAX, c->world);
    check_true("every rank gets the same answer from ag_nccl_init", lo == hi);
    if (!have) {
        check_true("no GPU: init fails with 'no CUDA device' or names the failing rank",
                   rc == -1 && !nc && (strstr(msg, "no CUDA device") || strstr(msg, "on rank 0")));
    } else if (rc != 0) {
        check_true("GPU present: init fails only with more ranks than GPUs",
                   strstr(msg, "one rank per GPU") || strstr(msg, "see its message"));
    } else {
        gpu_reduce(nc, c);
        ag_nccl_free(nc);
    }
    int failed = check_failed, any = 0;
    MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, c->world);
    int status = check_finish();
    ag_comm_finalize();
    return status ? status : (any ? 1 : 0);
}
