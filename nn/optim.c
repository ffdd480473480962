/* AdamW, schedules and gradient clipping; see optim.h. The per-element arithmetic follows
 * torch's single-tensor AdamW in float32 with the scalar factors computed in double and
 * rounded to float once, as torch passes Python floats to its float kernels. */
#include "nn/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/error.h"

int ag_adamw_init(ag_adamw *o, const ag_params *p, double weight_decay) {
    memset(o, 0, sizeof *o);
    if (!p || !p->data || !p->grad) return ag_err("ag_adamw_init: parameter table not allocated");
    if (!(weight_decay >= 0)) return ag_err("ag_adamw_init: weight decay %g (expected >= 0)", weight_decay);
    o->beta1 = 0.9;
    o->beta2 = 0.999;
    o->eps = 1e-8;
    o->weight_decay = weight_decay;
    o->n = p->total;
    size_t n = o->n ? o->n : 1;
    o->m = calloc(n, sizeof(float));
    o->v = calloc(n, sizeof(float));
    if (!o->m || !o->v) {
        ag_adamw_free(o);
        return ag_err("ag_adamw_init: out of memory (2 x %zu floats of moments)", n);
    }
    return 0;
}

void ag_adamw_free(ag_adamw *o) {
    free(o->m);
    free(o->v);
    memset(o, 0, sizeof *o);
}

int ag_adamw_update(ag_adamw *o, ag_params *p, double lr, float grad_scale, int zero_grad) {
    if (!o->m || !o->v) return ag_err("ag_adamw_step: optimizer not initialised");
    if (!p || !p->data || p->total != o->n)
        return ag_err("ag_adamw_step: parameter table (%zu floats) does not match the optimizer (%zu)",
                      p ? p->total : 0, o->n);
    if (!isfinite(lr) || lr < 0) return ag_err("ag_adamw_step: learning rate %g", lr);
    double t = (double)(o->step + 1);
    double bc1 = 1 - pow(o->beta1, t), bc2 = 1 - pow(o->beta2, t);
    float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2), eps = (float)o->eps;
    float w1 = (float)(1 - o->beta1), b2 = (float)o->beta2, w2 = (float)(1 - o->beta2);
    float decay_mul = (float)(1 - lr * o->weight_decay);
    for (int i = 0; i < p->n; i++) {
        const ag_tensor_info *ti = &p->t[i];
        float *restrict th = p->data + ti->offset, *restrict g = p->grad + ti->offset;
        float *restrict m = o->m + ti->offset, *restrict v = o->v + ti->offset;
        /* x * 1.0f is x bit for bit, so one loop serves tensors without decay and an
         * unscaled gradient (torch multiplies by the clip coefficient in a pass of its own:
         * the same float product). Vectorised: this file is built with -fno-math-errno, so
         * sqrtf is the correctly rounded instruction, as the scalar call was. */
        const float dm = ti->decay && o->weight_decay != 0 ? decay_mul : 1.0f;
        const size_t n = ti->numel;
        /* element-wise: the result does not depend on the thread count. Two copies of the
         * loop, with and without zeroing, so that neither holds a conditional store (which
         * keeps -O2 from vectorising). */
#define ADAMW_ELEMENT(k)                                                                   \
        float gk = g[k] * grad_scale, x = th[k] * dm;                                      \
        float mk = m[k] + w1 * (gk - m[k]); /* lerp with weight < 0.5, as torch */         \
        float vk = v[k] * b2 + w2 * gk * gk;                                               \
        m[k] = mk;                                                                         \
        v[k] = vk;                                                                         \
        th[k] = x + -step_size * mk / (sqrtf(vk) / bc2_sqrt + eps);
        if (zero_grad) {
            #pragma omp parallel for simd schedule(static) if (n > 65536)
            for (size_t k = 0; k < n; k++) {
                ADAMW_ELEMENT(k)
                g[k] = 0.0f;
            }
        } else {
            #pragma omp parallel for simd schedule(static) if (n > 65536)
            for (size_t k = 0; k < n; k++) {
                ADAMW_ELEMENT(k)
            }
        }
#undef ADAMW_ELEMENT
    }
    o->step++;
    return 0;
}

int ag_adamw_step(ag_adamw *o, ag_params *p, double lr) { return ag_adamw_update(o, p, lr, 1.0f, 0); }

double ag_schedule_factor(const ag_schedule *s, int64_t step) {
    if (s->kind == AG_SCHED_CONSTANT) return 1.0;
    int64_t w = s->warmup_steps;
    if (step < w) return (double)step / (double)(w > 1 ? w : 1);
    if (s->kind == AG_SCHED_CONSTANT_WARMUP) return 1.0;
    int64_t span = s->total_steps - w;
    double f = (double)(s->total_steps - step) / (double)(span > 1 ? span : 1);
    return f > 0 ? f : 0.0;
}

int ag_schedule_parse(const char *name, ag_sched_kind *kind) {
    static const struct { const char *name; ag_sched_kind kind; } names[] = {
        {"constant", AG_SCHED_CONSTANT},          {"constantlr", AG_SCHED_CONSTANT},
        {"constant_with_warmup", AG_SCHED_CONSTANT_WARMUP}, {"warmupconstant", AG_SCHED_CONSTANT_WARMUP},
        {"linear", AG_SCHED_LINEAR},              {"warmuplinear", AG_SCHED_LINEAR},
    };
    for (size_t i = 0; name && i < sizeof names / sizeof names[0]; i++)
        if (strcmp(name, names[i].name) == 0) { *kind = names[i].kind; return 0; }
    return ag_err("learning-rate schedule '%s': expected constant, constant_with_warmup or linear "
                  "(or ST's constantlr, warmupconstant, warmuplinear)", name ? name : "(null)");
}

double ag_grad_norm(const ag_params *p) {
    if (!p->grad) return 0;
    double ss = 0;
    for (int i = 0; i < p->n; i++) {
        const float *g = p->grad + p->t[i].offset;
        size_t n = p->t[i].numel;
        /* a double sum in vector lanes: its order (lanes, thread count) moves the norm by
         * ~1e-16 relative only (torch sums in float32) */
        #pragma omp parallel for simd schedule(static) reduction(+ : ss) if (n > 65536)
        for (size_t k = 0; k < n; k++) ss += (double)g[k] * g[k];
    }
    return sqrt(ss);
}

float ag_clip_coef(double total, double max_norm) {
    if (!isfinite(total)) return 1.0f;
    double coef = max_norm / (total + 1e-6);
    return coef < 1.0 ? (float)coef : 1.0f;
}

double ag_clip_grad_norm(ag_params *p, double max_norm) {
    double total = ag_grad_norm(p);
    float c = ag_clip_coef(total, max_norm);
    if (c != 1.0f)
        for (int i = 0; i < p->n; i++) {
            float *g = p->grad + p->t[i].offset;
            size_t n = p->t[i].numel;
            #pragma omp parallel for simd schedule(static) if (n > 65536)
            for (size_t k = 0; k < n; k++) g[k] *= c;
        }
    return total;
}
