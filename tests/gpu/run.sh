#!/usr/bin/env bash
# The one prepared script for a GPU visit: builds the CUDA backend with its tests and the
# benchmark stand-alone (tests/gpu/CMakeLists.txt: no MPI or HDF5 needed), runs every
# op check against the CPU oracle, times a MiniLM-L6 and a BERT-base training step
# (forward + backward, batch 32, sequence 128; fp32, TF32 and bf16) in argent and in
# PyTorch (bf16: torch.autocast) on the same GPU,
# writes everything under OUTDIR and prints a short table.
#
# usage: tests/gpu/run.sh OUTDIR        (from any directory)
# On the GPU machine (the device tool), carry tests/gpu/deps (made here by
# tests/gpu/fetch-deps.sh) and run:  bash tests/gpu/run.sh $OUT
# Environment: ARGENT_GPU_BUILD (build dir, default <repo>/build-gpu), ARGENT_GPU_MEMCHECK=1
# (also run test_cuda_ops --quick under compute-sanitizer), ARGENT_GPU_BENCH=0 (no bench).
# OUTDIR receives at most 6 flat files: summary.txt, env.txt, build.log, tests.log,
# bench.jsonl, run.log. Exit status: 0 when the build and every check passed (test_cuda_ops
# skipping for want of a GPU counts as passed), 1 otherwise.
set -u -o pipefail
OUT=${1:?usage: tests/gpu/run.sh OUTDIR}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
BUILD=${ARGENT_GPU_BUILD:-$ROOT/build-gpu}
JOBS=$(nproc 2>/dev/null || echo 4)
SUMMARY=$OUT/summary.txt
: > "$SUMMARY"
exec > >(tee -a "$OUT/run.log") 2>&1
T0=$(date +%s)
status=0
note() { echo "$*" | tee -a "$SUMMARY"; }
elapsed() { echo "$(( $(date +%s) - T0 ))s"; }

echo "== argent GPU visit: $(date -u +%Y-%m-%dT%H:%M:%SZ), repo $ROOT"
{
    echo "host: $(uname -srm), $JOBS cores"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader || echo "nvidia-smi: none"
    command -v nvcc >/dev/null && nvcc --version | tail -n 2 || echo "nvcc: none"
    cmake --version | head -n 1
    gcc --version | head -n 1
    python3 -c 'import torch, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(), "| transformers", transformers.__version__)' 2>&1 | tail -n 1
    [ -f "$ROOT/tests/gpu/deps/VERSIONS" ] && cat "$ROOT/tests/gpu/deps/VERSIONS" || echo "tests/gpu/deps: absent"
    git -C "$ROOT" rev-parse --short HEAD 2>/dev/null | sed 's/^/commit /'
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

# ---- OpenBLAS for the CPU oracle: the carried Debian packages, unpacked into the build dir.
mkdir -p "$BUILD"
DEPS=""
if ls "$ROOT"/tests/gpu/deps/debs/*.deb >/dev/null 2>&1; then
    DEPS=$BUILD/deps-root
    if [ ! -f "$DEPS/.unpacked" ]; then
        rm -rf "$DEPS" && mkdir -p "$DEPS"
        for f in "$ROOT"/tests/gpu/deps/debs/*.deb; do
            if command -v dpkg-deb >/dev/null; then
                dpkg-deb -x "$f" "$DEPS"
            else  # a .deb is an ar archive around data.tar.{xz,zst,gz}
                member=$(ar t "$f" | grep '^data\.tar')
                case $member in *.zst) z=--zstd ;; *.gz) z=-z ;; *) z=-J ;; esac
                ar p "$f" "$member" | tar -x $z -C "$DEPS"
            fi
        done
        touch "$DEPS/.unpacked"
    fi
    export LD_LIBRARY_PATH="$DEPS/usr/lib/x86_64-linux-gnu/openblas-pthread:$DEPS/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "OpenBLAS: carried Debian packages unpacked in $DEPS"
fi

# ---- build
echo "== build ($(elapsed))"
GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)
[ -f "$BUILD/CMakeCache.txt" ] && GEN=()  # keep the generator of an existing build dir
if cmake -S "$ROOT/tests/gpu" -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DARGENT_GPU_DEPS="$DEPS" > "$OUT/build.log" 2>&1 &&
   cmake --build "$BUILD" -j "$JOBS" >> "$OUT/build.log" 2>&1; then
    note "build: ok ($(elapsed)); $(grep -E 'argent_gpu: (OpenBLAS|no OpenBLAS)' "$OUT/build.log" | head -n 1 | sed 's/^-- //')"
    warnings=$(grep -c -i 'warning' "$OUT/build.log")
    [ "$warnings" -gt 0 ] && note "build: $warnings warning lines (see build.log)"
else
    note "build: FAILED (see build.log)"
    tail -n 40 "$OUT/build.log"
    exit 1
fi

# ---- op checks
echo "== checks ($(elapsed))"
: > "$OUT/tests.log"
run_check() {  # name, timeout, command...
    local name=$1 limit=$2; shift 2
    echo "---- $name: $*" >> "$OUT/tests.log"
    timeout "$limit" "$@" >> "$OUT/tests.log" 2>&1
    local rc=$?
    local counts
    counts=$(awk '/^[0-9]+ passed, [0-9]+ failed$/ {l=$0} END {print l}' <(sed -n "/^---- $name:/,\$p" "$OUT/tests.log"))
    case $rc in
        0)   note "check $name: passed ${counts:+($counts)}" ;;
        77)  note "check $name: skipped ($(grep -m1 '^SKIPPED' <(sed -n "/^---- $name:/,\$p" "$OUT/tests.log")))" ;;
        124) note "check $name: TIMED OUT after ${limit}s"; status=1 ;;
        *)   note "check $name: FAILED (exit $rc${counts:+, $counts})"; status=1
             sed -n "/^---- $name:/,\$p" "$OUT/tests.log" | grep -E '^(FAIL|FATAL|     grad)' | head -n 20 | tee -a "$SUMMARY" ;;
    esac
    return $rc
}
run_check test_cuda_philox 60 "$BUILD/test_cuda_philox"
run_check test_cuda_select 60 "$BUILD/test_cuda_select"
run_check test_cuda_ops 300 "$BUILD/test_cuda_ops"
ops_rc=$?
# bf16/fp16: 16-bit kernels within 1e-2 (bf16) / 2e-3 (fp16) of the fp32 oracle, GEMM mode
# exact-input products within the fp32 tolerances, casts and unscale bit for bit.
run_check test_cuda_amp 120 "$BUILD/test_cuda_amp"
run_check test_cuda_lowp 120 "$BUILD/test_cuda_lowp"   # 16-bit activation tables, same tolerances
# Training: 20 AdamW steps of a tiny bi-encoder on the CPU and the GPU (losses, parameters
# within 1e-4; device optimiser), cross-encoder scores within 1e-5 and identical labels.
run_check test_cuda_train 120 "$BUILD/test_cuda_train"
if [ "${ARGENT_GPU_MEMCHECK:-0}" = 1 ] && [ $ops_rc -ne 77 ] && command -v compute-sanitizer >/dev/null; then
    run_check memcheck 240 compute-sanitizer --tool memcheck --error-exitcode 9 "$BUILD/test_cuda_ops" --quick
fi

# ---- benchmark
if [ "${ARGENT_GPU_BENCH:-1}" != 0 ]; then
    echo "== benchmark ($(elapsed))"
    : > "$OUT/bench.jsonl"
    timeout 300 "$BUILD/bench_cuda_step" --steps 10 --warmup 3 --precision all >> "$OUT/bench.jsonl" 2>> "$OUT/tests.log"
    rc=$?
    [ $rc -ne 0 ] && [ $rc -ne 77 ] && { note "bench argent: FAILED (exit $rc, see tests.log)"; status=1; }
    PYTHONUNBUFFERED=1 timeout 300 python3 "$ROOT/tests/gpu/bench_torch_step.py" --steps 10 --warmup 3 \
        >> "$OUT/bench.jsonl" 2>> "$OUT/tests.log"
    rc=$?
    [ $rc -ne 0 ] && [ $rc -ne 77 ] && note "bench pytorch: failed (exit $rc, see tests.log)"
    python3 - "$OUT/bench.jsonl" <<'PY' | tee -a "$SUMMARY"
import json, sys
rows, skips = [], []
for line in open(sys.argv[1]):
    line = line.strip()
    if line.startswith("{"):
        rows.append(json.loads(line))
    elif line:
        skips.append(line)
for s in skips:
    print("bench: " + s)
if rows:
    eager = {(r["model"], r["precision"]): r["step_ms"] for r in rows if r["impl"].endswith("(eager)")}
    print("%-10s %-5s %-28s %9s %9s %10s %7s %8s %7s" % ("model", "prec", "impl", "step ms", "best ms",
          "tokens/s", "TFLOP/s", "mem MB", "vs eag"))
    for r in sorted(rows, key=lambda r: (r["model"], r["precision"], r["impl"])):
        e = eager.get((r["model"], r["precision"]))
        print("%-10s %-5s %-28s %9.2f %9.2f %10.0f %7.2f %8.0f %7s" % (r["model"], r["precision"], r["impl"][:28],
              r["step_ms"], r["best_ms"], r["tokens_per_s"], r["tflops"], r["device_mem_used_mb"],
              "%.2fx" % (e / r["step_ms"]) if e else "-"))
    print("(batch %d, seq %d, forward + backward of the encoder, dropout on; mem = device memory in use "
          "after the first step, CUDA context included; vs eag = PyTorch eager time / this time)"
          % (rows[0]["batch"], rows[0]["seq"]))
PY
fi

note "total: $(elapsed); $([ $status = 0 ] && echo 'all checks passed' || echo 'SOME CHECKS FAILED')"
echo "== summary"
cat "$SUMMARY"
exit $status
