/* AdamW, learning-rate schedules and global gradient-norm clipping over a params table,
 * exactly as torch.optim.AdamW, transformers' get_*_schedule_with_warmup and
 * torch.nn.utils.clip_grad_norm_ compute them (the sentence-transformers fit loop).
 *
 * The training loop, as ST / HF run it:
 *     norm = ag_clip_grad_norm(p, 1.0);                       clip_grad_norm_
 *     ag_adamw_step(&opt, p, base_lr * ag_schedule_factor(&s, opt.step));   optimizer.step()
 *     ag_params_zero_grad(p);                                 zero_grad(); scheduler.step()
 * i.e. the k-th update (k = 0, 1, ...) uses the schedule's factor at k, so with warm-up the
 * very first update has lr 0 (moments still advance), as in HF.
 *
 * State for checkpoints: o->step and the flat o->m, o->v, which share the layout of the
 * params table (tensor i's moments are at p->t[i].offset, numel p->t[i].numel). */
#ifndef ARGENT_NN_OPTIM_H
#define ARGENT_NN_OPTIM_H
#include <stddef.h>
#include <stdint.h>

#include "nn/params.h"

typedef struct {
    double beta1, beta2, eps, weight_decay;
    int64_t step;    /* updates taken so far */
    size_t n;        /* floats in m and v: the params table's total */
    float *m, *v;    /* first and second moments, zero at the start */
} ag_adamw;

/* Moments for table p (already allocated), β (0.9, 0.999), ε 1e-8, step 0. Weight decay is
 * applied to tensors with ag_tensor_info.decay != 0 only. 0, or -1 with ag_err. */
int ag_adamw_init(ag_adamw *o, const ag_params *p, double weight_decay);
void ag_adamw_free(ag_adamw *o);
/* One update with learning rate lr from p->grad, then step++. For each tensor:
 *   θ ← θ·(1 - lr·wd)        (wd = 0 where decay == 0; decoupled, as AdamW)
 *   m ← m + (g - m)(1 - β1);  v ← β2·v + (1 - β2)·g²
 *   θ ← θ - lr/(1 - β1^t) · m / (sqrt(v)/sqrt(1 - β2^t) + ε),  t = step + 1.
 * 0, or -1 with ag_err when p does not match the optimizer (other total size). */
int ag_adamw_step(ag_adamw *o, ag_params *p, double lr);
/* The same update from the gradient times grad_scale (float product, as clip_grad_norm_'s
 * in-place multiply; 1.0f: the gradient as it is), in one pass over the memory; with
 * zero_grad != 0 the gradient is zeroed as it is read (the next step's zero_grad). */
int ag_adamw_update(ag_adamw *o, ag_params *p, double lr, float grad_scale, int zero_grad);

typedef enum {
    AG_SCHED_CONSTANT = 0,          /* factor 1 */
    AG_SCHED_CONSTANT_WARMUP = 1,   /* get_constant_schedule_with_warmup */
    AG_SCHED_LINEAR = 2,            /* get_linear_schedule_with_warmup: warm-up, then to 0 */
} ag_sched_kind;

typedef struct {
    ag_sched_kind kind;
    int64_t warmup_steps, total_steps;
} ag_schedule;

/* The lr factor after `step` updates (the LambdaLR lambda at current_step = step):
 *   step < warmup: step / max(1, warmup);
 *   linear: max(0, (total - step) / max(1, total - warmup)); constant kinds: 1. */
double ag_schedule_factor(const ag_schedule *s, int64_t step);
/* Names as transformers ("constant", "constant_with_warmup", "linear") or ST's legacy fit
 * ("constantlr", "warmupconstant", "warmuplinear"). 0, or -1 with ag_err. */
int ag_schedule_parse(const char *name, ag_sched_kind *kind);

/* Global L2 norm of all gradients in the table (in double). */
double ag_grad_norm(const ag_params *p);
/* clip_grad_norm_: total = ag_grad_norm; every gradient is multiplied by
 * min(1, max_norm / (total + 1e-6)); returns total. If total is not finite the gradients are
 * left as they are (torch would turn them into NaN/0) and the caller should skip the step. */
double ag_clip_grad_norm(ag_params *p, double max_norm);
/* The multiplier clip_grad_norm_ applies for gradient norm total: (float)(max_norm /
 * (total + 1e-6)) when that is below 1, else 1.0f (also for a non-finite total). */
float ag_clip_coef(double total, double max_norm);
#endif
