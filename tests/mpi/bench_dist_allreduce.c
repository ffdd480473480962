/* Benchmark (not a ctest): how much of the gradient allreduce the bucketed, overlapped
 * version hides behind a simulated backward pass, against one blocking MPI_Allreduce after
 * it. A table shaped like a 6-layer MiniLM (about 22.7M floats, word embeddings first) is
 * "backpropagated" layer by layer: each layer spins `ms` of compute split into slices with
 * ag_ar_progress() between them, then reports its tensors ready.
 *
 *   mpirun -np 2 bench_dist_allreduce [--ms 40] [--steps 3] [--bucket-mib 25] [--exact] [--no-overlap]
 * Prints per step: compute, blocking allreduce time, overlapped step time, exposed wait. */
#include "dist/allreduce.h"
#include "dist/comm.h"
#include "nn/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Busy compute for ms milliseconds in slices, letting outstanding reductions progress. */
static void fake_compute(ag_ar *ar, double ms) {
    double end = MPI_Wtime() + ms * 1e-3;
    volatile double x = 1.0;
    while (MPI_Wtime() < end) {
        double slice = MPI_Wtime() + 1e-3;
        while (MPI_Wtime() < slice) x = x * 1.0000001 + 1e-9;
        if (ar) ag_ar_progress(ar);
    }
}

int main(int argc, char **argv) {
    if (ag_comm_init(&argc, &argv)) ag_fatal("%s", ag_errmsg());
    const ag_comm *c = ag_comm_get();
    double ms = 40;
    int steps = 3, exact = 0, overlap = 1;
    size_t bucket_mib = 25;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--ms") && i + 1 < argc) ms = atof(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--bucket-mib") && i + 1 < argc) bucket_mib = (size_t)atol(argv[++i]);
        else if (!strcmp(argv[i], "--exact")) exact = 1;
        else if (!strcmp(argv[i], "--no-overlap")) overlap = 0;
        else ag_fatal("bench_dist_allreduce: unknown option '%s'", argv[i]);
    }
    ag_params p;
    ag_params_init(&p);
    ag_params_add(&p, "embeddings.word_embeddings.weight", 2, (int64_t[]){ 30522, 384 });
    ag_params_add(&p, "embeddings.position_embeddings.weight", 2, (int64_t[]){ 512, 384 });
    const char *names[] = { "attention.self.query.weight", "attention.self.key.weight", "attention.self.value.weight",
                            "attention.output.dense.weight", "intermediate.dense.weight", "output.dense.weight" };
    const int64_t shapes[][2] = { { 384, 384 }, { 384, 384 }, { 384, 384 }, { 384, 384 }, { 1536, 384 }, { 384, 1536 } };
    int layer_first[6];
    for (int l = 0; l < 6; l++) {
        layer_first[l] = p.n;
        for (int k = 0; k < 6; k++) ag_params_addf(&p, 2, shapes[k], "encoder.layer.%d.%s", l, names[k]);
    }
    if (ag_params_alloc(&p)) ag_fatal("out of memory");
    for (size_t i = 0; i < p.total; i++) p.grad[i] = 1e-3f * (float)(i % 7);

    ag_ar_config cfg;
    ag_ar_config_default(&cfg);
    cfg.bucket_bytes = bucket_mib << 20;
    if (exact) cfg.mode = AG_AR_EXACT;
    cfg.overlap = overlap;
    ag_ar *ar = NULL;
    if (ag_ar_create(&ar, &p, &cfg, c->world)) ag_fatal("%s", ag_errmsg());
    ag_log0("bench: %d ranks, %zu floats (%.1f MB), %d buckets, %s mode, %s, %.0f ms compute per layer", c->size,
            p.total, p.total * 4e-6, ag_ar_bucket_count(ar), exact ? "EXACT" : "SUM",
            overlap ? "overlapped" : "blocking buckets at finish", ms);

    for (int s = 0; s < steps; s++) {
        /* Blocking: all compute, then one allreduce. */
        MPI_Barrier(c->world);
        double t0 = MPI_Wtime();
        for (int l = 0; l < 7; l++) fake_compute(NULL, ms);
        double t1 = MPI_Wtime();
        MPI_Allreduce(MPI_IN_PLACE, p.grad, (int)p.total, MPI_FLOAT, MPI_SUM, c->world);
        double t2 = MPI_Wtime();

        /* Overlapped: layers from last to first, embeddings last. */
        MPI_Barrier(c->world);
        ag_ar_stats before;
        ag_ar_get_stats(ar, &before);
        double t3 = MPI_Wtime();
        ag_ar_begin(ar);
        double t_ready = 0;
        for (int l = 5; l >= 0; l--) {
            fake_compute(ar, ms);
            double r0 = MPI_Wtime();
            for (int t = layer_first[l] + 5; t >= layer_first[l]; t--) ag_ar_ready(ar, t);
            t_ready += MPI_Wtime() - r0;
        }
        fake_compute(ar, ms);
        double r0 = MPI_Wtime();
        ag_ar_ready(ar, 1);
        ag_ar_ready(ar, 0);
        t_ready += MPI_Wtime() - r0;
        if (ag_ar_finish(ar, 1)) ag_fatal("%s", ag_errmsg());
        double t4 = MPI_Wtime();
        ag_ar_stats after;
        ag_ar_get_stats(ar, &after);
        double comm = t2 - t1, wait = after.t_wait - before.t_wait;
        ag_log0("step %d: compute %.3f s | blocking allreduce %.3f s (step %.3f s) | overlapped step %.3f s, "
                "exposed wait %.3f s, in ready() %.3f s, in MPI %.3f s, convert %.3f s => %.0f%% of the blocking "
                "allreduce hidden", s, t1 - t0, comm, t2 - t0, t4 - t3, wait, t_ready, after.t_mpi - before.t_mpi,
                after.t_convert - before.t_convert, comm > 0 ? 100.0 * (1.0 - (t4 - t3 - (t1 - t0)) / comm) : 0.0);
        for (size_t i = 0; i < p.total; i++) p.grad[i] = 1e-3f * (float)(i % 7);
    }
    ag_ar_free(ar);
    ag_params_free(&p);
    ag_comm_finalize();
    return 0;
}
