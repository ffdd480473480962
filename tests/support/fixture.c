/* Reader for .agfx fixture files; see fixture.h. */
#include "tests/support/fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int rd(FILE *f, void *p, size_t n) { return fread(p, 1, n, f) == n ? 0 : -1; }

int agfx_load(agfx *fx, const char *path) {
    memset(fx, 0, sizeof *fx);
    snprintf(fx->path, sizeof fx->path, "%s", path);
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "fixture %s: cannot open\n", path); return -1; }
    char magic[8];
    uint32_t n;
    if (rd(f, magic, 8) || memcmp(magic, "AGFX1\0\0\0", 8) || rd(f, &n, 4) || n > 100000) {
        fprintf(stderr, "fixture %s: not an AGFX1 file\n", path);
        fclose(f);
        return -1;
    }
    fx->t = calloc(n, sizeof *fx->t);
    fx->n = (int)n;
    for (uint32_t i = 0; i < n; i++) {
        agfx_tensor *t = &fx->t[i];
        uint32_t ln, dt, nd;
        if (rd(f, &ln, 4) || ln > 4096) goto bad;
        t->name = calloc(ln + 1, 1);
        if (rd(f, t->name, ln) || rd(f, &dt, 4) || rd(f, &nd, 4) || nd > 8 || dt > 2) goto bad;
        t->dtype = (int)dt;
        t->ndim = (int)nd;
        t->numel = 1;
        for (uint32_t d = 0; d < nd; d++) {
            if (rd(f, &t->dims[d], 8) || t->dims[d] < 0) goto bad;
            t->numel *= (size_t)t->dims[d];
        }
        size_t isz = dt == AGFX_F64 ? 8 : 4;
        t->data = malloc(t->numel * isz + 1);
        if (rd(f, t->data, t->numel * isz)) goto bad;
    }
    fclose(f);
    return 0;
bad:
    fprintf(stderr, "fixture %s: truncated or corrupt\n", path);
    fclose(f);
    agfx_free(fx);
    return -1;
}

void agfx_free(agfx *fx) {
    for (int i = 0; i < fx->n; i++) { free(fx->t[i].name); free(fx->t[i].data); }
    free(fx->t);
    fx->t = NULL;
    fx->n = 0;
}

const agfx_tensor *agfx_find(const agfx *fx, const char *name) {
    for (int i = 0; i < fx->n; i++)
        if (fx->t[i].name && strcmp(fx->t[i].name, name) == 0) return &fx->t[i];
    return NULL;
}

static const agfx_tensor *need(const agfx *fx, const char *name, int dtype) {
    const agfx_tensor *t = agfx_find(fx, name);
    if (!t) { fprintf(stderr, "FAIL fixture %s: no tensor '%s'\n", fx->path, name); exit(1); }
    if (t->dtype != dtype) { fprintf(stderr, "FAIL fixture %s: '%s' has dtype %d, want %d\n", fx->path, name, t->dtype, dtype); exit(1); }
    return t;
}

const float *agfx_f32(const agfx *fx, const char *name, size_t *numel) {
    const agfx_tensor *t = need(fx, name, AGFX_F32);
    if (numel) *numel = t->numel;
    return t->data;
}

const int32_t *agfx_i32(const agfx *fx, const char *name, size_t *numel) {
    const agfx_tensor *t = need(fx, name, AGFX_I32);
    if (numel) *numel = t->numel;
    return t->data;
}

double agfx_scalar(const agfx *fx, const char *name) {
    const agfx_tensor *t = agfx_find(fx, name);
    if (!t) { fprintf(stderr, "FAIL fixture %s: no scalar '%s'\n", fx->path, name); exit(1); }
    if (t->dtype == AGFX_F32) return ((const float *)t->data)[0];
    if (t->dtype == AGFX_I32) return ((const int32_t *)t->data)[0];
    return ((const double *)t->data)[0];
}
