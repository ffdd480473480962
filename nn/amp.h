/* Mixed precision on the host side: the precision setting (fp32 | bf16 | fp16), the dynamic
 * loss scaler for fp16 training (the exact state machine of torch.amp.GradScaler), and
 * float32 <-> bfloat16 / float16 conversions with round-to-nearest-even, used to prepare
 * and check device data. Plain C, no GPU needed; the device kernels (nn/cuda/) follow the
 * same rounding.
 *
 * Loss scaling, per step (fp16 only; with bf16 or fp32 the scaler is disabled and every
 * call below is the identity, as GradScaler(enabled=False)):
 *
 *   loss_s = ag_scaler_scale_loss(&s, loss);   // backward from loss_s (d loss_s = scale)
 *   ... allreduce the gradients (an inf/NaN on one rank reaches every rank's sum) ...
 *   int bad = ag_scaler_unscale(&s, grad, n);  // grad *= 1/scale; 1 if any inf/NaN
 *   if (!bad) optimizer step;                  // skip the step on inf/NaN
 *   ag_scaler_update(&s, bad);                 // backoff on inf/NaN, growth after
 *                                              // growth_interval clean steps in a row
 *
 * Arithmetic is torch's, to the bit: the scale is a float32; 1/scale is computed in double
 * and rounded to float; gradients are multiplied in float32; the update multiplies the
 * float scale by the double factors and rounds to float; a growth whose result is not
 * finite is refused (the tracker still resets). */
#ifndef ARGENT_NN_AMP_H
#define ARGENT_NN_AMP_H
#include <stddef.h>
#include <stdint.h>

typedef enum { AG_PREC_FP32 = 0, AG_PREC_BF16 = 1, AG_PREC_FP16 = 2 } ag_precision;

/* "fp32" | "bf16" | "fp16" (also "float32", "bfloat16", "float16"). 0, or -1 with ag_err
 * naming the string and the accepted values. */
int ag_precision_parse(const char *s, ag_precision *out);
const char *ag_precision_name(ag_precision p);

typedef struct {
    float scale;            /* current loss scale (float32, as torch's _scale tensor) */
    double growth_factor;   /* > 1, default 2 */
    double backoff_factor;  /* in (0, 1), default 0.5 */
    int growth_interval;    /* >= 1, default 2000 */
    int growth_tracker;     /* clean steps in a row since the last change */
    int enabled;            /* 0: every call is the identity, never skips */
    int64_t steps, skipped; /* statistics: updates seen, steps skipped on inf/NaN */
} ag_grad_scaler;

/* torch defaults: scale 65536, growth 2, backoff 0.5, interval 2000, enabled. */
void ag_scaler_init(ag_grad_scaler *s);
/* Explicit settings (GradScaler(init_scale, growth_factor, backoff_factor,
 * growth_interval, enabled)). 0, or -1 with ag_err naming the bad value. */
int ag_scaler_config(ag_grad_scaler *s, double init_scale, double growth_factor,
                     double backoff_factor, int growth_interval, int enabled);
/* The scaler for a precision: enabled for fp16 only, torch defaults otherwise. */
void ag_scaler_for(ag_grad_scaler *s, ag_precision p);
/* loss * scale in float32 (loss unchanged when disabled). */
float ag_scaler_scale_loss(const ag_grad_scaler *s, float loss);
/* (float)(1.0 / (double)scale): the factor ag_scaler_unscale applies (1 when disabled). */
float ag_scaler_inv_scale(const ag_grad_scaler *s);
/* grad[i] *= inv_scale over n floats; returns 1 when any input element was inf or NaN,
 * else 0 (disabled: no change, returns 0). The device version does the same per bucket. */
int ag_scaler_unscale(const ag_grad_scaler *s, float *grad, size_t n);
/* 1 when any of n floats is inf or NaN. */
int ag_nonfinite_any(const float *x, size_t n);
/* After the (possibly skipped) optimizer step: found_inf != 0 multiplies the scale by the
 * backoff factor and resets the tracker; otherwise the tracker counts, and at
 * growth_interval the scale grows (when the result is finite) and the tracker resets. */
void ag_scaler_update(ag_grad_scaler *s, int found_inf);

/* ---- conversions (round to nearest, ties to even; overflow to inf; subnormals kept) ---- */
/* bfloat16: the upper 16 bits of a float32, rounded. NaN -> 0x7FC0 with the input's sign
 * (torch's CPU vector path gives 0xFFFF; both are quiet NaNs, compare NaN-ness). */
uint16_t ag_f32_to_bf16(float x);
float ag_bf16_to_f32(uint16_t h);
/* IEEE binary16: NaN -> 0x7E00 with the input's sign (torch's result). */
uint16_t ag_f32_to_f16(float x);
float ag_f16_to_f32(uint16_t h);
/* dst[i] = x rounded to the precision and widened back to float32 (fp32: a copy); dst may
 * equal src. What a value looks like after a round trip through device storage. */
void ag_round_to(ag_precision p, float *dst, const float *src, size_t n);
#endif
