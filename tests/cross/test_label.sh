#!/bin/bash
# `argent label` end to end on the tiny inputs of make_tiny_cross:
#   1. np 1 and np 3 write byte-identical SILVER.h5 and SILVER.scores.h5, and the outputs
#      are right (check_silver: every pair once, in order; probabilities; rule; provenance);
#   2. kill -9 of one rank in the middle of labeling (ARGENT_FAULT kill at its third chunk,
#      every chunk slowed down so that most of the work is still missing), then a rerun at
#      np 2 finishes the missing chunks only: byte-identical to the uninterrupted run;
#   3. a kill after a part file is written under its temporary name but before the rename,
#      rerun at np 1: byte-identical again;
#   4. one-label model: prob (scores) and threshold (classes) rules;
#   5. a job array: three tasks (--array-task i --array-count 3) at once on one work
#      directory each label their share and do not merge; a plain run then merges without
#      computing anything: byte-identical to the uninterrupted run. Bad array options fail.
# Usage: test_label.sh ARGENT MPIEXEC CHECK_SILVER TINY_DIR WORK_DIR
set -u
ARGENT=$1 MPIEXEC=$2 CHECK=$3 TINY=$4 W=$5
export OMP_NUM_THREADS=1 SOURCE_DATE_EPOCH=1700000000 OMPI_MCA_mpi_yield_when_idle=1
unset ARGENT_FAULT
fails=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fails=$((fails + 1)); }
mpi() { local np=$1; shift; "$MPIEXEC" --allow-run-as-root --oversubscribe --timeout 300 -np "$np" "$@"; }
label() { local np=$1 out=$2; shift 2; mpi "$np" "$ARGENT" label --model "$TINY/cross.h5" --data "$TINY/pool.h5" \
    --out "$out" --chunk-size 64 --batch 16 "$@"; }
same() {  # same FILE_A FILE_B WHAT
    if cmp -s "$1" "$2"; then ok "$3"; else bad "$3 ($1 and $2 differ)"; fi
}
nparts() { ls "$1" 2>/dev/null | grep -c '^part-[0-9]*\.h5$'; }

rm -rf "$W"
mkdir -p "$W/np1" "$W/np3" "$W/kill" "$W/tmpkill" "$W/one"

# ---- 1. rank-count independence ----
label 1 "$W/np1/silver.h5" --quiet || bad "label at np 1 exited $?"
label 3 "$W/np3/silver.h5" --quiet || bad "label at np 3 exited $?"
same "$W/np1/silver.h5" "$W/np3/silver.h5" "np 1 and np 3: identical silver dataset"
same "$W/np1/silver.scores.h5" "$W/np3/silver.scores.h5" "np 1 and np 3: identical scores"
if "$CHECK" "$TINY/pool.h5" "$W/np1/silver.h5" "$W/np1/silver.scores.h5" "$TINY/cross.h5" argmax > "$W/check1.log"; then
    ok "outputs checked against the input (check_silver, argmax)"
else
    cat "$W/check1.log"; bad "check_silver argmax"
fi
# A rerun on a complete work directory computes nothing and rewrites the same bytes.
label 2 "$W/np1/silver.h5" > "$W/rerun.log" || bad "rerun exited $?"
grep -q "16 done before, 0 computed now" "$W/rerun.log" && ok "rerun of a complete run computes no chunk" ||
    { cat "$W/rerun.log"; bad "rerun recomputed chunks"; }
same "$W/np1/silver.h5" "$W/np3/silver.h5" "rerun: same bytes"

# ---- 2. kill -9 of rank 1 mid-run at np 3, rerun at np 2 ----
ARGENT_FAULT="sleep:chunk=*:ms=800,kill:rank=1:nchunk=2" label 3 "$W/kill/silver.h5" --quiet > "$W/kill.log" 2>&1
rc=$?
n=$(nparts "$W/kill/silver.h5.parts")
if [ $rc -ne 0 ] && [ "$n" -lt 16 ] && [ ! -e "$W/kill/silver.h5" ]; then
    ok "killed run: exit $rc, $n of 16 parts complete, no output written"
else
    cat "$W/kill.log"; bad "killed run: exit $rc, $n parts, output exists: $([ -e "$W/kill/silver.h5" ] && echo yes || echo no)"
fi
label 2 "$W/kill/silver.h5" > "$W/kill2.log" || bad "rerun after the kill exited $?"
grep -q "$n done before, $((16 - n)) computed now" "$W/kill2.log" && ok "rerun computed only the $((16 - n)) missing chunks" ||
    { cat "$W/kill2.log"; bad "rerun did not resume from the $n parts"; }
same "$W/np1/silver.h5" "$W/kill/silver.h5" "killed at np 3 + rerun at np 2 == uninterrupted: silver dataset"
same "$W/np1/silver.scores.h5" "$W/kill/silver.scores.h5" "killed at np 3 + rerun at np 2 == uninterrupted: scores"

# ---- 3. kill between the part's temporary write and its rename ----
ARGENT_FAULT="kill:chunk_tmp=5" label 2 "$W/tmpkill/silver.h5" --quiet > "$W/tmpkill.log" 2>&1
rc=$?
if [ $rc -ne 0 ] && [ -e "$W/tmpkill/silver.h5.parts/part-000005.h5.tmp" ] && [ ! -e "$W/tmpkill/silver.h5.parts/part-000005.h5" ]; then
    ok "killed before a rename: part-000005.h5.tmp left, no part-000005.h5"
else
    ls "$W/tmpkill/silver.h5.parts"; bad "kill at chunk_tmp=5: exit $rc"
fi
label 1 "$W/tmpkill/silver.h5" --quiet || bad "rerun after the tmp kill exited $?"
same "$W/np1/silver.h5" "$W/tmpkill/silver.h5" "temporary part ignored and redone: identical silver dataset"

# ---- 4. one-label model: prob and threshold ----
mpi 2 "$ARGENT" label --model "$TINY/cross1.h5" --data "$TINY/pool.h5" --out "$W/one/prob.h5" --chunk-size 100 --quiet ||
    bad "one-label prob exited $?"
"$CHECK" "$TINY/pool.h5" "$W/one/prob.h5" "$W/one/prob.scores.h5" "$TINY/cross1.h5" prob > "$W/check2.log" &&
    ok "one label, --label prob: sigmoid scores as labels" || { cat "$W/check2.log"; bad "check_silver prob"; }
mpi 1 "$ARGENT" label --model "$TINY/cross1.h5" --data "$TINY/pool.h5" --out "$W/one/thr.h5" --chunk-size 100 \
    --label threshold --threshold 0.4 --quiet || bad "one-label threshold exited $?"
"$CHECK" "$TINY/pool.h5" "$W/one/thr.h5" "$W/one/thr.scores.h5" "$TINY/cross1.h5" threshold 0.4 > "$W/check3.log" &&
    ok "one label, --label threshold 0.4: classes" || { cat "$W/check3.log"; bad "check_silver threshold"; }
mpi 2 "$ARGENT" label --model "$TINY/cross.h5" --data "$TINY/pool.h5" --out "$W/one/thr2.h5" --chunk-size 100 \
    --label threshold --threshold 0.3 --positive 1 --quiet || bad "two-label threshold exited $?"
"$CHECK" "$TINY/pool.h5" "$W/one/thr2.h5" "$W/one/thr2.scores.h5" "$TINY/cross.h5" threshold 0.3 > "$W/check4.log" &&
    ok "two labels, --label threshold 0.3 on softmax[1]" || { cat "$W/check4.log"; bad "check_silver threshold (2 labels)"; }

# ---- 5. a job array of three tasks, then the merge ----
mkdir -p "$W/array"
pids=()
for i in 0 1 2; do
    label $((i == 1 ? 2 : 1)) "$W/array/silver.h5" --array-task $i --array-count 3 > "$W/array/task$i.log" 2>&1 &
    pids+=($!)
done
for i in 0 1 2; do
    wait "${pids[$i]}" || { cat "$W/array/task$i.log"; bad "array task $i exited non-zero"; }
done
grep -q "^array task 1 of 3: 5 chunks computed now" "$W/array/task1.log" && ok "array task 1 of 3 labelled its 5 chunks" ||
    { cat "$W/array/task1.log"; bad "array task 1: not its 5 chunks"; }
n=$(nparts "$W/array/silver.h5.parts")
[ "$n" = 16 ] && [ ! -e "$W/array/silver.h5" ] && ok "array tasks: all 16 parts, no merged output" ||
    bad "array tasks: $n parts, merged output exists: $([ -e "$W/array/silver.h5" ] && echo yes || echo no)"
label 1 "$W/array/silver.h5" > "$W/array/merge.log" || bad "merge run exited $?"
grep -q "16 done before, 0 computed now" "$W/array/merge.log" && ok "merge run after the array computes no chunk" ||
    { cat "$W/array/merge.log"; bad "merge run recomputed chunks"; }
same "$W/np1/silver.h5" "$W/array/silver.h5" "job array + merge == uninterrupted: silver dataset"
same "$W/np1/silver.scores.h5" "$W/array/silver.scores.h5" "job array + merge == uninterrupted: scores"
label 1 "$W/array/bad.h5" --array-task 3 --array-count 3 > "$W/array/bad.log" 2>&1
rc=$?
[ $rc -eq 2 ] && grep -q "expected 0 <= task < count" "$W/array/bad.log" && ok "--array-task 3 of 3: usage error" ||
    { cat "$W/array/bad.log"; bad "--array-task 3 --array-count 3: exit $rc"; }
label 1 "$W/array/bad.h5" --array-task 0 > "$W/array/bad2.log" 2>&1
rc=$?
[ $rc -eq 2 ] && grep -q "go together" "$W/array/bad2.log" && ok "--array-task without --array-count: usage error" ||
    { cat "$W/array/bad2.log"; bad "--array-task alone: exit $rc"; }

echo "$fails failed"
[ $fails -eq 0 ]
