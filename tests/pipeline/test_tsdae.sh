#!/bin/bash
# argent tsdae on the built-in synthetic sentences (argent synth) with its small random BERT:
#  1. np 1, 2 and 3 train the same model: the losses of every step and the final encoder
#     agree within 1e-5 (noise keyed on (seed, sentence, epoch), a token-weighted global
#     loss, data order from the engine), over 2 epochs;
#  2. --stop-after: checkpoint and exit 85; the same command resumes, bit-identical to the
#     uninterrupted run at the same np; a finished run run again does nothing;
#  3. model.h5 is a bi-encoder with CLS pooling that eval, export and train-bi accept, and
#     holds only the encoder (the decoder's tensors live in the checkpoints);
#  4. errors: a cross-encoder as --model, a dataset of another vocab, a bad option.
# usage: test_tsdae.sh ARGENT COMPARE MPIEXEC WORK
ARGENT=$1 COMPARE=$2 MPIEXEC=$3 WORK=$4
fail() { echo "FAIL: $*"; exit 1; }
# Single-process commands run under mpiexec too: an MPI singleton start under the sanitizer
# build sometimes crashes LeakSanitizer's tracer.
one() { "$MPIEXEC" -np 1 --allow-run-as-root --oversubscribe "$ARGENT" "$@"; }
rm -rf "$WORK"; mkdir -p "$WORK"
D=$WORK/data
one synth --out "$D" --gold 60 --pairs 10 --dev 40 --test 10 --seed 3 > "$WORK/synth.log" || fail "synth"
one prepare --input "$D/gold.tsv" --a sentence1 --b sentence2 --vocab "$D/vocab.txt" --out "$D/corpus.h5" --quiet ||
    fail "prepare corpus"
one prepare --input "$D/dev.tsv" --a sentence1 --b sentence2 --label score --vocab "$D/vocab.txt" \
    --out "$D/dev.h5" --quiet || fail "prepare dev"
run() {  # np dir [args]
    local np=$1 dir=$2
    shift 2
    "$MPIEXEC" -np "$np" --allow-run-as-root --oversubscribe "$ARGENT" tsdae --model "$D/model.h5" \
        --data "$D/corpus.h5" --max-sentences 50 --batch 8 --epochs 2 --lr 1e-3 --seed 5 --check-every 2 \
        --ckpt-every 0 --out "$dir" "$@" > "$dir.log" 2>&1
}

# 1. rank counts
for np in 1 2 3; do
    run $np "$WORK/np$np" --eval "$D/dev.h5" --eval-every 7 || { cat "$WORK/np$np.log"; fail "np $np"; }
done
grep -q "50 unique sentences" "$WORK/np1.log" || fail "corpus size not reported"
steps=$(grep -c '"loss"' "$WORK/np1/metrics.jsonl")
[ "$steps" = 14 ] || fail "$steps steps, expected 14 (2 epochs of ceil(50/8))"
"$COMPARE" "$WORK/np1" "$WORK/np2" --rel 1e-5 || fail "np 2 differs from np 1"
"$COMPARE" "$WORK/np1" "$WORK/np3" --rel 1e-5 || fail "np 3 differs from np 1"
grep -q '"eval":{"pearson_cosine"' "$WORK/np1/metrics.jsonl" || fail "no evaluation in metrics.jsonl"

# 2. resume
run 2 "$WORK/stop" --eval "$D/dev.h5" --eval-every 7 --stop-after 5; rc=$?
[ $rc = 85 ] || { cat "$WORK/stop.log"; fail "--stop-after 5 exited $rc, expected 85"; }
[ -f "$WORK/stop/model.h5" ] && fail "an unfinished run wrote model.h5"
run 2 "$WORK/stop" --eval "$D/dev.h5" --eval-every 7 --stop-after 5 || { cat "$WORK/stop.log"; fail "resume"; }
grep -q "resumed from .*ckpt-000005.h5" "$WORK/stop.log" || fail "did not resume from step 5"
"$COMPARE" "$WORK/np2" "$WORK/stop" --bitwise || fail "resumed run is not bit-identical to the uninterrupted one"
run 2 "$WORK/np2" --eval "$D/dev.h5" --eval-every 7 || fail "rerun of a finished run"
grep -q "run already complete" "$WORK/np2.log" || fail "a finished run did not say so"
run 2 "$WORK/np2" --eval "$D/dev.h5" --eval-every 7 --del-ratio 0.3; rc=$?
[ $rc = 1 ] && grep -q "del-ratio=0.3" "$WORK/np2.log" || { cat "$WORK/np2.log"; fail "a resume with another noise ratio was not refused"; }

# 3. the output model
h5dump -a /config/pooling "$WORK/np1/model.h5" 2>/dev/null | grep -q '"cls"' ||
    { command -v h5dump > /dev/null && fail "model.h5 pooling is not cls"; }
if command -v h5ls > /dev/null; then
    h5ls -r "$WORK/np1/model.h5" | grep -q decoder && fail "model.h5 holds decoder tensors"
    ck=$(ls "$WORK/np1/checkpoints/"ckpt-*.h5 | tail -1)
    h5ls -r "$ck" | grep -q 'decoder.cls.predictions.bias' || fail "the checkpoint lacks the decoder"
fi
"$MPIEXEC" -np 2 --allow-run-as-root --oversubscribe "$ARGENT" eval --model "$WORK/np1" --data "$D/dev.h5" \
    --csv "$WORK/eval.csv" > "$WORK/eval.log" 2>&1 || { cat "$WORK/eval.log"; fail "eval of the tsdae model"; }
last=$(grep '"eval"' "$WORK/np1/metrics.jsonl" | tail -1 | sed 's/.*"spearman_cosine":\([^,]*\),.*/\1/')
got=$(grep '^spearman_cosine,' "$WORK/eval.csv" | cut -d, -f2)
python3 -c "import sys; sys.exit(abs($last - $got) > 1e-9)" 2>/dev/null ||
    { command -v python3 > /dev/null && fail "eval gives $got, the run's last evaluation $last"; }
one export "$WORK/np1/model.h5" "$WORK/export" > "$WORK/export.log" 2>&1 || { cat "$WORK/export.log"; fail "export"; }
grep -q '"pooling_mode_cls_token": true' "$WORK/export/1_Pooling/config.json" || fail "export: pooling is not cls"
"$MPIEXEC" -np 2 --allow-run-as-root --oversubscribe "$ARGENT" train-bi --model "$WORK/np1" --data "$D/dev.h5" \
    --steps 2 --batch 8 --out "$WORK/bi" > "$WORK/bi.log" 2>&1 || { cat "$WORK/bi.log"; fail "train-bi from the tsdae model"; }

# 4. errors
one train-cross --model "$D/model.h5" --train "$D/dev.h5" --num-labels 1 --steps 1 --batch 4 --max-length 32 \
    --out "$WORK/cross" > "$WORK/cross.log" 2>&1 || { cat "$WORK/cross.log"; fail "train-cross for the error test"; }
one tsdae --model "$WORK/cross" --data "$D/corpus.h5" --out "$WORK/e1" > "$WORK/e1.log" 2>&1; rc=$?
[ $rc = 1 ] && grep -q "cross-encoder" "$WORK/e1.log" || { cat "$WORK/e1.log"; fail "a cross-encoder --model: exit $rc"; }
printf '[PAD]\n[UNK]\n[CLS]\n[SEP]\nother\n' > "$WORK/vocab2.txt"
one prepare --input "$D/gold.tsv" --a sentence1 --vocab "$WORK/vocab2.txt" --out "$WORK/other.h5" --quiet || fail "prepare 2"
one tsdae --model "$D/model.h5" --data "$WORK/other.h5" --out "$WORK/e2" > "$WORK/e2.log" 2>&1; rc=$?
[ $rc = 1 ] && grep -q "other.h5: tokenised with another vocab" "$WORK/e2.log" || { cat "$WORK/e2.log"; fail "vocab mismatch: exit $rc"; }
one tsdae --model "$D/model.h5" --data "$D/corpus.h5" --out "$WORK/e3" --del-ratio 1.5 > "$WORK/e3.log" 2>&1; rc=$?
[ $rc = 1 ] && grep -q -- "--del-ratio: expected a number in \[0, 1\]" "$WORK/e3.log" || { cat "$WORK/e3.log"; fail "bad --del-ratio: exit $rc"; }
one tsdae --data "$D/corpus.h5" --out "$WORK/e4" > "$WORK/e4.log" 2>&1; rc=$?
[ $rc = 2 ] && grep -q -- "--model" "$WORK/e4.log" || { cat "$WORK/e4.log"; fail "missing --model: exit $rc"; }
echo "PASS"
