#!/bin/bash
# `argent train-cross` end to end on the tiny synthetic task of make_tiny_cross (label 1
# when both sentences are about animals): a cross-encoder made from a random-init tiny
# bi-encoder checkpoint must learn it.
#   1. 2 labels (cross-entropy) at np 2: dev accuracy before training (metrics.jsonl step 0)
#      near chance, after 120 steps >= 0.9;
#   2. 1 label (BCE) with --no-duplicates at np 3: dev accuracy (best threshold) >= 0.9;
#   3. preempted with --stop-after 40 (exit 85) at np 2, resumed at np 1: the loss of the
#      last step equals the uninterrupted run's within 1e-4 relative, model.h5 written;
#   4. the run directory is usable by `argent label` (model.h5 of a cross-encoder).
# Usage: test_train_cross.sh ARGENT MPIEXEC TINY_DIR WORK_DIR
set -u
ARGENT=$1 MPIEXEC=$2 TINY=$3 W=$4
export OMP_NUM_THREADS=1 OMPI_MCA_mpi_yield_when_idle=1
unset ARGENT_FAULT
fails=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fails=$((fails + 1)); }
mpi() { local np=$1; shift; "$MPIEXEC" --allow-run-as-root --oversubscribe --timeout 500 -np "$np" "$@"; }
train() { local np=$1 out=$2; shift 2; mpi "$np" "$ARGENT" train-cross --model "$TINY/bi.h5" --train "$TINY/train.h5" \
    --dev "$TINY/dev.h5" --out "$out" --lr 1e-3 --batch 32 --steps 120 --warmup 10 --eval-every 40 --max-length 32 \
    --log-every 40 --seed 3 "$@"; }
# metric NAME FILE: its value in the first (first) or last (last) evaluation line.
metric() { grep '"eval"' "$3" | $1 -n 1 | sed -n "s/.*\"$2\":\([-0-9.eE+]*\).*/\1/p"; }
step_loss() { grep "\"step\":$2,\"epoch\"" "$1" | tail -n 1 | sed -n 's/.*"loss":\([-0-9.eE+]*\).*/\1/p'; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 >= b + 0) }'; }

rm -rf "$W"
mkdir -p "$W"

# ---- 1. two labels, np 2 ----
train 2 "$W/ce2" > "$W/ce2.log" 2>&1 || { cat "$W/ce2.log"; bad "train-cross (2 labels, np 2) exited $?"; }
a0=$(metric head accuracy "$W/ce2/metrics.jsonl")
a1=$(metric tail accuracy "$W/ce2/metrics.jsonl")
if [ -n "$a0" ] && [ -n "$a1" ] && ge 0.7 "$a0" && ge "$a1" 0.9; then
    ok "2 labels, np 2: dev accuracy $a0 before -> $a1 after 120 steps"
else
    tail -n 5 "$W/ce2.log"; bad "2 labels, np 2: dev accuracy '$a0' -> '$a1' (want <= 0.7 -> >= 0.9)"
fi
[ -s "$W/ce2/model.h5" ] && ok "model.h5 written" || bad "no model.h5"

# ---- 2. one label, no duplicate texts in a batch, np 3 ----
train 3 "$W/bce" --num-labels 1 --no-duplicates > "$W/bce.log" 2>&1 || { cat "$W/bce.log"; bad "train-cross (1 label) exited $?"; }
b1=$(metric tail accuracy "$W/bce/metrics.jsonl")
ap=$(metric tail average_precision "$W/bce/metrics.jsonl")
if [ -n "$b1" ] && ge "$b1" 0.9; then ok "1 label (BCE), --no-duplicates, np 3: dev accuracy $b1, AP $ap"
else tail -n 5 "$W/bce.log"; bad "1 label: dev accuracy '$b1'"; fi

# ---- 3. preempted, resumed at another np ----
train 2 "$W/res" --stop-after 40 > "$W/res1.log" 2>&1
rc=$?
[ $rc -eq 85 ] && ok "--stop-after 40: exit 85 (checkpointed, requeue)" || { cat "$W/res1.log"; bad "--stop-after: exit $rc"; }
train 1 "$W/res" > "$W/res2.log" 2>&1 || { cat "$W/res2.log"; bad "resume at np 1 exited $?"; }
l_ref=$(step_loss "$W/ce2/metrics.jsonl" 120)
l_res=$(step_loss "$W/res/metrics.jsonl" 120)
if [ -n "$l_ref" ] && [ -n "$l_res" ] &&
   awk -v a="$l_ref" -v b="$l_res" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-4 * (a < 0 ? -a : a) + 1e-7) }'; then
    ok "stopped at np 2 + resumed at np 1: step-120 loss $l_res == uninterrupted $l_ref (1e-4)"
else
    bad "resumed loss '$l_res' vs uninterrupted '$l_ref'"
fi
[ -s "$W/res/model.h5" ] && ok "resumed run wrote model.h5" || bad "resumed run: no model.h5"

# ---- 4. the run directory labels ----
mpi 1 "$ARGENT" label --model "$W/ce2" --data "$TINY/dev.h5" --out "$W/dev-silver.h5" --quiet > "$W/label.log" 2>&1 &&
    ok "argent label --model RUN_DIR uses its model.h5" || { cat "$W/label.log"; bad "label with the trained run"; }

echo "$fails failed"
[ $fails -eq 0 ]
