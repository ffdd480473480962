#!/bin/bash
# train-bi -> eval / encode / export end to end:
#  - training learns: the STS Spearman of the trained model beats the untrained one's;
#  - `argent eval` of model.h5 (the best model) reproduces the score train-bi logged for it;
#  - eval at np 1 and np 2, and encode at np 1 and np 3, give identical bytes;
#  - the binary classification evaluator runs on 0/1 labels and writes its CSV;
#  - `argent export` makes a sentence-transformers folder whose embeddings equal argent's
#    (checked in Python when sentence-transformers is installed, else that part is skipped).
# usage: test_encode_eval.sh ARGENT COMPARE MPIEXEC WORK
ARGENT=$1 COMPARE=$2 MPIEXEC=$3 WORK=$4
source "$(dirname "$0")/common.sh"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
rm -rf "$WORK"; prep
LR=0 bi 1 "$WORK/untrained" --steps 1 --batch 8 || fail "untrained model"
LR=5e-3 bi 2 "$WORK/run" --loss cosine --steps 120 --batch 16 --warmup 5 --eval "$WORK/sts.h5" --eval-every 40 \
    || { cat "$WORK/run.log"; fail "training"; }
get() { grep "^$2," "$1" | cut -d, -f2; }
mpi 1 "$ARGENT" eval --model "$WORK/untrained/model.h5" --data "$WORK/sts.h5" --csv "$WORK/untrained.csv" >/dev/null || fail "eval untrained"
mpi 1 "$ARGENT" eval --model "$WORK/run/model.h5" --data "$WORK/sts.h5" --csv "$WORK/np1.csv" || fail "eval np 1"
mpi 2 "$ARGENT" eval --model "$WORK/run" --data "$WORK/sts.h5" --csv "$WORK/np2.csv" >/dev/null || fail "eval np 2"
cmp "$WORK/np1.csv" "$WORK/np2.csv" || fail "eval at np 1 and np 2 differ"
echo "ok   eval: identical CSV at np 1 and 2 ($(wc -l <"$WORK/np1.csv") lines)"
s0=$(get "$WORK/untrained.csv" spearman_cosine); s1=$(get "$WORK/np1.csv" spearman_cosine)
best=$(sed -n 's/.*"score": *\([-0-9.e]*\).*/\1/p' "$WORK/run/best.json")
awk -v a="$s0" -v b="$s1" 'BEGIN { exit !(b > a + 0.1) }' || fail "no learning: spearman_cosine $s0 -> $s1"
echo "ok   training learns: spearman_cosine $s0 -> $s1"
awk -v a="$s1" -v b="$best" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d < 1e-9) }' \
    || fail "eval of model.h5 ($s1) is not the best score train-bi logged ($best)"
echo "ok   eval of model.h5 = train-bi's best evaluation ($best)"
mpi 1 "$ARGENT" encode --model "$WORK/run/model.h5" --input "$WORK/sts.h5" --out "$WORK/emb1.h5" || fail "encode np 1"
mpi 3 "$ARGENT" encode --model "$WORK/run/model.h5" --input "$WORK/sts.h5" --out "$WORK/emb3.h5" --batch 7 \
    >/dev/null || fail "encode np 3"
mpi 1 "$ARGENT" encode --model "$WORK/run/model.h5" --input "$WORK/sts.h5" --out "$WORK/emb1b.h5" --batch 7 \
    >/dev/null || fail "encode np 1 batch 7"
cmp "$WORK/emb1b.h5" "$WORK/emb3.h5" || fail "encode at np 1 and np 3 (same batches) differ"
echo "ok   encode: identical files at np 1 and np 3"
mpi 2 "$ARGENT" eval --model "$WORK/run/model.h5" --data "$WORK/sts_cls.h5" --task binary --csv "$WORK/bin.csv" \
    || fail "binary eval"
for m in cosine_accuracy cosine_f1 cosine_ap max_ap; do
    v=$(get "$WORK/bin.csv" $m); [ -n "$v" ] || fail "binary CSV lacks $m"
done
mpi 1 "$ARGENT" export "$WORK/run/model.h5" "$WORK/st" --format sentence-transformers >/dev/null || fail "export"
[ -f "$WORK/st/modules.json" ] || fail "export wrote no modules.json"
python3 "$HERE/check_export.py" "$WORK/st" "$WORK/emb1.h5" "$WORK/sts.h5"; rc=$?
[ $rc = 0 ] || [ $rc = 77 ] || fail "exported model does not reproduce argent's embeddings"
echo "PASS"
