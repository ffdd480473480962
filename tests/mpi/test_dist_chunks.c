/* MPI test program for the chunked work engine, run at any np directly and by the fault
 * driver. A deterministic synthetic `process` gives item i, column k the value
 * synth_uniform(31, i, k), so the merged output can be checked row by row: no item missing,
 * doubled or misplaced.
 *
 *   --dir D          output directory (required)
 *   --n N --chunk K --cols C   pair space (default 1000 items, 37 per chunk, 3 columns)
 *   --fresh          rank 0 empties D of parts, temporaries and merged files first
 *   --fault SPEC     like ARGENT_FAULT (e.g. sleep:rank=1:chunk=*:ms=200)
 *   --merge          after a complete run rank 0 writes D/merged.h5 (real) and
 *                    D/merged.vds.h5 (virtual) and checks both
 *   --stats FILE     rank 0 writes "done_before processed_all complete n_chunks"
 *   --expect-faster A B   rank A must process more chunks than rank B
 *   --expect-error   the run must fail on every rank (a 'fail' fault)
 *   --expect-stopped a stop signal (a 'usr1' fault) must end the run early on every rank,
 *                    leaving it incomplete; exit 0 then instead of 85
 * Exit: 0 pass, 1 failure, 85 (AG_EXIT_REQUEUE) if a stop signal ended the run early. */
#include "dist/chunks.h"
#include "dist/comm.h"
#include "dist/signals.h"
#include "nn/error.h"
#include "tests/mpi/synth.h"
#include "tests/support/check.h"

#include <dirent.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int g_cols = 3;

static int synth_process(int64_t chunk, int64_t begin, int64_t end, void *ctx, float **out, int *out_cols) {
    (void)chunk;
    (void)ctx;
    float *o = malloc((size_t)(end - begin) * (size_t)g_cols * sizeof *o);
    if (!o) return ag_err("synth_process: out of memory");
    for (int64_t i = begin; i < end; i++)
        for (int k = 0; k < g_cols; k++) o[(i - begin) * g_cols + k] = synth_uniform(31, (uint64_t)i, (uint64_t)k);
    *out = o;
    *out_cols = g_cols;
    return 0;
}

static void empty_dir(const char *dir) {
    DIR *dp = opendir(dir);
    if (!dp) return;
    struct dirent *de;
    char path[4200];
    while ((de = readdir(dp)))
        if (!strncmp(de->d_name, "part-", 5) || !strncmp(de->d_name, "merged", 6)) {
            snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
            unlink(path);
        }
    closedir(dp);
}

/* Read dataset `name` of `path` and compare it with the synthetic values and attributes. */
static void verify_merged(const char *path, const char *what, int64_t N, int cols) {
    char msg[256];
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    snprintf(msg, sizeof msg, "%s: opens", what);
    if (!check_true(msg, f >= 0)) return;
    hid_t d = H5Dopen2(f, "out", H5P_DEFAULT);
    hid_t sp = H5Dget_space(d);
    hsize_t dims[2] = { 0, 0 };
    H5Sget_simple_extent_dims(sp, dims, NULL);
    H5Sclose(sp);
    snprintf(msg, sizeof msg, "%s: one dataset of N x cols", what);
    if (check_true(msg, (int64_t)dims[0] == N && (int)dims[1] == cols)) {
        float *got = malloc((size_t)N * cols * sizeof *got), *want = malloc((size_t)N * cols * sizeof *want);
        H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, got);
        for (int64_t i = 0; i < N; i++)
            for (int k = 0; k < cols; k++) want[i * cols + k] = synth_uniform(31, (uint64_t)i, (uint64_t)k);
        snprintf(msg, sizeof msg, "%s: every item once, in order, exact values", what);
        check_true(msg, !memcmp(got, want, (size_t)N * cols * sizeof *got));
        free(got);
        free(want);
    }
    H5Dclose(d);
    /* Provenance passed by the caller, and the schema's own attributes. */
    char buf[64] = "";
    hid_t a = H5Aopen(f, "checkpoint", H5P_DEFAULT);
    hid_t t = H5Aget_type(a);
    size_t sz = H5Tget_size(t);
    if (sz < sizeof buf) H5Aread(a, t, buf);
    H5Tclose(t);
    H5Aclose(a);
    int64_t n_items = 0;
    a = H5Aopen(f, "n_items", H5P_DEFAULT);
    H5Aread(a, H5T_NATIVE_INT64, &n_items);
    H5Aclose(a);
    snprintf(msg, sizeof msg, "%s: provenance and schema attributes", what);
    check_true(msg, !strcmp(buf, "ckpt/cross-encoder-step-100") && n_items == N);
    H5Fclose(f);
}

int main(int argc, char **argv) {
    if (ag_comm_init(&argc, &argv)) ag_fatal("init: %s", ag_errmsg());
    const ag_comm *c = ag_comm_get();
    const char *dir = NULL, *stats = NULL, *fault = NULL;
    int64_t N = 1000, K = 37;
    int fresh = 0, merge = 0, expect_error = 0, expect_stopped = 0, fast = -1, slow = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--dir") && v) dir = argv[++i];
        else if (!strcmp(a, "--n") && v) N = atoll(argv[++i]);
        else if (!strcmp(a, "--chunk") && v) K = atoll(argv[++i]);
        else if (!strcmp(a, "--cols") && v) g_cols = atoi(argv[++i]);
        else if (!strcmp(a, "--stats") && v) stats = argv[++i];
        else if (!strcmp(a, "--fault") && v) fault = argv[++i];
        else if (!strcmp(a, "--fresh")) fresh = 1;
        else if (!strcmp(a, "--merge")) merge = 1;
        else if (!strcmp(a, "--expect-error")) expect_error = 1;
        else if (!strcmp(a, "--expect-stopped")) expect_stopped = 1;
        else if (!strcmp(a, "--expect-faster") && i + 2 < argc) { fast = atoi(argv[i + 1]); slow = atoi(argv[i + 2]); i += 2; }
        else ag_fatal("test_dist_chunks: unknown or incomplete option '%s'", a);
    }
    if (!dir) ag_fatal("test_dist_chunks: --dir is required");
    if (fault && ag_fault_set(fault)) ag_fatal("%s", ag_errmsg());
    if (fresh && c->rank == 0) empty_dir(dir);
    MPI_Barrier(c->world);

    ag_chunks_config cfg;
    ag_chunks_config_default(&cfg);
    cfg.dir = dir;
    cfg.n_items = N;
    cfg.chunk_size = K;
    cfg.process = synth_process;
    ag_chunks_stats st;
    int rc = ag_chunks_run(&cfg, c->world, &st);
    if (expect_error) {
        check_true("run fails on this rank too (no hang)", rc == -1);
        ag_logr("expected error: %s", ag_errmsg());
        int mine = check_failed, worst = 0;
        MPI_Allreduce(&mine, &worst, 1, MPI_INT, MPI_MAX, c->world);
        int r = check_finish();
        ag_comm_finalize();
        return r ? r : worst ? 1 : 0;
    }
    if (rc) ag_fatal("%s", ag_errmsg());
    ag_logr("processed %lld chunks (%lld items) in %.2f s", (long long)st.processed, (long long)st.items, st.seconds);
    ag_log0("run: %lld chunks, %lld done before, %lld processed now, complete %d, stopped %d",
            (long long)st.n_chunks, (long long)st.done_before, (long long)st.processed_all, st.complete, st.stopped);

    int *per_rank = malloc((size_t)c->size * sizeof *per_rank), mine = (int)st.processed;
    MPI_Allgather(&mine, 1, MPI_INT, per_rank, 1, MPI_INT, c->world);
    if (fast >= 0 && fast < c->size && slow >= 0 && slow < c->size) {
        char msg[128];
        snprintf(msg, sizeof msg, "dynamic balance: rank %d did %d chunks, slow rank %d did %d", fast, per_rank[fast],
                 slow, per_rank[slow]);
        check_true(msg, per_rank[fast] > per_rank[slow]);
    }
    free(per_rank);

    if (c->rank == 0) {
        if (stats) {
            FILE *fp = fopen(stats, "w");
            if (fp) {
                fprintf(fp, "%lld %lld %d %lld\n", (long long)st.done_before, (long long)st.processed_all, st.complete,
                        (long long)st.n_chunks);
                fclose(fp);
            }
        }
        if (!st.stopped) check_true("run complete", st.complete);
        if (merge && st.complete) {
            const ag_chunk_attr prov[] = { { "checkpoint", "ckpt/cross-encoder-step-100" },
                                     { "settings", "max_len=128 batch=64" },
                                     { "created", "2024-01-01T00:00:00Z" } };
            char real[4200], vds[4200];
            snprintf(real, sizeof real, "%s/merged.h5", dir);
            snprintf(vds, sizeof vds, "%s/merged.vds.h5", dir);
            if (!check_true("merge real", ag_chunks_merge(&cfg, real, AG_MERGE_REAL, prov, 3) == 0))
                fprintf(stderr, "%s\n", ag_errmsg());
            if (!check_true("merge virtual", ag_chunks_merge(&cfg, vds, AG_MERGE_VIRTUAL, prov, 3) == 0))
                fprintf(stderr, "%s\n", ag_errmsg());
            verify_merged(real, "merged real file", N, g_cols);
            verify_merged(vds, "merged virtual dataset", N, g_cols);
        }
    }
    if (expect_stopped) {
        char msg[160];
        snprintf(msg, sizeof msg, "a stop signal on one rank stopped every rank early (%lld of %lld chunks done)",
                 (long long)(st.done_before + st.processed_all), (long long)st.n_chunks);
        check_true(msg, st.stopped && !st.complete && st.processed_all < st.n_chunks);
    }
    int stopped = st.stopped && !expect_stopped;
    int failed_here = check_failed, worst = 0;
    MPI_Allreduce(&failed_here, &worst, 1, MPI_INT, MPI_MAX, c->world);
    int r = check_finish();
    ag_comm_finalize();
    if (r || worst) return 1;
    return stopped ? AG_EXIT_REQUEUE : 0;
}
