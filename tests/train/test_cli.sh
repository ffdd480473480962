#!/bin/bash
# Every user error of train-bi, eval and encode (bad option, missing file, wrong dataset
# schema or labels, another vocab, changed settings on resume) names the option or file,
# exits non-zero, and leaves existing outputs exactly as they were.
# usage: test_cli.sh ARGENT COMPARE MPIEXEC WORK
ARGENT=$1 COMPARE=$2 MPIEXEC=$3 WORK=$4
source "$(dirname "$0")/common.sh"
rm -rf "$WORK"; prep
mpi 1 "$ARGENT" prepare --input "$HERE/sts.tsv" --format tsv --header no --a 0 --vocab "$VOCAB" --quiet \
    --out "$WORK/sentences.h5" >/dev/null || fail "prepare sentences"
cp "$VOCAB" "$WORK/other_vocab.txt"; echo "extra" >>"$WORK/other_vocab.txt"
mpi 1 "$ARGENT" prepare --input "$HERE/sts.tsv" --format tsv --header no --a 0 --b 1 --label 2 --vocab "$WORK/other_vocab.txt" \
    --quiet --out "$WORK/other.h5" >/dev/null || fail "prepare with another vocab"

OUT="$WORK/run"
bi 1 "$OUT" --steps 6 --batch 8 --eval "$WORK/sts.h5" || { cat "$OUT.log"; fail "the run whose outputs must survive"; }
mpi 1 "$ARGENT" eval --model "$OUT" --data "$WORK/sts.h5" --csv "$WORK/eval.csv" >/dev/null || fail "eval"
mpi 1 "$ARGENT" encode --model "$OUT" --input "$WORK/sts.h5" --out "$WORK/emb.h5" >/dev/null || fail "encode"
snapshot() { (cd "$WORK" && find run eval.csv emb.h5 -type f | sort | xargs md5sum); }
before=$(snapshot)

n=0
expect() {  # expect CODE PATTERN cmd...: exit code CODE (nonzero: any), message matching PATTERN
    local code=$1 pat=$2; shift 2
    local out rc
    out=$("$@" 2>&1); rc=$?
    n=$((n + 1))
    if [ "$code" = nonzero ]; then [ $rc != 0 ] || { echo "$out"; fail "case $n: exit 0, expected an error: $*"; }
    else [ $rc = "$code" ] || { echo "$out"; fail "case $n: exit $rc, expected $code: $*"; }; fi
    echo "$out" | grep -q -- "$pat" || { echo "$out"; fail "case $n: message does not say '$pat': $*"; }
    echo "ok   case $n: $(echo "$out" | grep -m1 -- "$pat" | cut -c1-150)"
}
BASE=(mpi 1 "$ARGENT" train-bi --fresh hidden=32,layers=2,heads=2,inter=64,maxpos=32 --vocab "$VOCAB" --out "$OUT" --steps 6
      --eval "$WORK/sts.h5")
TB=("${BASE[@]}" --max-length 16 --batch 8)
expect 2 "--data" mpi 1 "$ARGENT" train-bi "${MODEL_ARGS[@]}" --out "$OUT"
expect 2 "--bogus" "${TB[@]}" --data "$WORK/pairs.h5" --bogus 1
expect nonzero "--loss" "${TB[@]}" --data "$WORK/pairs.h5" --loss nosuchloss
expect nonzero "--batch" "${BASE[@]}" --max-length 16 --data "$WORK/pairs.h5" --batch 0
expect nonzero "missing.h5" "${TB[@]}" --data "$WORK/missing.h5"
expect nonzero "other_vocab\|another vocab" "${TB[@]}" --data "$WORK/other.h5"
expect nonzero "has no pairs" "${TB[@]}" --data "$WORK/sentences.h5"
expect nonzero "vocab.txt" "${TB[@]}" --data "$VOCAB"
expect nonzero "class labels" "${TB[@]}" --data "$WORK/pairs.h5" --loss softmax
expect nonzero "--teacher" "${TB[@]}" --data "$WORK/pairs.h5" --loss mse
expect nonzero "--keep best: needs --eval" mpi 1 "$ARGENT" train-bi "${MODEL_ARGS[@]}" --out "$OUT" --data "$WORK/pairs.h5" --keep best
expect nonzero "--model\|--fresh" mpi 1 "$ARGENT" train-bi --data "$WORK/pairs.h5" --out "$OUT"
expect nonzero "--max-length" "${BASE[@]}" --batch 8 --data "$WORK/pairs.h5" --max-length 999
# A finished run given other settings: refused, naming the setting.
expect 1 "--lr" "${TB[@]}" --data "$WORK/pairs.h5" --lr 0.5
expect 1 "--batch: the run has 8" "${BASE[@]}" --max-length 16 --data "$WORK/pairs.h5" --lr 1e-3 --batch 4
expect 1 "loss=cosine" "${TB[@]}" --data "$WORK/pairs.h5" --lr 1e-3 --loss cosent
expect nonzero "nosuch" mpi 1 "$ARGENT" eval --model "$WORK/nosuch" --data "$WORK/sts.h5" --csv "$WORK/eval.csv"
expect nonzero "has no pairs" mpi 1 "$ARGENT" eval --model "$OUT" --data "$WORK/sentences.h5" --csv "$WORK/eval.csv"
expect nonzero "labels 0 or 1" mpi 1 "$ARGENT" eval --model "$OUT" --data "$WORK/sts.h5" --task binary --csv "$WORK/eval.csv"
expect nonzero "another vocab" mpi 1 "$ARGENT" eval --model "$OUT" --data "$WORK/other.h5" --csv "$WORK/eval.csv"
expect 2 "--task" mpi 1 "$ARGENT" eval --model "$OUT" --data "$WORK/sts.h5" --task nope --csv "$WORK/eval.csv"
expect nonzero "nosuch.h5" mpi 1 "$ARGENT" encode --model "$OUT" --input "$WORK/nosuch.h5" --out "$WORK/emb.h5"
expect nonzero "nosuch" mpi 1 "$ARGENT" encode --model "$WORK/nosuch" --input "$WORK/sts.h5" --out "$WORK/emb.h5"
expect 2 "--batch" mpi 1 "$ARGENT" encode --model "$OUT" --input "$WORK/sts.h5" --out "$WORK/emb.h5" --batch -3
for cmd in train-bi eval encode; do "$ARGENT" $cmd --help | grep -q "usage\|--" || fail "$cmd --help"; done
after=$(snapshot)
[ "$before" = "$after" ] || { diff <(echo "$before") <(echo "$after"); fail "an error changed existing outputs"; }
echo "ok   existing outputs unchanged after $n failing commands"
echo "PASS"
