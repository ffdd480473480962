#!/usr/bin/env bash
# Stop a test cluster made by tests/slurm/slurm-up.sh and remove its directory:
#
#   tests/slurm/slurm-down.sh DIR [--keep]      (--keep leaves DIR and its logs in place)
#
# Order: cancel the cluster's jobs (so slurmstepd and the jobs' programs end the normal
# way), TERM the two daemons by the pids in DIR's pid files, KILL them after 10 s. Then any
# process still carrying this cluster's SLURM_CONF in its environment (a slurmstepd or a job
# program orphaned by a daemon that died) is killed by its pid. A pid is only signalled
# after checking that it still belongs to this cluster, so a reused pid is never hit.
# Safe to run twice and on a cluster that is already down.
set -uo pipefail
dir=${1:?usage: slurm-down.sh DIR [--keep]}
keep=0
[ "${2:-}" = "--keep" ] && keep=1
[ -d "$dir" ] || exit 0
dir=$(cd "$dir" && pwd)
conf=$dir/slurm.conf
PATH=$PATH:/usr/sbin
export SLURM_CONF=$conf

# Does pid $1 belong to this cluster? (a daemon started with -f CONF, or a process whose
# environment names CONF).
ours() {
  local pid=$1
  [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
  # (A zombie has an empty cmdline and no environ: never ours, it is already dead.)
  tr '\0' '\n' 2>/dev/null < "/proc/$pid/cmdline" | grep -qxF "$conf" && return 0
  tr '\0' '\n' 2>/dev/null < "/proc/$pid/environ" | grep -qxF "SLURM_CONF=$conf"
}
daemon_pids() {
  local f pid
  for f in "$dir/slurmd.pid" "$dir/slurmctld.pid"; do
    [ -f "$f" ] || continue
    read -r pid < "$f" 2>/dev/null || continue
    ours "$pid" && echo "$pid"
  done
}

if [ -f "$conf" ] && [ -n "$(daemon_pids)" ]; then
  # Cancel everything first; give the jobs a few seconds to end the normal way.
  timeout 10 scancel --full --quiet --user=root >/dev/null 2>&1 || true
  for _ in $(seq 1 10); do
    [ -z "$(timeout 5 squeue -h -t R,CG,S -o %i 2>/dev/null)" ] && break
    sleep 1
  done
fi

pids=$(daemon_pids)
if [ -n "$pids" ]; then
  kill -TERM $pids 2>/dev/null
  for _ in $(seq 1 20); do
    alive=""
    for p in $pids; do ours "$p" && alive="$alive $p"; done
    [ -z "$alive" ] && break
    sleep 0.5
  done
  for p in $pids; do ours "$p" && kill -KILL "$p" 2>/dev/null; done
fi

# Leftovers of this cluster only: slurmstepd and job programs that outlived the daemons
# (a job program carries SLURM_JOB_ID and this SLURM_CONF). This script and its callers
# also carry SLURM_CONF, so the chain of our ancestors is never touched.
ancestors=" "
a=$$
while [ -n "$a" ] && [ "$a" -gt 1 ] 2>/dev/null; do
  ancestors="$ancestors$a "
  a=$(awk '{print $4}' "/proc/$a/stat" 2>/dev/null)
done
for p in /proc/[0-9]*; do
  p=${p#/proc/}
  case "$ancestors" in *" $p "*) continue ;; esac
  ours "$p" || continue
  if [ "$(cat "/proc/$p/comm" 2>/dev/null)" = slurmstepd ] ||
     tr '\0' '\n' 2>/dev/null < "/proc/$p/environ" | grep -q '^SLURM_JOB_ID='; then
    kill -KILL "$p" 2>/dev/null
  fi
done

left=$(daemon_pids)
if [ -n "$left" ]; then
  # Keep the directory (and its pid files) so that a later slurm-up can retry.
  echo "slurm-down: daemon pid(s) $(echo $left) of $dir did not stop" >&2
  exit 1
fi
if [ $keep = 0 ]; then
  rm -rf "$dir"
else
  rm -f "$dir/owner"
fi
exit 0
