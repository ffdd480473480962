#!/bin/bash
# `argent eval` of cross-encoder checkpoints (jobs/eval.c), on data from `argent synth`:
#   1. a one-label cross-encoder trained here (BCE on the gold scores) on scored pairs: the
#      correlation evaluator (spearman, pearson), found from the dataset's label kind; the
#      same numbers at np 1 and np 2; a run directory is taken as its model.h5;
#   2. the same model on class-labelled pairs: the binary classification evaluator
#      (average precision first, accuracy, F1 and thresholds);
#   3. a two-label cross-encoder (cross-entropy on the gold classes): macro / micro /
#      weighted F1 and accuracy;
#   4. errors exit non-zero with a message naming the file or the option: a bi-encoder task
#      for a cross-encoder and the reverse, correlation of a 2-class model, a 2-class model
#      on scored pairs, a 1-label model on labels other than 0/1, unlabelled pairs, a file
#      that is not a checkpoint, a missing model or dataset, an unknown --task.
# The models and datasets stay in WORK for tests/cli/check_eval_cross.py (the same numbers
# from sentence-transformers' evaluators on the exported models).
# Usage: test_eval_cross.sh ARGENT MPIEXEC WORK
set -u
ARGENT=$1 MPIEXEC=$2 W=$3
export OMP_NUM_THREADS=1 OMPI_MCA_mpi_yield_when_idle=1
unset ARGENT_FAULT
fails=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fails=$((fails + 1)); }
mpi() { local np=$1; shift; "$MPIEXEC" --allow-run-as-root --oversubscribe --timeout 300 -np "$np" "$@"; }
die() { echo "FAIL $*"; exit 1; }
D=$W/data

rm -rf "$W"
mkdir -p "$W"
mpi 1 "$ARGENT" synth --out "$D" --gold 240 --pairs 20 --dev 20 --test 90 --seed 4 --hidden 32 --layers 1 --heads 2 \
    --inter 64 > "$W/synth.log" 2>&1 || { cat "$W/synth.log"; die "argent synth"; }
prep() { mpi 1 "$ARGENT" prepare --input "$D/$1.tsv" --a sentence1 --b sentence2 --vocab "$D/vocab.txt" --quiet "${@:2}" ||
    die "argent prepare $*"; }
prep gold --label score --out "$D/gold-score.h5"
prep gold --label label --label-kind class --out "$D/gold-class.h5"
prep test --label score --out "$D/test-score.h5"
prep test --label label --label-kind class --out "$D/test-class.h5"
prep pairs --out "$D/pairs.h5"
xtrain() { local out=$1; shift; mpi 2 "$ARGENT" train-cross --model "$D/model.h5" --max-length 32 --lr 2e-3 --steps 150 \
    --warmup 5 --batch 16 --seed 2 --out "$out" "$@" > "$out.log" 2>&1 || { cat "$out.log"; die "train-cross $*"; }; }
xtrain "$W/ce1" --train "$D/gold-score.h5" --num-labels 1
xtrain "$W/ce2" --train "$D/gold-class.h5" --num-labels 2

# eval NP NAME ARGS...: runs argent eval, output in $W/NAME.out / .err, exit code in $rc
ev() { local np=$1 name=$2; shift 2; mpi "$np" "$ARGENT" eval "$@" > "$W/$name.out" 2> "$W/$name.err"; rc=$?; }
# csv_has FILE METRIC...: the CSV's metric column is exactly the list, in order
csv_has() { local f=$1; shift; [ "$(tail -n +2 "$f" | cut -d, -f1 | tr '\n' ' ')" = "$* " ] &&
    [ "$(head -n 1 "$f")" = metric,value ]; }
# same_csv A B: the same metrics and values
same_csv() { cmp -s "$1" "$2"; }

# ---- 1. correlation ----
ev 1 corr1 --model "$W/ce1" --data "$D/test-score.h5" --name "ce1 on scores" --csv "$W/corr1.csv"
if [ $rc = 0 ] && grep -q '^Cross-encoder correlation evaluation of .*ce1/model.h5 (1 label) on ce1 on scores (90 pairs)' \
       "$W/corr1.out" && grep -q '^| spearman | [-0-9.]* |$' "$W/corr1.out" && csv_has "$W/corr1.csv" spearman pearson
then ok "1 label on scores: correlation table and CSV ($(tail -n +2 "$W/corr1.csv" | tr '\n' ' '))"
else cat "$W/corr1.out" "$W/corr1.err"; bad "1 label on scores: exit $rc or wrong table / CSV"; fi
ev 2 corr2 --model "$W/ce1/model.h5" --data "$D/test-score.h5" --csv "$W/corr2.csv"
[ $rc = 0 ] && same_csv "$W/corr1.csv" "$W/corr2.csv" && ok "np 2 == np 1" ||
    { cat "$W/corr2.err"; bad "np 2 differs from np 1 (exit $rc)"; }

# ---- 2. binary classification (one label) ----
ev 2 bin --model "$W/ce1" --data "$D/test-class.h5" --csv "$W/bin.csv"
if [ $rc = 0 ] && grep -q '^Cross-encoder classification evaluation' "$W/bin.out" &&
   csv_has "$W/bin.csv" average_precision accuracy accuracy_threshold f1 f1_threshold precision recall
then ok "1 label on classes: binary classification ($(tail -n +2 "$W/bin.csv" | tr '\n' ' '))"
else cat "$W/bin.out" "$W/bin.err"; bad "1 label on classes: exit $rc or wrong CSV"; fi

# ---- 3. two classes ----
ev 2 multi --model "$W/ce2" --data "$D/test-class.h5" --csv "$W/multi.csv"
if [ $rc = 0 ] && grep -q '(2 labels)' "$W/multi.out" && csv_has "$W/multi.csv" f1_macro f1_micro f1_weighted accuracy
then ok "2 labels on classes: F1 and accuracy ($(tail -n +2 "$W/multi.csv" | tr '\n' ' '))"
else cat "$W/multi.out" "$W/multi.err"; bad "2 labels on classes: exit $rc or wrong CSV"; fi

# ---- 4. errors: NAME EXPECTED-EXIT PATTERN ARGS... ----
err() {
    local name=$1 want=$2 pat=$3
    shift 3
    ev 1 "e-$name" "$@"
    if [ "$rc" = "$want" ] && grep -q -- "$pat" "$W/e-$name.err" && [ ! -s "$W/e-$name.csv" ]; then
        ok "$name: exit $rc, $(grep -m1 -- "$pat" "$W/e-$name.err" | cut -c1-150)"
    else
        cat "$W/e-$name.out" "$W/e-$name.err"; bad "$name: exit $rc (want $want), message /$pat/"
    fi
}
printf 'not an HDF5 file\n' > "$W/bogus.h5"
err sts-on-cross 1 "--task sts evaluates a bi-encoder, and .*ce1/model.h5 is a cross-encoder" \
    --model "$W/ce1" --data "$D/test-score.h5" --task sts --csv "$W/e-sts-on-cross.csv"
err cross-task-on-bi 1 "--task classification evaluates a cross-encoder, and $D/model.h5 is a bi-encoder" \
    --model "$D/model.h5" --data "$D/test-class.h5" --task classification --csv "$W/e-cross-task-on-bi.csv"
err corr-2class 1 "--task correlation: .*ce2/model.h5 is a 2-class cross-encoder" \
    --model "$W/ce2" --data "$D/test-score.h5" --task correlation --csv "$W/e-corr-2class.csv"
err 2class-on-scores 1 "$D/test-score.h5: has score labels, and .*ce2/model.h5 is a 2-class cross-encoder" \
    --model "$W/ce2" --data "$D/test-score.h5" --csv "$W/e-2class-on-scores.csv"
err 1label-on-fractions 1 "$D/test-score.h5: pair [0-9]* (line [0-9]*) has label 0\.[36].*0 or 1" \
    --model "$W/ce1" --data "$D/test-score.h5" --task classification --csv "$W/e-1label-on-fractions.csv"
err unlabelled 1 "$D/pairs.h5: has no labels" --model "$W/ce1" --data "$D/pairs.h5" --csv "$W/e-unlabelled.csv"
err not-a-checkpoint 1 "$W/bogus.h5" --model "$W/bogus.h5" --data "$D/test-score.h5" --csv "$W/e-not-a-checkpoint.csv"
err no-model 1 "$W/nothing.h5: no such" --model "$W/nothing.h5" --data "$D/test-score.h5"
err no-data 1 "$W/nothing.h5" --model "$W/ce1" --data "$W/nothing.h5" --csv "$W/e-no-data.csv"
err bad-data 1 "$W/bogus.h5" --model "$W/ce2" --data "$W/bogus.h5" --csv "$W/e-bad-data.csv"
err bad-task 2 "--task: expected one of sts, binary, correlation, classification, got 'corr'" \
    --model "$W/ce1" --data "$D/test-score.h5" --task corr
# A bi-encoder still evaluates as before (STS by default).
ev 1 bi --model "$D/model.h5" --data "$D/test-score.h5" --csv "$W/bi.csv"
[ $rc = 0 ] && grep -q '^STS evaluation of' "$W/bi.out" && grep -q '^spearman_cosine,' "$W/bi.csv" &&
    ok "a bi-encoder: STS evaluation as before" || { cat "$W/bi.err"; bad "bi-encoder eval: exit $rc"; }

echo "$fails failed"
[ $fails = 0 ]
