#!/bin/bash
# Bad inputs to `argent label` and `argent train-cross`, at np 2: each must end with a
# non-zero exit and a message naming the file or option and what was expected (printed
# once, not once per rank), never hang, and leave existing outputs byte for byte as they
# were. (Usage errors, exit 2, are found before MPI starts, so every process prints them.)
# Usage: test_cross_errors.sh ARGENT MPIEXEC TINY_DIR WORK_DIR
set -u
ARGENT=$1 MPIEXEC=$2 TINY=$3 W=$4
export OMP_NUM_THREADS=1 OMPI_MCA_mpi_yield_when_idle=1
unset ARGENT_FAULT
fails=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fails=$((fails + 1)); }
mpi() { "$MPIEXEC" --allow-run-as-root --oversubscribe --timeout 120 -np 2 "$@"; }

rm -rf "$W"
mkdir -p "$W/run"
# Existing outputs that no failed command may touch.
echo "earlier silver" > "$W/silver.h5"
echo "earlier scores" > "$W/silver.scores.h5"
echo "earlier run" > "$W/run/model.h5"
snapshot() { (cd "$W" && find . -type f ! -name '*.log' | sort | xargs sha256sum); }
before=$(snapshot)

# expect NAME WANT_RC PATTERN -- command...: exit code, message, outputs unchanged.
expect() {
    local name=$1 want=$2 pat=$3
    shift 4
    "$@" > "$W/out.log" 2> "$W/err.log"
    local rc=$?
    local n
    n=$(grep -c -- "$pat" "$W/err.log")
    if [ $rc -ne 0 ] && { [ "$want" = any ] || [ $rc -eq "$want" ]; } && [ "$n" -ge 1 ] && [ "$(snapshot)" = "$before" ]; then
        ok "$name: exit $rc, '$(grep -m1 -- "$pat" "$W/err.log" | cut -c1-150)'"
        # Usage errors (exit 2) are found before MPI starts, by every process alike.
        [ "$n" -eq 1 ] || [ $rc -eq 2 ] || bad "$name: the message came $n times (once per rank?)"
    else
        echo "--- stderr:"; cat "$W/err.log"; bad "$name: exit $rc, pattern '$pat' found $n times, outputs unchanged: $([ "$(snapshot)" = "$before" ] && echo yes || echo NO)"
    fi
}
L="$ARGENT label --out $W/silver.h5"
expect "label: missing checkpoint" 1 "nope.h5: no such checkpoint" -- mpi $L --model "$TINY/nope.h5" --data "$TINY/pool.h5"
expect "label: bi-encoder checkpoint" 1 "bi.h5: is a bi-encoder checkpoint; this needs a cross-encoder" -- \
    mpi $L --model "$TINY/bi.h5" --data "$TINY/pool.h5"
expect "label: missing data" 1 "missing.h5" -- mpi $L --model "$TINY/cross.h5" --data "$TINY/missing.h5"
expect "label: a checkpoint given as data (wrong schema)" 1 "cross1.h5" -- mpi $L --model "$TINY/cross.h5" --data "$TINY/cross1.h5"
expect "label: a dataset without pairs" 1 "sentences.h5: holds no pairs" -- \
    mpi $L --model "$TINY/cross.h5" --data "$TINY/sentences.h5"
expect "label: argmax with one label" 1 "the model has one label" -- \
    mpi $L --model "$TINY/cross1.h5" --data "$TINY/pool.h5" --label argmax
expect "label: --positive beyond the labels" 1 "positive 5: the model has 2 labels" -- \
    mpi $L --model "$TINY/cross.h5" --data "$TINY/pool.h5" --label threshold --positive 5
expect "label: bad --threshold" 2 "threshold" -- mpi $L --model "$TINY/cross.h5" --data "$TINY/pool.h5" --threshold 1.5
expect "label: bad --chunk-size" 2 "chunk-size" -- mpi $L --model "$TINY/cross.h5" --data "$TINY/pool.h5" --chunk-size 0
expect "label: unknown option" 2 "unknown option" -- mpi $L --model "$TINY/cross.h5" --data "$TINY/pool.h5" --bogus 1
cp "$TINY/pool.h5" "$W/input.h5"
before=$(snapshot)
expect "label: output over the input" 1 "would overwrite an input" -- \
    mpi "$ARGENT" label --model "$TINY/cross.h5" --data "$W/input.h5" --out "$W/input.h5"
expect "label: output directory missing" 1 "does not exist" -- \
    mpi "$ARGENT" label --model "$TINY/cross.h5" --data "$TINY/pool.h5" --out "$W/no/such/dir/s.h5"
# A work directory of another run (other settings) is refused, not mixed.
mkdir -p "$W/other.parts"
echo '{"model_sha256": "x"}' > "$W/other.parts/label.json"
before=$(snapshot)
expect "label: work directory of another run" 1 "holds the parts of another labeling run" -- \
    mpi $L --model "$TINY/cross.h5" --data "$TINY/pool.h5" --work "$W/other.parts"

T="$ARGENT train-cross --out $W/run --steps 5"
expect "train-cross: missing pretrained model" 1 "nope.h5" -- mpi $T --model "$TINY/nope.h5" --train "$TINY/train.h5"
expect "train-cross: unlabeled training pairs" 1 "pool.h5: has no labels" -- mpi $T --model "$TINY/bi.h5" --train "$TINY/pool.h5"
expect "train-cross: sentences only" 1 "sentences.h5: holds no pairs" -- mpi $T --model "$TINY/bi.h5" --train "$TINY/sentences.h5"
expect "train-cross: unlabeled dev pairs" 1 "dev $TINY/pool.h5: has no labels" -- \
    mpi $T --model "$TINY/bi.h5" --train "$TINY/train.h5" --dev "$TINY/pool.h5"
expect "train-cross: bad --max-length" 2 "max-length" -- mpi $T --model "$TINY/bi.h5" --train "$TINY/train.h5" --max-length 2
expect "train-cross: --label-names count" 1 "label-names: 1 names for 2 labels" -- \
    mpi $T --model "$TINY/bi.h5" --train "$TINY/train.h5" --label-names only
expect "train-cross: missing --train" 2 "train" -- mpi "$ARGENT" train-cross --model "$TINY/bi.h5" --out "$W/run"

echo "$fails failed"
[ $fails -eq 0 ]
