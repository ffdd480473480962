/* OpenBLAS kernel selection by re-exec; see blas_env.h for why. */
#include "nn/blas_env.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

char *openblas_get_corename(void);  /* OpenBLAS extension, not in cblas.h */

int openblas_get_parallel(void);    /* 0 serial, 1 pthreads, 2 OpenMP */

const char *ag_blas_corename(void) { return openblas_get_corename(); }

int ag_blas_is_openmp(void) { return openblas_get_parallel() == 2; }

void ag_blas_tune_reexec(char **argv) {
    const char *off = getenv("ARGENT_BLAS_REEXEC");
    if (getenv("OPENBLAS_CORETYPE") || (off && !strcmp(off, "0"))) return;
    const char *core = openblas_get_corename();
    if (!core || (strcasecmp(core, "prescott") && strcasecmp(core, "core2") && strcasecmp(core, "unknown")))
        return;  /* OpenBLAS recognised the CPU */
    __builtin_cpu_init();
    const char *want = NULL;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl"))
        want = "SkylakeX";
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        want = "Haswell";
    if (!want) return;
    setenv("OPENBLAS_CORETYPE", want, 1);
    execv("/proc/self/exe", argv);
    /* exec failed: keep running with the generic kernels */
}
