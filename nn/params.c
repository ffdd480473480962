/* Parameter tables; see params.h. */
#include "nn/params.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ag_params_init(ag_params *p) { memset(p, 0, sizeof *p); }

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

int ag_name_decays(const char *name) {
    if (ends_with(name, "bias")) return 0;
    if (strstr(name, "LayerNorm.weight") || strstr(name, "LayerNorm.bias")) return 0;
    return 1;
}

int ag_params_add(ag_params *p, const char *name, int ndim, const int64_t *shape) {
    if (p->data || ndim < 1 || ndim > AG_MAX_DIMS || strlen(name) >= AG_NAME_MAX) return -1;
    if (ag_params_find(p, name) >= 0) return -1;
    if (p->n == p->cap) {
        int nc = p->cap ? 2 * p->cap : 64;
        ag_tensor_info *t = realloc(p->t, (size_t)nc * sizeof *t);
        if (!t) return -1;
        p->t = t;
        p->cap = nc;
    }
    ag_tensor_info *ti = &p->t[p->n];
    memset(ti, 0, sizeof *ti);
    snprintf(ti->name, sizeof ti->name, "%s", name);
    ti->ndim = ndim;
    ti->numel = 1;
    for (int d = 0; d < ndim; d++) { ti->shape[d] = shape[d]; ti->numel *= (size_t)shape[d]; }
    /* Keep every tensor 16-float aligned so vector code may assume it. */
    ti->offset = (p->total + 15) & ~(size_t)15;
    p->total = ti->offset + ti->numel;
    ti->decay = ag_name_decays(name);
    return p->n++;
}

int ag_params_addf(ag_params *p, int ndim, const int64_t *shape, const char *fmt, ...) {
    char name[AG_NAME_MAX];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    if (k < 0 || k >= (int)sizeof name) return -1;
    return ag_params_add(p, name, ndim, shape);
}

int ag_params_alloc(ag_params *p) {
    size_t bytes = ((p->total ? p->total : 1) * sizeof(float) + 63) & ~(size_t)63;
    p->data = aligned_alloc(64, bytes);
    p->grad = aligned_alloc(64, bytes);
    if (!p->data || !p->grad) { free(p->data); free(p->grad); p->data = p->grad = NULL; return -1; }
    memset(p->data, 0, bytes);
    memset(p->grad, 0, bytes);
    return 0;
}

void ag_params_free(ag_params *p) {
    free(p->t); free(p->data); free(p->grad);
    memset(p, 0, sizeof *p);
}

int ag_params_find(const ag_params *p, const char *name) {
    for (int i = 0; i < p->n; i++)
        if (strcmp(p->t[i].name, name) == 0) return i;
    return -1;
}

void ag_params_zero_grad(ag_params *p) {
    if (p->grad) memset(p->grad, 0, p->total * sizeof(float));
}
