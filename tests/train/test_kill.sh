#!/bin/bash
# Issue 4: kill -9 at random moments, during checkpoint writes too, never leaves the newest
# checkpoint unloadable, and the run still ends with exactly the uninterrupted result.
# A run checkpointing every step (np 2, checkpoint writes slowed by 40 ms so that kills
# land inside them) is started again and again in the same directory and killed:
#   - 4 times by fault injection exactly between a checkpoint's fsync and its rename
#     (kill:rank=0:ckpt=S), the most delicate moment;
#   - 10 times with SIGKILL to rank 0 (the writer) or to the other rank, at a random moment
#     (0 to 0.8 s after the attempt's first step).
# After every kill the newest checkpoint must load completely (train_compare
# --check-latest); at the end an unkilled run resumes and must be bit-identical to the
# reference.
# usage: test_kill.sh ARGENT COMPARE MPIEXEC WORK
ARGENT=$1 COMPARE=$2 MPIEXEC=$3 WORK=$4
source "$(dirname "$0")/common.sh"
rm -rf "$WORK"; prep
ARGS=(--loss cosine --steps 100 --batch 8 --ckpt-every 1 --keep-ckpts 2 --check-every 10)
bi 2 "$WORK/ref" "${ARGS[@]}" || { cat "$WORK/ref.log"; fail "reference run"; }
K="$WORK/killed"
last=0
step_of() { ls "$K/checkpoints" 2>/dev/null | sed -n 's/^ckpt-0*\([0-9][0-9]*\)\.h5$/\1/p' | sort -n | tail -1; }
for s in 3 9 15 21; do
    ARGENT_FAULT="kill:rank=0:ckpt=$s" bi 2 "$K" "${ARGS[@]}"; rc=$?
    [ $rc = 0 ] && fail "the run was not killed at the checkpoint of step $s"
    "$COMPARE" --check-latest "$K" || fail "newest checkpoint unloadable after a kill inside the write of step $s"
    ls "$K/checkpoints" | grep -q "\.tmp" || echo "     (no temporary file left: HDF5 wrote it under another name)"
done
RANDOM=4242
for i in $(seq 1 10); do
    ARGENT_FAULT="sleep:ckpt=*:ms=40,sleep:step=*:ms=20" bi_bg 2 "$K" "${ARGS[@]}"; pid=$!
    # Wait until this attempt has trained a step, then a random moment 0 .. 0.8 s later.
    lines=$(wc -l <"$K/metrics.jsonl" 2>/dev/null || echo 0)
    for _ in $(seq 1 400); do
        [ "$(wc -l <"$K/metrics.jsonl" 2>/dev/null || echo 0)" -gt "$lines" ] && break
        kill -0 $pid 2>/dev/null || break
        sleep 0.05
    done
    sleep "0.$((RANDOM % 8))$((RANDOM % 10))"
    victims=($(pgrep -P $pid))
    [ ${#victims[@]} -gt 0 ] || { wait $pid; fail "kill $i: no rank to kill (the run ended too early?)"; }
    v=${victims[$((RANDOM % ${#victims[@]}))]}
    kill -KILL "$v" 2>/dev/null
    wait $pid; rc=$?
    echo "kill $i: rank pid $v killed, mpirun exit $rc, newest checkpoint step $(step_of)"
    "$COMPARE" --check-latest "$K" || fail "newest checkpoint unloadable after random kill $i"
done
bi 2 "$K" "${ARGS[@]}" || { tail -20 "$K.log"; fail "final resume"; }
"$COMPARE" "$WORK/ref" "$K" --bitwise || fail "killed-and-resumed run differs from the uninterrupted one"
echo "PASS"
