#!/usr/bin/env bash
# Install what the Slurm tests need on Debian 12: Debian's Slurm 22.05 (`slurm-wlm`: slurmctld,
# slurmd, the client commands and the mpi_pmix plugin, which pulls in libpmix2). Idempotent.
# The tests start their own daemons (tests/slurm/slurm-up.sh); nothing is enabled as a
# service. (The same line belongs in scripts/install-deps.sh's --test package list.)
set -euo pipefail
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
debs=(slurm-wlm)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "tests/slurm/setup.sh: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
for prog in slurmctld slurmd sbatch srun scontrol; do
  command -v "$prog" >/dev/null 2>&1 || [ -x "/usr/sbin/$prog" ] ||
    { echo "tests/slurm/setup.sh: $prog is still missing after the install" >&2; exit 1; }
done
echo "tests/slurm/setup.sh: Slurm $(slurmctld -V 2>/dev/null || /usr/sbin/slurmctld -V) is installed"
