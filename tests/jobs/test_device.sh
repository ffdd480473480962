#!/bin/bash
# The stages with --device / --precision (jobs/device.c), issue 7. MODE is one of:
#   nogpu      the real program without a GPU (skips, 77, where one is present):
#              --device cuda exits non-zero naming the option and writes nothing (train-bi,
#              train-cross, encode, label); --device auto says it computes on the CPU and
#              gives the same bytes as --device cpu; --precision bf16 with the CPU is refused
#              clearly; the pipeline refuses a bad --device / --precision before running any
#              stage and hands a good one to its model stages;
#   emu_train  EMU (the program on the emulated GPU) with --device cuda against ARGENT with
#              --device cpu, 20 fp32 steps of a tiny model, same seed: train-bi (MNRL with
#              global negatives, evaluation on the device), train-cross (its classifier is
#              host code in the same table), tsdae (the last checkpoint, AdamW moments
#              included): step losses and the tensors within 1e-4 relative; train-bi with
#              SoftmaxLoss (host classifier), 10 steps, its checkpoint within 1e-4;
#              all with the optimiser on the device (the default); resume on the device:
#              train-bi stopped at step 10 (--stop-after, exit 85) and run again equals the
#              uninterrupted device run within 1e-5 (losses, model.h5).
#              Also bf16 / fp16 (a 4-step smoke test, losses within 5e-2 of fp32), and fp16
#              across a resume: the loss scale, backed off by an injected overflow, is
#              checkpointed and restored (the uninterrupted run's losses and final scale).
#   emu_np2    train-bi --device cuda at np 2 through EMU (the emulator build has no NCCL:
#              the device gradient goes through the host allreduce) against the CPU at np 1,
#              within 1e-4, with the optimiser on the device (the default) and again with
#              ARGENT_DEVICE_OPTIM=host (the host-staged fallback); a bad ARGENT_DEVICE_OPTIM
#              is refused naming the variable;
#   emu_infer  label and encode --device cuda through EMU against the CPU: hard labels
#              identical, scores and embeddings within 1e-5.
# Usage: test_device.sh MODE ARGENT EMU MAKE_TINY_CROSS MPIEXEC WORK SOURCE_DIR
set -u
MODE=$1 ARGENT=$2 EMU=$3 MAKE_TINY=$4 MPIEXEC=$5 W=$6 SRC=$7
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CMP="python3 $HERE/h5_compare.py"
TRAIN="$SRC/tests/train"
VOCAB="$TRAIN/vocab.txt"
MODEL_ARGS=(--fresh hidden=32,layers=2,heads=2,inter=64,maxpos=32 --vocab "$VOCAB" --max-length 16)
export OMP_NUM_THREADS=1 OMPI_MCA_mpi_yield_when_idle=1 SOURCE_DATE_EPOCH=1700000000
unset ARGENT_FAULT ARGENT_DEVICE_OPTIM
fails=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fails=$((fails + 1)); }
mpi() { local np=$1; shift; "$MPIEXEC" --allow-run-as-root --oversubscribe --timeout 600 -np "$np" "$@"; }
finish() { [ $fails = 0 ] && { echo "PASS"; exit 0; }; echo "$fails check(s) failed"; exit 1; }
# compare KIND A B REL WHAT [--exact NAME]: h5_compare.py, its skip passed on.
compare() {
    local kind=$1 a=$2 b=$3 rel=$4 what=$5; shift 5
    $CMP "$kind" "$a" "$b" --rel "$rel" "$@" > "$W/cmp.log" 2>&1
    local rc=$?
    cat "$W/cmp.log"
    [ $rc = 77 ] && { echo "SKIPPED: $(head -n 1 "$W/cmp.log")"; exit 77; }
    [ $rc = 0 ] && ok "$what" || bad "$what"
}

rm -rf "$W"
mkdir -p "$W"
prepare() {  # [WHAT...]: the train-bi tests' datasets (tests/train), the cross tests' tiny inputs
    local common=(--format tsv --header no --a 0 --b 1 --vocab "$VOCAB" --quiet) w
    for w in "$@"; do
        case $w in
        pairs) mpi 1 "$ARGENT" prepare --input "$TRAIN/pairs.tsv" "${common[@]}" --label 2 --out "$W/pairs.h5" ;;
        sts) mpi 1 "$ARGENT" prepare --input "$TRAIN/sts.tsv" "${common[@]}" --label 2 --out "$W/sts.h5" ;;
        cls) mpi 1 "$ARGENT" prepare --input "$TRAIN/pairs.tsv" "${common[@]}" --label 3 --label-kind class \
                 --out "$W/cls.h5" ;;
        tiny) "$MAKE_TINY" "$W/tiny" 64 ;;
        esac > /dev/null || { echo "FAIL preparing the inputs ($w)"; exit 1; }
    done
}
# bi PROG NP DIR ARGS...: a 20-step train-bi of the tiny random model (global batch $BATCH:
# small, because the emulator is slow).
BATCH=4
bi() {
    local prog=$1 np=$2 dir=$3; shift 3
    mpi "$np" "$prog" train-bi "${MODEL_ARGS[@]}" --out "$dir" --lr 1e-3 --steps "${STEPS:-20}" --batch "$BATCH" --check-every 5 \
        --ckpt-every 0 --seed 7 "$@" > "$dir.log" 2>&1
}
on_gpu() { grep -q "computing on the GPU" "$1"; }

case "$MODE" in
nogpu)
    prepare pairs sts tiny
    bi "$ARGENT" 1 "$W/cuda" --data "$W/pairs.h5" --device cuda
    rc=$?
    # With a usable GPU this test has nothing to check (the emulator tests cover the device).
    if [ $rc = 0 ] && on_gpu "$W/cuda.log"; then echo "SKIPPED: a usable GPU is present"; exit 77; fi
    if [ $rc -ne 0 ] && grep -q -- "--device cuda: no CUDA device (" "$W/cuda.log" && [ ! -e "$W/cuda" ]; then
        ok "train-bi --device cuda without a GPU: exit $rc, '$(grep -o -- '--device cuda: no CUDA device[^;]*' "$W/cuda.log" | head -n 1)', nothing written"
    else
        cat "$W/cuda.log"; bad "train-bi --device cuda: exit $rc, output exists: $([ -e "$W/cuda" ] && echo yes || echo no)"
    fi
    bi "$ARGENT" 1 "$W/cpu" --data "$W/pairs.h5" --device cpu || { cat "$W/cpu.log"; bad "train-bi --device cpu"; }
    bi "$ARGENT" 1 "$W/auto" --data "$W/pairs.h5" || { cat "$W/auto.log"; bad "train-bi (default --device auto)"; }
    if grep -q "train-bi: computing on the CPU (--device auto: no usable GPU" "$W/auto.log"; then
        ok "--device auto (the default) without a GPU says it computes on the CPU"
    else
        cat "$W/auto.log"; bad "--device auto did not say it runs on the CPU"
    fi
    compare h5 "$W/cpu/model.h5" "$W/auto/model.h5" 0 "--device auto == --device cpu, bit for bit (model.h5)"
    compare losses "$W/cpu" "$W/auto" 0 "--device auto == --device cpu, bit for bit (losses)"
    bi "$ARGENT" 1 "$W/bf16" --data "$W/pairs.h5" --device cpu --precision bf16
    rc=$?
    if [ $rc -ne 0 ] && grep -q -- "--precision bf16: needs the GPU" "$W/bf16.log" && [ ! -e "$W/bf16" ]; then
        ok "--precision bf16 --device cpu refused: exit $rc, '$(grep -o -- '--precision bf16: needs the GPU[^;(]*' "$W/bf16.log" | head -n 1)'"
    else
        cat "$W/bf16.log"; bad "--precision bf16 --device cpu: exit $rc"
    fi
    bi "$ARGENT" 1 "$W/bf16auto" --data "$W/pairs.h5" --precision bf16
    rc=$?
    [ $rc -ne 0 ] && grep -q -- "--precision bf16: needs the GPU" "$W/bf16auto.log" && [ ! -e "$W/bf16auto" ] &&
        ok "--precision bf16 with --device auto and no GPU refused (exit $rc)" ||
        { cat "$W/bf16auto.log"; bad "--precision bf16 --device auto without a GPU: exit $rc"; }
    bi "$ARGENT" 1 "$W/baddev" --data "$W/pairs.h5" --device tpu
    rc=$?
    [ $rc -ne 0 ] && grep -q -- "--device 'tpu': unknown device, expected cpu, cuda or auto" "$W/baddev.log" &&
        ok "--device tpu refused (exit $rc)" || { cat "$W/baddev.log"; bad "--device tpu: exit $rc"; }
    mpi 1 "$ARGENT" encode --model "$W/cpu/model.h5" --input "$W/sts.h5" --out "$W/emb-cuda.h5" --device cuda \
        > "$W/enc.log" 2>&1
    rc=$?
    [ $rc -ne 0 ] && grep -q -- "--device cuda: no CUDA device (" "$W/enc.log" && [ ! -e "$W/emb-cuda.h5" ] &&
        ok "encode --device cuda: exit $rc, nothing written" || { cat "$W/enc.log"; bad "encode --device cuda: exit $rc"; }
    mpi 1 "$ARGENT" label --model "$W/tiny/cross.h5" --data "$W/tiny/pool.h5" --out "$W/lab/silver.h5" --device cuda \
        > "$W/lab.log" 2>&1
    rc=$?
    [ $rc -ne 0 ] && grep -q -- "--device cuda: no CUDA device (" "$W/lab.log" && [ ! -e "$W/lab" ] &&
        ok "label --device cuda: exit $rc, nothing written" || { cat "$W/lab.log"; bad "label --device cuda: exit $rc"; }
    mpi 1 "$ARGENT" train-cross --model "$W/tiny/bi.h5" --train "$W/tiny/train.h5" --out "$W/xc" --steps 2 \
        --device cuda > "$W/xc.log" 2>&1
    rc=$?
    [ $rc -ne 0 ] && grep -q -- "--device cuda: no CUDA device (" "$W/xc.log" && [ ! -e "$W/xc" ] &&
        ok "train-cross --device cuda: exit $rc, nothing written" || { cat "$W/xc.log"; bad "train-cross --device cuda: exit $rc"; }
    mpi 1 "$ARGENT" pipeline default --device gpu --out "$W/pipe" > "$W/pipe.log" 2>&1
    rc=$?
    [ $rc = 2 ] && grep -q -- "--device 'gpu': unknown device" "$W/pipe.log" && [ ! -e "$W/pipe" ] &&
        ok "pipeline --device gpu refused before any stage (exit 2)" || { cat "$W/pipe.log"; bad "pipeline --device gpu: exit $rc"; }
    mpi 1 "$ARGENT" pipeline default --device cpu --precision fp16 --out "$W/pipe" > "$W/pipe.log" 2>&1
    rc=$?
    [ $rc = 2 ] && grep -q -- "--precision fp16: needs the GPU" "$W/pipe.log" && [ ! -e "$W/pipe" ] &&
        ok "pipeline --device cpu --precision fp16 refused (exit 2)" || { cat "$W/pipe.log"; bad "pipeline fp16 on cpu: exit $rc"; }
    # The pipeline hands its --device / --precision to the model stages (a one-stage recipe).
    printf 'encode: --model %s --input %s --out $OUT/emb.h5\n' "$W/cpu/model.h5" "$W/sts.h5" > "$W/enc.recipe"
    mpi 1 "$ARGENT" pipeline "$W/enc.recipe" --device cuda --out "$W/pipe-cuda" --no-report > "$W/pipe-cuda.log" 2>&1
    rc=$?
    [ $rc = 1 ] && grep -q -- "--device cuda: no CUDA device (" "$W/pipe-cuda.log" && [ ! -e "$W/pipe-cuda/emb.h5" ] &&
        ok "pipeline --device cuda reaches the encode stage (it fails there, exit 1)" ||
        { cat "$W/pipe-cuda.log"; bad "pipeline --device cuda: exit $rc"; }
    mpi 1 "$ARGENT" pipeline "$W/enc.recipe" --device cpu --out "$W/pipe-cpu" --no-report > "$W/pipe-cpu.log" 2>&1 &&
        grep -q "encode: computing on the CPU$" "$W/pipe-cpu.log" && [ -s "$W/pipe-cpu/emb.h5" ] &&
        ok "pipeline --device cpu: the encode stage computes on the CPU" ||
        { cat "$W/pipe-cpu.log"; bad "pipeline --device cpu"; }
    "$ARGENT" train-bi --help | grep -q -- "--device D" && "$ARGENT" train-bi --help | grep -q -- "--precision P" &&
        ok "train-bi --help lists --device and --precision" || bad "train-bi --help lacks --device / --precision"
    finish
    ;;
emu_train)
    prepare pairs sts tiny cls
    bi "$ARGENT" 1 "$W/bi-cpu" --data "$W/pairs.h5" --loss mnrl --eval "$W/sts.h5" --device cpu ||
        { cat "$W/bi-cpu.log"; bad "train-bi on the CPU"; }
    bi "$EMU" 1 "$W/bi-gpu" --data "$W/pairs.h5" --loss mnrl --eval "$W/sts.h5" --device cuda ||
        { cat "$W/bi-gpu.log"; bad "train-bi --device cuda (emulator)"; }
    on_gpu "$W/bi-gpu.log" && ok "train-bi: $(grep -o 'computing on the GPU [^;]*' "$W/bi-gpu.log")" ||
        { cat "$W/bi-gpu.log"; bad "train-bi --device cuda did not compute on the (emulated) GPU"; }
    compare losses "$W/bi-cpu" "$W/bi-gpu" 1e-4 "train-bi mnrl: 20 step losses, device == CPU within 1e-4"
    # The attention key biases are left out of the parameter comparisons: their true gradient
    # is 0 (softmax ignores a shift common to a row), so theirs is rounding noise, which
    # AdamW turns into steps of about lr whatever its size (docs/cuda.md, tolerances).
    compare h5 "$W/bi-cpu/model.h5" "$W/bi-gpu/model.h5" 1e-4 "train-bi mnrl: final parameters within 1e-4" \
        --skip attention.self.key.bias
    g1=$(grep '"eval"' "$W/bi-cpu/metrics.jsonl" | tail -n 1 | sed -n 's/.*"spearman_cosine":\([-0-9.eE+]*\).*/\1/p')
    g2=$(grep '"eval"' "$W/bi-gpu/metrics.jsonl" | tail -n 1 | sed -n 's/.*"spearman_cosine":\([-0-9.eE+]*\).*/\1/p')
    [ -n "$g1" ] && awk -v a="$g1" -v b="$g2" 'BEGIN { d = a - b; exit !(d < 1e-4 && d > -1e-4) }' &&
        ok "train-bi evaluation on the device: spearman_cosine $g2 (CPU $g1)" || bad "evaluation: '$g1' vs '$g2'"
    # Resume on the device: the checkpoint at step 10 holds the device's parameters and AdamW
    # moments (downloaded for it), the second run uploads them again: the uninterrupted run's
    # numbers within 1e-5 (evaluation does not change the training, so it is left out here).
    bi "$EMU" 1 "$W/bi-res" --data "$W/pairs.h5" --loss mnrl --device cuda --stop-after 10
    rc=$?
    [ $rc = 85 ] && [ -s "$W/bi-res/checkpoints/ckpt-000010.h5" ] && ok "train-bi --device cuda --stop-after 10: exit 85, checkpoint" ||
        { cat "$W/bi-res.log"; bad "train-bi --device cuda --stop-after 10: exit $rc"; }
    bi "$EMU" 1 "$W/bi-res" --data "$W/pairs.h5" --loss mnrl --device cuda --stop-after 10 ||
        { cat "$W/bi-res.log"; bad "train-bi --device cuda resumed"; }
    grep -q "resumed from .*ckpt-000010.h5" "$W/bi-res.log" && ok "train-bi --device cuda resumed from step 10" ||
        { cat "$W/bi-res.log"; bad "the second run did not resume from step 10"; }
    compare losses "$W/bi-gpu" "$W/bi-res" 1e-5 "train-bi on the device, stopped and resumed: losses == uninterrupted within 1e-5"
    compare h5 "$W/bi-gpu/model.h5" "$W/bi-res/model.h5" 1e-5 "train-bi on the device, stopped and resumed: model within 1e-5"
    # SoftmaxLoss: its classifier is host code in the same table (a declared head), 10 steps.
    STEPS=10 bi "$ARGENT" 1 "$W/smx-cpu" --data "$W/cls.h5" --loss softmax --device cpu ||
        { cat "$W/smx-cpu.log"; bad "train-bi --loss softmax on the CPU"; }
    STEPS=10 bi "$EMU" 1 "$W/smx-cuda" --data "$W/cls.h5" --loss softmax --device cuda ||
        { cat "$W/smx-cuda.log"; bad "train-bi --loss softmax --device cuda (emulator)"; }
    compare h5 "$W/smx-cpu/checkpoints/ckpt-000010.h5" "$W/smx-cuda/checkpoints/ckpt-000010.h5" 1e-4 \
        "train-bi softmax: checkpoint (classifier and AdamW moments included) within 1e-4" --skip attention.self.key.bias
    xc() {  # PROG DIR DEVICE
        mpi 1 "$1" train-cross --model "$W/tiny/bi.h5" --train "$W/tiny/train.h5" --out "$2" --lr 1e-3 --batch "$BATCH" \
            --steps 20 --max-length 16 --seed 3 --ckpt-every 0 --device "$3" > "$2.log" 2>&1
    }
    xc "$ARGENT" "$W/xc-cpu" cpu || { cat "$W/xc-cpu.log"; bad "train-cross on the CPU"; }
    xc "$EMU" "$W/xc-gpu" cuda || { cat "$W/xc-gpu.log"; bad "train-cross --device cuda (emulator)"; }
    on_gpu "$W/xc-gpu.log" || bad "train-cross did not compute on the (emulated) GPU"
    compare losses "$W/xc-cpu" "$W/xc-gpu" 1e-4 "train-cross: 20 step losses within 1e-4"
    compare h5 "$W/xc-cpu/model.h5" "$W/xc-gpu/model.h5" 1e-4 "train-cross: final parameters (classifier included) within 1e-4" \
        --skip attention.self.key.bias
    ts() {  # PROG DIR DEVICE
        mpi 1 "$1" tsdae --model "$W/bi-cpu/model.h5" --data "$W/pairs.h5" --max-sentences 40 --batch "$BATCH" --steps 20 \
            --lr 1e-3 --seed 5 --ckpt-every 0 --max-length 12 --device "$3" --out "$2" > "$2.log" 2>&1
    }
    ts "$ARGENT" "$W/ts-cpu" cpu || { cat "$W/ts-cpu.log"; bad "tsdae on the CPU"; }
    ts "$EMU" "$W/ts-gpu" cuda || { cat "$W/ts-gpu.log"; bad "tsdae --device cuda (emulator)"; }
    on_gpu "$W/ts-gpu.log" || bad "tsdae did not compute on the (emulated) GPU"
    compare losses "$W/ts-cpu" "$W/ts-gpu" 1e-4 "tsdae: 20 step losses within 1e-4"
    compare h5 "$W/ts-cpu/checkpoints/ckpt-000020.h5" "$W/ts-gpu/checkpoints/ckpt-000020.h5" 1e-4 \
        "tsdae: checkpoint (encoder, decoder, AdamW moments) within 1e-4" --skip attention.self.key.bias
    # 16-bit precisions, a smoke test: 4 steps run, say what they use, and the losses stay
    # within 5e-2 of the fp32 CPU's (fp16 may skip a first step while its loss scale backs off).
    for p in bf16 fp16; do
        STEPS=4 bi "$EMU" 1 "$W/bi-$p" --data "$W/pairs.h5" --loss mnrl --device cuda --precision "$p" ||
            { cat "$W/bi-$p.log"; bad "train-bi --precision $p (emulator)"; continue; }
    done
    STEPS=4 bi "$ARGENT" 1 "$W/bi-cpu4" --data "$W/pairs.h5" --loss mnrl --device cpu || bad "train-bi 4 steps on the CPU"
    grep -q "computing on the GPU 0 ([^)]*), bf16" "$W/bi-bf16.log" && grep -q "fp16.*with dynamic loss scaling" "$W/bi-fp16.log" &&
        ok "bf16 / fp16: $(grep -o 'GPU 0 ([^;]*' "$W/bi-bf16.log"); $(grep -o 'GPU 0 ([^;]*' "$W/bi-fp16.log")" ||
        bad "bf16 / fp16 did not say their precision"
    compare losses "$W/bi-cpu4" "$W/bi-bf16" 5e-2 "train-bi bf16: 4 step losses within 5e-2 of fp32"
    compare losses "$W/bi-cpu4" "$W/bi-fp16" 5e-2 "train-bi fp16 (loss scaling): 4 step losses within 5e-2 of fp32"
    # fp16 across a resume: the loss scale and its growth tracker are in the checkpoint, so a
    # run stopped after an overflow goes on with the backed-off scale (a fresh scaler would
    # start again at 65536). The overflow is injected at step 2 (ARGENT_FAULT
    # fail:overflow=2: the fp16 check finds an inf/NaN there, as a real one would).
    OVF=fail:overflow=2
    ARGENT_FAULT=$OVF STEPS=8 bi "$EMU" 1 "$W/fp16-a" --data "$W/pairs.h5" --loss mnrl --device cuda --precision fp16 ||
        { cat "$W/fp16-a.log"; bad "train-bi fp16 8 steps with an overflow at step 2"; }
    # (this tiny run also overflows by itself at step 0: the scale is then 16384 after step 2)
    want=$(grep -o "step [0-3]: inf/NaN in the fp16 gradient, step skipped, loss scale now [0-9]*" "$W/fp16-a.log" |
           tail -n 1 | awk '{ print $NF }')
    grep -q "step 2: inf/NaN in the fp16 gradient, step skipped" "$W/fp16-a.log" && [ -n "$want" ] &&
        ok "fp16: the overflow at step 2 skipped that step; scale $want at step 4" ||
        { cat "$W/fp16-a.log"; bad "fp16: step 2 was not skipped"; }
    ARGENT_FAULT=$OVF STEPS=8 bi "$EMU" 1 "$W/fp16-b" --data "$W/pairs.h5" --loss mnrl --device cuda --precision fp16 \
        --stop-after 4
    rc=$?
    [ $rc = 85 ] && ok "fp16 --stop-after 4: exit 85" || { cat "$W/fp16-b.log"; bad "fp16 --stop-after 4: exit $rc"; }
    ARGENT_FAULT=$OVF STEPS=8 bi "$EMU" 1 "$W/fp16-b" --data "$W/pairs.h5" --loss mnrl --device cuda --precision fp16 \
        --stop-after 4 || { cat "$W/fp16-b.log"; bad "fp16 resumed"; }
    grep -q "fp16 loss scale $want restored (growth tracker 1)" "$W/fp16-b.log" &&
        ok "fp16 resumed with the checkpoint's loss scale $want and growth tracker 1" ||
        { cat "$W/fp16-b.log"; bad "fp16: the loss scale was not restored"; }
    scale_of() {  # the loss-scale attributes of a checkpoint, "scale tracker"
        python3 -c 'import sys, h5py; a = h5py.File(sys.argv[1], "r").attrs
print(float(a["loss_scale"]), int(a["loss_scale_growth_tracker"]))' "$1" 2>&1
    }
    sa=$(scale_of "$W/fp16-a/checkpoints/ckpt-000008.h5") sb=$(scale_of "$W/fp16-b/checkpoints/ckpt-000008.h5")
    [ "$sa" = "$want.0 5" ] && [ "$sb" = "$sa" ] &&
        ok "fp16: the final checkpoints hold the same loss scale and tracker ($sa)" ||
        bad "fp16: final loss scale / tracker: uninterrupted '$sa', resumed '$sb' (expected '$want.0 5')"
    compare losses "$W/fp16-a" "$W/fp16-b" 1e-5 "fp16 stopped after the overflow and resumed: losses == uninterrupted within 1e-5"
    # The comparison is not blind: the CPU with another seed differs from the device run.
    mpi 1 "$ARGENT" train-bi "${MODEL_ARGS[@]}" --out "$W/bi-cpu-seed" --lr 1e-3 --steps 20 --batch "$BATCH" \
        --ckpt-every 0 --seed 8 --data "$W/pairs.h5" --loss mnrl --device cpu > "$W/bi-cpu-seed.log" 2>&1 ||
        bad "train-bi seed 8"
    if $CMP h5 "$W/bi-gpu/model.h5" "$W/bi-cpu-seed/model.h5" --rel 1e-4 --skip attention.self.key.bias > /dev/null; then
        bad "another seed gives the same parameters within 1e-4: the comparison is blind"
    else
        ok "another seed differs beyond 1e-4, as expected"
    fi
    finish
    ;;
emu_np2)
    prepare pairs
    BATCH=5  # uneven slices: 3 + 2
    bi "$ARGENT" 1 "$W/cpu-np1" --data "$W/pairs.h5" --loss mnrl --device cpu || { cat "$W/cpu-np1.log"; bad "cpu np 1"; }
    bi "$EMU" 2 "$W/gpu-np2" --data "$W/pairs.h5" --loss mnrl --device cuda || { cat "$W/gpu-np2.log"; bad "cuda np 2"; }
    on_gpu "$W/gpu-np2.log" && ok "np 2: $(grep -o 'computing on the GPU [^;]*' "$W/gpu-np2.log")" ||
        { cat "$W/gpu-np2.log"; bad "np 2 did not compute on the (emulated) GPU"; }
    compare losses "$W/cpu-np1" "$W/gpu-np2" 1e-4 "train-bi --device cuda at np 2 == CPU at np 1: losses within 1e-4"
    compare h5 "$W/cpu-np1/model.h5" "$W/gpu-np2/model.h5" 1e-4 "train-bi --device cuda at np 2 == CPU at np 1: parameters" \
        --skip attention.self.key.bias  # rounding noise amplified by AdamW, see emu_train
    grep -q "training: AdamW on the device" "$W/gpu-np2.log" && grep -q "gradient reduction: host allreduce" "$W/gpu-np2.log" &&
        ok "np 2, the default: AdamW on the device, the device gradient reduced through the host" ||
        { cat "$W/gpu-np2.log"; bad "np 2: the default did not say AdamW on the device / host allreduce"; }
    # The host-staged fallback (host AdamW, parameters uploaded each step) gives the same.
    ARGENT_DEVICE_OPTIM=host bi "$EMU" 2 "$W/gpu-np2-host" --data "$W/pairs.h5" --loss mnrl --device cuda ||
        { cat "$W/gpu-np2-host.log"; bad "cuda np 2, ARGENT_DEVICE_OPTIM=host"; }
    grep -q "training: AdamW on the host (ARGENT_DEVICE_OPTIM=host)" "$W/gpu-np2-host.log" &&
        ok "ARGENT_DEVICE_OPTIM=host: AdamW on the host" || { cat "$W/gpu-np2-host.log"; bad "ARGENT_DEVICE_OPTIM=host not taken"; }
    compare losses "$W/cpu-np1" "$W/gpu-np2-host" 1e-4 "ARGENT_DEVICE_OPTIM=host at np 2 == CPU at np 1: losses within 1e-4"
    compare h5 "$W/cpu-np1/model.h5" "$W/gpu-np2-host/model.h5" 1e-4 "ARGENT_DEVICE_OPTIM=host at np 2 == CPU at np 1: parameters" \
        --skip attention.self.key.bias
    STEPS=1 ARGENT_DEVICE_OPTIM=gpu bi "$EMU" 1 "$W/badopt" --data "$W/pairs.h5" --device cuda
    rc=$?
    [ $rc -ne 0 ] && grep -q "ARGENT_DEVICE_OPTIM='gpu': expected device (the default) or host" "$W/badopt.log" &&
        ok "ARGENT_DEVICE_OPTIM=gpu refused (exit $rc)" || { cat "$W/badopt.log"; bad "ARGENT_DEVICE_OPTIM=gpu: exit $rc"; }
    finish
    ;;
emu_infer)
    prepare tiny
    lab() {  # PROG DIR DEVICE NP
        mpi "$4" "$1" label --model "$W/tiny/cross.h5" --data "$W/tiny/pool.h5" --out "$2/silver.h5" --chunk-size 64 \
            --batch 16 --quiet --device "$3" > "$2.log" 2>&1
    }
    mkdir -p "$W/lab-cpu" "$W/lab-gpu"
    lab "$ARGENT" "$W/lab-cpu" cpu 1 || { cat "$W/lab-cpu.log"; bad "label on the CPU"; }
    lab "$EMU" "$W/lab-gpu" cuda 2 || { cat "$W/lab-gpu.log"; bad "label --device cuda (emulator, np 2)"; }
    on_gpu "$W/lab-gpu.log" || { cat "$W/lab-gpu.log"; bad "label did not compute on the (emulated) GPU"; }
    compare h5 "$W/lab-cpu/silver.h5" "$W/lab-gpu/silver.h5" 0 "label: silver dataset identical (hard labels)" --exact label
    compare h5 "$W/lab-cpu/silver.scores.h5" "$W/lab-gpu/silver.scores.h5" 1e-5 "label: scores within 1e-5"
    python3 - "$W/lab-cpu/silver.scores.h5" "$W/lab-gpu/silver.scores.h5" <<'PY' && ok "label: the label column identical" || bad "label column"
import sys, h5py, numpy as np
a, b = (h5py.File(p, "r")["scores"][()] for p in sys.argv[1:3])
sys.exit(0 if np.array_equal(a[:, -1], b[:, -1]) and a.shape[0] > 0 else 1)
PY
    enc() {  # PROG OUT DEVICE NP
        mpi "$4" "$1" encode --model "$W/tiny/bi.h5" --input "$W/tiny/pool.h5" --out "$2" --batch 64 --max-length 12 --device "$3" \
            > "$2.log" 2>&1
    }
    enc "$ARGENT" "$W/emb-cpu.h5" cpu 1 || { cat "$W/emb-cpu.h5.log"; bad "encode on the CPU"; }
    enc "$EMU" "$W/emb-gpu.h5" cuda 1 || { cat "$W/emb-gpu.h5.log"; bad "encode --device cuda (emulator)"; }
    on_gpu "$W/emb-gpu.h5.log" || { cat "$W/emb-gpu.h5.log"; bad "encode did not compute on the (emulated) GPU"; }
    compare h5 "$W/emb-cpu.h5" "$W/emb-gpu.h5" 1e-5 "encode: embeddings within 1e-5"
    finish
    ;;
*)
    echo "usage: test_device.sh nogpu|emu_train|emu_np2|emu_infer ARGENT EMU MAKE_TINY_CROSS MPIEXEC WORK SOURCE_DIR"
    exit 2
    ;;
esac
