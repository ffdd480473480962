#!/bin/bash
# Issue 4: a parameter divergence between ranks is detected with a clear message. Fault
# injection nudges one parameter on rank 1 after 3 steps (fail:rank=1:perturb=3); the
# checksum compared every 2 steps must stop the run at step 4 with exit 1 and a message
# naming the step and the rank. The same run without the fault passes (the test can fail).
# usage: test_diverge.sh ARGENT COMPARE MPIEXEC WORK
ARGENT=$1 COMPARE=$2 MPIEXEC=$3 WORK=$4
source "$(dirname "$0")/common.sh"
rm -rf "$WORK"; prep
ARGS=(--loss cosine --steps 8 --batch 8 --check-every 2 --ckpt-every 0)
bi 3 "$WORK/clean" "${ARGS[@]}" || { cat "$WORK/clean.log"; fail "run without the fault"; }
ARGENT_FAULT="fail:rank=1:perturb=3" bi 3 "$WORK/bad" "${ARGS[@]}"; rc=$?
cat "$WORK/bad.log"
[ $rc = 1 ] || fail "a diverged run exited $rc, expected 1"
grep -q "parameters diverged across ranks at step 4" "$WORK/bad.log" || fail "no divergence message naming step 4"
grep -q "rank(s) (1)" "$WORK/bad.log" || fail "the message does not name rank 1"
[ -f "$WORK/bad/model.h5" ] && fail "a diverged run wrote a model"
echo "PASS"
