#!/usr/bin/env bash
# The batch scripts' logic without a Slurm cluster (runs everywhere, also where Slurm is not
# installed): slurm/argent-*.sbatch are run directly by bash with fake `srun` and `scontrol`
# first on PATH and tests/slurm/fake-stage.sh as the program. Checked: thread variables from
# SLURM_CPUS_PER_TASK, arguments passed through, USR1 and TERM forwarded (as USR1) to the
# program, the requeue code turned into `scontrol requeue JOBID`, failures passed on, the
# requeue limit, requeue failure, array task arguments, and finding slurm/lib.sh from a
# spool copy of the script through scontrol's Command= line.
#
#   tests/slurm/test-scripts.sh WORKDIR
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$(cd "$here/../.." && pwd)
work=${1:?usage: test-scripts.sh WORKDIR}/scripts
rm -rf "$work"
mkdir -p "$work/bin"
work=$(cd "$work" && pwd)
# Nothing from an outer Slurm job (CI may itself run inside one) may reach these jobs.
for v in $(compgen -e | grep -E '^(SLURM|SBATCH|SRUN|SALLOC)_'); do unset "$v"; done
unset ARGENT ARGENT_SLURM_DIR

# Fake srun: log the thread variables and the command, then become the program (so a
# signal to "srun" reaches it, as srun forwards it).
cat > "$work/bin/srun" <<'EOF'
#!/usr/bin/env bash
echo "srun $(printf '%q ' "$@")SRUN_CPUS_PER_TASK=${SRUN_CPUS_PER_TASK:-unset} OMP_NUM_THREADS=${OMP_NUM_THREADS:-unset}" >> "$FAKE_LOG"
while [ "${1#--}" != "$1" ]; do shift; done
exec "$@"
EOF
# Fake scontrol: `show job` prints Command= (FAKE_COMMAND), `requeue` is logged and answers
# FAKE_REQUEUE_RC.
cat > "$work/bin/scontrol" <<'EOF'
#!/usr/bin/env bash
echo "scontrol $*" >> "$FAKE_LOG"
case "$1" in
  show) echo "JobId=$3 JobName=x"; echo "   Command=${FAKE_COMMAND:-}" ;;
  requeue) exit "${FAKE_REQUEUE_RC:-0}" ;;
esac
EOF
chmod +x "$work/bin/srun" "$work/bin/scontrol"
export PATH=$work/bin:$PATH FAKE_LOG=$work/log ARGENT=$here/fake-stage.sh ARGENT_SLURM_DIR=$src/slurm

failures=0
check() {
  local what=$1
  shift
  if "$@"; then echo "test-scripts: ok: $what"; else echo "test-scripts: FAIL: $what"; failures=$((failures + 1)); fi
}
# [VAR=value...] run NAME SCRIPT ARGS...: run a batch script in the background (with those
# variables in its environment); sets $pid. Its output goes to $work/NAME.out.
run() {
  local name=$1
  shift
  : > "$FAKE_LOG"
  bash "$@" > "$work/$name.out" 2>&1 &
  pid=$!
}
finish_run() { wait "$pid"; rc=$?; }
# Wait until the program has written its start event (the trap is then in place).
wait_start() {
  local _
  for _ in $(seq 1 100); do
    grep -q '^start' "$1/events" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "test-scripts: the program did not start"; cat "$work"/*.out
  return 1
}
contains() { grep -qF -- "$2" "$1"; }
lacks() { ! grep -qF -- "$2" "$1"; }

# 1. A stage that finishes: exit 0, no requeue; threads from SLURM_CPUS_PER_TASK; "$@" passed.
SLURM_JOB_ID=41 SLURM_CPUS_PER_TASK=3 run ok "$src/slurm/argent-train-cross.sbatch" \
  --state "$work/ok" --steps 3 --step-ms 10 --extra 'two words'
finish_run
check "a finished stage exits 0" test "$rc" = 0
check "srun --mpi=pmix runs argent train-cross with the arguments" contains "$FAKE_LOG" "srun --mpi=pmix $ARGENT train-cross --state $work/ok --steps 3 --step-ms 10 --extra two\\ words SRUN"
check "SRUN_CPUS_PER_TASK and OMP_NUM_THREADS from SLURM_CPUS_PER_TASK" contains "$FAKE_LOG" "SRUN_CPUS_PER_TASK=3 OMP_NUM_THREADS=3"
check "no requeue" lacks "$FAKE_LOG" "requeue"

# 2. USR1 -> forwarded -> checkpoint, exit 85 -> scontrol requeue JOBID.
export SLURM_JOB_ID=42
run usr1 "$src/slurm/argent-train-bi.sbatch" --state "$work/usr1" --steps 500 --step-ms 20
wait_start "$work/usr1" && kill -USR1 "$pid"
finish_run
check "USR1: the program checkpointed" grep -q '^checkpoint .*signal=USR1' "$work/usr1/events"
check "USR1: scontrol requeue 42" contains "$FAKE_LOG" "scontrol requeue 42"
check "USR1: the script exits 0 after a successful requeue" test "$rc" = 0

# 3. TERM (scancel, preemption) -> forwarded as USR1 (a TERM to srun would kill the step
#    without a checkpoint); checkpointed, but not requeued: that would undo a cancel.
run term "$src/slurm/argent-tsdae.sbatch" --state "$work/term" --steps 500 --step-ms 20
wait_start "$work/term" && kill -TERM "$pid"
finish_run
check "TERM: forwarded as USR1, the program checkpointed" grep -q '^checkpoint .*signal=USR1' "$work/term/events"
check "TERM: not requeued, exit 85" test "$rc" = 85 -a -z "$(grep requeue "$FAKE_LOG")"
# USR1 then TERM (time-limit warning, then a cancel): still not requeued.
run term2 "$src/slurm/argent-tsdae.sbatch" --state "$work/term2" --steps 50 --step-ms 500
wait_start "$work/term2" && kill -USR1 "$pid" && kill -TERM "$pid"
finish_run
check "USR1 then TERM: not requeued" test "$rc" = 85 -a -z "$(grep requeue "$FAKE_LOG")"

# 3b. A signal caught by the first-line trap before lib.sh ran: the program is not started;
#     USR1 -> requeue at once, TERM -> exit 143.
for sig in USR1 TERM; do
  : > "$FAKE_LOG"
  if [ $sig = USR1 ]; then pending="AG_SIGNAL=USR1"; else pending="AG_TERMINATED=1"; fi
  bash -c "$pending; . '$src/slurm/lib.sh'; ag_slurm_run train-bi --state '$work/early$sig'" > "$work/early$sig.out" 2>&1
  rc=$?
  check "early $sig: the program is not started" test -z "$(grep srun "$FAKE_LOG")"
  if [ $sig = USR1 ]; then
    check "early USR1: requeued at once" test "$rc" = 0 -a -n "$(grep "scontrol requeue 42" "$FAKE_LOG")"
  else
    check "early TERM: exit 143, no requeue" test "$rc" = 143 -a -z "$(grep requeue "$FAKE_LOG")"
  fi
done
# An AG_SIGNAL in the submitting environment (sbatch exports it) is not taken for a signal.
AG_SIGNAL=USR1 AG_TERMINATED=1 run envsig "$src/slurm/argent-eval.sbatch" --state "$work/envsig" --steps 1 --step-ms 1
finish_run
check "AG_SIGNAL/AG_TERMINATED from the environment are ignored" test "$rc" = 0 -a -n "$(grep srun "$FAKE_LOG")"

# 4. A failing program: its exit code, no requeue.
run fail "$src/slurm/argent-eval.sbatch" --state "$work/fail" --exit 3
finish_run
check "a failing stage exits with the program's code" test "$rc" = 3
check "and is not requeued" lacks "$FAKE_LOG" "requeue"

# 5. The requeue limit: after ARGENT_MAX_REQUEUES restarts, exit 85 (the job fails).
SLURM_RESTART_COUNT=3 ARGENT_MAX_REQUEUES=3 run limit "$src/slurm/argent-train-bi.sbatch" \
  --state "$work/limit" --steps 500 --step-ms 20
wait_start "$work/limit" && kill -USR1 "$pid"
finish_run
check "at the requeue limit: exit 85, no requeue" test "$rc" = 85 -a -z "$(grep requeue "$FAKE_LOG")"

# 6. scontrol requeue fails: the job must not look successful.
FAKE_REQUEUE_RC=1 run noreq "$src/slurm/argent-train-bi.sbatch" --state "$work/noreq" --steps 500 --step-ms 20
wait_start "$work/noreq" && kill -USR1 "$pid"
finish_run
check "a failed requeue exits 85" test "$rc" = 85
unset SLURM_JOB_ID

# 7. Array tasks: --array-task/--array-count from SLURM_ARRAY_TASK_*; gaps are refused.
run array "$src/slurm/argent-label.sbatch" --state "$work/array" --steps 1 --step-ms 1
finish_run
check "label outside an array: no array arguments" lacks "$FAKE_LOG" "--array-task"
export SLURM_ARRAY_TASK_ID=6 SLURM_ARRAY_TASK_MIN=4 SLURM_ARRAY_TASK_MAX=7 SLURM_ARRAY_TASK_COUNT=4
run array "$src/slurm/argent-label.sbatch" --state "$work/array" --steps 1 --step-ms 1
finish_run
check "array task 6 of 4..7 runs with --array-task 2 --array-count 4" contains "$FAKE_LOG" "label --state $work/array --steps 1 --step-ms 1 --array-task 2 --array-count 4"
export SLURM_ARRAY_TASK_MAX=9   # 4..9 with 4 tasks: a gap
run gap "$src/slurm/argent-label.sbatch" --state "$work/array" --steps 1 --step-ms 1
finish_run
check "an array with gaps is refused (exit 2, no run)" test "$rc" = 2 -a -z "$(grep srun "$FAKE_LOG")"
export SLURM_ARRAY_TASK_MAX=7
printf '#!/bin/sh\necho "usage: label [--model M]"\n' > "$work/bin/old-argent"
chmod +x "$work/bin/old-argent"
ARGENT=$work/bin/old-argent run noarray "$src/slurm/argent-label.sbatch" --state "$work/array"
finish_run
check "a label stage without --array-task refuses to run as an array (exit 2, says why)" \
  test "$rc" = 2 -a -z "$(grep srun "$FAKE_LOG")" -a -n "$(grep -F "has no --array-task option" "$work/noarray.out")"
unset SLURM_ARRAY_TASK_ID SLURM_ARRAY_TASK_MIN SLURM_ARRAY_TASK_MAX SLURM_ARRAY_TASK_COUNT

# 8. Slurm runs a spool copy of the script: lib.sh is found through scontrol's Command=
#    (the submitted path followed by the arguments), here a path with a space.
mkdir -p "$work/spool" "$work/my slurm"
cp "$src/slurm/argent-train-cross.sbatch" "$work/spool/slurm_script"
cp "$src/slurm/lib.sh" "$work/my slurm/lib.sh"
cp "$src/slurm/argent-train-cross.sbatch" "$work/my slurm/argent-train-cross.sbatch"
unset ARGENT_SLURM_DIR
export SLURM_JOB_ID=43 FAKE_COMMAND="$work/my slurm/argent-train-cross.sbatch --state $work/spool --steps 1"
run spool "$work/spool/slurm_script" --state "$work/spool" --steps 1 --step-ms 1
finish_run
check "lib.sh found from a spool copy via Command=" test "$rc" = 0 -a -n "$(grep "srun --mpi=pmix" "$FAKE_LOG")"
export FAKE_COMMAND=/nonexistent/x.sbatch
SLURM_SUBMIT_DIR=$work/spool run nolib "$work/spool/slurm_script" --state "$work/spool" --steps 1 --step-ms 1
finish_run
check "no lib.sh: exit 2 with a message saying what to set" \
  test "$rc" = 2 -a -n "$(grep ARGENT_SLURM_DIR "$work/nolib.out")"

if [ $failures -gt 0 ]; then
  for f in "$work"/*.out; do echo "---- $f"; cat "$f"; done
  echo "test-scripts: $failures check(s) failed"
  exit 1
fi
echo "test-scripts: passed"
