#!/bin/bash
# Issue 4 checkpoint / preemption / resume, at np 2 (the reference run is uninterrupted):
#  1. --stop-after 10: checkpoint, exit 85; the same command again resumes: the losses of
#     steps 11..20 and the final parameters are bit-identical to the uninterrupted run;
#  2. SIGUSR1 to mpirun (forwarded to every rank) in the middle of the run: the step is
#     finished, a checkpoint written, exit 85 (AG_EXIT_REQUEUE); resumed at np 2:
#     bit-identical;
#  3. SIGTERM to one rank: every rank stops at the same step (the flag is agreed), exit 85;
#     resumed at np 3: within 1e-5;
#  4. a finished run run again does nothing and says so.
# usage: test_resume.sh ARGENT COMPARE MPIEXEC WORK
ARGENT=$1 COMPARE=$2 MPIEXEC=$3 WORK=$4
source "$(dirname "$0")/common.sh"
rm -rf "$WORK"; prep
ARGS=(--loss mnrl --steps 20 --batch 12 --check-every 5 --ckpt-every 0 --eval "$WORK/sts.h5" --eval-every 5)
bi 2 "$WORK/ref" "${ARGS[@]}" || { cat "$WORK/ref.log"; fail "reference run"; }

# 1. --stop-after
bi 2 "$WORK/stop" "${ARGS[@]}" --stop-after 10; rc=$?
[ $rc = 85 ] || { cat "$WORK/stop.log"; fail "--stop-after 10 exited $rc, expected 85"; }
[ -f "$WORK/stop/checkpoints/ckpt-000010.h5" ] || fail "no checkpoint at step 10"
[ -f "$WORK/stop/model.h5" ] && fail "model.h5 written by an unfinished run"
bi 2 "$WORK/stop" "${ARGS[@]}" --stop-after 10 || { cat "$WORK/stop.log"; fail "resume after --stop-after"; }
grep -q "resumed from .*ckpt-000010.h5" "$WORK/stop.log" || fail "the second run did not resume from step 10"
"$COMPARE" "$WORK/ref" "$WORK/stop" --bitwise || fail "resume at the same np is not bit-identical"

# Signals need a run that lasts: every step sleeps 150 ms (fault injection), 20 steps = 3 s.
wait_step() {  # dir step: wait until metrics.jsonl shows that step
    for _ in $(seq 1 200); do
        grep -q "\"step\":$2," "$1/metrics.jsonl" 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}
# 2. SIGUSR1 to mpirun
ARGENT_FAULT="sleep:step=*:ms=150" bi_bg 2 "$WORK/usr1" "${ARGS[@]}"; pid=$!
wait_step "$WORK/usr1" 4 || fail "run 2 did not start"
kill -USR1 $pid
wait $pid; rc=$?
[ $rc = 85 ] || { cat "$WORK/usr1.log"; fail "SIGUSR1: exit $rc, expected 85"; }
grep -q "stop signal at step" "$WORK/usr1.log" || fail "SIGUSR1: no stop message"
bi 2 "$WORK/usr1" "${ARGS[@]}" || { cat "$WORK/usr1.log"; fail "resume after SIGUSR1"; }
"$COMPARE" "$WORK/ref" "$WORK/usr1" --bitwise || fail "resume after SIGUSR1 is not bit-identical"

# 3. SIGTERM to one rank (the last child of mpirun), resume at np 3
ARGENT_FAULT="sleep:step=*:ms=150" bi_bg 2 "$WORK/term" "${ARGS[@]}"; pid=$!
wait_step "$WORK/term" 6 || fail "run 3 did not start"
rank=$(pgrep -P $pid | tail -1)
[ -n "$rank" ] || fail "no rank process under mpirun $pid"
kill -TERM "$rank"
wait $pid; rc=$?
[ $rc = 85 ] || { cat "$WORK/term.log"; fail "SIGTERM to a rank: exit $rc, expected 85"; }
bi 3 "$WORK/term" "${ARGS[@]}" || { cat "$WORK/term.log"; fail "resume at np 3 after SIGTERM"; }
grep -q "written by 2 ranks, now 3" "$WORK/term.log" || fail "resume at np 3 not reported"
"$COMPARE" "$WORK/ref" "$WORK/term" --rel 1e-5 || fail "resume at another np differs by more than 1e-5"

# 4. nothing left to do
bi 2 "$WORK/ref" "${ARGS[@]}" || fail "rerun of a finished run"
grep -q "run already complete" "$WORK/ref.log" || fail "rerun of a finished run did not say it is complete"
echo "PASS"
