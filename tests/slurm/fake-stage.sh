#!/usr/bin/env bash
# A stand-in for an argent stage in the Slurm tests, set as ARGENT for slurm/lib.sh:
#
#   fake-stage.sh STAGE --state DIR [--steps N] [--step-ms MS] [--exit CODE] [other args]
#
# It behaves like a training stage toward the batch script: it counts steps N (sleeping MS
# each), and on SIGUSR1 or SIGTERM it writes a "checkpoint" (the step counter, to a
# temporary name then renamed, as argent does) and exits 85, the "checkpointed, requeue
# me" code. Started again, it resumes from the saved counter. Every task (SLURM_PROCID) of
# every array task keeps its own counter in DIR. It also records, in DIR/events, one line
# per start, checkpoint and finish (with SLURM_RESTART_COUNT), which the tests read.
# --exit CODE exits at once with CODE (a failing stage). Unknown arguments are ignored, so
# a recipe can pass --array-task/--array-count and the like through it.
set -u
stage=${1:-?}
shift || true
state="" steps=20 step_ms=200 exit_code=""
args=("$@")
while [ $# -gt 0 ]; do
  case "$1" in
    --help) echo "usage: fake-stage.sh STAGE --state DIR [--steps N] [--step-ms MS] [--exit CODE]" \
                 "[--array-task I --array-count N]"; exit 0 ;;
    --state) state=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --step-ms) step_ms=$2; shift 2 ;;
    --exit) exit_code=$2; shift 2 ;;
    *) shift ;;
  esac
done
[ -n "$state" ] || { echo "fake-stage: --state DIR is required" >&2; exit 2; }
mkdir -p "$state"
rank=${SLURM_PROCID:-0}
tag="${SLURM_ARRAY_TASK_ID:+a${SLURM_ARRAY_TASK_ID}-}r$rank"
counter=$state/counter-$tag
restart=${SLURM_RESTART_COUNT:-0}
event() { echo "$* stage=$stage tag=$tag restart=$restart job=${SLURM_JOB_ID:-none} args=${args[*]}" >> "$state/events"; }

if [ -n "$exit_code" ]; then
  event "fail code=$exit_code"
  echo "fake-stage $stage [$tag]: failing on purpose with exit code $exit_code" >&2
  exit "$exit_code"
fi

step=0
[ -f "$counter" ] && read -r step < "$counter"
event "start step=$step"
echo "fake-stage $stage [$tag]: start at step $step of $steps (SLURM_RESTART_COUNT=$restart)"

stop=""
trap 'stop=USR1' USR1
trap 'stop=TERM' TERM
sleep_s=$(awk -v ms="$step_ms" 'BEGIN { printf "%.3f", ms / 1000 }')
while [ "$step" -lt "$steps" ]; do
  if [ -n "$stop" ]; then
    echo "$step" > "$counter.tmp" && mv -f "$counter.tmp" "$counter"
    event "checkpoint step=$step signal=$stop"
    echo "fake-stage $stage [$tag]: SIG$stop at step $step: checkpoint written, exit 85"
    exit 85
  fi
  sleep "$sleep_s" & wait $!
  step=$((step + 1))
done
echo "$step" > "$counter.tmp" && mv -f "$counter.tmp" "$counter"
event "done step=$step"
echo "fake-stage $stage [$tag]: done at step $step"
exit 0
