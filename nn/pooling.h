/* Sentence pooling and L2 normalisation for bi-encoders, exactly as sentence-transformers'
 * Pooling and Normalize modules compute them, with explicit backward passes.
 *
 * Shapes: h [B,T,C] last hidden states, mask [B,T] (non-zero = real token, 0 = padding),
 * pooled [B,C]. Every backward here ACCUMULATES (+=) into its input gradient, like the
 * parameter gradients elsewhere, so a caller zeroes once and can sum several paths.
 *
 *   cls   out = h[b, first position with mask != 0]  (position 0 for right padding, and
 *         for a row with no real token, as ST's argmax over the mask gives)
 *   mean  out = Σ_t h·M / max(Σ_t M, 1e-9)
 *   max   out = max over positions with M != 0 (-inf for a row with none, as ST); the
 *         backward routes each channel's gradient to its argmax (first maximum on ties),
 *         which the forward records in argmax[B,C]. */
#ifndef ARGENT_NN_POOLING_H
#define ARGENT_NN_POOLING_H
#include <stdint.h>

typedef enum { AG_POOL_CLS = 0, AG_POOL_MEAN = 1, AG_POOL_MAX = 2 } ag_pool_mode;

/* "cls", "mean" or "max" (ST's names) -> mode. 0, or -1 with ag_err naming the string. */
int ag_pool_mode_parse(const char *name, ag_pool_mode *mode);
const char *ag_pool_mode_name(ag_pool_mode mode);

/* h[B,T,C], mask[B,T] -> out[B,C]. argmax[B,C] is required for AG_POOL_MAX (it is what the
 * backward needs; -1 where a row has no real token) and ignored otherwise (may be NULL).
 * Returns 0, or -1 with ag_err on bad arguments. */
int ag_pool_forward(ag_pool_mode mode, const float *h, const int32_t *mask, int B, int T, int C,
                    float *out, int32_t *argmax);

/* dout[B,C] -> dh[B,T,C] (+=). mask as in the forward; argmax from the forward for MAX.
 * Padded positions receive no gradient. Returns 0, or -1 with ag_err. */
int ag_pool_backward(ag_pool_mode mode, const float *dout, const int32_t *mask,
                     const int32_t *argmax, int B, int T, int C, float *dh);

/* y = x / max(||x||_2, 1e-12) per row, as torch.nn.functional.normalize(x, p=2, dim=1).
 * x, y [B,C] (may be the same buffer). norm[B] (optional) receives the unclamped norms. */
void ag_l2norm_forward(const float *x, int B, int C, float *y, float *norm);
/* dy[B,C] -> dx[B,C] (+=), given the forward's output y and x's norms (from the forward):
 * dx += (dy - y·(y·dy)) / n, or dy / 1e-12 where the norm was clamped (no gradient flows
 * through a clamped norm, as in torch). dx must not alias dy or y. */
void ag_l2norm_backward(const float *y, const float *norm, const float *dy, int B, int C, float *dx);
#endif
