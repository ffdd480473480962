# Shared by the train-bi test drivers (sourced). Expects ARGENT, COMPARE, MPIEXEC, WORK set.
# prep: the synthetic datasets (tests/train/*.tsv, made by gen_synth.py) as argent datasets
# in $WORK. bi NP DIR ARGS...: one train-bi run of a tiny random model under mpirun.
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VOCAB="$HERE/vocab.txt"
MODEL_ARGS=(--fresh hidden=32,layers=2,heads=2,inter=64,maxpos=32 --vocab "$VOCAB" --max-length 16)
export OMP_NUM_THREADS=1

fail() { echo "FAIL: $*"; exit 1; }

prep() {
    mkdir -p "$WORK"
    local common=(--format tsv --header no --a 0 --b 1 --vocab "$VOCAB" --quiet)
    mpi 1 "$ARGENT" prepare --input "$HERE/pairs.tsv" "${common[@]}" --label 2 --out "$WORK/pairs.h5" >/dev/null || fail "prepare pairs"
    mpi 1 "$ARGENT" prepare --input "$HERE/sts.tsv" "${common[@]}" --label 2 --out "$WORK/sts.h5" >/dev/null || fail "prepare sts"
    mpi 1 "$ARGENT" prepare --input "$HERE/pairs.tsv" "${common[@]}" --label 3 --label-kind class --out "$WORK/cls.h5" \
        >/dev/null || fail "prepare classes"
    mpi 1 "$ARGENT" prepare --input "$HERE/sts.tsv" "${common[@]}" --label 3 --label-kind class --out "$WORK/sts_cls.h5" \
        >/dev/null || fail "prepare sts classes"
}

mpi() { local np=$1; shift; "$MPIEXEC" --allow-run-as-root --oversubscribe -np "$np" "$@"; }

# bi NP DIR [args]: runs train-bi, output in DIR.log; returns its exit code.
bi() {
    local np=$1 dir=$2; shift 2
    mpi "$np" "$ARGENT" train-bi "${MODEL_ARGS[@]}" --data "${DATA:-$WORK/pairs.h5}" --out "$dir" --lr "${LR:-1e-3}" "$@" \
        >>"$dir.log" 2>&1
}

# bi_bg NP DIR [args]: the same in the background; $! is then mpirun's own pid (exec), so
# that tests can signal mpirun or find the rank processes (its children).
bi_bg() {
    local np=$1 dir=$2; shift 2
    ( ARGENT_MPIEXEC_DIRECT=1 exec "$MPIEXEC" --allow-run-as-root --oversubscribe -np "$np" "$ARGENT" train-bi "${MODEL_ARGS[@]}" \
        --data "${DATA:-$WORK/pairs.h5}" --out "$dir" --lr "${LR:-1e-3}" "$@" >>"$dir.log" 2>&1 ) &
}
