/* --device / --precision and the host <-> device glue of the stages (see device.h). Built
 * with ARGENT_HAVE_CUDA when the program links the CUDA backend (argent_cuda, or the
 * emulator's argent_cuda_emu in tests); without it only the CPU exists and the CUDA calls
 * below are compiled out. */
#include "jobs/device.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist/comm.h"
#include "nn/cuda/cuda.h"
#include "nn/error.h"

#ifdef ARGENT_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "nn/cuda/amp.h"
#include "nn/cuda/optim.h"
#ifdef ARGENT_HAVE_NCCL
#include "dist/nccl.h"
#endif
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
    /* Training: the optimiser on the device unless ARGENT_DEVICE_OPTIM=host asks for the
     * host-staged path (the host optimiser; the fallback). */
    const char *optim = getenv("ARGENT_DEVICE_OPTIM");
    if (optim && *optim && strcmp(optim, "host") && strcmp(optim, "device"))
        return ag_err("ARGENT_DEVICE_OPTIM='%s': expected device (the default) or host", optim);
    d->resident = !(optim && !strcmp(optim, "host"));
    d->ops = ops;
    d->gpu = 1;
    d->device = dev;
    ag_scaler_for(&d->scaler, d->prec);
    snprintf(d->what, sizeof d->what, "GPU %d (%s), %s%s; %.200s", dev, ops->name, mode,
             d->scaler.enabled ? " with dynamic loss scaling" : "", why);
    snprintf(d->what + strlen(d->what), sizeof d->what - strlen(d->what), "; %s",
             d->resident ? "training: AdamW on the device" : "training: AdamW on the host (ARGENT_DEVICE_OPTIM=host)");
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
    free(d->host_grad);
    free(d->head_done);
    d->host_grad = calloc((size_t)(host->n ? host->n : 1), 1);
    d->head_done = calloc((size_t)(host->n ? host->n : 1), 1);
    if (!d->host_grad || !d->head_done) return ag_err("--device: out of host memory for %d tensors", host->n);
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

/* ---- device-resident training -------------------------------------------------------- */

int ag_device_host_grad(ag_device *d, int t) {
    if (!d->gpu) return 0;
    if (!d->mirrored || t < 0 || t >= d->dev.n) return ag_err("--device: head tensor %d outside the mirrored table", t);
    d->host_grad[t] = 1;
    return 0;
}

int ag_device_resident(const ag_device *d) { return d->gpu && d->resident; }

#ifdef ARGENT_HAVE_CUDA
static int need_table(const ag_device *d, const ag_params *host) {
    if (!d->mirrored || (host && d->dev.total != host->total)) return ag_err("--device: the device table does not match");
    return 0;
}
#endif

int ag_device_optim_init(ag_device *d, double weight_decay) {
    if (!d->gpu) return 0;
#ifdef ARGENT_HAVE_CUDA
    if (need_table(d, NULL)) return -1;
    if (d->opt.m) ag_cuda_adamw_free(&d->opt);
    if (ag_cuda_adamw_init(&d->opt, &d->dev, weight_decay)) return ag_err_ctx("--device: the device optimiser");
    if (!d->found && !(d->found = ag_ops_cuda.alloc(sizeof(float))))
        return ag_err("--device: out of device memory");
    return 0;
#else
    (void)weight_decay;
    return 0;
#endif
}

int ag_device_optim_upload(ag_device *d, const ag_params *host, const ag_adamw *o) {
    if (!d->gpu) return 0;
#ifdef ARGENT_HAVE_CUDA
    if (need_table(d, host) || ag_cuda_params_upload(&d->dev, host, 0)) return -1;
    if (o && d->opt.m && ag_cuda_adamw_upload(&d->opt, o)) return ag_err_ctx("--device: uploading the AdamW moments");
    return ag_cuda_check();
#else
    (void)host;
    (void)o;
    return 0;
#endif
}

int ag_device_optim_download(ag_device *d, ag_params *host, ag_adamw *o) {
    if (!d->gpu) return 0;
#ifdef ARGENT_HAVE_CUDA
    if (need_table(d, host)) return -1;
    if (ag_cuda_params_download(host, &d->dev, 1, 0)) return ag_err_ctx("--device: downloading the parameters");
    if (o && d->opt.m && ag_cuda_adamw_download(o, &d->opt)) return ag_err_ctx("--device: downloading the AdamW moments");
    return 0;
#else
    (void)host;
    (void)o;
    return 0;
#endif
}

void ag_device_heads_begin(ag_device *d, ag_params *host) {
    if (!d->gpu || !d->mirrored) return;
    for (int t = 0; t < d->dev.n && t < host->n; t++) {
        d->head_done[t] = 0;
        if (d->host_grad[t]) memset(host->grad + host->t[t].offset, 0, host->t[t].numel * sizeof(float));
    }
}

int ag_device_heads_add(ag_device *d, const ag_params *host, int first, int last) {
    if (!d->gpu) return 0;
#ifdef ARGENT_HAVE_CUDA
    if (need_table(d, host)) return -1;
    if (first > last) { int x = first; first = last; last = x; }
    if (first < 0) first = 0;
    if (last >= d->dev.n) last = d->dev.n - 1;
    for (int t = first; t <= last; t++) {
        if (!d->host_grad[t] || d->head_done[t]) continue;
        d->head_done[t] = 1;
        size_t n = d->dev.t[t].numel;
        if (!n) continue;
        if (n > d->dstage_cap) {
            ag_ops_cuda.free(d->dstage);
            d->dstage = ag_ops_cuda.alloc(n * sizeof(float));
            d->dstage_cap = d->dstage ? n : 0;
            if (!d->dstage) return ag_err("--device: out of device memory for the gradient of %s", d->dev.t[t].name);
        }
        /* The upload waits for the copy: the staging is free again for the next head. */
        ag_ops_cuda.upload(d->dstage, host->grad + host->t[t].offset, n * sizeof(float));
        if (d->scaler.enabled) ag_ops_cuda.scale(d->dstage, d->scaler.scale, n);
        ag_ops_cuda.acc(d->dev.grad + d->dev.t[t].offset, d->dstage, n);
    }
    return 0;
#else
    (void)host;
    (void)first;
    (void)last;
    return 0;
#endif
}

int ag_device_grad_get(ag_device *d, ag_params *host) {
    if (!d->gpu) return 0;
#ifdef ARGENT_HAVE_CUDA
    if (need_table(d, host)) return -1;
    if (ag_cuda_params_download(host, &d->dev, 0, 1)) return ag_err_ctx("--device: downloading the gradient");
    return 0;
#else
    (void)host;
    return 0;
#endif
}

int ag_device_grad_put(ag_device *d, const ag_params *host) {
    if (!d->gpu) return 0;
#ifdef ARGENT_HAVE_CUDA
    if (need_table(d, host)) return -1;
    ag_ops_cuda.upload(d->dev.grad, host->grad, host->total * sizeof(float));
    return 0;
#else
    (void)host;
    return 0;
#endif
}

int ag_device_sync(ag_device *d) {
    if (!d->gpu) return 0;
#ifdef ARGENT_HAVE_CUDA
    return ag_cuda_check();
#else
    return 0;
#endif
}

int ag_device_unscale(ag_device *d, int *bad) {
    *bad = 0;
    if (!d->gpu || !d->scaler.enabled) return 0;
#ifdef ARGENT_HAVE_CUDA
    if (need_table(d, NULL) || !d->found) return ag_err("--device: the device optimiser is not initialised");
    float f = 0;
    ag_ops_cuda.upload(d->found, &f, sizeof f);
    ag_cuda_unscale(d->dev.grad, d->dev.total, 1.0f / d->scaler.scale, d->found);
    ag_ops_cuda.download(&f, d->found, sizeof f);
    if (ag_cuda_check()) return ag_err_ctx("--device: unscaling the fp16 gradient");
    *bad = f != 0;
    return 0;
#else
    return 0;
#endif
}

double ag_device_clip(ag_device *d, double max_norm) {
    if (!d->gpu) return NAN;
#ifdef ARGENT_HAVE_CUDA
    return max_norm > 0 ? ag_cuda_clip_grad_norm(&d->dev, max_norm) : ag_cuda_grad_norm(&d->dev);
#else
    (void)max_norm;
    return NAN;
#endif
}

int ag_device_adamw(ag_device *d, double lr) {
    if (!d->gpu) return 0;
#ifdef ARGENT_HAVE_CUDA
    if (!d->opt.m) return ag_err("--device: the device optimiser is not initialised");
    return ag_cuda_adamw_step(&d->opt, &d->dev, lr);
#else
    (void)lr;
    return 0;
#endif
}

int ag_device_heads_refresh(ag_device *d, ag_params *host) {
    if (!d->gpu) return 0;
#ifdef ARGENT_HAVE_CUDA
    if (need_table(d, host)) return -1;
    for (int t = 0; t < d->dev.n; t++)
        if (d->host_grad[t] && d->dev.t[t].numel)
            ag_ops_cuda.download(host->data + host->t[t].offset, d->dev.data + d->dev.t[t].offset,
                                 d->dev.t[t].numel * sizeof(float));
    return ag_cuda_check();
#else
    (void)host;
    return 0;
#endif
}

int ag_device_nccl_open(ag_device *d, const ag_ar_config *cfg, int overlap, char *why, size_t n) {
    if (why && n) why[0] = 0;
    const ag_comm *cm = ag_comm_get();
    if (!d->gpu || !d->resident || cm->size < 2) return 0;
#if defined(ARGENT_HAVE_CUDA) && defined(ARGENT_HAVE_NCCL)
    ag_nccl *nc = NULL;
    /* Collective: every rank gets the same answer (ag_nccl_init fails on all together). */
    if (ag_nccl_init(&nc, cm, cm->local_rank)) {
        if (why) snprintf(why, n, "%s", ag_errmsg());
        ag_err_clear();
        return 0;
    }
    ag_nccl_config nk;
    ag_nccl_config_default(&nk);
    if (cfg) {
        nk.first_bucket_bytes = cfg->first_bucket_bytes;
        nk.bucket_bytes = cfg->bucket_bytes;
    }
    nk.overlap = overlap;
    int bad = ag_nccl_attach(nc, &d->dev, &nk) != 0, any = 0;
    if (bad && why) snprintf(why, n, "%s", ag_errmsg());
    MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, cm->world);
    if (any) {
        if (!bad && why) snprintf(why, n, "another rank could not attach its gradient to NCCL");
        ag_err_clear();
        ag_nccl_free(nc);
        return 0;
    }
    d->nccl = nc;
    return 1;
#else
    (void)cfg;
    (void)overlap;
    if (why && n) snprintf(why, n, "this build has no NCCL");
    return 0;
#endif
}

int ag_device_nccl_begin(ag_device *d) {
#if defined(ARGENT_HAVE_CUDA) && defined(ARGENT_HAVE_NCCL)
    if (d->nccl) return ag_nccl_begin(d->nccl);
#endif
    (void)d;
    return 0;
}

int ag_device_nccl_ready(ag_device *d, int t) {
#if defined(ARGENT_HAVE_CUDA) && defined(ARGENT_HAVE_NCCL)
    if (d->nccl) return ag_nccl_ready(d->nccl, t);
#endif
    (void)d;
    (void)t;
    return 0;
}

int ag_device_nccl_finish(ag_device *d) {
#if defined(ARGENT_HAVE_CUDA) && defined(ARGENT_HAVE_NCCL)
    /* 1: no division; the engine's contract is the plain sum of the ranks' contributions. */
    if (d->nccl) return ag_nccl_finish(d->nccl, 1);
#endif
    (void)d;
    return 0;
}

void ag_device_close(ag_device *d) {
#ifdef ARGENT_HAVE_CUDA
#ifdef ARGENT_HAVE_NCCL
    if (d->nccl) ag_nccl_free(d->nccl);
#endif
    if (d->opt.m) ag_cuda_adamw_free(&d->opt);
    if (d->dstage) ag_ops_cuda.free(d->dstage);
    if (d->found) ag_ops_cuda.free(d->found);
    if (d->mirrored) ag_cuda_params_free(&d->dev);
#endif
    d->nccl = NULL;
    d->dstage = NULL;
    d->found = NULL;
    d->dstage_cap = 0;
    memset(&d->opt, 0, sizeof d->opt);
    d->mirrored = 0;
    free(d->stage);
    d->stage = NULL;
    free(d->host_grad);
    free(d->head_done);
    d->host_grad = d->head_done = NULL;
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
