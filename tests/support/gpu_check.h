/* What the CUDA test programs (tests/gpu/test_cuda_*.c) share: the start of a run (skip
 * without a device, seed) and the relative comparison of whole tensors and of a model's
 * parameter gradients. Built with each of those programs, against argent_cuda or the
 * emulator's argent_cuda_emu (tests/cuda.cmake, tests/gpu/CMakeLists.txt). */
#ifndef ARGENT_TEST_GPU_CHECK_H
#define ARGENT_TEST_GPU_CHECK_H
#include <stddef.h>
#include <stdint.h>

#include "nn/bert.h"
#include "nn/params.h"

/* Skips the test (exit 77) when there is no CUDA device, fails it (exit 1) when there is one
 * that ag_cuda_init cannot use, and prints the device. With seed: the run's seed too,
 * ARGENT_TEST_SEED or fresh, printed so that a failing run can be repeated. */
void gpu_test_start(uint64_t *seed);

/* max |x[i]| (0 for n = 0). */
double gpu_max_abs(const float *x, size_t n);

/* max |got - want| / max(max |want|, min_scale): the worst difference against the tensor's
 * scale, min_scale standing in for tensors whose true values are (near) 0. NaN when any
 * difference is NaN, so that a test of !(r <= tol) fails on it. */
double gpu_max_rel(const float *got, const float *want, size_t n, double min_scale);

/* Every parameter gradient of got against want (the same layout): gpu_max_rel with the
 * min_scale 1e-3 of want's largest gradient (at least 1e-30), since the attention key biases'
 * true gradient is 0 (softmax ignores a shift) and theirs is rounding noise. Prints
 * "     grad NAME: rel R" for each tensor over tol. */
typedef struct {
    int bad;                /* tensors over tol (or NaN) */
    double worst;           /* the largest r, NaN if any was */
    const char *worst_name;
    double gmax;            /* want's largest |gradient| */
} gpu_grad_cmp;
gpu_grad_cmp gpu_compare_grads(const ag_params *got, const ag_params *want, double tol);

/* One BERT registered twice, into identical tables: *mc on pc (the CPU model) and *mg on
 * layout, the host image of the device table (mirrored from pc, downloaded into). Both
 * tables are initialised and allocated here, the weights left to the caller. Returns 0, or
 * -1 with the error set. */
int gpu_bert_twins(ag_bert *mc, ag_params *pc, ag_bert *mg, ag_params *layout, const ag_bert_config *cfg,
                   const char *prefix, int with_pooler);

/* The 2-layer BERT of the 16-bit checks: hidden 64, 4 heads, vocabulary 97, dropout 0.1. */
ag_bert_config gpu_small_bert(void);

/* The small padded batch of the 16-bit BERT checks: row b loses its last 3b tokens (id 0,
 * mask 0), ids below 97, token type 1 after position 4. Each array holds B*T. */
void gpu_padded_batch(int B, int T, int32_t *ids, int32_t *types, int32_t *mask);
#endif
