/* Reader for .agfx fixture files written by tests/fixtures/agfx.py (format documented there).
 * Tensors are loaded whole into memory; names are looked up linearly (fixtures are small). */
#ifndef ARGENT_TEST_FIXTURE_H
#define ARGENT_TEST_FIXTURE_H
#include <stddef.h>
#include <stdint.h>

enum { AGFX_F32 = 0, AGFX_I32 = 1, AGFX_F64 = 2 };

typedef struct {
    char *name;
    int dtype, ndim;
    int64_t dims[8];
    size_t numel;
    void *data;
} agfx_tensor;

typedef struct {
    int n;
    agfx_tensor *t;
    char path[512];
} agfx;

/* Returns 0 on success; on failure prints why (naming the file) and returns -1. */
int agfx_load(agfx *fx, const char *path);
void agfx_free(agfx *fx);
/* NULL if absent. */
const agfx_tensor *agfx_find(const agfx *fx, const char *name);
/* Abort the test (exit 1) with a message if absent or of another dtype. */
const float *agfx_f32(const agfx *fx, const char *name, size_t *numel);
const int32_t *agfx_i32(const agfx *fx, const char *name, size_t *numel);
/* A scalar stored as float32 or int32. */
double agfx_scalar(const agfx *fx, const char *name);
#endif
