/* Mixed-precision host side: precision names, torch.amp.GradScaler's state machine, and
 * bfloat16 / float16 conversions by bit manipulation (no compiler half types, so the
 * rounding is the same with any compiler and flags). See nn/amp.h. */
#include "nn/amp.h"

#include <math.h>
#include <string.h>

#include "nn/error.h"

int ag_precision_parse(const char *s, ag_precision *out)
{
    static const struct { const char *name; ag_precision p; } names[] = {
        {"fp32", AG_PREC_FP32}, {"float32", AG_PREC_FP32}, {"bf16", AG_PREC_BF16},
        {"bfloat16", AG_PREC_BF16}, {"fp16", AG_PREC_FP16}, {"float16", AG_PREC_FP16}};
    for (size_t i = 0; s && i < sizeof names / sizeof names[0]; i++)
        if (strcmp(s, names[i].name) == 0) { *out = names[i].p; return 0; }
    return ag_err("precision '%s': expected fp32, bf16 or fp16", s ? s : "(null)");
}

const char *ag_precision_name(ag_precision p)
{
    switch (p) {
    case AG_PREC_FP32: return "fp32";
    case AG_PREC_BF16: return "bf16";
    case AG_PREC_FP16: return "fp16";
    }
    return "unknown";
}

void ag_scaler_init(ag_grad_scaler *s)
{
    memset(s, 0, sizeof *s);
    s->scale = 65536.0f;
    s->growth_factor = 2.0;
    s->backoff_factor = 0.5;
    s->growth_interval = 2000;
    s->enabled = 1;
}

int ag_scaler_config(ag_grad_scaler *s, double init_scale, double growth_factor,
                     double backoff_factor, int growth_interval, int enabled)
{
    /* torch checks only the factors; a scale that is not a positive finite float32 would
     * make every step skip (or never skip), so it is refused here too. */
    if (!(init_scale > 0) || !isfinite((float)init_scale))
        return ag_err("grad scaler: init_scale %g (expected a positive finite float32)", init_scale);
    if (!(growth_factor > 1.0) || !isfinite(growth_factor))
        return ag_err("grad scaler: growth_factor %g (expected > 1)", growth_factor);
    if (!(backoff_factor > 0.0 && backoff_factor < 1.0))
        return ag_err("grad scaler: backoff_factor %g (expected in (0, 1))", backoff_factor);
    if (growth_interval < 1)
        return ag_err("grad scaler: growth_interval %d (expected >= 1)", growth_interval);
    ag_scaler_init(s);
    s->scale = (float)init_scale;
    s->growth_factor = growth_factor;
    s->backoff_factor = backoff_factor;
    s->growth_interval = growth_interval;
    s->enabled = enabled != 0;
    return 0;
}

void ag_scaler_for(ag_grad_scaler *s, ag_precision p)
{
    ag_scaler_init(s);
    s->enabled = p == AG_PREC_FP16;
}

float ag_scaler_scale_loss(const ag_grad_scaler *s, float loss)
{
    return s->enabled ? loss * s->scale : loss;
}

float ag_scaler_inv_scale(const ag_grad_scaler *s)
{
    /* GradScaler: self._scale.double().reciprocal().float() */
    return s->enabled ? (float)(1.0 / (double)s->scale) : 1.0f;
}

int ag_nonfinite_any(const float *x, size_t n)
{
    int bad = 0;
    for (size_t i = 0; i < n; i++) bad |= !isfinite(x[i]);
    return bad;
}

int ag_scaler_unscale(const ag_grad_scaler *s, float *grad, size_t n)
{
    if (!s->enabled) return 0;
    float inv = ag_scaler_inv_scale(s);
    /* The check looks at the scaled input (torch's _amp_foreach_non_finite_check_and_unscale_),
     * so a finite gradient that overflows when multiplied by inv > 1 is not flagged. */
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        bad |= !isfinite(grad[i]);
        grad[i] *= inv;
    }
    return bad;
}

void ag_scaler_update(ag_grad_scaler *s, int found_inf)
{
    if (!s->enabled) return;
    s->steps++;
    if (found_inf) {
        /* torch multiplies the float scale by a double factor and stores a float */
        s->scale = (float)((double)s->scale * s->backoff_factor);
        s->growth_tracker = 0;
        s->skipped++;
        return;
    }
    int successful = s->growth_tracker + 1;
    if (successful == s->growth_interval) {
        float grown = (float)((double)s->scale * s->growth_factor);
        if (isfinite(grown)) s->scale = grown;
        s->growth_tracker = 0;
    } else {
        s->growth_tracker = successful;
    }
}

static uint32_t f32_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static float bits_f32(uint32_t u)
{
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

uint16_t ag_f32_to_bf16(float x)
{
    uint32_t u = f32_bits(x);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)(((u >> 16) & 0x8000u) | 0x7FC0u);
    /* Adding 0x7FFF plus the kept lowest bit rounds half to even; a carry out of the
     * mantissa bumps the exponent, and past the largest finite value gives inf. */
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float ag_bf16_to_f32(uint16_t h)
{
    return bits_f32((uint32_t)h << 16);
}

uint16_t ag_f32_to_f16(float x)
{
    uint32_t u = f32_bits(x);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7FFFFFFFu;
    if (a > 0x7F800000u) return sign | 0x7E00u;          /* NaN */
    if (a >= 0x477FF000u) return sign | 0x7C00u;         /* >= 65520: rounds to inf */
    if (a >= 0x38800000u) {                              /* normal half: |x| >= 2^-14 */
        /* rebias the exponent (127 -> 15) and round the 13 dropped bits, ties to even;
         * a mantissa carry moves into the exponent correctly */
        uint32_t r = a - 0x38000000u;
        r += 0x0FFFu + ((r >> 13) & 1u);
        return sign | (uint16_t)(r >> 13);
    }
    if (a < 0x33000000u) return sign;                    /* < 2^-25: rounds to zero */
    /* subnormal half: value = m * 2^-24 with m = round(|x| * 2^24), ties to even */
    uint32_t e = a >> 23;                                /* 102..112 */
    uint32_t mant = (a & 0x7FFFFFu) | 0x800000u;         /* |x| = mant * 2^(e-150) */
    uint32_t shift = 126u - e;                           /* bits dropped: 14..24 */
    uint32_t q = mant >> shift;
    uint32_t rem = mant & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return sign | (uint16_t)q;
}

float ag_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1Fu, m = h & 0x3FFu;
    if (e == 0x1F) return bits_f32(sign | 0x7F800000u | (m << 13));
    if (e == 0) {
        /* zero or subnormal: m * 2^-24, exact in float */
        float v = (float)m * 0x1p-24f;
        return sign ? -v : v;
    }
    return bits_f32(sign | ((e + 112u) << 23) | (m << 13));
}

void ag_round_to(ag_precision p, float *dst, const float *src, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        switch (p) {
        case AG_PREC_BF16: dst[i] = ag_bf16_to_f32(ag_f32_to_bf16(src[i])); break;
        case AG_PREC_FP16: dst[i] = ag_f16_to_f32(ag_f32_to_f16(src[i])); break;
        default: dst[i] = src[i]; break;
        }
    }
}
