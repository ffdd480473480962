/* Where a stage computes: the --device cpu|cuda|auto and --precision fp32|bf16|fp16 options
 * shared by train-bi, train-cross, tsdae, label and encode, and the glue that runs a model on
 * the GPU while the rest of the stage stays on the host.
 *
 * What runs where with a GPU (docs/cuda.md, "How the stages use the device"):
 *   - the BERT (and TSDAE decoder) forward and backward run on the device, on a MIRROR of
 *     the host parameter table (same names, shapes and offsets; ag_cuda_params_mirror);
 *   - pooling, normalisation, losses and classifier heads stay host code: the activations
 *     they read are downloaded (ag_device_fetch) and their gradients uploaded
 *     (ag_device_put_grad), through the table's download_act / upload_act, which convert
 *     to / from fp32 when the table stores 16-bit activations. The head tensors (their
 *     gradient is accumulated on the host, zero on the device) are declared by the stage
 *     with ag_device_host_grad;
 *   - training, device-resident (the default on the GPU): the master parameters and the
 *     AdamW moments live on the device (nn/cuda/optim.h). Per step the heads' host gradients
 *     are added into the device gradient (times the fp16 loss scale), the device gradient is
 *     reduced across ranks (NCCL, overlapped with the backward, when the build has it and
 *     np > 1; else downloaded, reduced by the host allreduce and uploaded), unscaled (fp16),
 *     clipped and stepped on the device, and the heads' parameters are downloaded for the
 *     host code. The whole table (and the moments) comes down only when the host needs it:
 *     evaluation, checksums, checkpoints, the final model (the engine, jobs/engine.c);
 *   - training, host-staged (ARGENT_DEVICE_OPTIM=host, the fallback): the master parameters,
 *     AdamW state, clipping and the optimiser step stay on the host (the CPU optimiser is the
 *     oracle); per step the engine uploads the new parameters to the mirror, zeroes the
 *     device gradient, and after the task's backward adds the device gradient into the host
 *     gradient (ag_device_end_step), which the host allreduce then reduces as on the CPU.
 *     Head tensors have their gradient on the host and zero on the device, so the sum is
 *     exact.
 * With the CPU (--device cpu, or auto without a usable GPU) every function here is a no-op
 * or an identity, so the CPU path is today's, bit for bit.
 *
 * One GPU per rank: rank r uses device (node-local rank) % (visible devices); several ranks
 * may share one GPU (correct, only slower; NCCL then is not used), and rank 0 says so.
 *
 * --precision bf16 / fp16 need the GPU. They use the 16-bit activation table of
 * ag_cuda_ops_for() when the build has it, else fp32 activations with 16-bit matrix
 * products (ag_cuda_set_precision). fp16 scales the loss gradient with the dynamic loss
 * scaler of nn/amp.h; the engine skips the optimiser step when the reduced gradient holds
 * an inf or NaN. All functions returning int give 0, or -1 with ag_errmsg(). */
#ifndef ARGENT_JOBS_DEVICE_H
#define ARGENT_JOBS_DEVICE_H
#include <stddef.h>

#include "dist/allreduce.h"
#include "nn/amp.h"
#include "nn/ops.h"
#include "nn/optim.h"
#include "nn/params.h"

/* The two options, for a stage's ag_cli_opt table. */
#define AG_DEVICE_CLI_OPTS                                                                                       \
    {"device", "D", "cpu, cuda or auto (the GPU when one is usable, else the CPU)", "auto", 0},                  \
    {"precision", "P", "fp32, bf16 or fp16 (16-bit needs the GPU; fp16 uses dynamic loss scaling)", "fp32", 0}

typedef struct ag_device {
    const ag_ops *ops;        /* &ag_ops_cpu, or the CUDA table of the precision */
    ag_precision prec;
    int gpu;                  /* 1: ops works on device memory */
    int device;               /* CUDA device index (gpu) */
    char what[320];           /* what was chosen, for the rank-0 line */
    ag_params dev;            /* device mirror of the host table (gpu, after ag_device_mirror) */
    int mirrored;
    float *stage;             /* [dev.total] host staging of the device gradient */
    ag_grad_scaler scaler;    /* enabled for fp16 on the GPU only */
    /* device-resident training (ag_device_resident) */
    int resident;             /* 1: optimiser on the device (gpu, ARGENT_DEVICE_OPTIM unset or
                                 "device"); 0: host-staged (ARGENT_DEVICE_OPTIM=host) */
    unsigned char *host_grad; /* [dev.n] 1: the task accumulates this tensor's grad on the host */
    unsigned char *head_done; /* [dev.n] its host grad was added to the device grad this step */
    ag_adamw opt;             /* AdamW with m, v in device memory (after ag_device_optim_init) */
    float *dstage;            /* device staging of a head's gradient */
    size_t dstage_cap;
    float *found;             /* device flag of ag_cuda_unscale */
    void *nccl;               /* ag_nccl * when the NCCL reduction is on */
} ag_device;

/* Choose the backend for --device / --precision (NULL: the defaults auto / fp32). Not
 * collective and writes nothing; local_rank picks the GPU. Errors name the option:
 * "--device cuda: no CUDA device (...)", "--precision bf16: needs the GPU ...". */
int ag_device_open(ag_device *d, const char *device, const char *precision, int local_rank);
/* Rank 0: one line saying where the stage computes (stage names the stage). */
void ag_device_say(const ag_device *d, const char *stage);
/* The device mirror of host (gpu only; on the CPU nothing). Call once host is allocated;
 * its data are uploaded again by ag_device_upload. */
int ag_device_mirror(ag_device *d, const ag_params *host);
/* The table the model runs on: the mirror on the GPU, host on the CPU. */
ag_params *ag_device_params(ag_device *d, ag_params *host);
/* host->data -> mirror (gpu; no-op on the CPU). */
int ag_device_upload(ag_device *d, const ag_params *host);
/* Training step (gpu; no-ops on the CPU): begin zeroes the device gradient; end waits for
 * the queued work, downloads the device gradient, unscales it (fp16) and adds it into
 * host->grad. */
int ag_device_begin_step(ag_device *d);
int ag_device_end_step(ag_device *d, ag_params *host);
/* ---- device-resident training (gpu and d->resident; the engine drives these) ----
 * Declare tensor t of the mirrored table as a head: its gradient is accumulated by host
 * code into host->grad, and the host code reads its parameters from host->data. Call after
 * ag_device_mirror; a no-op on the CPU. */
int ag_device_host_grad(ag_device *d, int t);
/* 1 when the engine should keep the optimiser on the device. */
int ag_device_resident(const ag_device *d);
/* Device AdamW state for the mirror (zero moments, step 0), as ag_adamw_init. */
int ag_device_optim_init(ag_device *d, double weight_decay);
/* host->data -> the mirror, and o's moments and step -> the device optimiser (start, resume). */
int ag_device_optim_upload(ag_device *d, const ag_params *host, const ag_adamw *o);
/* The mirror's parameters -> host->data and, o not NULL, the device moments and step -> o. */
int ag_device_optim_download(ag_device *d, ag_params *host, ag_adamw *o);
/* Start of a step: the heads' host gradients zeroed, none added yet. */
void ag_device_heads_begin(ag_device *d, ag_params *host);
/* Add the host gradients of the heads among tensors first..last not added yet this step
 * into the device gradient, times the fp16 loss scale (the device gradient carries it). */
int ag_device_heads_add(ag_device *d, const ag_params *host, int first, int last);
/* The device gradient -> host->grad, host->grad -> the device gradient (host reduction). */
int ag_device_grad_get(ag_device *d, ag_params *host);
int ag_device_grad_put(ag_device *d, const ag_params *host);
/* Wait for the queued device work; -1 naming the first failed op. */
int ag_device_sync(ag_device *d);
/* fp16: the device gradient *= 1 / loss scale; *bad = 1 when it held an inf/NaN. */
int ag_device_unscale(ag_device *d, int *bad);
/* Global gradient norm of the device gradient, clipped to max_norm when max_norm > 0. */
double ag_device_clip(ag_device *d, double max_norm);
/* One AdamW update of the mirror with learning rate lr (d->opt.step then advances). */
int ag_device_adamw(ag_device *d, double lr);
/* The heads' parameters: mirror -> host->data (after an update, for the host code). */
int ag_device_heads_refresh(ag_device *d, ag_params *host);
/* NCCL reduction of the device gradient (builds with ARGENT_HAVE_NCCL; collective over the
 * world communicator). Returns 1 when it is on; 0 when not (no NCCL in this build, one
 * rank, or it cannot start on some rank: then why says so, and every rank gets 0). */
int ag_device_nccl_open(ag_device *d, const ag_ar_config *cfg, int overlap, char *why, size_t n);
int ag_device_nccl_begin(ag_device *d);
int ag_device_nccl_ready(ag_device *d, int t);
/* Start what is left; the device gradient then holds the SUM over ranks. */
int ag_device_nccl_finish(ag_device *d);

/* Frees the mirror and the staging (the CUDA backend stays up for the process). */
void ag_device_close(ag_device *d);

/* Activations between the model (backend memory) and host code. A buffer pair grows as
 * needed and is reused; free it with ag_act_buf_free. */
typedef struct {
    float *host;
    size_t cap_host;
    float *dev;
    size_t cap_dev;
} ag_act_buf;
/* n activations of the model at src as host fp32: src itself on the CPU, else a download
 * into b->host. NULL with ag_err when out of memory. */
const float *ag_device_fetch(const ag_device *d, ag_act_buf *b, const float *src, size_t n);
/* n fp32 gradient values at host as a backend tensor for a backward: host itself on the
 * CPU, else an upload into b->dev, multiplied by the fp16 loss scale when scaling is on.
 * NULL with ag_err when out of device memory. */
const float *ag_device_put_grad(const ag_device *d, ag_act_buf *b, const float *host, size_t n);
void ag_act_buf_free(const ag_device *d, ag_act_buf *b);
/* The factor a backward's loss gradient carries (the fp16 loss scale; 1 otherwise). */
float ag_device_loss_scale(const ag_device *d);
#endif
