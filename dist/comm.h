/* The communicator: MPI start-up and shutdown, who this process is (rank, world size,
 * rank within its node), how many threads it may use, and logging that says which rank
 * speaks. The one place that may end the job on purpose is ag_fatal(): it prints the reason
 * and calls MPI_Abort, so that no other rank hangs waiting for a rank that gave up.
 *
 * One communicator per process (MPI itself is per process), kept in a static that
 * ag_comm_get() returns. Library code uses ag_comm_get()->world, a duplicate of
 * MPI_COMM_WORLD, so its messages never match a caller's own point-to-point traffic. */
#ifndef ARGENT_DIST_COMM_H
#define ARGENT_DIST_COMM_H
#include <mpi.h>

typedef struct {
    MPI_Comm world;   /* duplicate of MPI_COMM_WORLD for argent's own traffic */
    MPI_Comm node;    /* the ranks that share this node's memory (MPI_COMM_TYPE_SHARED) */
    int rank, size;   /* in world */
    int local_rank, local_size;  /* in node: pick a GPU, split cores */
    int threads;      /* OpenMP / OpenBLAS threads this rank uses */
    int initialized;  /* ag_comm_init succeeded */
    int owns_mpi;     /* ag_comm_init called MPI_Init_thread, so ag_comm_finalize ends MPI */
} ag_comm;

/* Start MPI (MPI_Init_thread with MPI_THREAD_FUNNELED) unless the caller already did,
 * find rank / size / node-local rank, choose the thread count (ag_threads_from_env) and
 * apply it to OpenMP and OpenBLAS, install the stop-signal handlers (signals.h) and read
 * ARGENT_FAULT. Returns 0, or -1 with ag_errmsg() set (for example a malformed
 * OMP_NUM_THREADS). Calling it twice is harmless. */
int ag_comm_init(int *argc, char ***argv);
/* Free the communicators; calls MPI_Finalize if ag_comm_init started MPI. Returns 0. */
int ag_comm_finalize(void);
/* The process's communicator (zeroed, with world = MPI_COMM_NULL, before ag_comm_init). */
const ag_comm *ag_comm_get(void);

/* Threads per rank: OMP_NUM_THREADS (its first entry), else SLURM_CPUS_PER_TASK, else the
 * online CPUs divided by the ranks on this node (at least 1). Returns the count (>= 1), or
 * -1 with ag_errmsg() naming the variable when its value is not a positive integer. */
int ag_threads_from_env(int local_size);
/* Apply a thread count to OpenMP (omp_set_num_threads) and OpenBLAS. */
void ag_threads_set(int n);

/* Logging to stderr. ag_log0 prints on rank 0 only ("argent: msg"); ag_logr prints on the
 * calling rank with its number ("argent: rank 3: msg"). A trailing newline is added. */
void ag_log0(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void ag_logr(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Print "argent: rank R: <reason>" and abort the whole job (MPI_Abort with code 1; plain
 * exit(1) when MPI is not running). For a program's top level only, never library code. */
_Noreturn void ag_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#endif
