/* Parameter tables: every trainable tensor of a model lives in one flat float buffer, its
 * gradient at the same offset in a second one, and a table maps each Hugging Face name
 * ("encoder.layer.3.attention.self.query.weight") to shape and offset. Allreduce, AdamW,
 * clipping, checkpoints and import/export all work on the flat buffers and the table.
 *
 * Use: ag_params_add() each tensor (modules keep the returned index), ag_params_alloc()
 * once, then ag_params_data()/ag_params_grad() give pointers. Linear weights are (out, in). */
#ifndef ARGENT_NN_PARAMS_H
#define ARGENT_NN_PARAMS_H
#include <stddef.h>
#include <stdint.h>

#define AG_NAME_MAX 160
#define AG_MAX_DIMS 4

typedef struct {
    char name[AG_NAME_MAX];
    int ndim;
    int64_t shape[AG_MAX_DIMS];
    size_t offset;  /* in floats, into data and grad */
    size_t numel;
    int decay;      /* 1: AdamW weight decay applies (not for *bias, *LayerNorm.weight/bias) */
    int row_sparse; /* 1: a 2-D lookup table whose gradient is usually zero outside a few rows
                       (word embeddings); the allreduce may reduce only the nonzero rows */
} ag_tensor_info;

typedef struct {
    ag_tensor_info *t;
    int n, cap;
    size_t total;   /* floats in data (and in grad) */
    float *data;    /* NULL until ag_params_alloc */
    float *grad;
} ag_params;

void ag_params_init(ag_params *p);
/* Register a tensor; returns its index (>= 0), or -1 if the name exists or alloc happened. */
int ag_params_add(ag_params *p, const char *name, int ndim, const int64_t *shape);
/* printf-style name helper: ag_params_addf(p, 2, (int64_t[]){o, i}, "encoder.layer.%d.x", l) */
int ag_params_addf(ag_params *p, int ndim, const int64_t *shape, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* One zeroed allocation for data, one for grad (64-byte aligned). 0 on success. */
int ag_params_alloc(ag_params *p);
void ag_params_free(ag_params *p);
int ag_params_find(const ag_params *p, const char *name);  /* -1 if absent */
static inline float *ag_params_data(const ag_params *p, int i) { return p->data + p->t[i].offset; }
static inline float *ag_params_grad(const ag_params *p, int i) { return p->grad + p->t[i].offset; }
void ag_params_zero_grad(ag_params *p);
/* Whether a name gets weight decay under the reference rule (no decay on biases, LayerNorm). */
int ag_name_decays(const char *name);
#endif
