/* The communicator: MPI start-up, rank/size/node-local rank, threads per rank, logging and
 * the fatal path; see comm.h. */
#include "dist/comm.h"

#include "dist/signals.h"
#include "nn/error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* OpenBLAS's own setter; declared here so no OpenBLAS-specific header is needed. */
void openblas_set_num_threads(int num_threads);

static ag_comm g_comm = { .world = MPI_COMM_NULL, .node = MPI_COMM_NULL, .rank = -1 };

const ag_comm *ag_comm_get(void) { return &g_comm; }

/* Parse a positive integer that fills the whole string (or up to a ',' for OMP lists). */
static int parse_positive(const char *s, int allow_list, int *out) {
    errno = 0;
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (errno || end == s || v < 1 || v > 1 << 16) return -1;
    if (*end && !(allow_list && *end == ',')) return -1;
    *out = (int)v;
    return 0;
}

int ag_threads_from_env(int local_size) {
    const char *omp = getenv("OMP_NUM_THREADS");
    const char *slurm = getenv("SLURM_CPUS_PER_TASK");
    int n;
    if (omp && *omp) {
        /* OpenMP allows a nested list "4,2": the first entry is the outer level. */
        if (parse_positive(omp, 1, &n))
            return ag_err("OMP_NUM_THREADS='%s' is not a positive integer (or list of them)", omp);
        return n;
    }
    if (slurm && *slurm) {
        if (parse_positive(slurm, 0, &n))
            return ag_err("SLURM_CPUS_PER_TASK='%s' is not a positive integer", slurm);
        return n;
    }
    /* Neither set: share this node's CPUs among its ranks rather than letting every rank
     * start one thread per core, which oversubscribes the node local_size times. */
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 1) cpus = 1;
    if (local_size < 1) local_size = 1;
    n = (int)(cpus / local_size);
    return n < 1 ? 1 : n;
}

void ag_threads_set(int n) {
    if (n < 1) n = 1;
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
    openblas_set_num_threads(n);
}

int ag_comm_init(int *argc, char ***argv) {
    if (g_comm.initialized) return 0;
    int inited = 0, finalized = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (finalized) return ag_err("ag_comm_init: MPI was already finalized in this process");
    if (!inited) {
        int provided = 0;
        /* FUNNELED: OpenMP threads compute, only the main thread calls MPI. */
        if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
            return ag_err("ag_comm_init: MPI_Init_thread failed");
        if (provided < MPI_THREAD_FUNNELED) {
            MPI_Finalize();
            return ag_err("ag_comm_init: MPI gives thread level %d, argent needs MPI_THREAD_FUNNELED "
                          "(%d)", provided, MPI_THREAD_FUNNELED);
        }
        g_comm.owns_mpi = 1;
    }
    MPI_Comm_dup(MPI_COMM_WORLD, &g_comm.world);
    MPI_Comm_rank(g_comm.world, &g_comm.rank);
    MPI_Comm_size(g_comm.world, &g_comm.size);
    MPI_Comm_split_type(g_comm.world, MPI_COMM_TYPE_SHARED, g_comm.rank, MPI_INFO_NULL, &g_comm.node);
    MPI_Comm_rank(g_comm.node, &g_comm.local_rank);
    MPI_Comm_size(g_comm.node, &g_comm.local_size);

    int t = ag_threads_from_env(g_comm.local_size);
    if (t < 0 || ag_signals_install() || ag_fault_init()) {
        ag_err_ctx("rank %d", g_comm.rank);
        /* Leave MPI running: the caller's error path is ag_fatal, which needs it. */
        return -1;
    }
    g_comm.threads = t;
    ag_threads_set(t);
    g_comm.initialized = 1;
    return 0;
}

int ag_comm_finalize(void) {
    if (g_comm.node != MPI_COMM_NULL) MPI_Comm_free(&g_comm.node);
    if (g_comm.world != MPI_COMM_NULL) MPI_Comm_free(&g_comm.world);
    int owns = g_comm.owns_mpi;
    memset(&g_comm, 0, sizeof g_comm);
    g_comm.world = g_comm.node = MPI_COMM_NULL;
    g_comm.rank = -1;
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owns && !finalized) MPI_Finalize();
    return 0;
}

/* The rank for messages: known after init, asked of MPI when only the caller started it. */
static int current_rank(void) {
    if (g_comm.initialized) return g_comm.rank;
    int inited = 0, finalized = 0, r = -1;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (inited && !finalized) MPI_Comm_rank(MPI_COMM_WORLD, &r);
    return r;
}

/* One fprintf per message so lines from different ranks interleave whole, not mid-line. */
static void vlog(int with_rank, const char *fmt, va_list ap) {
    char msg[2048];
    vsnprintf(msg, sizeof msg, fmt, ap);
    int r = current_rank();
    if (with_rank && r >= 0) fprintf(stderr, "argent: rank %d: %s\n", r, msg);
    else if (with_rank) fprintf(stderr, "argent: rank ?: %s\n", msg);
    else fprintf(stderr, "argent: %s\n", msg);
    fflush(stderr);
}

void ag_log0(const char *fmt, ...) {
    if (current_rank() > 0) return;
    va_list ap;
    va_start(ap, fmt);
    vlog(0, fmt, ap);
    va_end(ap);
}

void ag_logr(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vlog(1, fmt, ap);
    va_end(ap);
}

_Noreturn void ag_fatal(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vlog(1, fmt, ap);
    va_end(ap);
    fflush(stdout);
    int inited = 0, finalized = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (inited && !finalized) MPI_Abort(MPI_COMM_WORLD, AG_EXIT_FAIL);
    exit(AG_EXIT_FAIL);
}
