/* The device optimiser's host side (nn/cuda/optim.h): argument checks, the scalar factors
 * of each step (double, rounded to float once, as nn/optim.c), the device copy of the
 * table's segments, the gradient norm and clipping, checkpoint transfers. Kernels: optim.cu. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nn/cuda/cuda.h"
#include "nn/cuda/internal.h"
#include "nn/cuda/optim.h"
#include "nn/error.h"

/* optim.cu */
void ag_cuda_adamw_launch(float *th, const float *g, float *m, float *v, size_t n,
                          const unsigned long long *seg, int nr, float decay_mul, float w1, float b2,
                          float w2, float bc2_sqrt, float eps, float step_size);
void ag_cuda_seg_scale(float *x, float alpha, size_t n, const unsigned long long *seg, int nr);
double ag_cuda_sumsq(const float *x, size_t n, const unsigned long long *seg, int nr, int *ok);

#define DECAY_BIT (1ull << 63)

/* The segments of the table last used: runs of adjacent tensors with the same decay flag,
 * starts[0..n) then ends[0..n) (top bit: decays), host and device copies. The alignment
 * padding between tensors lies outside every segment, so the kernels leave it alone as
 * nn/optim.c does. Rebuilt on the host at each call (one pass over the tensor table) and
 * uploaded only when it changes, i.e. on the first call for a table. */
static struct {
    unsigned long long *host, *dev;
    int n, cap;
} segs;

static void segs_free(void) {
    free(segs.host);
    ag_cuda_free(segs.dev);
    memset(&segs, 0, sizeof segs);
}

/* Device segment table of p in *out, count in *nr (0 and NULL for an empty table). */
static int segments_for(const ag_params *p, const char *op, const unsigned long long **out, int *nr) {
    *out = NULL;
    *nr = 0;
    unsigned long long *r = malloc(2 * (size_t)(p->n ? p->n : 1) * sizeof *r);
    if (!r) return ag_err("%s: out of host memory for the segments of %d tensors", op, p->n);
    int k = 0;
    for (int i = 0; i < p->n; i++) {
        const ag_tensor_info *ti = &p->t[i];
        if (!ti->numel) continue;
        unsigned long long s = ti->offset, e = ti->offset + ti->numel, flag = ti->decay ? DECAY_BIT : 0;
        if (k > 0 && r[p->n + k - 1] == (s | flag)) {
            r[p->n + k - 1] = e | flag;  /* continues the last run */
        } else {
            r[k] = s;
            r[p->n + k] = e | flag;
            k++;
        }
    }
    if (k == 0) {
        free(r);
        return 0;
    }
    memmove(r + k, r + p->n, (size_t)k * sizeof *r);  /* packed: starts, then ends */
    size_t bytes = 2 * (size_t)k * sizeof *r;
    if (k == segs.n && segs.dev && memcmp(r, segs.host, bytes) == 0) {
        free(r);
    } else {
        if (2 * k > segs.cap) {
            ag_cuda_free(segs.dev);
            segs.dev = ag_cuda_alloc(bytes);
            segs.cap = segs.dev ? 2 * k : 0;
            if (!segs.dev) {
                free(r);
                segs.n = 0;
                return ag_err("%s: out of device memory for %d segments", op, k);
            }
        }
        ag_cuda_upload(segs.dev, r, bytes);
        free(segs.host);
        segs.host = r;
        segs.n = k;
    }
    *out = segs.dev;
    *nr = k;
    return 0;
}

int ag_cuda_adamw_init(ag_adamw *o, const ag_params *dev, double weight_decay) {
    memset(o, 0, sizeof *o);
    if (!dev || !dev->data || !dev->grad)
        return ag_err("ag_cuda_adamw_init: device parameter table not allocated (ag_cuda_params_mirror)");
    if (!(weight_decay >= 0)) return ag_err("ag_cuda_adamw_init: weight decay %g (expected >= 0)", weight_decay);
    if (ag_cuda_init(-1)) return ag_err_ctx("ag_cuda_adamw_init");
    o->beta1 = 0.9;
    o->beta2 = 0.999;
    o->eps = 1e-8;
    o->weight_decay = weight_decay;
    o->n = dev->total;
    size_t n = o->n ? o->n : 1;
    o->m = ag_cuda_alloc(n * sizeof(float));
    o->v = ag_cuda_alloc(n * sizeof(float));
    if (!o->m || !o->v) {
        ag_cuda_adamw_free(o);
        return ag_err("ag_cuda_adamw_init: out of device memory (2 x %zu floats of moments)", n);
    }
    ag_cuda_zero(o->m, n);
    ag_cuda_zero(o->v, n);
    if (ag_cuda_check()) {
        ag_cuda_adamw_free(o);
        return ag_err_ctx("ag_cuda_adamw_init: zeroing the moments");
    }
    return 0;
}

void ag_cuda_adamw_free(ag_adamw *o) {
    ag_cuda_free(o->m);
    ag_cuda_free(o->v);
    memset(o, 0, sizeof *o);
    segs_free();
}

int ag_cuda_adamw_step(ag_adamw *o, ag_params *p, double lr) {
    if (!o->m || !o->v) return ag_err("ag_cuda_adamw_step: optimizer not initialised");
    if (!p || !p->data || !p->grad || p->total != o->n)
        return ag_err("ag_cuda_adamw_step: parameter table (%zu floats) does not match the optimizer (%zu)",
                      p ? p->total : 0, o->n);
    if (!isfinite(lr) || lr < 0) return ag_err("ag_cuda_adamw_step: learning rate %g", lr);
    if (!ag_cuda_ready()) return ag_cuda_check() ? ag_err_ctx("ag_cuda_adamw_step") : ag_err("ag_cuda_adamw_step: no CUDA device");
    double t = (double)(o->step + 1);
    double bc1 = 1 - pow(o->beta1, t), bc2 = 1 - pow(o->beta2, t);
    float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2), eps = (float)o->eps;
    float w1 = (float)(1 - o->beta1), b2 = (float)o->beta2, w2 = (float)(1 - o->beta2);
    /* With weight decay 0 the factor is exactly 1: multiplying by it changes nothing, as
     * nn/optim.c's skipping it. */
    float decay_mul = (float)(1 - lr * o->weight_decay);
    const unsigned long long *seg;
    int nr;
    if (segments_for(p, "ag_cuda_adamw_step", &seg, &nr)) return -1;
    if (nr)
        ag_cuda_adamw_launch(p->data, p->grad, o->m, o->v, p->total, seg, nr, decay_mul, w1, b2, w2,
                             bc2_sqrt, eps, step_size);
    o->step++;
    return 0;
}

double ag_cuda_grad_norm(const ag_params *p) {
    if (!p->grad || !p->total) return 0;
    const unsigned long long *seg;
    int nr, ok = 0;
    if (segments_for(p, "ag_cuda_grad_norm", &seg, &nr)) return NAN;
    if (!nr) return 0;
    double ss = ag_cuda_sumsq(p->grad, p->total, seg, nr, &ok);
    if (!ok || ag_cuda_check()) {
        ag_err_ctx("ag_cuda_grad_norm");
        return NAN;
    }
    return sqrt(ss);
}

double ag_cuda_clip_grad_norm(ag_params *p, double max_norm) {
    double total = ag_cuda_grad_norm(p);
    if (!isfinite(total)) return total;
    double coef = max_norm / (total + 1e-6);
    if (coef < 1.0) {
        const unsigned long long *seg;
        int nr;
        if (segments_for(p, "ag_cuda_clip_grad_norm", &seg, &nr)) return NAN;
        ag_cuda_seg_scale(p->grad, (float)coef, p->total, seg, nr);
    }
    return total;
}

static int same_state(const ag_adamw *a, const ag_adamw *b, const char *what) {
    if (!a->m || !a->v || !b->m || !b->v) return ag_err("%s: an optimizer is not initialised", what);
    if (a->n != b->n)
        return ag_err("%s: optimizers differ in size (%zu vs %zu floats)", what, a->n, b->n);
    return 0;
}

static void copy_scalars(ag_adamw *dst, const ag_adamw *src) {
    dst->beta1 = src->beta1;
    dst->beta2 = src->beta2;
    dst->eps = src->eps;
    dst->weight_decay = src->weight_decay;
    dst->step = src->step;
}

int ag_cuda_adamw_download(ag_adamw *host, const ag_adamw *dev) {
    if (same_state(host, dev, "ag_cuda_adamw_download")) return -1;
    if (ag_cuda_check()) return ag_err_ctx("ag_cuda_adamw_download (an earlier op failed)");
    ag_cuda_download(host->m, dev->m, dev->n * sizeof(float));
    ag_cuda_download(host->v, dev->v, dev->n * sizeof(float));
    if (ag_cuda_check()) return ag_err_ctx("ag_cuda_adamw_download");
    copy_scalars(host, dev);
    return 0;
}

int ag_cuda_adamw_upload(ag_adamw *dev, const ag_adamw *host) {
    if (same_state(dev, host, "ag_cuda_adamw_upload")) return -1;
    ag_cuda_upload(dev->m, host->m, host->n * sizeof(float));
    ag_cuda_upload(dev->v, host->v, host->n * sizeof(float));
    if (ag_cuda_check()) return ag_err_ctx("ag_cuda_adamw_upload");
    copy_scalars(dev, host);
    return 0;
}
