/* Backend choice for a --device option (ag_ops_select, see nn/cuda/cuda.h).
 * Built two ways: inside argent_cuda (ARGENT_HAVE_CUDA defined) it can hand out the CUDA
 * table; compiled on its own into a CPU-only program it is a stub that knows only the CPU
 * and says why "cuda" cannot work, so callers need no #ifdef of their own. */
#include <stdio.h>
#include <string.h>

#include "nn/cuda/cuda.h"
#include "nn/error.h"

#ifndef ARGENT_HAVE_CUDA
int ag_cuda_available(char *why, size_t n) {
    if (why && n)
        snprintf(why, n, "this build has no CUDA backend (configure with nvcc on the PATH and "
                         "-DARGENT_CUDA=ON)");
    return 0;
}
#endif

const ag_ops *ag_ops_select(const char *device) {
    int want_auto = !device || !device[0] || strcmp(device, "auto") == 0;
    if (device && strcmp(device, "cpu") == 0) return &ag_ops_cpu;
    if (!want_auto && strcmp(device, "cuda") != 0) {
        ag_err("--device '%s': unknown device, expected cpu, cuda or auto", device);
        return NULL;
    }
    char why[512];
    if (!ag_cuda_available(why, sizeof why)) {
        if (want_auto) return &ag_ops_cpu;
        ag_err("--device cuda: no CUDA device (%s); use --device cpu or auto", why);
        return NULL;
    }
#ifdef ARGENT_HAVE_CUDA
    if (ag_cuda_init(-1) == 0) return &ag_ops_cuda;
    if (want_auto) return &ag_ops_cpu;  /* a device exists but cannot run this build */
    ag_err_ctx("--device cuda");
    return NULL;
#else
    return &ag_ops_cpu;  /* not reached: the stub reports no device */
#endif
}
