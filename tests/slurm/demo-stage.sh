#!/bin/sh
# Stand-in for the real argent stages in the Slurm pipeline test, set as ARGENT for
# slurm/lib.sh: `demo-stage.sh STAGE ARGS...` runs `argent demo ARGS...` (a real,
# data-parallel training run over the MPI ranks srun starts), whatever STAGE is.
# ARGENT_DEMO_BIN names the argent program. Once the jobs issue's stages exist, the
# slurm_real_* tests run them directly and this stand-in is only a smoke test of the chain.
stage=$1
shift
echo "demo-stage: running 'argent demo $*' in place of stage '$stage'"
exec "${ARGENT_DEMO_BIN:?ARGENT_DEMO_BIN must name the argent program}" demo "$@"
