/* Stop signals, exit codes and fault injection.
 *
 * Preemption: SIGTERM or SIGUSR1 only sets a flag (async-signal-safe). A training loop calls
 * ag_stop_requested() at every step boundary; it ORs the flag over all ranks, so every rank
 * sees the same answer at the same step, checkpoints that step and exits with
 * AG_EXIT_REQUEUE, which the batch script turns into a requeue. (mpirun forwards SIGUSR1 to
 * every rank; a SIGTERM to mpirun itself kills the job, so preempt with USR1.)
 *
 * Faults, for tests: ARGENT_FAULT (or ag_fault_set) holds comma-separated specs
 *   action[:rank=R][:POINT=V][:ms=N][:code=N]
 * action: kill (SIGKILL itself), term / usr1 (raise that signal), exit (_exit(code)),
 * sleep (sleep ms, on every match), fail (ag_fault_point returns -1 with a message).
 * POINT names a place the code calls ag_fault_point(POINT, value): step, chunk (chunk id,
 * before processing), nchunk (chunks this rank has completed so far), chunk_tmp (chunk id,
 * part file written under its temporary name, not yet renamed). V is a number or '*'.
 * Without rank= a spec fires on every rank. Example: kill:rank=1:chunk=5. */
#ifndef ARGENT_DIST_SIGNALS_H
#define ARGENT_DIST_SIGNALS_H
#include <stdint.h>

/* Exit codes of the argent program (see docs/dist.md). */
#define AG_EXIT_OK 0
#define AG_EXIT_FAIL 1     /* an error; the message says what; also what ag_fatal aborts with */
#define AG_EXIT_USAGE 2    /* bad command line */
#define AG_EXIT_REQUEUE 85 /* stopped by a signal after a complete checkpoint: requeue me */

/* Install the SIGTERM / SIGUSR1 handlers (idempotent). 0, or -1 with ag_errmsg(). */
int ag_signals_install(void);
/* The signal number received on this rank since the last clear, or 0. No MPI. */
int ag_signal_pending(void);
void ag_signal_clear(void);
/* Collective over ag_comm_get()->world (MPI_Allreduce MAX of the local flag): 1 if any rank
 * received a stop signal, else 0. All ranks must call it at the same step boundaries. */
int ag_stop_requested(void);

/* Parse ARGENT_FAULT (once; ag_comm_init calls it). 0, or -1 with a message naming the
 * malformed spec. */
int ag_fault_init(void);
/* Replace the fault specs (NULL or "" clears them). 0, or -1 on a malformed spec. */
int ag_fault_set(const char *spec);
/* A fault point: performs every matching action. Returns 0, or -1 (with ag_errmsg()) for a
 * matching 'fail' spec; kill / exit do not return. */
int ag_fault_point(const char *point, int64_t value);
#endif
