#!/usr/bin/env bash
# slurm/submit without a Slurm cluster (runs everywhere): a fake `sbatch` first on PATH
# hands out job ids and logs each command and the environment it got. Checked: the recipe
# format (variables, quoting, continuations, per-stage sbatch options, errors naming
# file:line), the afterok chain with --kill-on-invalid-dep=yes, partitions and GPUs, the
# label array's merge job, --from/--to, --dry-run's output (run as a shell script, it submits
# the same jobs), and cancelling what was submitted when a later sbatch fails.
#
#   tests/slurm/test-submit.sh WORKDIR
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$(cd "$here/../.." && pwd)
submit=$src/slurm/submit
work=${1:?usage: test-submit.sh WORKDIR}/submit
rm -rf "$work"
mkdir -p "$work/bin"
work=$(cd "$work" && pwd)
command -v python3 >/dev/null || { echo "test-submit: SKIP: python3 is not installed" >&2; exit 77; }

cat > "$work/bin/sbatch" <<'EOF'
#!/usr/bin/env bash
n=$(( $(cat "$FAKE_DIR/next" 2>/dev/null || echo 100) + 1 ))
echo "$n" > "$FAKE_DIR/next"
for a in "$@"; do printf '[%s]' "$a"; done >> "$FAKE_DIR/sbatch.log"
echo " ARGENT_SLURM_DIR=${ARGENT_SLURM_DIR:-} ARGENT=${ARGENT:-}" >> "$FAKE_DIR/sbatch.log"
if [ -n "${FAKE_FAIL_AT:-}" ] && [ "$n" = "$FAKE_FAIL_AT" ]; then
  echo "sbatch: error: Batch job submission failed: Invalid partition name specified" >&2
  exit 1
fi
echo "$n"
EOF
cat > "$work/bin/scancel" <<'EOF'
#!/usr/bin/env bash
echo "scancel $*" >> "$FAKE_DIR/scancel.log"
EOF
chmod +x "$work/bin/sbatch" "$work/bin/scancel"
export PATH=$work/bin:$PATH FAKE_DIR=$work
unset ARGENT ARGENT_SLURM_DIR FAKE_FAIL_AT

failures=0
check() {
  local what=$1
  shift
  if "$@"; then echo "test-submit: ok: $what"; else echo "test-submit: FAIL: $what"; failures=$((failures + 1)); fi
}
has() { grep -qF -- "$2" "$1"; }
line() { sed -n "$2p" "$1"; }   # line FILE N
reset() { rm -f "$work/next" "$work/sbatch.log" "$work/scancel.log"; }

cat > "$work/a.recipe" <<'EOF'
# A pipeline with everything the format has.
set RUN=$WORK/run one
set VOCAB=${RUN}/vocab.txt

prepare: --input "in file.csv" --vocab $VOCAB --out $RUN/gold.h5   # a comment
train-cross --time=2:00:00 --gres=gpu:2: --data $RUN/gold.h5 \
    --out $RUN/cross --note 'a: b'
label --array=0-3%2 --time 30: --model $RUN/cross --out $RUN/silver.h5
train-bi: --price $$5 --out $RUN/bi
eval: --model $RUN/bi
EOF

# 1. A real submission (fake sbatch).
reset
WORK=/w "$submit" "$work/a.recipe" --argent /opt/argent/bin/argent --gpu-partition gpu -p cpu \
  --sbatch-args "--account=proj --mem=8G" > "$work/out" 2> "$work/err"
check "submit exits 0" test $? = 0
check "one 'STAGE JOBID' line per job" test "$(cat "$work/out" | tr '\n' ' ')" = \
  "prepare 101 train-cross 102 label 103 label-merge 104 train-bi 105 eval 106 "
log=$work/sbatch.log
check "prepare: argent-run.sbatch, CPU partition, quoted words kept" has "$log" \
  "[--parsable][--partition=cpu][--account=proj][--mem=8G][$src/slurm/argent-run.sbatch][prepare][--input][in file.csv][--vocab][/w/run one/vocab.txt][--out][/w/run one/gold.h5] "
check "train-cross: GPU partition, stage options after the global ones, chained, continuation joined" has "$log" \
  "[--parsable][--partition=gpu][--gpus-per-node=1][--account=proj][--mem=8G][--time=2:00:00][--gres=gpu:2][--dependency=afterok:101][--kill-on-invalid-dep=yes][$src/slurm/argent-train-cross.sbatch][--data][/w/run one/gold.h5][--out][/w/run one/cross][--note][a: b] "
check "label: an array after train-cross" has "$log" \
  "[--array=0-3%2][--time][30][--dependency=afterok:102][--kill-on-invalid-dep=yes][$src/slurm/argent-label.sbatch][--model]"
check "label-merge: one task, no --array, after the array, same arguments" has "$log" \
  "[--time][30][--job-name=argent-label-merge][--nodes=1][--ntasks-per-node=1][--ntasks=1][--dependency=afterok:103][--kill-on-invalid-dep=yes][$src/slurm/argent-label.sbatch][--model][/w/run one/cross][--out][/w/run one/silver.h5] "
check "train-bi after the merge; \$\$ is a literal \$" has "$log" \
  "[--dependency=afterok:104][--kill-on-invalid-dep=yes][$src/slurm/argent-train-bi.sbatch][--price][\$5][--out][/w/run one/bi] "
check "eval on the GPU partition, last" has "$(printf '%s' "$log")" "[--dependency=afterok:105][--kill-on-invalid-dep=yes][$src/slurm/argent-eval.sbatch][--model][/w/run one/bi] "
check "the jobs get ARGENT_SLURM_DIR and ARGENT" test "$(grep -c " ARGENT_SLURM_DIR=$src/slurm ARGENT=/opt/argent/bin/argent\$" "$log")" = 6

# 2. NAME=VALUE overrides the recipe; --from/--to; --after; --log-dir; --gpus-per-node.
reset
"$submit" "$work/a.recipe" RUN=/r WORK=/unused --from train-cross --to label --after 77 \
  --log-dir "$work/logs" --gpus-per-node 2 > "$work/out" 2> "$work/err"
check "--from/--to: train-cross, label and its merge" test "$(awk '{print $1}' "$work/out" | tr '\n' ' ')" = "train-cross label label-merge "
check "--after: the first stage waits for job 77" has "$(line "$log" 1 > "$work/l1"; echo "$work/l1")" "[--dependency=afterok:77][--kill-on-invalid-dep=yes]"
check "NAME=VALUE wins over the recipe's set" has "$log" "[--out][/r/cross]"
check "--log-dir: %x-%j.out, arrays %x-%A_%a.out" has "$log" "[--output=$work/logs/%x-%A_%a.out]"
check "--log-dir is created" test -d "$work/logs"
check "--gpus-per-node without a GPU partition" has "$log" "[--gpus-per-node=2][--output=$work/logs/%x-%j.out][--time=2:00:00]"

# 3. --dry-run prints a shell script that submits the same jobs.
reset
WORK=/w "$submit" -n "$work/a.recipe" --argent /opt/argent/bin/argent > "$work/dry.sh"
check "--dry-run submits nothing" test ! -e "$log"
check "--dry-run chains through shell variables" has "$work/dry.sh" '--dependency=afterok:"$job1"'
sh "$work/dry.sh" > "$work/out"
check "the dry-run script runs and submits the 6 jobs" test "$(wc -l < "$log")" = 6
check "with the same chain" has "$log" "[--dependency=afterok:105][--kill-on-invalid-dep=yes][$src/slurm/argent-eval.sbatch]"

# 4. A failing sbatch: exit 1, the message, the jobs already submitted are cancelled.
reset
WORK=/w FAKE_FAIL_AT=103 "$submit" "$work/a.recipe" > "$work/out" 2> "$work/err"
check "a failed sbatch: exit 1" test $? = 1
check "the error names the stage and sbatch's message" has "$work/err" "sbatch failed for stage label (exit 1): sbatch: error: Batch job submission failed: Invalid partition name"
check "the stages already submitted are cancelled" has "$work/scancel.log" "scancel 101 102"

# 5. Bad recipes: exit 2 and a message naming file:line.
bad() {   # bad "recipe text" "expected message part"
  printf '%b' "$1" > "$work/bad.recipe"
  "$submit" -n "$work/bad.recipe" > /dev/null 2> "$work/err"
  local rc=$?
  check "bad recipe ($2)" test "$rc" = 2 -a -n "$(grep -F -- "$2" "$work/err")"
}
bad 'prepare: --a 1\nnonsense here\n' "bad.recipe:2: expected 'set NAME=VALUE' or 'STAGE"
bad 'train-cross: --out $NOPE_X/y\n' 'bad.recipe:1: $NOPE_X is not defined'
bad 'train-cross --time=1:00 oops: --a\n' "bad.recipe:1: 'oops' before the colon is not an sbatch option"
bad 'Train: --a\n' 'bad.recipe:1: the stage name must be an argent command'
bad 'train-cross --dependency=afterok:5: --a\n' 'bad.recipe:1: the submitter sets --dependency itself'
bad 'train-cross: --a "unclosed\n' 'bad.recipe:1: No closing quotation'
bad '# nothing\n\n' 'bad.recipe: the recipe has no stages'
"$submit" -n "$work/a.recipe" WORK=/w --from nosuch > /dev/null 2> "$work/err"
check "--from an unknown stage: exit 2, lists the stages" test $? = 2 -a -n "$(grep -F "no stage 'nosuch'" "$work/err")"
"$submit" -n "$work/missing.recipe" > /dev/null 2> "$work/err"
check "a missing recipe: exit 2 naming it" test $? = 2 -a -n "$(grep -F "missing.recipe: cannot read the recipe" "$work/err")"

# 6. The example recipe of the real tests parses.
"$submit" -n "$here/real-small.recipe" WORK=/w DATA=/d MINILM=/m > "$work/real.sh"
check "tests/slurm/real-small.recipe parses" test $? = 0 -a "$(grep -c '^job[0-9]*=' "$work/real.sh")" = 8

if [ $failures -gt 0 ]; then
  echo "---- sbatch log"; cat "$log" 2>/dev/null
  echo "test-submit: $failures check(s) failed"
  exit 1
fi
echo "test-submit: passed"
