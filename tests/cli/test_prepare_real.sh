#!/bin/sh
# `argent prepare` through the real program on the real data, checked by Python alone:
# h5py reads the output (the schema explains itself), Python's csv module reads the source,
# Hugging Face's BertTokenizer gives the word pieces (tests/cli/check_dataset.py).
# STS-B dev (1,500 pairs, scores / 5, at np 2), MRPC val (TSV with BOM, CRLF, header and
# quotes inside fields) and STS-B train (1,374 rows with quoted commas).
# usage: test_prepare_real.sh ARGENT MPIEXEC SHARED_DIR WORK_DIR SOURCE_DIR
# Exit 77 (skipped) without the data, h5py or transformers.
set -u
argent=$1 mpiexec=$2 data=$3/data work=$4 src=$5
check="python3 $src/tests/cli/check_dataset.py"
vocab=$data/vocab/bert-base-uncased-vocab.txt
fail() { echo "FAIL: $*"; exit 1; }

# the program's own usage paths first: these need no data
"$argent" prepare --help >/dev/null || fail "argent prepare --help did not exit 0"
"$argent" prepare --input x.csv --out x.h5 2>/dev/null
[ $? -eq 2 ] || fail "a missing --vocab did not exit 2"

[ -f "$data/stsb/stsb-en-dev.csv" ] && [ -f "$vocab" ] || { echo "SKIPPED: $data not found"; exit 77; }
python3 -c "import h5py, transformers" 2>/dev/null || { echo "SKIPPED: python3 with h5py and transformers needed"; exit 77; }
mkdir -p "$work"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

"$mpiexec" -n 2 --allow-run-as-root --oversubscribe "$argent" prepare --input "$data/stsb/stsb-en-dev.csv" \
    --b 1 --label 2 --score-scale 0:5 --vocab "$vocab" --out "$work/stsb-dev.h5" || fail "prepare STS-B dev"
$check "$work/stsb-dev.h5" "$data/stsb/stsb-en-dev.csv" --scale 5 --vocab "$vocab" --expect-pairs 1500 \
    || fail "STS-B dev differs from Python's reading"

"$argent" prepare --input "$data/mrpc/msr-para-val.tsv" --a "#1 String" --b "#2 String" --label Quality \
    --label-kind class --vocab "$vocab" --out "$work/mrpc-val.h5" || fail "prepare MRPC val"
$check "$work/mrpc-val.h5" "$data/mrpc/msr-para-val.tsv" --format tsv --header --a 3 --b 4 --label 0 \
    --kind class --vocab "$vocab" --expect-pairs 500 || fail "MRPC val differs from Python's reading"

"$argent" prepare --input "$data/stsb/stsb-en-train.csv" --b 1 --label 2 --score-scale 0:5 --vocab "$vocab" \
    --out "$work/stsb-train.h5" || fail "prepare STS-B train"
$check "$work/stsb-train.h5" "$data/stsb/stsb-en-train.csv" --scale 5 --expect-pairs 5749 \
    || fail "STS-B train differs from Python's csv module"
echo "all real-data checks passed"
