/* AdamW and gradient-norm clipping on a device parameter table (ag_cuda_params_mirror), the
 * arithmetic of nn/optim.c on the GPU: the same float operations in the same order, the
 * scalar factors computed in double on the host and rounded to float once, so an update
 * equals the CPU's bit for bit (the device's sqrt and division are IEEE, and the kernel
 * keeps the compiler from fusing multiply-adds). The global gradient norm is a
 * deterministic two-stage sum of squares in double (per-block partials in a fixed order),
 * equal to ag_grad_norm up to the order of a double sum (~1e-16 relative).
 *
 * The state is nn/optim.h's ag_adamw with o->m, o->v in device memory; the schedule
 * (ag_schedule_factor) and the step counter stay on the host. The loop, as nn/optim.h:
 *     norm = ag_cuda_clip_grad_norm(&dev, 1.0);          (skip the step if not finite)
 *     ag_cuda_adamw_step(&opt, &dev, base_lr * ag_schedule_factor(&s, opt.step));
 *     ag_cuda_params_zero_grad(&dev);
 * Weight decay applies to tensors with decay != 0 only: the kernels find each element's
 * tensor run and flag in a device table of segments (runs of adjacent tensors with the same
 * flag, uploaded when the table changes), so the alignment padding between tensors is left
 * alone, as nn/optim.c leaves it.
 * Checkpoints: ag_cuda_adamw_download into a host ag_adamw (ag_adamw_init on the host
 * table) and ag_cuda_adamw_upload back; both carry step and the hyperparameters too. */
#ifndef ARGENT_NN_CUDA_OPTIM_H
#define ARGENT_NN_CUDA_OPTIM_H
#include "nn/optim.h"
#include "nn/params.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Device moments for the device table dev (zeroed), β (0.9, 0.999), ε 1e-8, step 0, as
 * ag_adamw_init. 0, or -1 with ag_err (table not allocated, bad decay, out of device memory). */
int ag_cuda_adamw_init(ag_adamw *o, const ag_params *dev, double weight_decay);
void ag_cuda_adamw_free(ag_adamw *o);
/* One update of dev->data from dev->grad with learning rate lr (queued, no wait), then
 * step++. 0, or -1 with ag_err (other table size, bad lr, optimiser not initialised);
 * launch failures are recorded for ag_cuda_check. */
int ag_cuda_adamw_step(ag_adamw *o, ag_params *dev, double lr);
/* Global L2 norm of dev->grad, in double. Waits for the queued work; NaN with ag_err set
 * when an op failed (the caller then skips the step, as for a non-finite norm). */
double ag_cuda_grad_norm(const ag_params *dev);
/* clip_grad_norm_ as ag_clip_grad_norm: gradients *= (float)min(1, max_norm/(total+1e-6))
 * unless total is not finite; returns total. */
double ag_cuda_clip_grad_norm(ag_params *dev, double max_norm);
/* Moments and step between a device optimiser and a host one of the same size (host made
 * by ag_adamw_init on the host table). 0, or -1 with ag_err. */
int ag_cuda_adamw_download(ag_adamw *host, const ag_adamw *dev);
int ag_cuda_adamw_upload(ag_adamw *dev, const ag_adamw *host);

#ifdef __cplusplus
}
#endif
#endif
