/* --device / --precision and the host <-> device glue of the stages (see device.h). Built
 * with ARGENT_HAVE_CUDA when the program links the CUDA backend (argent_cuda, or the
 * emulator's argent_cuda_emu in tests); without it only the CPU exists and the CUDA calls
 * below are compiled out. */
#include "jobs/device.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist/comm.h"
#include "nn/cuda/cuda.h"
#include "nn/error.h"

#ifdef ARGENT_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "nn/cuda/amp.h"
#endif

int ag_device_open(ag_device *d, const char *device, const char *precision, int local_rank) {
    memset(d, 0, sizeof *d);
    d->ops = &ag_ops_cpu;
    d->device = -1;
    snprintf(d->what, sizeof d->what, "CPU");
    ag_scaler_for(&d->scaler, AG_PREC_FP32);
    if (!device || !*device) device = "auto";
    if (!precision || !*precision) precision = "fp32";
    if (ag_precision_parse(precision, &d->prec)) return ag_err_ctx("--precision");
    int is_cpu = !strcmp(device, "cpu"), is_auto = !strcmp(device, "auto");
    if (!is_cpu && !is_auto && strcmp(device, "cuda"))
        return ag_err("--device '%s': unknown device, expected cpu, cuda or auto", device);
    const char *need16 = "needs the GPU (--device cuda, or auto on a machine with one); the CPU computes in fp32";
    if (is_cpu) {
        if (d->prec != AG_PREC_FP32)
            return ag_err("--precision %s: %s, and --device cpu was given", ag_precision_name(d->prec), need16);
        return 0;
    }
    char why[512] = "";
    if (!ag_cuda_available(why, sizeof why)) {
        if (is_auto) {
            if (d->prec != AG_PREC_FP32)
                return ag_err("--precision %s: %s; no GPU here (%s)", ag_precision_name(d->prec), need16, why);
            snprintf(d->what, sizeof d->what, "CPU (--device auto: no usable GPU: %.200s)", why);
            return 0;
        }
        return ag_err("--device cuda: no CUDA device (%s); use --device cpu or auto", why);
    }
#ifdef ARGENT_HAVE_CUDA
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count < 1) {
        cudaGetLastError();
        count = 1;
    }
    int dev = (local_rank > 0 ? local_rank : 0) % count;
    if (ag_cuda_init(dev)) {
        if (!is_auto) return ag_err_ctx("--device cuda (GPU %d of node-local rank %d)", dev, local_rank);
        if (d->prec != AG_PREC_FP32)
            return ag_err_ctx("--precision %s: %s; GPU %d cannot be used", ag_precision_name(d->prec), need16, dev);
        snprintf(d->what, sizeof d->what, "CPU (--device auto: GPU %d cannot be used: %.200s)", dev, ag_errmsg());
        ag_err_clear();
        return 0;
    }
    const ag_ops *ops = ag_cuda_ops_for(d->prec);
    const char *mode = "fp32";
    if (!ops && d->prec != AG_PREC_FP32) {
        /* No 16-bit activation table in this build: fp32 activations, 16-bit matrix products. */
        ag_err_clear();
        if (ag_cuda_set_precision(d->prec)) return ag_err_ctx("--precision");
        ops = &ag_ops_cuda;
        mode = d->prec == AG_PREC_BF16 ? "bf16 matrix products, fp32 activations"
                                       : "fp16 matrix products, fp32 activations";
    } else if (!ops) {
        return ag_err_ctx("--precision");
    } else if (d->prec != AG_PREC_FP32) {
        mode = d->prec == AG_PREC_BF16 ? "bf16 activations" : "fp16 activations";
    }
    d->ops = ops;
    d->gpu = 1;
    d->device = dev;
    ag_scaler_for(&d->scaler, d->prec);
    snprintf(d->what, sizeof d->what, "GPU %d (%s), %s%s; %.200s", dev, ops->name, mode,
             d->scaler.enabled ? " with dynamic loss scaling" : "", why);
    if (count > 0 && ag_comm_get()->initialized && ag_comm_get()->local_size > count)
        snprintf(d->what + strlen(d->what), sizeof d->what - strlen(d->what),
                 "; %d ranks on this node share %d GPU(s)", ag_comm_get()->local_size, count);
    return 0;
#else
    (void)local_rank;
    return ag_err("--device %s: this build has no CUDA backend", device);  /* not reached: no device */
#endif
}

void ag_device_say(const ag_device *d, const char *stage) { ag_log0("%s: computing on the %s", stage, d->what); }

int ag_device_mirror(ag_device *d, const ag_params *host) {
    if (!d->gpu) return 0;
#ifdef ARGENT_HAVE_CUDA
    if (d->mirrored) {
        ag_cuda_params_free(&d->dev);
        d->mirrored = 0;
    }
    if (ag_cuda_params_mirror(&d->dev, host)) return ag_err_ctx("--device: mirroring %zu parameters", host->total);
    d->mirrored = 1;
    free(d->stage);
    d->stage = malloc((host->total ? host->total : 1) * sizeof(float));
    if (!d->stage) return ag_err("--device: out of host memory for a gradient of %zu floats", host->total);
    return 0;
#else
    (void)host;
    return ag_err("--device: this build has no CUDA backend");
#endif
}

ag_params *ag_device_params(ag_device *d, ag_params *host) { return d->gpu && d->mirrored ? &d->dev : host; }

int ag_device_upload(ag_device *d, const ag_params *host) {
    if (!d->gpu) return 0;
#ifdef ARGENT_HAVE_CUDA
    if (!d->mirrored) return ag_err("--device: the parameters have no device copy");
    return ag_cuda_params_upload(&d->dev, host, 0);
#else
    (void)host;
    return 0;
#endif
}

int ag_device_begin_step(ag_device *d) {
    if (!d->gpu) return 0;
#ifdef ARGENT_HAVE_CUDA
    ag_cuda_params_zero_grad(&d->dev);
#endif
    return 0;
}

int ag_device_end_step(ag_device *d, ag_params *host) {
    if (!d->gpu) return 0;
#ifdef ARGENT_HAVE_CUDA
    if (!d->mirrored || d->dev.total != host->total) return ag_err("--device: the device table does not match");
    ag_params view = d->dev;
    view.data = view.grad = d->stage;
    if (ag_cuda_params_download(&view, &d->dev, 0, 1)) return ag_err_ctx("downloading the gradient");
    /* fp16: the device gradient carries the loss scale; head tensors (host) do not. An
     * inf/NaN stays one and reaches every rank through the allreduce. */
    ag_scaler_unscale(&d->scaler, d->stage, host->total);
    float *g = host->grad;
    for (size_t i = 0; i < host->total; i++) g[i] += d->stage[i];
    return 0;
#else
    (void)host;
    return 0;
#endif
}

void ag_device_close(ag_device *d) {
#ifdef ARGENT_HAVE_CUDA
    if (d->mirrored) ag_cuda_params_free(&d->dev);
#endif
    d->mirrored = 0;
    free(d->stage);
    d->stage = NULL;
}

float ag_device_loss_scale(const ag_device *d) { return d->scaler.enabled ? d->scaler.scale : 1.0f; }

const float *ag_device_fetch(const ag_device *d, ag_act_buf *b, const float *src, size_t n) {
    if (!d->gpu) return src;
    if (n > b->cap_host) {
        free(b->host);
        b->host = malloc(n * sizeof(float));
        b->cap_host = b->host ? n : 0;
        if (!b->host) return ag_err("--device: out of host memory for %zu activations", n), NULL;
    }
    if (n) d->ops->download_act(b->host, src, n);
    return b->host;
}

const float *ag_device_put_grad(const ag_device *d, ag_act_buf *b, const float *host, size_t n) {
    if (!d->gpu) return host;
    if (n > b->cap_dev) {
        d->ops->free(b->dev);
        b->dev = d->ops->alloc((n ? n : 1) * d->ops->act_bytes);
        b->cap_dev = b->dev ? n : 0;
        if (!b->dev) return ag_err("--device: out of device memory for %zu activations", n), NULL;
    }
    if (n) {
        d->ops->upload_act(b->dev, host, n);
        if (d->scaler.enabled) d->ops->scale(b->dev, d->scaler.scale, n);
    }
    return b->dev;
}

void ag_act_buf_free(const ag_device *d, ag_act_buf *b) {
    free(b->host);
    if (b->dev && d && d->ops) d->ops->free(b->dev);
    memset(b, 0, sizeof *b);
}
