/* MPI test of the communicator, broadcast, batch slicing, parameter checksum, the stop flag
 * and fault-spec parsing. Run under mpirun at any np. With --fatal R, rank R calls ag_fatal
 * while the others wait in a barrier (the driver checks that the job ends, not hangs). */
#include "dist/allreduce.h"
#include "dist/comm.h"
#include "dist/signals.h"
#include "nn/error.h"
#include "tests/mpi/synth.h"
#include "tests/support/check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static void test_threads(void) {
    /* ag_threads_from_env reads the environment at call time; exercise each source. */
    char *omp = getenv("OMP_NUM_THREADS") ? strdup(getenv("OMP_NUM_THREADS")) : NULL;
    char *slurm = getenv("SLURM_CPUS_PER_TASK") ? strdup(getenv("SLURM_CPUS_PER_TASK")) : NULL;
    setenv("OMP_NUM_THREADS", "3,1", 1);
    check_true("threads: OMP_NUM_THREADS list takes its first entry", ag_threads_from_env(1) == 3);
    setenv("OMP_NUM_THREADS", "zero", 1);
    check_true("threads: bad OMP_NUM_THREADS is an error naming it",
               ag_threads_from_env(1) == -1 && strstr(ag_errmsg(), "OMP_NUM_THREADS"));
    unsetenv("OMP_NUM_THREADS");
    setenv("SLURM_CPUS_PER_TASK", "2", 1);
    check_true("threads: SLURM_CPUS_PER_TASK when OMP_NUM_THREADS is unset", ag_threads_from_env(1) == 2);
    setenv("SLURM_CPUS_PER_TASK", "-4", 1);
    check_true("threads: bad SLURM_CPUS_PER_TASK is an error", ag_threads_from_env(1) == -1);
    unsetenv("SLURM_CPUS_PER_TASK");
    check_true("threads: default is at least 1", ag_threads_from_env(64) >= 1);
    ag_threads_set(2);
#ifdef _OPENMP
    check_true("threads: ag_threads_set reaches OpenMP", omp_get_max_threads() == 2);
#endif
    if (omp) setenv("OMP_NUM_THREADS", omp, 1);
    if (slurm) setenv("SLURM_CPUS_PER_TASK", slurm, 1);
    free(omp);
    free(slurm);
    ag_threads_set(ag_comm_get()->threads);
}

static void test_slices(void) {
    int ok = 1;
    for (int P = 1; P <= 7; P++)
        for (int64_t G = 0; G <= 23; G++) {
            int64_t next = 0, lo = G, hi = 0;
            for (int r = 0; r < P; r++) {
                int64_t b, n;
                ag_batch_slice(G, P, r, &b, &n);
                if (b != next || n < 0) ok = 0;
                next = b + n;
                if (n < lo) lo = n;
                if (n > hi) hi = n;
            }
            if (next != G || hi - lo > 1) ok = 0;
        }
    check_true("batch slices: contiguous, in rank order, cover G, differ by at most one", ok);
    int64_t b, n;
    ag_batch_slice(10, 3, 0, &b, &n);
    int first = b == 0 && n == 4;
    ag_batch_slice(10, 3, 2, &b, &n);
    check_true("batch slices: G=10 over 3 ranks is 4,3,3", first && b == 7 && n == 3);
}

static void test_bcast_and_checksum(const ag_comm *c) {
    /* Broadcast: rank 0's data reaches everyone, whatever they held. */
    enum { N = 1003 };
    float want[N], got[N];
    for (int i = 0; i < N; i++) want[i] = synth_uniform(1, (uint64_t)i, 0);
    for (int i = 0; i < N; i++) got[i] = c->rank == 0 ? want[i] : (float)c->rank;
    check_true("bcast_floats returns 0", ag_bcast_floats(got, N, 0, c->world) == 0);
    check_true("bcast_floats: every rank holds rank 0's bytes", !memcmp(got, want, sizeof want));

    ag_params p;
    ag_params_init(&p);
    ag_params_add(&p, "a.weight", 2, (int64_t[]){ 7, 5 });
    ag_params_add(&p, "a.bias", 1, (int64_t[]){ 7 });
    ag_params_alloc(&p);
    for (size_t i = 0; i < p.total; i++) p.data[i] = c->rank == 0 ? synth_uniform(2, i, 0) : -1.0f;
    check_true("bcast_params returns 0", ag_bcast_params(&p, c->world) == 0);
    int same = 1;
    for (size_t i = 0; i < p.total; i++) same &= p.data[i] == synth_uniform(2, i, 0);
    check_true("bcast_params: identical weights on every rank", same);
    check_true("check_same: identical replicas pass", ag_check_same(p.data, p.total, 3, c->world) == 0);

    if (c->size > 1) {
        /* One rank drifts by one ulp: every rank must hear about it, with the step. */
        float keep = p.data[5];
        if (c->rank == c->size - 1) p.data[5] = nextafterf(p.data[5], 2.0f);
        int rc = ag_check_same(p.data, p.total, 17, c->world);
        char want_rank[32];
        snprintf(want_rank, sizeof want_rank, "(%d)", c->size - 1);
        check_true("check_same: a one-ulp divergence is an error on every rank",
                   rc == -1 && strstr(ag_errmsg(), "step 17") && strstr(ag_errmsg(), want_rank));
        p.data[5] = keep;

        /* A rank with another model layout is refused before any bytes move. */
        ag_params q;
        ag_params_init(&q);
        ag_params_add(&q, "a.weight", 2, (int64_t[]){ 7, c->rank == 1 ? 6 : 5 });
        ag_params_alloc(&q);
        rc = ag_bcast_params(&q, c->world);
        check_true("bcast_params: a rank with another layout fails on every rank", rc == -1);
        if (c->rank == 1) check_true("bcast_params: the odd rank names its sizes", strstr(ag_errmsg(), "same model") != NULL);
        ag_params_free(&q);
    }
    ag_params_free(&p);

    uint64_t h1 = ag_hash_bytes("abcdefghijklmnopqrstuvwxyz0123456789", 36);
    uint64_t h2 = ag_hash_bytes("abcdefghijklmnopqrstuvwxyz0123456788", 36);
    uint64_t h3 = ag_hash_bytes("abcdefghijklmnopqrstuvwxyz012345678", 35);
    check_true("hash: one byte or one length changes it", h1 != h2 && h1 != h3 && h2 != h3);
}

static void test_faults(const ag_comm *c) {
    check_true("fault: a malformed spec is refused", ag_fault_set("explode:chunk=3") == -1 &&
                                                         strstr(ag_errmsg(), "unknown action"));
    check_true("fault: a spec without a point is refused", ag_fault_set("kill:rank=1") == -1);
    check_true("fault: a non-numeric value is refused", ag_fault_set("kill:chunk=x") == -1);
    check_true("fault: a valid list parses", ag_fault_set("fail:rank=0:step=4,sleep:chunk=*:ms=1") == 0);
    int at3 = ag_fault_point("step", 3), at4 = ag_fault_point("step", 4), other = ag_fault_point("nstep", 4);
    if (c->rank == 0) check_true("fault: 'fail' fires at its point on its rank only", !at3 && at4 == -1 && !other);
    else check_true("fault: 'fail' does not fire on other ranks", !at3 && !at4 && !other);
    check_true("fault: wildcard sleep returns 0", ag_fault_point("chunk", 12345) == 0);
    ag_fault_set(NULL);
    check_true("fault: cleared", ag_fault_point("step", 4) == 0);
}

int main(int argc, char **argv) {
    if (ag_comm_init(&argc, &argv)) ag_fatal("init: %s", ag_errmsg());
    const ag_comm *c = ag_comm_get();
    int fatal_rank = -1;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--fatal") && i + 1 < argc) fatal_rank = atoi(argv[++i]);
    if (fatal_rank >= 0) {
        /* The others block in a barrier that can never complete: only MPI_Abort ends them. */
        if (c->rank == fatal_rank) ag_fatal("deliberate failure for the test (--fatal %d)", fatal_rank);
        MPI_Barrier(c->world);
        fprintf(stderr, "rank %d passed a barrier it should never pass\n", c->rank);
        return 3;
    }

    int world_size = 0, world_rank = 0;
    MPI_Comm_size(MPI_COMM_WORLD, &world_size);
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    check_true("comm: rank and size match MPI_COMM_WORLD", c->rank == world_rank && c->size == world_size);
    /* All test ranks run on this one machine, so the node communicator is the world. */
    check_true("comm: node-local rank on one node", c->local_rank == c->rank && c->local_size == c->size);
    check_true("comm: threads >= 1", c->threads >= 1);
    check_true("comm: init twice is harmless", ag_comm_init(&argc, &argv) == 0 && ag_comm_get()->size == world_size);
    ag_log0("test_dist_comm on %d ranks, %d threads each", c->size, c->threads);
    ag_logr("hello from local rank %d of %d", c->local_rank, c->local_size);

    test_threads();
    test_slices();
    test_bcast_and_checksum(c);
    test_faults(c);
    check_true("stop flag: no signal, no stop", ag_stop_requested() == 0);

    /* A test fails if any rank failed. */
    int mine = check_failed, worst = 0;
    MPI_Allreduce(&mine, &worst, 1, MPI_INT, MPI_MAX, c->world);
    int rc = check_finish();
    ag_comm_finalize();
    return rc ? rc : worst ? 1 : 0;
}
