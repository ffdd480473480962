/* Device mirrors of parameter tables: the same tensor table (names, shapes, offsets) with
 * data and grad in device memory, so that model code (nn/bert.c) runs unchanged with
 * m->ops = &ag_ops_cuda. Copies between the host table and its mirror go through the
 * backend's transfer ops. */
#include <stdlib.h>
#include <string.h>

#include "nn/cuda/cuda.h"
#include "nn/cuda/internal.h"
#include "nn/error.h"

int ag_cuda_params_mirror(ag_params *dev, const ag_params *host) {
    memset(dev, 0, sizeof *dev);
    if (!host->data || !host->grad)
        return ag_err("cuda params: the host table is not allocated (call ag_params_alloc first)");
    if (ag_cuda_init(-1)) return -1;
    size_t bytes = (host->total ? host->total : 1) * sizeof(float);
    dev->t = malloc((size_t)(host->n ? host->n : 1) * sizeof *dev->t);
    dev->data = ag_cuda_alloc(bytes);
    dev->grad = ag_cuda_alloc(bytes);
    if (!dev->t || !dev->data || !dev->grad) {
        int host_oom = !dev->t;
        ag_cuda_params_free(dev);
        if (host_oom) return ag_err("cuda params: out of host memory for a table of %d tensors", host->n);
        return ag_err("cuda params: out of device memory for 2 x %zu bytes (%zu parameters)", bytes,
                      host->total);
    }
    if (host->n) memcpy(dev->t, host->t, (size_t)host->n * sizeof *dev->t);
    dev->n = dev->cap = host->n;
    dev->total = host->total;
    ag_cuda_upload(dev->data, host->data, host->total * sizeof(float));
    ag_cuda_zero(dev->grad, host->total);
    if (ag_cuda_check()) {
        ag_err_ctx("cuda params: copying %zu parameters to the device", host->total);
        ag_cuda_params_free(dev);
        return -1;
    }
    return 0;
}

static int same_size(const ag_params *a, const ag_params *b, const char *what) {
    if (!a->data || !b->data)
        return ag_err("cuda params %s: a table is not allocated", what);
    if (a->total != b->total)
        return ag_err("cuda params %s: tables differ in size (%zu vs %zu floats)", what, a->total,
                      b->total);
    return 0;
}

int ag_cuda_params_upload(ag_params *dev, const ag_params *host, int want_grad) {
    if (same_size(dev, host, "upload")) return -1;
    ag_cuda_upload(dev->data, host->data, host->total * sizeof(float));
    if (want_grad) ag_cuda_upload(dev->grad, host->grad, host->total * sizeof(float));
    return ag_cuda_check() ? ag_err_ctx("cuda params upload") : 0;
}

int ag_cuda_params_download(ag_params *host, const ag_params *dev, int want_data, int want_grad) {
    if (same_size(host, dev, "download")) return -1;
    if (ag_cuda_check()) return ag_err_ctx("cuda params download (an earlier op failed)");
    if (want_data) ag_cuda_download(host->data, dev->data, dev->total * sizeof(float));
    if (want_grad) ag_cuda_download(host->grad, dev->grad, dev->total * sizeof(float));
    return ag_cuda_check() ? ag_err_ctx("cuda params download") : 0;
}

void ag_cuda_params_free(ag_params *dev) {
    free(dev->t);
    ag_cuda_free(dev->data);
    ag_cuda_free(dev->grad);
    memset(dev, 0, sizeof *dev);
}

void ag_cuda_params_zero_grad(ag_params *dev) {
    if (dev->grad && dev->total) ag_cuda_zero(dev->grad, dev->total);
}
