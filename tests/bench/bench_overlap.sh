#!/bin/bash
# Benchmark (not a test): gradient communication of data-parallel train-bi for the
# MiniLM-L6-shaped model (6 layers, hidden 384, 12 heads, FFN 1536, vocab 30522; 22.7M
# parameters, 91 MB of gradients per step) at np 2, one thread per rank: the same 20-step run
# twice, with the allreduce overlapped with the backward pass (buckets started by the BERT
# backward hook, MPI_Test between layers) and without (--no-overlap: everything reduced
# after the backward). Reported per step: forward+backward time, communication exposed
# after the backward, and the fraction of the communication hidden under the backward:
#   hidden = 1 - exposed(overlap) / exposed(no overlap).
# The word embeddings' gradient (47 of the 91 MB) is finished last by any backward pass, so
# its bucket cannot overlap; the bound on the hidden fraction is about half.
# usage: tests/bench/bench_overlap.sh BUILD_DIR [steps] [batch] [bucket MB]
set -e
BUILD=$(cd "${1:-build}" && pwd); STEPS=${2:-20}; BATCH=${3:-16}; BUCKET=${4:-25}
HERE=$(cd "$(dirname "$0")/.." && pwd)
W=$BUILD/bench-overlap; rm -rf "$W"; mkdir -p "$W"
# A vocab of exactly 30522 entries: the synthetic words, then [unused] fillers.
cp "$HERE/train/vocab.txt" "$W/vocab.txt"
n=$(wc -l <"$W/vocab.txt"); for ((i = n; i < 30522; i++)); do echo "[unused$i]"; done >>"$W/vocab.txt"
# Sentences of ~24 words (about 30 tokens with [CLS]/[SEP]), like STS sentences.
awk -F'\t' '{ a = $1; b = $2; for (k = 0; k < 4; k++) { a = a " " $1; b = b " " $2 } print a "\t" b "\t" $3 }' \
    "$HERE/train/pairs.tsv" >"$W/long.tsv"
"$BUILD/argent" prepare --input "$W/long.tsv" --format tsv --header no --a 0 --b 1 --label 2 --vocab "$W/vocab.txt" \
    --out "$W/pairs.h5" --quiet >/dev/null
for mode in overlap no-overlap; do
    extra=(); [ $mode = no-overlap ] && extra=(--no-overlap)
    OMP_NUM_THREADS=1 mpirun --allow-run-as-root --oversubscribe -np 2 "$BUILD/argent" train-bi \
        --fresh hidden=384,layers=6,heads=12,inter=1536,maxpos=512 --vocab "$W/vocab.txt" --max-length 64 \
        --data "$W/pairs.h5" --out "$W/$mode" --steps "$STEPS" --batch "$BATCH" --ckpt-every 0 --check-every 0 \
        --log-every 5 --bucket-mb "$BUCKET" "${extra[@]}" 2>&1 | tee "$W/$mode.log" | grep "allreduce"
done
ov=$(sed -n 's/.*exposed communication \([0-9.]*\) s\/step.*/\1/p' "$W/overlap.log")
no=$(sed -n 's/.*exposed communication \([0-9.]*\) s\/step.*/\1/p' "$W/no-overlap.log")
fb=$(sed -n 's/.*forward+backward \([0-9.]*\) s\/step.*/\1/p' "$W/overlap.log")
awk -v ov="$ov" -v no="$no" -v fb="$fb" -v bk="$BUCKET" 'BEGIN {
    printf "\nMiniLM-L6 shape, np 2, 1 thread/rank, buckets of " bk " MB: forward+backward %.3f s/step; communication %.3f s/step " \
           "(no overlap); exposed with overlap %.3f s/step; hidden under backward %.0f%%\n", fb, no, ov, 100 * (1 - ov / no) }'
