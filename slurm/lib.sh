# shellcheck shell=bash
# The shared body of argent's sbatch scripts (slurm/argent-*.sbatch): sourced by them, never
# run alone. It launches one argent stage with `srun --mpi=pmix`, forwards preemption
# signals to it, and turns the program's "checkpointed, requeue me" exit code into
# `scontrol requeue`. See docs/slurm.md.
#
# Every sbatch script starts (first command after its #SBATCH block) with
#   AG_SIGNAL='' AG_TERMINATED=''; trap 'AG_SIGNAL=USR1' USR1; trap 'AG_TERMINATED=1' TERM
# so that a signal arriving while this file is still being found and sourced is remembered
# rather than killing the script; ag_slurm_run then acts on it instead of starting the
# program.
#
# Environment (all optional):
#   ARGENT               the argent program (a path or a command on PATH); default: `argent`
#                        on PATH, else <this dir>/../build/argent
#   ARGENT_SRUN_ARGS     extra srun options (word-split), e.g. "--cpu-bind=cores"
#   ARGENT_MAX_REQUEUES  give up (exit 85, job FAILED) after this many restarts; default 100
#   ARGENT_REQUEUE_CODE  the program's "checkpointed, requeue me" exit code; default 85
#                        (AG_EXIT_REQUEUE in dist/signals.h)

# Why signals are handled this way (facts checked with Slurm 22.05, docs/slurm.md):
#  - `--signal=B:USR1@N` signals only this batch shell. Bash runs a trap only between
#    commands, so the program runs in the background and the script sits in `wait`, which a
#    trapped signal interrupts at once.
#  - srun forwards a USR1 to every task, which argent takes as "checkpoint at the next step
#    boundary and exit 85". A TERM sent to srun instead makes srun kill the step outright
#    (no checkpoint), so a TERM received here is forwarded as USR1 too. (When Slurm itself
#    cancels or preempts a job it sends TERM to the tasks directly as well; argent treats
#    TERM like USR1.)
#  - Only a USR1 leads to `scontrol requeue`: it is the time-limit warning we asked for
#    (--signal=B:USR1@N) or a deliberate `scancel --batch --signal=USR1`. A TERM means the
#    job is being cancelled (`scancel JOBID`) or preempted: the program still checkpoints,
#    but requeueing would undo a user's cancel, and a partition with PreemptMode=REQUEUE
#    requeues the job itself.

AG_REQUEUE_CODE=${ARGENT_REQUEUE_CODE:-85}
AG_PID=""

ag_log() { printf 'argent-slurm [%s] %s\n' "$(date '+%F %T')" "$*"; }

# Signal handler: remember the signal (a TERM is never forgotten, whatever comes after
# it), forward it as USR1 to the running program.
ag_on_signal() {
    AG_SIGNAL=$1
    [ "$1" = TERM ] && AG_TERMINATED=1
    if [ -n "$AG_PID" ]; then
        ag_log "received SIG$1: asking the program to checkpoint and stop" \
               "(SIGUSR1 to srun pid $AG_PID)"
        kill -USR1 "$AG_PID" 2>/dev/null
    else
        AG_UNSENT=1   # between `srun &` and AG_PID=$!: forwarded right after
    fi
}

# ag_requeue STAGE: put this job back in the queue (it resumes from its checkpoint); exits.
ag_requeue() {
    local stage=$1 restarts=${SLURM_RESTART_COUNT:-0} max=${ARGENT_MAX_REQUEUES:-100}
    if [ -z "${SLURM_JOB_ID:-}" ]; then
        ag_log "stage '$stage' stopped with a checkpoint; not under Slurm, so not requeued"
        exit "$AG_REQUEUE_CODE"
    fi
    if [ "$restarts" -ge "$max" ]; then
        ag_log "error: stage '$stage' stopped again after $restarts restarts" \
               "(ARGENT_MAX_REQUEUES=$max): not requeued"
        exit "$AG_REQUEUE_CODE"
    fi
    ag_log "stage '$stage': requeueing job $SLURM_JOB_ID (restart $((restarts + 1)))"
    if scontrol requeue "$SLURM_JOB_ID"; then
        # Slurm now ends this run of the job and queues it again; the exit code below is
        # only seen if it does not.
        exit 0
    fi
    ag_log "error: 'scontrol requeue $SLURM_JOB_ID' failed; the job ends here" \
           "(resubmit it to resume from the checkpoint)"
    exit "$AG_REQUEUE_CODE"
}

# The argent command to run: $ARGENT, else argent on PATH, else the build tree next to here.
ag_find_argent() {
    if [ -n "${ARGENT:-}" ]; then
        echo "$ARGENT"
    elif command -v argent >/dev/null 2>&1; then
        command -v argent
    elif [ -n "${AG_SLURM_DIR:-}" ] && [ -x "$AG_SLURM_DIR/../build/argent" ]; then
        echo "$AG_SLURM_DIR/../build/argent"
    else
        return 1
    fi
}

# Threads: one OpenMP/OpenBLAS thread per CPU of the task. srun no longer inherits
# --cpus-per-task from the allocation (Slurm >= 22.05), hence SRUN_CPUS_PER_TASK.
ag_slurm_env() {
    if [ -n "${SLURM_CPUS_PER_TASK:-}" ]; then
        export SRUN_CPUS_PER_TASK=$SLURM_CPUS_PER_TASK
        export OMP_NUM_THREADS=$SLURM_CPUS_PER_TASK
    else
        export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
    fi
    # File locking fails on NFS and Lustre, where cluster jobs usually write.
    export HDF5_USE_FILE_LOCKING=${HDF5_USE_FILE_LOCKING:-FALSE}
}

# In a job array task, set AG_ARRAY_ARGS=(--array-task I --array-count N): this task's
# place among the array's tasks, which the label stage uses to take chunks c with
# c % N == I. Outside an array, AG_ARRAY_ARGS=(). The tasks must be numbered without gaps
# (--array=0-3 or 1-8%2, not 0,2,5 or 0-9:2); 1 (with a message) otherwise.
ag_array_args() {
    AG_ARRAY_ARGS=()
    [ -n "${SLURM_ARRAY_TASK_ID:-}" ] || return 0
    local min=${SLURM_ARRAY_TASK_MIN:-0} max=${SLURM_ARRAY_TASK_MAX:-0}
    local step=${SLURM_ARRAY_TASK_STEP:-1} count=${SLURM_ARRAY_TASK_COUNT:-1}
    if [ "$step" != 1 ] || [ $((max - min + 1)) != "$count" ]; then
        ag_log "error: array tasks must be numbered without gaps (e.g. --array=0-3); this array has" \
               "min $min, max $max, step $step, $count tasks"
        return 1
    fi
    # Without these options every task would label every chunk into the same directory,
    # which the chunk engine does not allow (one job per output directory at a time).
    local prog
    if prog=$(ag_find_argent) && ! "$prog" label --help 2>/dev/null | grep -q -- '--array-task'; then
        ag_log "error: this argent's label stage has no --array-task option, so it cannot run as a" \
               "job array: label as one job with several tasks or nodes (--ntasks, --nodes) instead"
        return 1
    fi
    # shellcheck disable=SC2034  # read by the sbatch script that sources this file
    AG_ARRAY_ARGS=(--array-task "$((SLURM_ARRAY_TASK_ID - min))" --array-count "$count")
}

# ag_slurm_run STAGE [ARG...]: run `argent STAGE ARG...` on every task of the allocation and
# exit with the job's verdict: 0 done; the program's code on failure; on the requeue code,
# `scontrol requeue` (the job goes back to the queue and resumes from its checkpoint).
ag_slurm_run() {
    local stage=$1 rc prog
    shift
    trap 'ag_on_signal USR1' USR1
    trap 'ag_on_signal TERM' TERM
    ag_slurm_env
    if ! prog=$(ag_find_argent); then
        ag_log "error: the argent program was not found: set ARGENT=/path/to/argent" \
               "(sbatch --export=ALL,ARGENT=...) or put argent on PATH"
        exit 2
    fi
    ag_log "stage '$stage': job ${SLURM_JOB_ID:-?}${SLURM_ARRAY_TASK_ID:+ (array task $SLURM_ARRAY_TASK_ID)}," \
           "restart ${SLURM_RESTART_COUNT:-0}, nodes ${SLURM_JOB_NUM_NODES:-?} (${SLURM_JOB_NODELIST:-?})," \
           "tasks ${SLURM_NTASKS:-?}, cpus/task ${SLURM_CPUS_PER_TASK:-?}, gpus ${SLURM_GPUS_ON_NODE:-0}/node"
    # A signal that came before the program started (caught by the script's first-line
    # trap): nothing to checkpoint, so do not start it (srun could not pass the signal on
    # while it is still launching the tasks).
    if [ -n "${AG_TERMINATED:-}" ]; then
        ag_log "SIGTERM before the program started (job cancelled or preempted): not started"
        exit 143
    fi
    if [ -n "${AG_SIGNAL:-}" ]; then
        ag_log "SIG$AG_SIGNAL before the program started: not started"
        ag_requeue "$stage"
    fi
    ag_log "run: srun --mpi=pmix ${ARGENT_SRUN_ARGS:+$ARGENT_SRUN_ARGS }$prog $stage$(printf ' %q' "$@")"
    AG_UNSENT=""
    # shellcheck disable=SC2086  # ARGENT_SRUN_ARGS is a word list on purpose
    srun --mpi=pmix ${ARGENT_SRUN_ARGS:-} "$prog" "$stage" "$@" &
    AG_PID=$!
    if [ -n "$AG_UNSENT" ]; then
        sleep 2   # let srun install its own signal handlers first
        ag_on_signal "$AG_SIGNAL"
    fi
    # A trapped signal interrupts `wait` (status > 128) while the program still runs: wait
    # again until it has really exited. Bash keeps a reaped child's status for `wait PID`.
    while :; do
        wait "$AG_PID"
        rc=$?
        kill -0 "$AG_PID" 2>/dev/null || break
    done
    if [ "$rc" -gt 128 ]; then
        # Interrupted, and the child was reaped before kill -0 looked: ask for its status.
        local again
        wait "$AG_PID" 2>/dev/null
        again=$?
        [ "$again" != 127 ] && rc=$again
    fi
    AG_PID=""
    if [ "$rc" = 0 ]; then
        ag_log "stage '$stage' finished"
        exit 0
    fi
    if [ "$rc" = "$AG_REQUEUE_CODE" ]; then
        if [ -n "${AG_TERMINATED:-}" ]; then
            ag_log "stage '$stage' checkpointed and stopped (exit $rc) after SIGTERM: the job is being" \
                   "cancelled or preempted, so it is not requeued here (resubmit to resume)"
            exit "$rc"
        fi
        ag_log "stage '$stage' checkpointed and stopped (exit $rc)"
        ag_requeue "$stage"
    fi
    ag_log "stage '$stage' failed with exit code $rc"
    exit "$rc"
}
